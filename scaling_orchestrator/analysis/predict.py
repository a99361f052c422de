"""`scaling predict`: the loss a fit predicts at the points of a table, with its bootstrap 95%
interval where the law has one, by the headline method's law unless --method names another
(prediction.py); the line that reports the file names the law used.

`FitResult.predict` and `scaling predict FIT_JSON POINTS` are the same computation: the fit
(a FitResult, or fit.json read by FitResult.from_dict) gives predicted_loss from its law's
constants and predicted_loss_lo / _hi from every bootstrap resample's constants (kept in the
fit JSON under parametric "samples": the full set of finite resample rows, so the 2.5th and
97.5th percentiles are those `scaling fit` would take).

A points table may lack N or D: with FLOPs C and tokens, N = C / (6 D); with C and params,
D = C / (6 N) (the 6ND convention: Kaplan et al. 2020, Hoffmann et al. 2022).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from scaling_orchestrator.analysis.data.load import load_table, source_name
from scaling_orchestrator.analysis.laws.choice import UNIQUE_TOKENS
from scaling_orchestrator.analysis.prediction import HEADLINE, prediction_law, prediction_method
from scaling_orchestrator.analysis.result import FitResult


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).cast(pa.float64()).fill_null(np.nan).to_numpy()


def points_columns(table: pa.Table, source: str, *, params: str, tokens: str, flops: str,
                   unique_tokens: str | None, needs_unique: bool):
    """(N, D, U or None) of a points table; N or D from C = 6ND when one is missing."""
    have = set(table.column_names)
    if params in have and tokens in have:
        N, D = _column(table, params), _column(table, tokens)
    elif flops in have and tokens in have:
        D = _column(table, tokens)
        N = _column(table, flops) / (6.0 * D)
    elif flops in have and params in have:
        N = _column(table, params)
        D = _column(table, flops) / (6.0 * N)
    else:
        missing = [c for c in (params, tokens, flops) if c not in have]
        raise ValueError(f"{source}: column {missing[0]!r} not found (need two of params "
                         f"{params!r}, tokens {tokens!r}, flops {flops!r}); columns are "
                         f"{table.column_names}")
    U = None
    if needs_unique:
        name = unique_tokens or UNIQUE_TOKENS
        if name not in have:
            raise ValueError(f"{source}: unique-tokens column {name!r} not found (the law "
                             f"needs U; pass --unique-tokens COL); columns are "
                             f"{table.column_names}")
        U = _column(table, name)
    return N, D, U


def predict_table(fit: FitResult | dict, source, *, params: str = "params", tokens: str = "tokens",
                  flops: str = "flops", unique_tokens: str | None = None,
                  method: str = HEADLINE) -> pa.Table:
    """The points table (any source load_table reads) with predicted_loss (and
    predicted_loss_lo / _hi when the law carries bootstrap samples) appended, by `method`'s
    law (prediction.py: "headline" by default); the law used, in words, is the schema's
    b"predicted_by" metadata (`predicted_by(table)`). A loss frontier reads each point's FLOPs
    from the flops column where the table has one. fit: a FitResult or its to_dict()
    structure (fit.json as read)."""
    result = fit if isinstance(fit, FitResult) else FitResult.from_dict(fit)
    used = prediction_method(result, method)
    par = result.parametric
    if used == "parametric" and not par.fittable:
        raise ValueError(f"parametric: not fittable ({par.reason}); predict needs the parametric law")
    table = load_table(source)
    needs_unique = used == "parametric" and UNIQUE_TOKENS in par.form.required_columns
    N, D, U = points_columns(table, source_name(source), params=params, tokens=tokens, flops=flops,
                             unique_tokens=unique_tokens, needs_unique=needs_unique)
    C = _column(table, flops) if used != "parametric" and flops in table.column_names else None
    loss, lo, hi = result.predict(N, D, U, interval=True, method=used, C=C)
    table = table.append_column("predicted_loss", _finite(loss))
    if lo is not None:
        table = table.append_column("predicted_loss_lo", _finite(lo))
        table = table.append_column("predicted_loss_hi", _finite(hi))
    meta = {**(table.schema.metadata or {}), b"predicted_by": prediction_law(result, method).encode()}
    bad = ~np.isfinite(loss)
    if bad.any():
        why = {WHY_INPUT if not (np.isfinite(n) and n > 0 and np.isfinite(d) and d > 0) else WHY_LAW
               for n, d in zip(N[bad], D[bad])}
        meta[b"unpredicted"] = "; ".join(sorted(why)).encode()
    return table.replace_schema_metadata(meta)


def predicted_by(table: pa.Table) -> str:
    """The law predict_table used, in words ("" for a table it did not write)."""
    return (table.schema.metadata or {}).get(b"predicted_by", b"").decode()


WHY_INPUT = "params or tokens missing or not > 0"
WHY_LAW = "the law's loss is not finite there"


def _finite(values) -> pa.Array:
    """Predictions as a column, null where not finite (never NaN)."""
    values = np.asarray(values, float)
    return pa.array(values, pa.float64(), mask=~np.isfinite(values))


def unpredicted(table: pa.Table) -> str:
    """"" when predict_table predicted every point; else how many it left empty and why, to
    end the line that says what was written."""
    empty = table.column("predicted_loss").null_count
    if not empty:
        return ""
    why = (table.schema.metadata or {}).get(b"unpredicted", b"").decode() or WHY_LAW
    return f"; {empty} left empty: {why}"


def write_table(table: pa.Table, out) -> Path:
    """The table as Parquet (.parquet / .pq) or CSV (anything else)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path)
    return path
