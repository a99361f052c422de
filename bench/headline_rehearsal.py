"""Is the headline right on a known law? examples/simulated.yaml rehearsed over many seeds.

    python bench/headline_rehearsal.py [--seeds 20] [--resamples 200] [--spec examples/simulated.yaml]

Each seed plans the spec as `scaling run` would (designs.make_plan on the spec, its simulate
seed replaced), draws every trial's evaluations from the simulate backend's loss function
(backends/simulate.py: the same curve and the same per-run noise a Tune trial writes), fits
the rows as `scaling fit` does (scaling_orchestrator.analysis.fit) and compares the headline's
N* at each target budget with the spec's own law (its compute optimum under 6ND, as the spec's
comment states N*). No Ray: the rows are the ones the store would hold.

Prints one line per seed (method, verdict, N* error per target, whether each interval holds the
truth), then `headline N* worst error: X%` (the worst over seeds and targets) and
`truth inside interval: k/<seeds>` (seeds whose headline interval holds the truth at every
target) and `within 15% at every target: k/<seeds>`. Run from the repository root with the
package importable (installed, or PYTHONPATH=.).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
import pyarrow as pa

from scaling_orchestrator.analysis import fit
from scaling_orchestrator.analysis.laws.forms.chinchilla import optimal_6nd
from scaling_orchestrator.orchestrator.backends.simulate import simulate_train
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
from scaling_orchestrator.orchestrator.store.results import measurement_row

CLOSE = 0.15      # the goal: the headline's N* within 15% of the law's at every target


def rows_for_seed(spec_path: str, seed: int) -> pa.Table:
    """Every evaluation row of every planned trial, the spec's simulate seed set to `seed`."""
    sweep = load_sweep(spec_path)
    sweep = dataclasses.replace(sweep, simulate={**sweep.simulate, "seed": seed})
    rows = []
    for trial in make_plan(sweep).trials:
        simulate_train(trial, trial.train,
                       on_eval=lambda m, _ckpt, t=trial: rows.append(measurement_row(t, m)))
    return pa.Table.from_pylist(rows)


def true_params(simulate: dict, flops: float) -> float:
    p = simulate["params"]
    return float(np.asarray(optimal_6nd(p["A"], p["B"], p["alpha"], p["beta"], flops)[0]).ravel()[0])


def one_seed(spec_path: str, seed: int, resamples: int) -> tuple[list[float], bool, str]:
    """(N* relative errors per target, truth inside every interval, a line to print)."""
    simulate = load_sweep(spec_path).simulate
    result = fit(rows_for_seed(spec_path, seed), options={"n_bootstrap": resamples, "seed": seed})
    errors, inside, cells = [], True, []
    for h in result.headline:
        truth = true_params(simulate, h.flops)
        errors.append(h.params / truth - 1)
        ci = h.ci95.get("params")
        hit = bool(ci) and None not in ci and ci[0] <= truth <= ci[1]
        inside &= hit
        cells.append(f"{h.flops:.0e}: {100 * errors[-1]:+.0f}% {'in' if hit else 'OUT'}")
    method = result.headline[0].method if result.headline else "none"
    verdict = result.headline[0].verdict if result.headline else ""
    return errors, inside and bool(errors), f"seed {seed:>2} {method} [{verdict}] " + "; ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--spec", default="examples/simulated.yaml")
    args = parser.parse_args()
    start, worst, covered, close = time.time(), 0.0, 0, 0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(args.seeds):
            errors, inside, line = one_seed(args.spec, seed, args.resamples)
            print(line, flush=True)
            worst = max([worst] + [abs(e) for e in errors])
            covered += inside
            close += bool(errors) and max(abs(e) for e in errors) <= CLOSE
    print(f"{args.seeds} seeds x {args.resamples} resamples, {time.time() - start:.0f} s")
    print(f"headline N* worst error: {100 * worst:.1f}%")
    print(f"truth inside interval: {covered}/{args.seeds}")
    print(f"within {100 * CLOSE:.0f}% at every target: {close}/{args.seeds}")


if __name__ == "__main__":
    main()
