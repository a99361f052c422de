"""Fit-ready points: numpy arrays of equal length, one row per run or per evaluation.

`scaling_orchestrator.analysis.data.load.load_points` builds them from a table; every method reads them, and a
subset
(the back-test's smaller budgets, the rows that survive cleaning) is `Points.select`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

ROW_ARRAYS = ("params", "tokens", "flops", "loss", "run", "budget", "final")


@dataclass(frozen=True)
class Points:
    """One row per run (final points) or per evaluation (curves); numpy arrays of equal length."""

    params: np.ndarray  # N, parameters under the chosen convention
    tokens: np.ndarray  # D, training tokens
    flops: np.ndarray  # C, training FLOPs under the chosen convention
    loss: np.ndarray  # L, nats per token
    run: np.ndarray  # run id per row ("<sweep>/<trial_id>" when sweeps are mixed)
    budget: np.ndarray  # IsoFLOP budget (FLOPs) per row
    final: np.ndarray  # bool: the run's last (annealed) evaluation
    excluded: dict  # reason -> rows dropped ("failed", "diverged", "non-finite", ...)
    source: str
    sweep: np.ndarray | None = None  # sweep name per row, where the table has one
    derived: tuple = ()  # columns computed rather than read, e.g. "tokens = C/(6N)"
    group: np.ndarray | None = (
        None  # the planner's group per row ("", "held_out", "branch"), if any; never "trunk"
    )
    unique: np.ndarray | None = None  # U, unique training tokens (tokens / epochs), if given

    def __len__(self) -> int:
        return len(self.loss)

    def select(self, rows) -> Points:
        """The rows picked by a boolean mask or an index array (same metadata)."""
        take = {k: np.asarray(getattr(self, k))[rows] for k in ROW_ARRAYS}
        for optional in ("sweep", "group", "unique"):
            if getattr(self, optional) is not None:
                take[optional] = getattr(self, optional)[rows]
        return replace(self, **take)


def final_rows(points: Points) -> np.ndarray:
    """Indices of the rows that are one point per run (the final evaluation); every row when
    none is flagged final (a table of final points only, e.g. a published one)."""
    final = np.asarray(points.final, dtype=bool)
    return np.flatnonzero(final) if final.any() else np.arange(len(points.loss))
