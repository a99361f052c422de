"""Tokens/s of scaling_orchestrator.models.training.loop against a bare PyTorch loop: same model, threads,
batch and optimizer.

The bare loop is the floor: build the model, then sample a batch, forward, backward, AdamW
step, nothing else. scaling_orchestrator.models.training.loop adds the LR schedule, grad clipping, the (seed,
step) batch
draw, the per-step loss check and evaluations. Both sides are timed over the whole call (model
build included). Evaluation is a deliberate cost, so the loop here evaluates once, at the last
step, over one seq_len window (amortized to nothing, as a real run amortizes its evaluations
over eval_every_tokens); Measurement.tokens_per_second, which excludes evaluation, is printed
too. Each side runs `--repeats` times, interleaved; medians are reported, in wall-clock and in
CPU seconds of the process (steadier when other processes share the cores).

    python bench/train_throughput.py [--depth 4] [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data  # noqa: E402
from scaling_orchestrator.models.gpt import GPT  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape, shape_summary  # noqa: E402
from scaling_orchestrator.models.training.loop import TrainConfig, train  # noqa: E402


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn(). CPU time is steadier than wall time
    when other processes share the cores; with one torch thread it is the work done."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bare_loop(shape: ModelShape, tokens: np.ndarray, rows: int, steps: int, lr: float) -> None:
    """The least a training loop can do: build the model, then sample, forward, backward, step."""
    torch.manual_seed(0)
    model = GPT(shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    window = torch.arange(shape.seq_len + 1)
    for _ in range(steps):
        batch = data[torch.randint(0, len(data) - shape.seq_len, (rows, 1)) + window]
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def loop_config(shape: ModelShape, rows: int, steps: int, lr: float, threads: int) -> TrainConfig:
    """One evaluation, at the last step, over one window (seq_len tokens): a forward pass over
    128 tokens against steps * 2,048 trained, so the comparison is of the loop machinery."""
    batch_tokens = rows * shape.seq_len
    return TrainConfig(
        total_tokens=steps * batch_tokens,
        batch_tokens=batch_tokens,
        lr=lr,
        eval_every_tokens=steps * batch_tokens,
        eval_tokens=shape.seq_len,
        threads=threads,
        device="cpu",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rows", type=int, default=16, help="sequences per batch")
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = prepare_data(DataSpec(corpus="pydoc", tokenizer="bpe", vocab_size=args.vocab))
    shape = ModelShape.from_depth(args.depth, vocab_size=args.vocab, seq_len=args.seq_len)
    print(
        f"model {shape_summary(shape)}; batch {args.rows} x {args.seq_len} = {args.rows * args.seq_len} "
        f"tokens; {args.threads} threads; {args.steps} steps, model build included"
    )
    config = loop_config(shape, args.rows, args.steps, 3e-3, args.threads)
    tokens = config.total_tokens
    runs = {"bare loop": [], "scaling_orchestrator.models.training.loop": []}
    reported = []
    for _ in range(args.repeats):  # interleaved, so a burst of outside load hits both sides
        runs["bare loop"].append(_timed(lambda: bare_loop(shape, data.train, args.rows, args.steps, 3e-3)))
        runs["scaling_orchestrator.models.training.loop"].append(
            _timed(lambda: reported.append(train(shape, config, data)))
        )
    medians = {}
    for name, timings in runs.items():
        wall = statistics.median(tokens / w for w, _ in timings)
        cpu = statistics.median(tokens / c for _, c in timings)
        medians[name] = (wall, cpu)
        print(
            f"{name:13s} {wall:8.0f} tokens/s wall   {cpu:8.0f} tokens/CPU-s   "
            f"wall runs {[round(tokens / w) for w, _ in timings]}"
        )
    (bare_wall, bare_cpu), (loop_wall, loop_cpu) = (
        medians["bare loop"],
        medians["scaling_orchestrator.models.training.loop"],
    )
    print(
        f"ratio         {loop_wall / bare_wall:8.3f} wall        "
        f"{loop_cpu / bare_cpu:8.3f} CPU   (goal >= 0.95)"
    )
    print(
        f"scaling_orchestrator.models.training.loop self-reported (training steps only): "
        f"{statistics.median(m.tokens_per_second for m in reported):.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
