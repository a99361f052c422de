"""Curves from tables: any table of logged steps (foreign curves) or our own result rows.

Foreign: one row per logged step, columns named by the caller (run, step, LR, loss, and N when
there are several sizes); each run's schedule is its logged LRs joined by straight lines from
LR 0 at step 0 (schedule.logged_lr).

Ours (docs/schema.md): one row per evaluation with the trial's recipe; each trial's schedule is
rebuilt exactly from it (schedule.recipe_lr: schedule name, peak `lr`, its step count; a branch
(`branch_tokens` > 0) decays from its branch point, sharing its trunk's warmup, 5% of the trunk's
steps, with the branches design's default 1-sqrt shape). Where the results folder holds the
per-step curve table of a trial (`_curves/<trial_id>.parquet`, column `lr`), its logged LR is
the schedule instead. Trunk rows count: a trunk's constant-LR curve is the data term's best
witness. Rows of failed or diverged trials and unfinished trials are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scaling_orchestrator.analysis.errors import NotFittable
from scaling_orchestrator.analysis.laws.curves.fit import CurveSet
from scaling_orchestrator.analysis.laws.curves.schedule import SCHEDULES, logged_lr, recipe_lr

WARMUP_FRACTION = 0.05   # TrainConfig.warmup_fraction
BRANCH_DECAY_SHAPE = "1-sqrt"  # BranchesOptions.decay_shape


def column(table: pa.Table, name: str, what: str) -> np.ndarray:
    if name not in table.column_names:
        raise ValueError(f"{what}: no column {name!r} (columns: {', '.join(table.column_names)})")
    return table.column(name).to_numpy(zero_copy_only=False)


def foreign_runs(table: pa.Table, *, run: str, step: str, lr: str, loss: str | None = None,
                 params: str | None = None) -> list:
    """(run id, N, eta, steps, losses or None) per run of a table of logged steps."""
    runs = column(table, run, "--run").astype(str)
    steps = column(table, step, "--step").astype(float)
    lrs = column(table, lr, "--lr").astype(float)
    losses = None if loss is None else column(table, loss, "--loss").astype(float)
    sizes = np.ones(len(runs)) if params is None else column(table, params, "--params").astype(float)
    out = []
    for name in dict.fromkeys(runs):
        rows = np.flatnonzero(runs == name)
        rows = rows[np.argsort(steps[rows], kind="stable")]
        if np.any(steps[rows] < 1) or np.any(np.diff(steps[rows]) <= 0):
            raise ValueError(f"--step: run {name!r}: steps must be >= 1 and distinct")
        eta = logged_lr(steps[rows], lrs[rows])
        out.append((name, float(sizes[rows[0]]), eta, steps[rows].astype(int),
                    None if losses is None else losses[rows]))
    return out


def foreign_curves(table: pa.Table, **columns) -> CurveSet:
    return CurveSet.from_runs(foreign_runs(table, **columns))


def row_curves(table: pa.Table, *, loss: str = "val_loss", params: str = "params",
               folder: str | Path | None = None, recipes: dict | None = None) -> CurveSet:
    """Every evaluation of our own finished scaling trials, with each trial's exact schedule.
    recipes: {trial_id: its TrainConfig's fields}, read from the folder's _plan.json when None."""
    recipes = planned_recipes(folder) if recipes is None else recipes
    keep = pc.equal(table.column("status"), "ok") if "status" in table.column_names else None
    if "kind" in table.column_names:
        scaling = pc.equal(table.column("kind"), "scaling")
        keep = scaling if keep is None else pc.and_(keep, scaling)
    table = table if keep is None else table.filter(keep)
    if table.num_rows == 0:
        raise NotFittable("no curves: no scaling row with status ok")
    rows = table.to_pylist()
    by_trial: dict[str, list[dict]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    total = {t: max(r["step"] for r in rs) for t, rs in by_trial.items() if any(r["final"] for r in rs)}
    runs = []
    for trial, trial_rows in by_trial.items():
        if trial not in total:
            continue
        trial_rows.sort(key=lambda r: r["step"])
        eta = trial_schedule(trial_rows[-1], total, folder, recipes.get(trial))
        good = [r for r in trial_rows if r[loss] is not None and np.isfinite(r[loss]) and r["step"] >= 1]
        runs.append((trial, float(trial_rows[-1][params]), eta, [r["step"] for r in good],
                     [r[loss] for r in good]))
    return CurveSet.from_runs(runs)


def trial_schedule(row: dict, total: dict, folder=None, recipe: dict | None = None) -> np.ndarray:
    """eta of a finished trial: its logged LR, else its planned recipe, else its last row
    (module doc)."""
    steps = total[row["trial_id"]]
    logged = _logged(folder, row["trial_id"])
    if logged is not None and len(logged[0]) and logged[0].max() >= steps:
        return logged_lr(*logged)[:steps]
    if recipe:
        batch = int(recipe["batch_tokens"])
        warmup = (int(recipe["warmup_tokens"]) // batch if recipe.get("warmup_tokens")
                  else int(float(recipe.get("warmup_fraction", WARMUP_FRACTION)) * steps))
        return recipe_lr(steps, float(recipe["lr"]), recipe.get("schedule", "cosine"), warmup_steps=warmup,
                         min_lr_ratio=float(recipe.get("min_lr_ratio", 0.1)),
                         decay_fraction=float(recipe.get("decay_fraction", 0.2)),
                         decay_shape=recipe.get("decay_shape", "linear"))
    schedule = row.get("schedule") or "cosine"
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: trial {row['trial_id']}: {schedule!r} is not one of {SCHEDULES}")
    branch_step = int(row.get("branch_tokens") or 0) // int(row["batch_tokens"])
    if branch_step <= 0:
        return recipe_lr(steps, float(row["lr"]), schedule)
    trunk_steps = total.get(row.get("parent_trial_id") or "", branch_step)
    return recipe_lr(steps, float(row["lr"]), "wsd", warmup_steps=int(WARMUP_FRACTION * trunk_steps),
                     decay_fraction=(steps - branch_step) / steps, decay_shape=BRANCH_DECAY_SHAPE)


def _logged(folder, trial: str):
    """(steps, lr) of the trial's per-step curve table, None when there is none."""
    if folder is None:
        return None
    path = Path(folder) / "_curves" / f"{trial}.parquet"
    if not path.is_file():
        return None
    table = pq.read_table(path, columns=["step", "lr"])
    steps, lrs = (table.column(c).to_numpy(zero_copy_only=False).astype(float) for c in ("step", "lr"))
    ok = (steps >= 1) & np.isfinite(lrs)
    steps, idx = np.unique(steps[ok], return_index=True)
    return steps, lrs[ok][idx]


def size_recipes(table: pa.Table, params: str = "params") -> dict:
    """{N: (FLOPs per token, tokens per step, peak LR)} of the table's scaling rows."""
    needed = (params, "flops_per_token", "batch_tokens", "lr")
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise NotFittable(f"the curve method needs our row schema's {', '.join(missing)} columns")
    out = {}
    for row in table.select(list(needed)).to_pylist():
        out.setdefault(float(row[params]), (float(row["flops_per_token"]), float(row["batch_tokens"]),
                                            float(row["lr"])))
    return out


def planned_recipes(folder) -> dict:
    """{trial_id: TrainConfig fields} of the trials in a results folder's _plan.json ({} when
    there is none): the exact warmup, floor and decay each trial trained with."""
    path = None if folder is None else Path(folder) / "_plan.json"
    if path is None or not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    trials = saved.get("trials", []) if isinstance(saved, dict) else saved
    return {t["trial_id"]: t["train"] for t in trials
            if isinstance(t, dict) and "trial_id" in t and isinstance(t.get("train"), dict)}
