"""The memory model (models/memory.py) against the measured peak of
scaling_orchestrator.models.training.loop's loop.

    python bench/memory.py [--shapes all|quick|llama]

Each shape trains two optimizer steps (the second holds AdamW's states) and one evaluation, in
a fresh process. CUDA: torch.cuda.max_memory_allocated, the caching allocator's own peak of
live tensor bytes (the CUDA context and cuBLAS workspaces are outside it; the planner's margin
covers them). CPU (torch keeps no CPU allocator statistics): the process's peak resident set
(getrusage ru_maxrss, the kernel's high-water mark, updated before any unmap) minus that of
the same process training a 1-layer, 16-wide model (imports, libraries, data and thread
pools; its own tensors are under 1 MB). That difference is the peak of live tensor bytes
because every tensor the loop allocates is written, so all its pages are resident, and the
child runs with MALLOC_MMAP_THRESHOLD_=65536: glibc then serves every allocation over 64 kB
with its own mmap and unmaps it on free, instead of raising the threshold as it goes and
keeping freed blocks in its heap (which would leave freed tensors resident and make the
high-water mark an upper bound only). Prints one line per shape and `worst error X%` (goal <= 15%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling_orchestrator.models.memory import estimate_memory  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape  # noqa: E402

BASELINE = {
    "n_layer": 1,
    "d_model": 16,
    "n_head": 1,
    "vocab_size": 64,
    "seq_len": 16,
    "rows": 1,
    "micro_rows": 1,
    "dtype": "float32",
}
# (n_layer, d_model, n_head, vocab, seq_len, tied, rows per step, rows per micro-batch, dtype[, block fields])
LLAMA = {"block": "llama"}
GQA = {"block": "llama", "n_kv_heads": 2, "qk_norm": True}
SHAPES = [
    (4, 256, 4, 8192, 256, True, 8, 8, "float32"),  # logits-bound
    (2, 128, 2, 256, 2048, True, 2, 2, "float32"),  # long context: an s x s matrix would add 134 MB
    (8, 384, 6, 1024, 512, True, 8, 4, "float32"),  # activation-bound, 2 micro-batches a step
    (4, 512, 8, 8192, 64, False, 2, 1, "float32"),  # untied, bound by the weights and AdamW's step
    (2, 64, 2, 4096, 512, True, 8, 8, "bfloat16"),  # bf16 autocast, logits-bound
    (4, 128, 4, 256, 1024, True, 4, 4, "bfloat16"),  # bf16 autocast, activation-bound
    (3, 192, 3, 2048, 256, False, 8, 4, "bfloat16"),  # bf16 autocast, untied, accumulating
    (8, 384, 6, 1024, 512, False, 8, 4, "float32", LLAMA),  # llama: activation-bound, accumulating
    (4, 256, 8, 8192, 256, False, 8, 8, "float32", GQA),  # llama, GQA + QK-norm: logits-bound
    (4, 128, 4, 256, 1024, False, 4, 4, "bfloat16", GQA),  # llama, GQA + QK-norm, bf16: activation-bound
]
QUICK = [0, 3, 4, 7]  # bf16 matmuls are slow on a CPU without AVX-512 BF16: the bf16 shapes are small


def measure(case: dict) -> int:
    """Peak bytes of the training loop for `case`, in a fresh process (module doc)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(case)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"])


def measured_peak(case: dict, baseline_bytes: int | None = None) -> int:
    """CUDA: the allocator's peak; CPU: peak RSS less the baseline process's (module doc)."""
    peak = measure(case)
    if case.get("device") == "cuda":
        return peak
    return peak - (baseline_bytes if baseline_bytes is not None else measure({**BASELINE, "device": "cpu"}))


def child(case: dict) -> None:
    import resource

    import numpy as np
    import torch

    from scaling_orchestrator.models.data.tokens import TokenData
    from scaling_orchestrator.models.training.loop import TrainConfig, train

    torch.set_num_threads(1)
    shape = shape_of(case)
    rng = np.random.default_rng(0)
    data = TokenData(
        train=rng.integers(0, shape.vocab_size, 200_000).astype(np.uint16),
        val=rng.integers(0, shape.vocab_size, 20_000).astype(np.uint16),
        vocab_size=shape.vocab_size,
        bytes_per_token=1.0,
        fingerprint="bench-memory",
    )
    batch, micro = case["rows"] * shape.seq_len, case["micro_rows"] * shape.seq_len
    config = TrainConfig(
        total_tokens=2 * batch,
        batch_tokens=batch,
        micro_batch_tokens=micro,
        eval_tokens=micro,
        threads=1,
        device=case["device"],
        dtype=case["dtype"],
    )
    train(shape, config, data)
    if case["device"] == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"peak_bytes": peak}))


def shape_of(case: dict) -> ModelShape:
    return ModelShape(
        n_layer=case["n_layer"],
        d_model=case["d_model"],
        n_head=case["n_head"],
        vocab_size=case["vocab_size"],
        seq_len=case["seq_len"],
        tied_embeddings=case.get("tied", True),
        **{k: case[k] for k in ("block", "n_kv_heads", "qk_norm") if k in case},
    )


def estimate(case: dict) -> int:
    shape = shape_of(case)
    return estimate_memory(
        shape,
        case["micro_rows"] * shape.seq_len,
        case["dtype"],
        accumulating=case["rows"] > case["micro_rows"],
        device=case["device"],
    ).total_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=("all", "quick", "llama"), default="all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = {"all": SHAPES, "quick": [SHAPES[i] for i in QUICK], "llama": SHAPES[7:]}[args.shapes]
    worst = 0.0
    baseline = None if device == "cuda" else measure({**BASELINE, "device": "cpu"})
    print(
        f"device {device}; peak = "
        + (
            "torch.cuda.max_memory_allocated"
            if baseline is None
            else f"peak RSS - baseline ({baseline / 1e6:.0f} MB)"
        ),
        flush=True,
    )
    for n_layer, d_model, n_head, vocab, seq, tied, rows_, micro, dtype, *block in rows:
        case = dict(
            n_layer=n_layer,
            d_model=d_model,
            n_head=n_head,
            vocab_size=vocab,
            seq_len=seq,
            tied=tied,
            rows=rows_,
            micro_rows=micro,
            dtype=dtype,
            device=device,
            **(block[0] if block else {}),
        )
        est, got = estimate(case), measured_peak(case, baseline)
        error = est / got - 1
        worst = max(worst, abs(error))
        print(
            f"{block[0]['block'] + ' ' if block else ''}{n_layer}L x {d_model}d x {n_head}h V{vocab} s{seq} "
            f"{'tied' if tied else 'untied'} "
            f"{micro}/{rows_} rows {dtype}: estimate {est / 1e6:.1f} MB, measured {got / 1e6:.1f} MB, "
            f"error {error:+.1%}",
            flush=True,
        )
    print(f"worst error {worst:.1%}")


if __name__ == "__main__":
    main()
