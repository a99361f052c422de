"""Preparing a corpus once: units -> tokens -> .npy shards + manifest.json in a folder of the cache.

The folder is `<cache>/prepared/<key>`, the key a hash of what the tokens depend on as written
(corpus and val corpus paths, tokenizer, vocab, eos token, val fraction, split seed), so a trial
finds it without reading the corpus. Whether it is current is a question for the driver: the
manifest lists each unit's source files with size and mtime, and `is_prepared` compares them by
stat calls (a changed file re-prepares its unit; a changed corpus retrains a `bpe`).

Preparing is `plan_prepare` (the tokenizer file, the job a worker needs, the units), then
`process_unit` per unit (here in one process by `prepare_local`, or on Ray Data by
orchestrator/execution/prepare_data.py), then `finish`, which writes the manifest last. A lock file in the
folder (fcntl.flock) lets one process prepare while another waits, so two studies starting
together prepare once; a kill leaves finished units recorded and the next run does the rest.

A trained `bpe` is saved as the folder's tokenizer.json, trained on the train documents only;
training reads the whole corpus in this process, so it is meant for corpora of a few hundred MB:
bring a tokenizer.json for more.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scaling_orchestrator.models.data.corpus import check_corpus, columnar_target
from scaling_orchestrator.models.data.shards import (
    MANIFEST,
    MANIFEST_FORMAT,
    build_manifest,
    file_sha256,
    read_manifest,
    write_json,
)
from scaling_orchestrator.models.data.tokenizer import (
    BYTE_VOCAB,
    eos_id,
    is_tokenizer_file,
    load_tokenizer_file,
    token_dtype,
    tokenizer_vocab_size,
    train_bpe,
)
from scaling_orchestrator.models.data.units import (
    DOC_SEPARATOR,
    SHARD_TOKENS,
    SPLIT_SEED,
    Unit,
    is_val,
    plan_units,
    process_unit,
    unit_documents,
)


@dataclass(frozen=True)
class PrepareJob:
    folder: Path
    head: dict  # the manifest's fixed fields
    job: dict  # what a worker needs to process a unit (JSON-able)
    units: tuple[Unit, ...]


def cache_root(spec) -> Path:
    if spec.cache_dir:
        return Path(spec.cache_dir).expanduser()
    if os.environ.get("SCALING_CACHE"):
        return Path(os.environ["SCALING_CACHE"]).expanduser()
    return Path.home() / ".cache" / "scaling-orchestrator"


def _where(corpus: str) -> str:
    """A corpus as its key sees it: named corpora by name, paths made absolute."""
    if not corpus or corpus in ("sotu", "pydoc"):
        return corpus
    target = columnar_target(corpus)
    if target:
        return f"{os.path.abspath(os.path.expanduser(target[0]))}:{target[1]}"
    return os.path.abspath(os.path.expanduser(corpus))


def data_key(spec) -> str:
    """The prepared folder's name: a hash of what the tokens depend on, as written."""
    tokenizer = spec.tokenizer
    if is_tokenizer_file(tokenizer):
        tokenizer = file_sha256(Path(tokenizer).expanduser())
    identity = {
        "format": MANIFEST_FORMAT,
        "corpus": _where(spec.corpus),
        "val_corpus": _where(spec.val_corpus),
        "tokenizer": tokenizer,
        "vocab_size": spec.vocab_size if spec.tokenizer == "bpe" else 0,
        "eos_token": spec.eos_token,
        "val_fraction": float(spec.val_fraction),
        "split_seed": SPLIT_SEED,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def prepared_folder(spec) -> Path:
    return cache_root(spec) / "prepared" / data_key(spec)


def spec_units(spec) -> list[Unit]:
    """The units of the corpus (and of data.val_corpus after it), from a listing."""
    if not spec.val_corpus:
        return plan_units(check_corpus(spec.corpus))
    train = plan_units(check_corpus(spec.corpus), split="train")
    return train + plan_units(check_corpus(spec.val_corpus), start=len(train), split="val")


def is_prepared(spec) -> bool:
    """A manifest whose units are the corpus's units now, from the same files (stat calls)."""
    manifest = read_manifest(prepared_folder(spec))
    if manifest is None:
        return False
    now = [{"index": u.index, "source": u.source()} for u in spec_units(spec)]
    return json.loads(json.dumps(now)) == manifest["units"]


@contextmanager
def prepare_lock(folder: Path):
    """Holds `folder/.lock` (fcntl.flock, released if the holder dies): one preparer at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def plan_prepare(spec, shard_tokens: int = SHARD_TOKENS) -> PrepareJob:
    """The units and the job (tokenizer file, dtype, separator); trains a bpe if it must."""
    folder = prepared_folder(spec)
    units = tuple(spec_units(spec))
    folder.mkdir(parents=True, exist_ok=True)
    if spec.tokenizer == "byte":
        tokenizer, vocab, separator = {"kind": "byte", "file": None, "sha256": None}, BYTE_VOCAB, None
    elif spec.tokenizer == "bpe":
        path = _trained_bpe(spec, folder, units)
        tokenizer, vocab, separator = _file_tokenizer("bpe", path), spec.vocab_size, None
    else:
        path = str(Path(spec.tokenizer).expanduser().resolve())
        loaded = load_tokenizer_file(path)
        vocab = tokenizer_vocab_size(loaded)
        tokenizer, separator = _file_tokenizer("file", path), {"id": eos_id(loaded, path, spec.eos_token)}
    separator = separator or {"text": DOC_SEPARATOR}
    dtype = token_dtype(vocab).name
    job = {
        "folder": str(folder),
        "tokenizer": tokenizer,
        "dtype": dtype,
        "separator": separator,
        "val_fraction": float(spec.val_fraction),
        "shard_tokens": int(shard_tokens),
    }
    head = {
        "key": folder.name,
        "corpus": spec.corpus,
        "val_corpus": spec.val_corpus,
        "tokenizer": tokenizer,
        "vocab_size": vocab,
        "dtype": dtype,
        "separator": separator,
        "val_fraction": float(spec.val_fraction),
        "split_seed": SPLIT_SEED,
    }
    return PrepareJob(folder, head, job, units)


def _file_tokenizer(kind: str, path: str) -> dict:
    return {"kind": kind, "file": path, "sha256": file_sha256(Path(path))}


def _trained_bpe(spec, folder: Path, units: tuple[Unit, ...]) -> str:
    """folder/tokenizer.json, trained on the train documents unless trained on these sources."""
    path, stamp = folder / "tokenizer.json", folder / "tokenizer.source.json"
    sources = [u.source() for u in units]
    if (
        path.is_file()
        and stamp.is_file()
        and json.loads(stamp.read_text()) == json.loads(json.dumps(sources))
    ):
        return str(path)
    docs = [
        d
        for u in units
        if u.split != "val"
        for batch in unit_documents(u)
        for d in batch
        if u.split == "train" or not is_val(d, spec.val_fraction)
    ]
    tokenizer = train_bpe(docs, spec.vocab_size)
    tmp = path.with_name(f"tokenizer.json.{os.getpid()}.tmp")
    tokenizer.save(str(tmp))
    os.replace(tmp, path)
    write_json(stamp, sources)
    return str(path)


def finish(prepared: PrepareJob, records: list[dict]) -> Path:
    """Writes the manifest from every unit's record (in unit order); refuses an empty split."""
    records = sorted(records, key=lambda r: r["index"])
    manifest = build_manifest(prepared.head, records)
    for name, split in manifest["splits"].items():
        if not split["tokens"]:
            raise ValueError(
                f"DataSpec.val_fraction={prepared.head['val_fraction']!r}: the {name} split of "
                f"{prepared.head['corpus']!r} came out empty ({manifest['splits']['train']['documents']} "
                f"train, {manifest['splits']['val']['documents']} val documents); change val_fraction "
                f"or give data.val_corpus"
            )
    write_json(prepared.folder / MANIFEST, manifest)
    return prepared.folder / MANIFEST


def prepare_units(spec, run_units, shard_tokens: int = SHARD_TOKENS) -> Path:
    """plan_prepare, run_units(units, job) -> records, finish. When no document's hash falls
    below val_fraction (a corpus of a few documents), the threshold moves just past the lowest
    score and the units run again: the lowest-scoring document goes to val, whatever the
    sharding (and the highest stays in train when every one fell below)."""
    prepared = plan_prepare(spec, shard_tokens)
    records = run_units(prepared.units, prepared.job)
    threshold = None if spec.val_corpus else _fallback_threshold(records, prepared.job)
    if threshold is not None:
        prepared = replace(prepared, job={**prepared.job, "val_fraction": threshold})
        records = run_units(prepared.units, prepared.job)
    return finish(prepared, records)


def _fallback_threshold(records: list[dict], job: dict) -> float | None:
    tokens = {name: sum(r["splits"][name]["tokens"] for r in records) for name in ("train", "val")}
    lowest = min(r["scores"][0] for r in records)
    highest = max(r["scores"][1] for r in records)
    if tokens["val"] == 0 and lowest < 1.0:
        return float(np.nextafter(lowest, 1.0))
    if tokens["train"] == 0 and highest > 0.0:
        return float(highest)
    return None


def prepare_local(spec, shard_tokens: int = SHARD_TOKENS) -> Path:
    """Prepare in this process (the small-corpus path and the single-process baseline)."""
    folder = prepared_folder(spec)
    with prepare_lock(folder):
        if is_prepared(spec):
            return folder / MANIFEST
        return prepare_units(
            spec, lambda units, job: [process_unit(u, folder, job) for u in units], shard_tokens
        )
