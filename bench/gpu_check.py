"""One GPU check: MFU, the memory model, the planner's micro-batch, bf16 + compile, NCCL and a Tune
study on a real device, in one command that fits a short lending of one GPU.

    python bench/gpu_check.py            # one GPU: at most about 8 minutes on an H100
    python bench/gpu_check.py --smoke    # the same code paths on CPU at tiny sizes, under a minute

What it runs, in order, and the line each part prints:

1. micro-batch: for the largest size of the default block at seq_len 2048 in bf16, the planner's
   sequences per forward for a 256-sequence batch on this device (orchestrator/plan/placement.py),
   the memory model's largest (no margin), and the largest that fits, found by trying (1, 2, 4, ...
   until out of memory, then bisecting): `micro-batch d16 gpt2: planner P, memory model M,
   largest that fits F sequences`.
2. throughput: the built-in loop (models/training/loop.py) at three sizes of each block (gpt2, and
   llama once ModelShape has a `block` field), seq_len 2048, 16 sequences a step, bf16, eager and
   compiled; 3 warm-up steps (compilation, allocator, kernel choice), then 10 timed ones (the
   loop's own tokens/s, evaluation excluded). MFU = exact FLOPs per token (Chinchilla App. F, the
   count the rows carry; it counts the full s x s attention and the embedding as a matmul, so it
   reads a little above nanoGPT's 6N + 12 L H Q T) x tokens/s / the device's dense bf16 peak
   (gpu_check_lib.PEAK_BF16_FLOPS, by the name torch reports): `MFU d12 gpt2 compile: X%`.
   Each run's torch.cuda.max_memory_allocated against models/memory.py's estimate: `memory d12
   gpt2 compile: ...`, then `memory model worst error on GPU: X%`.
3. profile: the middle size, eager, under torch.profiler: the ops that take the most device time.
4. Ray: a 4-trial Tune study through `scaling run` on a spec written to a temporary folder (four
   sizes at one budget, bf16 + compile, each trial a TorchTrainer worker group of one worker on a
   quarter of the GPU, four at a time): `gpu study: 4/4 final` when every trial has its final row,
   and `worker group: nccl, world size 1, bfloat16 + compile on a TorchTrainer: 4/4 final` (the
   backend worker.py picks for a GPU worker; at world size 1 the loop needs no DDP wrapper).

--smoke: CPU, two tiny sizes at seq_len 64, 4 sequences a step, 1 + 2 steps, float32 (bf16
autocast on a CPU without AVX-512 BF16 is slow; the study trains in bf16); MFU against a nominal
CPU peak (gpu_check_lib.CPU_NOMINAL_FLOPS, stated on its line); no allocator statistics on CPU,
so the memory lines read n/a; the micro-batch tries stop at 8 sequences. torch.compile goes
through dynamo and AOTAutograd with eager kernels (TORCH_COMPILE_OVERRIDE_BACKENDS): inductor's
C++ build of a CPU graph costs about 100 s on a cold cache here. The study compiles nothing (four
Ray workers each importing dynamo and tracing would be a third of the run); three of its trials
run in-process on 0.45 CPU each and the largest on a worker group (gloo). On a GPU the loop's own
inductor runs everywhere. Exit status 1 when a Ray check is not final.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_check_lib as lib  # noqa: E402  (beside this file: sys.path[0] when run as a script)

from scaling_orchestrator.models.data.tokens import TokenData  # noqa: E402
from scaling_orchestrator.models.memory import estimate_memory  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape  # noqa: E402
from scaling_orchestrator.models.training.loop import TrainConfig, train  # noqa: E402
from scaling_orchestrator.orchestrator.fmt import si  # noqa: E402

# llama joins the default block once ModelShape has a `block` field (the script runs before and after)
HAS_BLOCK = "block" in {f.name for f in dataclasses.fields(ModelShape)}
BLOCKS = ("gpt2", "llama") if HAS_BLOCK else ("gpt2",)
SMOKE_COMPILE_BACKENDS = ">=0:aot_eager"  # every graph: dynamo + AOTAutograd, eager kernels


@dataclasses.dataclass(frozen=True)
class Setup:
    device: str
    device_name: str
    device_bytes: int  # total memory: the GPU's, or the machine's on CPU
    peak_flops: float | None
    peak_note: str
    depths: tuple[int, ...]  # ModelShape.from_depth, aspect ratio and head size below
    aspect_ratio: int
    head_dim: int
    vocab_size: int
    seq_len: int
    dtype: str  # bfloat16 on a GPU; float32 in the smoke run (a CPU without AVX-512 BF16 is slow at bf16)
    rows: int  # sequences per step (one micro-batch)
    warmup_steps: int
    timed_steps: int
    search_cap: int  # most sequences the micro-batch search tries
    study: lib.StudySetup


# Three sizes of the GPU example's dial (examples/gpu-cluster.yaml: heads of 64, d_model = 64 x
# depth, vocab 32768): d8 (512 wide), d12 (768) and d16 (1024), 16 sequences of 2048 a step.
GPU_RUNS = dict(depths=(8, 12, 16), aspect_ratio=64, head_dim=64, vocab_size=32768, seq_len=2048,
                dtype="bfloat16", rows=16, warmup_steps=3, timed_steps=10, search_cap=256)
SMOKE_RUNS = dict(depths=(1, 2), aspect_ratio=16, head_dim=16, vocab_size=256, seq_len=64,
                  dtype="float32", rows=4, warmup_steps=1, timed_steps=2, search_cap=8)
# The study: about 30 to 700 steps a trial (plan it with gpu_check_lib.study_spec).
GPU_STUDY = lib.StudySetup(shapes=((1, 64, 1), (2, 128, 2), (2, 192, 3), (3, 256, 4)), seq_len=256,
                           batch_tokens=4096, budget_flops=2e12, device="cuda", compile=True,
                           resources={"num_workers": 1, "cpus_per_worker": 2, "gpus_per_worker": 0.25})
SMOKE_STUDY = lib.StudySetup(shapes=((1, 16, 1), (1, 32, 2), (2, 32, 2), (2, 48, 3)), seq_len=32,
                             batch_tokens=128, budget_flops=1.8e9, device="cpu", compile=False,
                             resources={"num_workers": 0, "cpus_per_worker": 0.45})  # 4 x 0.45 + 0.01 < 2


def device_facts(device: str, peak_override: float | None) -> dict:
    """The device's name, memory and peak FLOP/s (with where the peak comes from)."""
    if device == "cpu":
        name, total = "cpu", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        peak, note = lib.CPU_NOMINAL_FLOPS, "nominal CPU figure for the smoke run, not a measured peak"
    else:
        name, total = torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory
        peak, key = lib.peak_flops(name)
        note = f"dense bf16, datasheet, table key {key!r}" if peak else "unknown device: pass --peak-flops"
    if peak_override:
        peak, note = peak_override, "--peak-flops"
    return dict(device_name=name, device_bytes=total, peak_flops=peak, peak_note=note)


