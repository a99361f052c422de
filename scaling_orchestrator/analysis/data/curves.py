"""The curve table: every trial's per-step training curve, one Parquet file per trial.

    <results>/_curves/<trial_id>.parquet   (docs/schema.md, "Curve table")

One row per recorded optimizer step: the step's train loss (nats/token, that step's batch, not
an interval mean), the learning rate it stepped at, the global gradient norm before clipping
(None without clipping or when not measured), the tokens/s over the steps since the previous
point (training steps only) and the model FLOPs utilisation on a known GPU (None on CPU). The
leading underscore keeps `pd.read_parquet(results)` and pyarrow.dataset reads of the row folder
from picking the curves up. The writer is scaling_orchestrator.orchestrator.store.curves; the
producers are the built-in loop (models/training/curves.py) and the simulate backend.

Like the row schema, the reader owns the contract: load_curves joins each curve with its
trial's columns from the rows, for notebooks and for fits of the curve's shape.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scaling_orchestrator.analysis.data.load import load_table

CURVES_DIR = "_curves"
CURVE_SCHEMA_VERSION = 1
VERSION_KEY = b"scaling_orchestrator.curve_schema_version"
CURVE_SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("step", pa.int64()),
        ("tokens", pa.int64()),
        ("train_loss", pa.float64()),
        ("lr", pa.float64()),
        ("grad_norm", pa.float64()),
        ("tokens_per_second", pa.float64()),
        ("mfu", pa.float64()),
    ],
    metadata={VERSION_KEY: str(CURVE_SCHEMA_VERSION).encode()},
)
# The trial columns load_curves joins onto each curve point (all in the row schema).
TRIAL_COLUMNS = ("sweep", "kind", "group", "size_label", "params", "n_layer", "d_model", "budget_flops",
                 "seed", "lr", "backend", "parent_trial_id", "round")


def points_to_table(trial_id: str, points: list[dict]) -> pa.Table:
    """Curve points (dicts with the schema's columns but trial_id) as a table of CURVE_SCHEMA."""
    columns = {name: [p.get(name) for p in points] for name in CURVE_SCHEMA.names if name != "trial_id"}
    columns["trial_id"] = [trial_id] * len(points)
    return pa.Table.from_pydict(columns, schema=CURVE_SCHEMA)


def read_curve_file(path_or_file) -> pa.Table:
    """One trial's curve, checked against the schema version it was written with."""
    table = pq.read_table(path_or_file)
    version = int((table.schema.metadata or {}).get(VERSION_KEY, b"0"))
    if version != CURVE_SCHEMA_VERSION:
        raise ValueError(f"{path_or_file}: curve schema version {version}, this reader knows "
                         f"{CURVE_SCHEMA_VERSION} (docs/schema.md)")
    return table.select(CURVE_SCHEMA.names).cast(CURVE_SCHEMA)


def read_curves(results_dir: str) -> pa.Table:
    """Every curve in a local results folder, stacked (no trial columns); empty when none."""
    folder = os.path.join(os.path.expanduser(results_dir), CURVES_DIR)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".parquet")) if os.path.isdir(folder) else []
    tables = [read_curve_file(os.path.join(folder, n)) for n in names]
    return pa.concat_tables(tables) if tables else CURVE_SCHEMA.empty_table()


def load_curves(results) -> pa.Table:
    """Every trial's curve in a results folder with its trial's columns joined (TRIAL_COLUMNS,
    the row-schema names; the trial's own peak LR is `peak_lr`, the point's LR `lr`):

        curves = load_curves("results/demo").to_pandas()
        curves[curves.size_label == "d4"].plot(x="tokens", y="train_loss")

    A curve whose trial has no row yet (still before its first evaluation) keeps null trial
    columns. Sorted by trial and step."""
    curves = read_curves(results)
    try:
        rows = load_table(results)
    except (FileNotFoundError, ValueError):
        rows = None
    keep = [c for c in TRIAL_COLUMNS if rows is not None and c in rows.column_names]
    if rows is not None and keep and rows.num_rows:
        trials = _one_row_per_trial(rows.select(["trial_id", *keep]))
        trials = trials.rename_columns(["trial_id", *("peak_lr" if c == "lr" else c for c in keep)])
        curves = curves.join(trials, "trial_id", join_type="left outer")
    return curves.sort_by([("trial_id", "ascending"), ("step", "ascending")])


def _one_row_per_trial(rows: pa.Table) -> pa.Table:
    """The first row of each trial (its trial columns are the same in every row)."""
    ids = rows.column("trial_id").to_pylist()
    first = sorted({tid: i for i, tid in reversed(list(enumerate(ids)))}.values())
    return rows.take(pa.array(first, pa.int64()))


def last_points(results_dir: str) -> dict[str, dict]:
    """Each trial's latest curve point (trial_id -> point): `scaling status`'s live loss and tokens/s."""
    curves = read_curves(results_dir)
    if not curves.num_rows:
        return {}
    out: dict[str, dict] = {}
    for row in curves.sort_by("step").to_pylist():
        out[row["trial_id"]] = row
    return out


def divergence_steps(curves: pa.Table) -> dict[str, int]:
    """trial_id -> the first step whose train loss is NaN/inf or spikes (SPIKE_RATIO above the
    running minimum so far): where a curve shows a divergence, for the report's markers."""
    out: dict[str, int] = {}
    for tid in pc.unique(curves.column("trial_id")).to_pylist():
        part = curves.filter(pc.equal(curves.column("trial_id"), tid)).sort_by("step")
        step = spike_step(part.column("step").to_pylist(), part.column("train_loss").to_pylist())
        if step is not None:
            out[tid] = step
    return out


SPIKE_RATIO = 1.5  # a loss 50% above the best so far: far outside step-to-step noise (~1-5%)


def spike_step(steps: list[int], losses: list[float]) -> int | None:
    """The first step whose loss is not finite or exceeds SPIKE_RATIO x the running minimum
    (after the first 10% of points, where the loss still falls fast): 2.1 after a best of 1.3
    flags; 1.4 does not. None when the curve stays healthy."""
    best = float("inf")
    settle = max(1, len(losses) // 10)
    for i, (step, loss) in enumerate(zip(steps, losses)):
        if loss is None or loss != loss or loss in (float("inf"), float("-inf")):
            return step
        if i >= settle and loss > SPIKE_RATIO * best:
            return step
        best = min(best, loss)
    return None
