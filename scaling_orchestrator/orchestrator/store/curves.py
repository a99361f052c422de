"""The curve writer: a trial's per-step curve to `<results>/_curves/<trial_id>.parquet`.

Any backend calls it (the built-in loop through the worker, the simulate backend, a trainer
that parses its own log lines):

    writer = CurveWriter(results_dir, trial_id)
    writer.add({"step": 10, "tokens": 20480, "train_loss": 5.1, "lr": 3e-4})  # missing -> null
    writer.flush()  # once per evaluation, not per point

Like the row file, the curve file has one writer and is rewritten whole through Store.write_bytes
(a temporary file and os.replace; one PUT on object stores), so a reader sees the old curve or
the new one. Keyed by step: a trial resumed from its checkpoint at step k records steps after k
again, and the first flush of the new attempt drops the lost attempt's points from there on, so
a step is never in the file twice. Rewriting ~100-500 points of 8 numbers per evaluation is a
few KB: far under 1% of a step's time for a trial that evaluates every few seconds or more.
Schema: scaling_orchestrator.analysis.data.curves (docs/schema.md, "Curve table").
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scaling_orchestrator.analysis.data.curves import (
    CURVE_SCHEMA,
    CURVES_DIR,
    points_to_table,
    read_curve_file,
)
from scaling_orchestrator.orchestrator.store.results import Store


class CurveWriter:
    """Buffers one trial's curve points and writes them in batches (see module doc)."""

    def __init__(self, results_dir: str | Store, trial_id: str):
        self.store = results_dir if isinstance(results_dir, Store) else Store(results_dir)
        self.trial_id = trial_id
        self.file = self.store.path(CURVES_DIR, f"{trial_id}.parquet")
        self.pending: list[dict] = []
        self._written: pa.Table | None = None  # what the file holds, read once

    def add(self, point: dict) -> None:
        self.pending.append(point)

    def extend(self, points: list[dict]) -> None:
        """Add points and flush: the sink CurveRecorder hands each evaluation's batch to."""
        self.pending.extend(points)
        self.flush()

    def flush(self) -> None:
        """Write the file with the pending points, replacing any of its points from their first step on."""
        if not self.pending:
            return
        new = points_to_table(self.trial_id, self.pending).sort_by("step")
        old = self.written()
        first = new.column("step")[0]
        kept = old.filter(pc.less(old.column("step"), first))
        table = pa.concat_tables([kept, new])
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.store.write_bytes(self.file, sink.getvalue())
        self._written, self.pending = table, []

    def written(self) -> pa.Table:
        """The points in the file now (an empty table when there is none)."""
        if self._written is None:
            data = self.store.read_bytes(self.file)
            self._written = read_curve_file(pa.BufferReader(data)) if data else CURVE_SCHEMA.empty_table()
        return self._written
