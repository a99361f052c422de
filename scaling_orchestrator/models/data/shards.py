"""Prepared token shards: .npy files (dtype in the header) listed by a manifest.json, memory-mapped.

A trial reads the manifest and maps its shards: nothing else, so its start-up costs one small JSON
read and a `np.load(mmap_mode="r")` per shard, whatever the corpus's size. Every file is written
under a temporary name and moved into place with os.replace: a reader sees a whole file or none.

manifest.json (format MANIFEST_FORMAT; docs/schema.md):
  {"format", "key", "corpus", "val_corpus", "tokenizer": {"kind", "file", "sha256"}, "vocab_size",
   "dtype", "separator": {"id": int} | {"text": "\\n\\n"}, "val_fraction", "split_seed",
   "fingerprint", "splits": {"train"|"val": {"documents", "tokens", "bytes", "shards": [{"file",
   "tokens", "sha256"}]}}, "units": [...]}
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
SPLITS = ("train", "val")


class ShardedTokens:
    """Several 1-D token shards read as one array: len, slices and integer-array indexing (what
    the training loop's batch and eval windows use); a window may straddle two shards."""

    def __init__(self, shards: list[np.ndarray]):
        self.shards = shards
        self.starts = np.cumsum([0] + [len(s) for s in shards])
        self.dtype = shards[0].dtype
        self.size = int(self.starts[-1])

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self[np.arange(*index.indices(self.size))]
        index = np.asarray(index)
        if index.ndim == 0:
            return self[index[None]][0]
        if index.size and (index.min() < 0 or index.max() >= self.size):
            raise IndexError(f"token index out of range 0..{self.size - 1}")
        which = np.searchsorted(self.starts, index, side="right") - 1
        out = np.empty(index.shape, dtype=self.dtype)
        for shard in np.unique(which):
            mask = which == shard
            out[mask] = self.shards[shard][index[mask] - self.starts[shard]]
        return out

    def __array__(self, dtype=None, copy=None):
        whole = np.concatenate([np.asarray(s) for s in self.shards])
        return whole if dtype is None else whole.astype(dtype)

    def max(self):
        return max(int(s.max()) for s in self.shards)


def open_split(folder: Path, split: dict):
    """One split's tokens: its only shard's memory map, or the shards as one ShardedTokens."""
    maps = [np.load(folder / s["file"], mmap_mode="r") for s in split["shards"]]
    if not maps:
        raise ValueError(f"{folder / MANIFEST}: the split has no tokens")
    return maps[0] if len(maps) == 1 else ShardedTokens(maps)


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a prepared folder, or None when it is absent or of another format."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    return manifest if manifest.get("format") == MANIFEST_FORMAT else None


def save_shard(path: Path, ids: np.ndarray) -> str:
    """np.save to path atomically; returns the sha256 of the file's bytes."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, ids)
    digest = file_sha256(tmp)
    os.replace(tmp, path)
    return digest


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False))
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(head: dict, records: list[dict]) -> dict:
    """The manifest from its fixed fields and the unit records in unit order."""
    splits = {name: {"documents": 0, "tokens": 0, "bytes": 0, "shards": []} for name in SPLITS}
    for record in records:
        for name in SPLITS:
            part = record["splits"][name]
            for key in ("documents", "tokens", "bytes"):
                splits[name][key] += part[key]
            splits[name]["shards"] += part["shards"]
    # of the tokens, not of where they lie: the tokenizer by its hash, not its path
    tokenizer = {k: v for k, v in head["tokenizer"].items() if k != "file"}
    digest = hashlib.sha256(json.dumps([tokenizer, head["dtype"]], sort_keys=True).encode())
    for name in SPLITS:
        for shard in splits[name]["shards"]:
            digest.update(f"{name}:{shard['sha256']}".encode())
    units = [{"index": r["index"], "source": r["source"]} for r in records]
    return {
        **head,
        "format": MANIFEST_FORMAT,
        "fingerprint": digest.hexdigest()[:16],
        "splits": splits,
        "units": units,
    }