def make_setup(smoke: bool, depths: tuple[int, ...] | None, peak_override: float | None) -> Setup:
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device is visible; --smoke runs the same code paths on CPU")
    device, runs, study = ("cpu", SMOKE_RUNS, SMOKE_STUDY) if smoke else ("cuda", GPU_RUNS, GPU_STUDY)
    return Setup(device=device, **device_facts(device, peak_override),
                 **{**runs, "depths": depths or runs["depths"]}, study=study)


def shape_of(setup: Setup, depth: int, block: str) -> ModelShape:
    extra = {"block": block} if HAS_BLOCK else {}
    return ModelShape.from_depth(depth, vocab_size=setup.vocab_size, seq_len=setup.seq_len,
                                 aspect_ratio=setup.aspect_ratio, head_dim=setup.head_dim, **extra)


def token_data(setup: Setup) -> TokenData:
    """Uniform random tokens: throughput and memory do not depend on what the tokens say."""
    rng = np.random.default_rng(0)
    val_tokens = max(setup.rows, setup.search_cap) * setup.seq_len + 1
    return TokenData(
        train=rng.integers(0, setup.vocab_size, 1 << 22).astype(np.uint16),
        val=rng.integers(0, setup.vocab_size, val_tokens).astype(np.uint16),
        vocab_size=setup.vocab_size,
        bytes_per_token=1.0,
        fingerprint="gpu-check-random",
    )


