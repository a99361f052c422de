"""Loss at given (N, D[, U]) from a fitted parametric law, with its bootstrap 95% interval.

`FitResult.predict` and `scaling predict FIT_JSON POINTS` are the same computation: the law's
constants give predicted_loss; every bootstrap resample's constants (kept in the fit JSON
under parametric "samples": the full set of finite resample rows, one list of the form's
constants per resample, so the 2.5th and 97.5th percentiles are those `scaling fit` would
take) give predicted_loss_lo / _hi.

A points table may lack N or D: with FLOPs C and tokens, N = C / (6 D); with C and params,
D = C / (6 N) (the 6ND convention: Kaplan et al. 2020, Hoffmann et al. 2022).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from scaling_orchestrator.analysis.data.load import load_table
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM, Form, law_form, law_from_dict

UNIQUE_TOKENS = "unique_tokens"
PERCENTILES = (2.5, 97.5)


def samples_from_dict(parametric: dict, form: Form) -> np.ndarray | None:
    """The bootstrap rows of a fit JSON's parametric section (null -> inf where the form allows
    it, NaN otherwise); None when the fit had no bootstrap."""
    rows = parametric.get("samples")
    if not rows:
        return None
    infinite_ok = [c in form.may_be_infinite for c in form.constants]
    return np.array([[np.inf if v is None and ok else np.nan if v is None else float(v)
                      for v, ok in zip(row, infinite_ok)] for row in rows], dtype=float)


def predict_loss(law, form: Form, samples, N, D, U=None, *, interval: bool = False):
    """Loss at (N, D[, U]); with interval=True, (loss, lo, hi) from the bootstrap rows (lo and
    hi are None without them)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    U = None if U is None else np.asarray(U, float)
    if UNIQUE_TOKENS in form.required_columns and U is None:
        raise ValueError(f"unique_tokens: the {form.name} law needs U for each point")
    with np.errstate(all="ignore"):
        loss = np.asarray(law.predict(N, D, U), float)
        if not interval:
            return loss
        if samples is None or not len(samples):
            return loss, None, None
        P = {k: np.asarray(col)[:, None] for k, col in zip(form.constants,
                                                             np.asarray(samples, float).T)}
        each = np.asarray(form.predict_values(P, N.reshape(-1)[None], D.reshape(-1)[None],
                                              None if U is None else U.reshape(-1)[None]), float)
        lo, hi = (q.reshape(N.shape) for q in np.nanpercentile(each, PERCENTILES, axis=0))
    return loss, lo, hi


def fit_law_from_json(fit: dict):
    """(law, form, samples) of a `scaling fit --json` structure; ValueError when its
    parametric law was not fittable."""
    par = fit.get("parametric") or {}
    if not par.get("fittable"):
        raise ValueError(f"parametric: not fittable ({par.get('reason', 'absent')}); "
                         "predict needs the parametric law")
    form = law_form(par.get("law") or DEFAULT_FORM)
    return law_from_dict(par), form, samples_from_dict(par, form)


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


def predict_table(fit: dict, source, *, params: str = "params", tokens: str = "tokens",
                  flops: str = "flops", unique_tokens: str | None = None) -> pa.Table:
    """The points table with predicted_loss (and predicted_loss_lo / _hi when the fit carries
    bootstrap samples) appended."""
    law, form, samples = fit_law_from_json(fit)
    name = "table" if isinstance(source, pa.Table) else str(source)
    table = load_table(source)
    N, D, U = points_columns(table, name, params=params, tokens=tokens, flops=flops,
                             unique_tokens=unique_tokens,
                             needs_unique=UNIQUE_TOKENS in form.required_columns)
    loss, lo, hi = predict_loss(law, form, samples, N, D, U, interval=True)
    table = table.append_column("predicted_loss", pa.array(loss, pa.float64()))
    if lo is not None:
        table = table.append_column("predicted_loss_lo", pa.array(lo, pa.float64()))
        table = table.append_column("predicted_loss_hi", pa.array(hi, pa.float64()))
    return table


def write_table(table: pa.Table, out) -> Path:
    """The table as Parquet (.parquet / .pq) or CSV (anything else)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path)
    return path
