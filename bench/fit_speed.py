"""Seconds for the Approach 3 fit, its run bootstrap, and loading a 10^6-row results table.

    python bench/fit_speed.py [--resamples 1000] [--naive-starts 150] [--trials 1000]
                              [--results DIR]

Prints, on Epoch's 240 Chinchilla points (Besiroglu et al. 2024): the batched 4500-start fit
of the chinchilla form (goal <= 5 s on 2 cores), the same fit with every start run to
convergence, a naive loop of one scipy L-BFGS-B call per start over a subset of
the grid scaled to 4500 (the speed-up), the bootstrap (goal 1000 resamples <= 60 s), and
load + fit of a synthetic 10^6-row table in our schema written as Parquet to a temporary
directory; then `scaling fit` end to end (a fresh process: imports, reading, every method,
the default 1000 resamples) on a results folder of --trials simulated trials (bench/scale.py's
spec: 10 budgets x 10 sizes x seeds, Chinchilla's law + 1% noise, rows written by the store),
goal <= 5 s for 1,000 trials (simulating them takes minutes: --results DIR times a folder
made before instead). Each line gives wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from scipy.optimize import minimize

from scaling_orchestrator.analysis.data.load import load_points
from scaling_orchestrator.analysis.data.parquet import COMPACT
from scaling_orchestrator.analysis.data.schema import SCHEMA, SCHEMA_VERSION
from scaling_orchestrator.analysis.laws.forms.chinchilla import CHINCHILLA_GRID
from scaling_orchestrator.analysis.laws.registry import law_form

EPOCH_CSV = (Path(__file__).resolve().parents[2] / "shared" / "reference-data"
             / "epoch_chinchilla_besiroglu2024" / "svg_extracted_data.csv")
TRUTH = {"E": 1.8172, "A": 482.0, "B": 2085.4, "alpha": 0.3478, "beta": 0.3658}
CHINCHILLA = law_form("chinchilla")


def epoch_points():
    table = pa_csv.read_csv(EPOCH_CSV)
    N, C = table["Model Size"].to_numpy(), table["Training FLOP"].to_numpy()
    L = table["loss"].to_numpy()
    keep = L < np.sort(L)[-5]       # Epoch's default: drop the 5 highest losses -> 240 points
    return N[keep], C[keep] / (6 * N[keep]), L[keep]


def naive_objective(x, log_n, log_d, log_l, delta=1e-3):
    """Per-start objective in the raw (a, b, e, alpha, beta) coordinates, as Besiroglu et al."""
    a, b, e, alpha, beta = x
    t = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = t.max(0)
    w = np.exp(t - top)
    r = top + np.log(w.sum(0)) - log_l
    huber = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    psi = np.clip(r, -delta, delta) * w / w.sum(0)
    grad = [psi[0].sum(), psi[1].sum(), psi[2].sum(), -(psi[0] @ log_n), -(psi[1] @ log_d)]
    return huber.sum(), np.array(grad)


def naive_loop(N, D, L, n_starts):
    """One scipy L-BFGS-B call per start on an even subset of the grid; (seconds, best f)."""
    pick = np.linspace(0, len(CHINCHILLA_GRID) - 1, n_starts).astype(int)
    args = (np.log(N), np.log(D), np.log(L))
    t0, best = time.perf_counter(), np.inf
    with np.errstate(all="ignore"):
        for x0 in CHINCHILLA_GRID[pick]:
            res = minimize(naive_objective, x0, args=args, jac=True, method="L-BFGS-B")
            best = min(best, res.fun)
    return time.perf_counter() - t0, best


def synthetic_table(n_trials=2000, evals_per_trial=500, seed=0) -> pa.Table:
    """n_trials x evals_per_trial rows in our schema from a known law with 1% noise."""
    rng = np.random.default_rng(seed)
    budgets = np.logspace(17, 21, 10)
    budget = np.repeat(budgets, n_trials // len(budgets))
    params = (0.09 * budget ** 0.5 * np.tile(np.logspace(-1, 1, n_trials // len(budgets)),
                                             len(budgets))).astype(np.int64)
    final_tokens = (budget / (6 * params)).astype(np.int64)
    fraction = np.arange(1, evals_per_trial + 1) / evals_per_trial
    tokens = (final_tokens[:, None] * fraction).astype(np.int64).ravel()
    trial = np.repeat(np.arange(n_trials), evals_per_trial)
    n = params[trial].astype(float)
    loss = (TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"]
            + TRUTH["B"] / tokens ** TRUTH["beta"]) * np.exp(0.01 * rng.standard_normal(len(n)))
    rows = len(trial)
    cols = {"sweep": np.full(rows, "bench"), "trial_id": np.char.zfill(trial.astype(str), 16),
            "kind": np.full(rows, "scaling"), "params": params[trial],
            "non_embedding_params": (0.9 * params[trial]).astype(np.int64),
            "embedding_params": (0.1 * params[trial]).astype(np.int64),
            "flops_per_token": 6.0 * n, "budget_flops": budget[trial], "tokens": tokens,
            "step": np.tile(np.arange(1, evals_per_trial + 1), n_trials),
            "flops": 6.0 * n * tokens, "flops_6n": 5.4 * n * tokens, "val_loss": loss,
            "train_loss": loss, "final": np.tile(fraction == 1.0, n_trials),
            "status": np.full(rows, "ok"), "schema_version": np.full(rows, SCHEMA_VERSION),
            "flops_convention": np.full(rows, "6nd_synthetic"), "schedule": np.full(rows, "cosine")}
    arrays = [pa.array(cols[f.name], f.type) if f.name in cols
              else pa.array(np.zeros(rows)).cast(f.type) if _numeric(f.type)
              else pa.nulls(rows, f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _numeric(dtype) -> bool:
    return pa.types.is_floating(dtype) or pa.types.is_integer(dtype)


def timed(label, fn):
    """Run fn; print wall seconds and process CPU seconds (all threads: on a busy machine the
    CPU figure is the fair one, and wall >= CPU / 2 on 2 cores)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"{label:<58s} {wall:8.2f} s wall {cpu:8.2f} s CPU")
    return out, wall