def fresh(device: str) -> None:
    """Forget the last run: dynamo's caches (a new model per run would hit its recompile limit),
    its counters, and on CUDA the allocator's cache and peak."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_run(setup: Setup, shape: ModelShape, data: TokenData, rows: int, compile_: bool,
              warmup: int, timed: int):
    """The loop on `rows` sequences a step: warmup steps, an evaluation (the clock restarts),
    then `timed` steps and the final evaluation. (final Measurement, peak bytes or None on CPU)."""
    batch = rows * shape.seq_len
    total = (warmup + timed) * batch
    config = TrainConfig(total_tokens=total, batch_tokens=batch, eval_every_tokens=total,
                         eval_at_tokens=(warmup * batch,) if warmup else (), eval_tokens=batch,
                         lr=1e-3, device=setup.device, dtype=setup.dtype, compile=compile_,
                         threads=1 if setup.device == "cpu" else 0)  # 2 threads on 2 shared cores thrash
    fresh(setup.device)
    before = torch.cuda.memory_allocated() if setup.device == "cuda" else 0
    final = train(shape, config, data)
    peak = torch.cuda.max_memory_allocated() - before if setup.device == "cuda" else None
    return final, peak


def micro_batch_check(setup: Setup, data: TokenData) -> None:
    depth = max(setup.depths)
    shape = shape_of(setup, depth, "gpt2")

    def fits(rows: int) -> bool:
        try:
            train_run(setup, shape, data, rows, False, warmup=0, timed=1)
            return True
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if "out of memory" in str(exc) or "ALLOC_FAILED" in str(exc):  # cuBLAS's workspace too
                return False
            raise
        finally:
            fresh(setup.device)

    tried, tries = lib.largest_fitting(fits, setup.search_cap)
    gpu = setup.device == "cuda"
    planner = lib.planner_rows(shape, setup.dtype, setup.search_cap, setup.device_bytes, gpu)
    model = lib.model_rows(shape, setup.dtype, setup.search_cap, setup.device_bytes, setup.device)
    print(f"micro-batch d{depth} gpt2: planner {planner}, memory model {model}, largest that fits {tried} "
          f"sequences of {setup.seq_len} (tried {' '.join(tries)}; planner: a {setup.search_cap}-sequence "
          f"batch in {1 - lib.MEMORY_MARGIN:.0%} of {setup.device_bytes / 1e9:.1f} GB)", flush=True)


def throughput_check(setup: Setup, data: TokenData) -> None:
    errors = []
    for block in BLOCKS:
        for depth in setup.depths:
            shape = shape_of(setup, depth, block)
            for compile_ in (False, True):
                label = f"d{depth} {block} {'compile' if compile_ else 'eager'}"
                final, peak = train_run(setup, shape, data, setup.rows, compile_,
                                        setup.warmup_steps, setup.timed_steps)
                graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
                print(mfu_line(setup, label, shape, final.tokens_per_second, graphs), flush=True)
                error = memory_line(setup, label, shape, peak)
                if error is not None:
                    errors.append((abs(error), label))
    worst = (f"{max(errors)[0]:.1%} (of {len(errors)} runs; {max(errors)[1]})" if errors else
             "n/a (no allocator statistics on CPU: bench/memory.py measures CPU peaks)")
    print(f"memory model worst error on GPU: {worst}", flush=True)


def mfu_line(setup: Setup, label: str, shape: ModelShape, tokens_per_second: float, graphs: int) -> str:
    achieved = shape.flops_per_token() * tokens_per_second
    mfu = f"{achieved / setup.peak_flops:.1%}" if setup.peak_flops else "n/a"
    return (f"MFU {label}: {mfu} ({tokens_per_second:,.0f} tokens/s x {shape.flops_per_token():.3g} "
            f"FLOP/token = {achieved:.3g} FLOP/s; {si(shape.param_counts()['total'])} params"
            f"{f'; {graphs} compiled graphs' if 'compile' in label else ''})")


def memory_line(setup: Setup, label: str, shape: ModelShape, peak: int | None) -> float | None:
    """Prints the estimate against the measured peak; returns the relative error (None on CPU)."""
    try:
        estimate = estimate_memory(shape, setup.rows * setup.seq_len, setup.dtype, device=setup.device)
    except ValueError as exc:  # a block the memory model does not know yet
        print(f"memory {label}: n/a ({exc})", flush=True)
        return None
    measured = "n/a" if peak is None else f"{si(peak)}B"
    error = None if peak is None else estimate.total_bytes / peak - 1
    print(f"memory {label}: model {si(estimate.total_bytes)}B, measured {measured}"
          f"{'' if error is None else f', error {error:+.1%}'}", flush=True)
    return error


def profile_check(setup: Setup, data: TokenData) -> None:
    """The middle size, eager, 1 + 2 steps under torch.profiler (model build and two evaluations
    included): the ops with the most self time on the device."""
    from torch.profiler import ProfilerActivity, profile

    depth = sorted(setup.depths)[len(setup.depths) // 2]
    shape = shape_of(setup, depth, "gpt2")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if setup.device == "cuda" else [])
    with profile(activities=activities) as prof:
        train_run(setup, shape, data, setup.rows, False, warmup=1, timed=2)
    key = "self_device_time_total" if setup.device == "cuda" else "self_cpu_time_total"
    print(f"profile d{depth} gpt2 eager, ops by {key}:", flush=True)
    print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=48), flush=True)


def ray_check(setup: Setup) -> bool:
    import ray

    from scaling_orchestrator.orchestrator.execution.tuner import start_local_ray

    start_local_ray()  # logical CPUs = cores; Ray finds the GPU itself
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
            checks = lib.run_study(setup.study, folder)
        for line, _ in checks:
            print(line, flush=True)
        return all(passed for _, passed in checks)
    finally:
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, under a minute")
    parser.add_argument("--depths", type=int, nargs="+", help="sizes (ModelShape.from_depth); 8 12 16")
    parser.add_argument("--peak-flops", type=float, help="the device's peak FLOP/s (a GPU not in the table)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Tune study and the worker group")
    args = parser.parse_args()
    if args.smoke:  # what TORCH_COMPILE_OVERRIDE_BACKENDS sets, for the graphs of this process
        torch._dynamo.config.debug_backend_override = SMOKE_COMPILE_BACKENDS
    setup = make_setup(args.smoke, tuple(args.depths) if args.depths else None, args.peak_flops)
    peak = f"{setup.peak_flops:.3g} FLOP/s" if setup.peak_flops else "unknown"
    print(f"device {setup.device_name} ({setup.device_bytes / 1e9:.1f} GB), torch {torch.__version__}, "
          f"{setup.dtype}; peak {peak} ({setup.peak_note}); blocks {', '.join(BLOCKS)}", flush=True)
    data, start, times = token_data(setup), time.perf_counter(), []
    for name, check in (("micro-batch", micro_batch_check), ("throughput", throughput_check),
                        ("profile", profile_check)):
        began = time.perf_counter()
        check(setup, data)
        times.append(f"{name} {time.perf_counter() - began:.0f} s")
    fresh(setup.device)
    began, ok = time.perf_counter(), True
    if not args.no_ray:
        ok = ray_check(setup)
        times.append(f"ray {time.perf_counter() - began:.0f} s")
    print(f"gpu check wall: {time.perf_counter() - start:.0f} s ({', '.join(times)})", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
