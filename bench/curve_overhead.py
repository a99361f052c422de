"""What recording the per-step curve costs a demo trial: time per optimizer step with and without
it, in one process, and the recorder's own time counted inside the loop.

The trial is the demo's (scaling_orchestrator/cli/demo.yaml): its median-length trial, its
recipe (2 evaluations, the default curve cadence: about 100 points), one torch thread on CPU.
"with" passes on_curve = CurveWriter(...).extend, so the Parquet writes to `_curves/` count;
"without" passes none. Runs alternate, `--repeats` of each; medians of CPU seconds per step
(steadier than wall time when other processes share the cores) and of wall seconds.

The A/B difference is within run-to-run noise on a shared machine, so the headline is the direct
count: every call of CurveRecorder.add and of the sink (flush + file write) timed with
perf_counter in the "with" runs, over the loop's wall time.

    python bench/curve_overhead.py [--repeats 3] [--steps 0]

--steps N trains the trial's first N steps only (its schedule over N steps; its one evaluation
at the end): a shorter run on a busy machine. 0 keeps the whole trial.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_orchestrator.models.data.tokens import prepare_data  # noqa: E402
from scaling_orchestrator.models.training import curves  # noqa: E402
from scaling_orchestrator.models.training.loop import train  # noqa: E402
from scaling_orchestrator.orchestrator.designs import make_plan  # noqa: E402
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep  # noqa: E402
from scaling_orchestrator.orchestrator.store.curves import CurveWriter  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "scaling_orchestrator" / "cli" / "demo.yaml"


class Clock:
    """Seconds spent inside the wrapped functions."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def one_run(spec, data, record: bool, clock: Clock) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, curve points) of one trial."""
    config = dataclasses.replace(spec.train, threads=1, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        writer = CurveWriter(folder, spec.trial_id)
        sink = clock.wrap(writer.extend) if record else None
        wall, cpu = time.perf_counter(), time.process_time()
        train(spec.shape, config, data, on_curve=sink)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu, wall, writer.written().num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0)
    args = parser.parse_args()
    plan = make_plan(load_sweep(DEMO))
    spec = sorted(plan.trials, key=lambda t: t.train.total_steps)[len(plan.trials) // 2]
    if args.steps:
        tokens = args.steps * spec.train.batch_tokens
        spec = dataclasses.replace(spec, train=dataclasses.replace(
            spec.train, total_tokens=tokens, eval_every_tokens=tokens, eval_at_tokens=()))
    steps = spec.train.total_steps
    print(f"demo trial {spec.size_label} at {spec.budget_flops:.3g} FLOPs: {steps} steps of "
          f"{spec.train.batch_tokens} tokens, a curve point every {spec.train.log_every_steps} steps")
    data = prepare_data(spec.data)
    clock = Clock()
    curves.CurveRecorder.add = clock.wrap(curves.CurveRecorder.add)  # every step's call, timed
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for record in (False, True):
            before = clock.seconds
            cpu, wall, points = one_run(spec, data, record, clock)
            times[record].append((cpu / steps, wall / steps, clock.seconds - before))
            print(f"  {'with' if record else 'without'}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    for record in (False, True):
        cpu = statistics.median(t[0] for t in times[record]) * 1e3
        wall = statistics.median(t[1] for t in times[record]) * 1e3
        print(f"{'with' if record else 'without'} curve: {cpu:.3f} ms CPU, {wall:.3f} ms wall per step")
    share = statistics.median(t[2] / (t[1] * steps) for t in times[True])
    ab = statistics.median(t[0] for t in times[True]) / statistics.median(t[0] for t in times[False]) - 1
    print(f"{points} points; A/B CPU difference {100 * ab:+.2f}% (noise); "
          f"curve overhead {100 * share:.3f}% of step time (recorder + writes, counted)")


if __name__ == "__main__":
    main()