def simulated_results(trials: int, folder: str) -> None:
    """A results folder of `trials` simulated trials, written row by row as `scaling run`
    writes them (bench/scale.py's spec)."""
    from scale import spec

    from scaling_orchestrator.orchestrator import make_plan
    from scaling_orchestrator.orchestrator.backends.simulate import simulate_train
    from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep
    from scaling_orchestrator.orchestrator.store.results import Store, measurement_row

    plan = make_plan(parse_sweep(spec(trials, folder), "scale.yaml"))
    store = Store(folder)
    store.write_plan(plan.trials)
    for trial in plan.trials:
        rows = []
        simulate_train(trial, trial.train,
                       on_eval=lambda m, _, t=trial: rows.append(measurement_row(t, m)))
        for row in rows:
            store.write_row(row)
    store.compact()  # as a study run leaves its folder (orchestrator/execution/run.py)


def cli_fit_seconds(folder: str, *extra: str) -> tuple[float, float]:
    """(wall, CPU) seconds of `python -m scaling_orchestrator fit FOLDER` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scaling_orchestrator", "fit", folder, *extra], check=True,
                   stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1],
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - wall0, cpu


def cli_fit_lines(trials: int, results: str | None = None) -> None:
    """The `scaling fit` headline on a folder of `trials` simulated trials (or on `results`,
    made before), default options, and with --bootstrap 0; the simulated folder a second time
    without its compacted rows (row files only, as a folder copied by hand)."""
    with tempfile.TemporaryDirectory() as tmp:
        if results is None:
            timed(f"simulate and store {trials:,} trials", lambda: simulated_results(trials, tmp))
        folder = results or tmp
        compacted = Path(folder, COMPACT)
        fit_seconds_lines(folder, trials, "rows compacted" if compacted.exists() else "row files only")
        if results is None:
            compacted.unlink()
            fit_seconds_lines(folder, trials, "row files only")


def fit_seconds_lines(folder: str, trials: int, files: str) -> None:
    for label, extra in (("", ()), (" --bootstrap 0", ("--bootstrap", "0"))):
        wall, cpu = cli_fit_seconds(folder, *extra)
        print(f"scaling fit{label}, {trials:,} trials ({files}): {wall:.1f} s "
              f"({cpu:.1f} s CPU; goal <= 5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-starts", type=int, default=150)
    parser.add_argument("--trials", type=int, default=1000,
                        help="simulated trials for the `scaling fit` line (0: skip it)")
    parser.add_argument("--results", metavar="DIR",
                        help="time `scaling fit` on this folder of --trials trials instead")
    args = parser.parse_args()
    N, D, L = epoch_points()
    fit, fit_s = timed("batched 4500-start fit, Epoch 240 points (goal <= 5 s)",
                       lambda: CHINCHILLA.fit(N, D, L))
    print(fit.summary())
    full, _ = timed("same, every start run to convergence (screen=False)",
                    lambda: CHINCHILLA.fit(N, D, L, screen=False))
    print(f"  objective {full.objective:.6g} (screened fit {fit.objective:.6g})")
    (naive_s, naive_f), _ = timed(f"naive scipy L-BFGS-B loop, {args.naive_starts} starts",
                                  lambda: naive_loop(N, D, L, args.naive_starts))
    scaled = naive_s * len(CHINCHILLA_GRID) / args.naive_starts
    print(f"  scaled to 4500 starts: {scaled:.1f} s, best objective {naive_f:.6g}; "
          f"speed-up {scaled / fit_s:.0f}x")
    boot, _ = timed(f"bootstrap over runs, {args.resamples} resamples (goal <= 60 s)",
                    lambda: CHINCHILLA.bootstrap(N, D, L, np.arange(len(N)), fit=fit,
                                                 n_resamples=args.resamples,
                                                 target_flops=[5.76e23]))
    for name, (lo, hi) in boot["ci95"].items():
        print(f"  {name:>5s} 95% [{lo:.4g}, {hi:.4g}]")
    print(f"  at 5.76e23 FLOPs: N* {boot['compute_optimal'][0]['params_ci']}")
    table, _ = timed("generate a 10^6-row table in our schema", synthetic_table)
    with tempfile.TemporaryDirectory() as tmp:
        for i, start in enumerate(range(0, table.num_rows, 100_000)):
            pq.write_table(table.slice(start, 100_000), Path(tmp) / f"part-{i:02d}.parquet")
        points, _ = timed("load_points, final rows of 10^6 (10 Parquet files)",
                          lambda: load_points(tmp))
        curves, _ = timed("load_points, curves=True (all 10^6 rows)",
                          lambda: load_points(tmp, curves=True))
        law, _ = timed(f"chinchilla fit on the {len(points)} final points",
                       lambda: CHINCHILLA.fit(points.params, points.tokens, points.loss))
    print(f"  {len(curves)} curve rows; fit alpha {law.alpha:.4f} beta {law.beta:.4f} "
          f"(truth {TRUTH['alpha']}, {TRUTH['beta']})")
    if args.trials > 0:
        cli_fit_lines(args.trials, args.results)


if __name__ == "__main__":
    main()
