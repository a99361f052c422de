"""Preparing a corpus: tokens per second on Ray Data with 1 and 2 workers and in one process, peak
memory of the driver and the workers as the corpus grows, and a trial's start-up once prepared.

    python bench/prepare.py [--sizes-mb 100 1000] [--shard-mb 8] [--modes single ray1 ray2]

A synthetic corpus of each size (Parquet shards of --shard-mb of text, `text` column; documents
of 300-900 pseudo-words drawn from a fixed 20,000-word list, seed 0) and a 4,096-token byte-level
BPE tokenizer.json with an end-of-text token, trained on 2 MB of it. Each (size, mode) runs in a
fresh Python process with its own cache folder, so every run does the whole work and its
ru_maxrss is its own: "single" tokenizes the units one after another in that process; "rayN"
starts a local Ray of N CPUs and runs the Ray Data pipeline with N actors (the tokens/s counts the
pipeline only, not Ray's start). Worker peak: the largest ru_maxrss an actor reported. Trial
start-up: a fresh process's load_prepared (manifest + np.load(mmap_mode="r") of every shard) and
one batch of windows read. Goals: ray2 / ray1 >= 1.6x; the larger corpus's peaks at most 1.2x
the smaller's; start-up under 1 s at both sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from scaling_orchestrator.models.data.prepare import finish, plan_prepare  # noqa: E402
from scaling_orchestrator.models.data.tokens import DataSpec, load_prepared  # noqa: E402
from scaling_orchestrator.models.data.units import process_unit  # noqa: E402

EOS = "<|endoftext|>"


def words(n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    weights = 1.0 / np.arange(1, 27)
    weights /= weights.sum()
    return np.array(["".join(rng.choice(letters, rng.integers(2, 10), p=weights)) for _ in range(n)])


def make_corpus(folder: Path, size_mb: int, shard_mb: int) -> None:
    """size_mb of text in shards of shard_mb, written one shard at a time (flat memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, rng = words(), np.random.default_rng(1)
    cdf = np.cumsum(1.0 / np.arange(1, len(vocab) + 1))  # Zipf's law over the word list
    cdf /= cdf[-1]
    written, shard = 0, 0
    while written < size_mb << 20:
        docs, size = [], 0
        while size < shard_mb << 20 and written + size < size_mb << 20:
            picks = np.minimum(np.searchsorted(cdf, rng.random(rng.integers(300, 900))), len(vocab) - 1)
            doc = " ".join(vocab[picks])
            docs.append(doc)
            size += len(doc)
        pq.write_table(pa.table({"text": docs}), folder / f"train-{shard:05d}.parquet")
        written, shard = written + size, shard + 1


def make_tokenizer(corpus: Path, path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    sample = pq.read_table(sorted(corpus.glob("*.parquet"))[0]).column("text").to_pylist()[:600]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(sample, trainer=trainer)
    tokenizer.save(str(path))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def one_run(spec: DataSpec, mode: str) -> dict:
    """In this (fresh) process: prepare spec by `mode`; its tokens/s and peaks."""
    prepared = plan_prepare(spec)
    if mode == "single":
        start = time.perf_counter()
        records = [process_unit(u, prepared.folder, prepared.job) for u in prepared.units]
        seconds, worker_peak = time.perf_counter() - start, 0
    else:
        import ray

        from scaling_orchestrator.orchestrator.execution.prepare_data import tokenize_units
        from scaling_orchestrator.orchestrator.execution.tuner import start_local_ray

        workers = int(mode[3:])
        start_local_ray(num_cpus=workers)
        start = time.perf_counter()
        records = tokenize_units(prepared.units, prepared.job, workers)
        seconds = time.perf_counter() - start
        worker_peak = max(r["worker_peak_rss_bytes"] for r in records)
        ray.shutdown()
    manifest = json.loads(finish(prepared, records).read_text())
    tokens = sum(s["tokens"] for s in manifest["splits"].values())
    return {"tokens": tokens, "seconds": seconds, "driver_peak": peak_rss_bytes(), "worker_peak": worker_peak}


def start_up(spec: DataSpec) -> dict:
    """In this (fresh) process: a trial's load of the prepared data and one batch of windows."""
    start = time.perf_counter()
    data = load_prepared(spec)
    offsets = np.random.default_rng(0).integers(0, len(data.train) - 129, size=16)
    batch = data.train[offsets[:, None] + np.arange(129)]
    return {
        "seconds": time.perf_counter() - start,
        "shards": len(getattr(data.train, "shards", [0])),
        "checksum": int(batch.sum()),
    }


def child(args) -> None:
    spec = DataSpec(**json.loads(args.child_spec))
    out = start_up(spec) if args.child_mode == "startup" else one_run(spec, args.child_mode)
    print(json.dumps(out))


def run_child(spec: dict, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-spec", json.dumps(spec), "--child-mode", mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--shard-mb", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["single", "ray1", "ray2"])
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    parser.add_argument("--child-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_spec:
        return child(args)
    root = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    peaks = {}
    for size in args.sizes_mb:
        corpus = root / f"corpus-{size}mb"
        make_corpus(corpus, size, args.shard_mb)
        make_tokenizer(corpus, root / f"tokenizer-{size}.json")
        base = {"corpus": f"{corpus}/*.parquet:text", "tokenizer": str(root / f"tokenizer-{size}.json")}
        rates = {}
        for mode in args.modes:
            spec = {**base, "cache_dir": str(root / f"cache-{size}-{mode}")}
            r = run_child(spec, mode)
            rates[mode] = r["tokens"] / r["seconds"]
            peaks[(size, mode)] = (r["driver_peak"], r["worker_peak"])
            up = run_child(spec, "startup")
            mb = {k: r[k] / 2**20 for k in ("driver_peak", "worker_peak")}
            print(
                f"{size} MB {mode}: {r['tokens']:,} tokens in {r['seconds']:.1f} s = {rates[mode]:,.0f} "
                f"tokens/s; driver peak {mb['driver_peak']:.0f} MB, worker peak {mb['worker_peak']:.0f} MB; "
                f"trial start-up {up['seconds'] * 1e3:.1f} ms over {up['shards']} shards",
                flush=True,
            )
        if "ray1" in rates and "ray2" in rates:
            print(f"{size} MB ray2 vs ray1: {rates['ray2'] / rates['ray1']:.2f}x (goal >= 1.6x)")
    if len(args.sizes_mb) > 1:
        small, large = min(args.sizes_mb), max(args.sizes_mb)
        for mode in args.modes:
            if (small, mode) in peaks and (large, mode) in peaks:
                d = peaks[(large, mode)][0] / peaks[(small, mode)][0]
                w = peaks[(large, mode)][1] / max(1, peaks[(small, mode)][1])
                print(f"peak memory {large} MB vs {small} MB, {mode}: driver {d:.2f}x, worker {w:.2f}x "
                      "(goal <= 1.2x)")


if __name__ == "__main__":
    main()
