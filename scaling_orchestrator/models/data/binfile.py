"""A `.bin` of token ids: its dtype and header are read from the spec or the file, never guessed.

Layouts recognised:
- modded-nanogpt (`data/fineweb.py`): a header of 256 int32 (1,024 bytes): magic 20240520,
  version 1, the token count; then that many uint16 ids. Read by its header whatever the spec's
  vocabulary.
- nanoGPT (`data/*/prepare.py`): headerless uint16 ids. Taken as such when `data.token_dtype` is
  uint16, or when it is not given and the vocabulary fits uint16, unless the file's first values
  show the pattern of uint32 ids read as uint16 (every second value 0: little-endian uint32 ids
  below 65,536 have zero high halves), which is refused naming the fix.
- headerless uint32: with `data.token_dtype: uint32`, or a vocabulary over 65,536 (uint16 cannot
  hold its ids).

An id at or above the vocabulary is a one-line error naming the file and the first bad offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODDED_MAGIC = 20240520
MODDED_VERSIONS = {1: np.dtype(np.uint16)}
HEADER_INT32 = 256  # 1,024 bytes
TOKEN_DTYPES = ("uint16", "uint32")
SNIFF_VALUES = 512  # uint16 values looked at for the uint32-as-uint16 pattern
CHECK_CHUNK = 1 << 24  # ids scanned at a time for the vocabulary bound (32 MB of uint16)


@dataclass(frozen=True)
class BinLayout:
    path: str
    dtype: np.dtype
    offset_bytes: int  # where the ids start
    tokens: int
    source: str  # how the layout was known, for messages and the manifest


def bin_error(path, allowed: str, found: str) -> ValueError:
    return ValueError(f"DataSpec.corpus={str(path)!r}: must be {allowed} ({found})")


def bin_layout(path: str | Path, vocab_size: int, token_dtype: str = "") -> BinLayout:
    """The layout of a .bin from at most its first 1,024 bytes and its size (no ids scanned)."""
    path = Path(path).expanduser()
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_INT32 * 4)
    header = np.frombuffer(head[: len(head) // 4 * 4], dtype="<i4")
    if header.size == HEADER_INT32 and header[0] == MODDED_MAGIC:
        return _modded(path, header, size, token_dtype)
    if token_dtype:
        dtype, source = np.dtype(token_dtype), f"data.token_dtype {token_dtype}"
    elif vocab_size > 65536:
        dtype, source = np.dtype(np.uint32), f"uint32: vocab_size {vocab_size} > 65536"
    else:
        dtype, source = np.dtype(np.uint16), "headerless uint16 (nanoGPT)"
        _refuse_uint32_pattern(path, head, size)
    if size == 0 or size % dtype.itemsize:
        raise bin_error(
            path,
            f"{dtype.name} token ids for vocab_size={vocab_size}",
            f"{size} bytes is not a positive multiple of {dtype.itemsize}; the file is corrupt "
            f"or was written with another dtype",
        )
    return BinLayout(str(path), dtype, 0, size // dtype.itemsize, source)


def _modded(path: Path, header: np.ndarray, size: int, token_dtype: str) -> BinLayout:
    version, tokens = int(header[1]), int(header[2])
    if version not in MODDED_VERSIONS:
        raise bin_error(path, "a modded-nanogpt shard of a known version (1)", f"version {version}")
    dtype = MODDED_VERSIONS[version]
    if token_dtype and np.dtype(token_dtype) != dtype:
        raise bin_error(
            path, f"data.token_dtype {dtype.name} as its header says", f"data.token_dtype is {token_dtype}"
        )
    expected = HEADER_INT32 * 4 + tokens * dtype.itemsize
    if tokens <= 0 or size != expected:
        raise bin_error(
            path,
            f"a modded-nanogpt shard of {tokens} tokens ({expected} bytes)",
            f"{size} bytes; the file is truncated or not one",
        )
    return BinLayout(str(path), dtype, HEADER_INT32 * 4, tokens, f"modded-nanogpt header v{version}")


def _refuse_uint32_pattern(path: Path, head: bytes, size: int) -> None:
    values = np.frombuffer(head[: min(len(head), SNIFF_VALUES * 2) // 4 * 4], dtype="<u2")
    if size % 4 or values.size < 8:
        return
    if not values[1::2].any() and values[0::2].any():
        raise bin_error(
            path,
            "ids of a stated dtype: set data.token_dtype",
            f"every second uint16 of its first {values.size} is 0, as in uint32 ids read as uint16; "
            f"data.token_dtype: uint32 reads it, data.token_dtype: uint16 keeps uint16",
        )


def read_bin(layout: BinLayout) -> np.memmap:
    """The ids as a read-only memory map (nothing read until used)."""
    return np.memmap(
        layout.path, dtype=layout.dtype, mode="r", offset=layout.offset_bytes, shape=(layout.tokens,)
    )


def check_ids(ids: np.ndarray, vocab_size: int, path: str) -> None:
    """Every id below vocab_size, or one line naming the file and the first offending offset."""
    for start in range(0, ids.size, CHECK_CHUNK):
        block = np.asarray(ids[start : start + CHECK_CHUNK])
        bad = block >= vocab_size
        if bad.any():
            at = int(np.argmax(bad))
            raise ValueError(
                f"DataSpec.corpus={path!r}: token id {int(block[at])} at offset {start + at} (the first "
                f"out of range), but vocab_size={vocab_size} allows ids 0..{vocab_size - 1}"
            )
