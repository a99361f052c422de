"""Read results (ours or published) into one Arrow table, then into fit-ready numpy points.

`load_table` takes a results directory (every *.parquet below it), a .parquet, an
.arrow/.feather/.ipc or a .csv file, a pyarrow Table or a pandas DataFrame. Tables carrying
`schema_version` are ours and are validated and cast by `data.schema.check_table`; any other
table is read as is.
`load_points` maps columns to (N params, D tokens, C FLOPs, L nats/token), fills a missing
token or FLOP column from C = 6 N D, drops what cannot be fitted and counts why, gives
every row an IsoFLOP budget, and carries the planner's `group` ("held_out" marks the back-test's
runs) where the table has one. Everything is vectorised: a 10^6-row table loads in about a
second.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.feather as feather

from scaling_orchestrator.analysis.data.parquet import read_file, read_files
from scaling_orchestrator.analysis.data.points import Points
from scaling_orchestrator.analysis.data.schema import TRUNK, check_table

__all__ = [
    "MixedSweepsWarning",
    "Points",
    "SkippedFileWarning",
    "convention_columns",
    "load_points",
    "load_table",
    "snap_budgets",
    "source_name",
    "table_sweeps",
]

PARAM_COLUMNS = {"total": "params", "non_embedding": "non_embedding_params"}
FLOPS_COLUMNS = {"exact": "flops", "6n": "flops_6n"}
BAD_STATUSES = ("failed", "diverged")
# Budget snapping (when no budget column): a group starts at the smallest FLOP value C0 not yet
# grouped and takes every point up to 1.21 C0, so its members lie within +-10% of the group's
# middle 1.1 C0; the group's budget is its members' geometric mean. E.g. 0.95e18, 1.0e18 and
# 1.08e18 share one budget of 1.01e18; 1.2e18 would start the next group.
BUDGET_GROUP_RATIO = 1.21


class MixedSweepsWarning(UserWarning):
    """A table holds rows of several sweeps (`fit` refuses these without FitOptions.sweep;
    load_points keeps their runs apart)."""


class SkippedFileWarning(UserWarning):
    """An unreadable Parquet file of a results dir was skipped (on_corrupt="skip")."""


def source_name(source) -> str:
    """How a fit names its source: the path, "table" or "DataFrame" (never a frame's contents)."""
    if isinstance(source, pa.Table):
        return "table"
    return "DataFrame" if _is_dataframe(source) else str(source)


def _is_dataframe(source) -> bool:
    # pandas itself stays unimported: pyarrow converts the frame (pa.Table.from_pandas)
    return type(source).__module__.split(".")[0] == "pandas" and hasattr(source, "columns")


def load_table(source, *, on_corrupt: str = "raise") -> pa.Table:
    """A results dir, .parquet, .arrow/.feather/.ipc, .csv file, pa.Table or pandas DataFrame
    -> pa.Table (a DataFrame's index is dropped: columns only).

    on_corrupt: "raise" (default; the error names the file) or "skip" (warn, read the rest)."""
    if on_corrupt not in ("raise", "skip"):
        raise ValueError(f"on_corrupt={on_corrupt!r}; allowed: 'raise', 'skip'")
    if isinstance(source, pa.Table):
        return _ours(source, "table")
    if _is_dataframe(source):
        return _ours(pa.Table.from_pandas(source, preserve_index=False), "DataFrame")
    if not isinstance(source, (str, Path)):
        raise TypeError(f"source: a {type(source).__name__}; allowed: a results folder or a .parquet, "
                        ".arrow, .feather, .ipc or .csv path, a pyarrow Table or a pandas DataFrame")
    path = Path(source)
    if path.is_dir():
        return _ours(_read_dir(path, on_corrupt), str(path))
    if not path.exists():
        raise FileNotFoundError(f"source {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = read_file(str(path))
        elif suffix in (".arrow", ".feather", ".ipc"):
            table = _read_ipc(path)
        elif suffix == ".csv":
            table = pa_csv.read_csv(path)
        else:
            raise ValueError(
                f"source {str(path)!r}: suffix {suffix!r}; allowed: a directory, "
                ".parquet, .arrow, .feather, .ipc, .csv"
            )
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path}: cannot be read as {suffix[1:]} ({err})") from err
    return _ours(table, str(path))


def _ours(table: pa.Table, source: str) -> pa.Table:
    # schema_version marks rows written by our orchestrator: validate them against the schema.
    if "schema_version" in table.column_names:
        table = check_table(table, source)
    sweeps = table_sweeps(table)
    if len(sweeps) > 1:  # load_points keeps them apart: run ids become "<sweep>/<id>"
        warnings.warn(
            f"{source}: rows from {len(sweeps)} sweeps {sweeps}; their runs are kept apart by sweep",
            MixedSweepsWarning,
            stacklevel=3,
        )
    return table


def table_sweeps(table: pa.Table) -> list[str]:
    """The sorted distinct non-null values of the `sweep` column ([] without one)."""
    if "sweep" not in table.column_names:
        return []
    return sorted(pc.unique(pc.cast(table.column("sweep"), pa.string())).drop_null().to_pylist())


def _read_ipc(path: Path) -> pa.Table:
    try:
        return feather.read_table(path)  # Arrow IPC file format (= Feather v2) or v1
    except pa.ArrowInvalid:
        with pa.memory_map(str(path)) as stream:
            return pa.ipc.open_stream(stream).read_all()


def _read_dir(path: Path, on_corrupt: str) -> pa.Table:
    """Every *.parquet below path in one table, in path order (parquet.read_files: the union
    of their columns). The files are read in one pass; only when that fails are they read one
    by one, to name (or skip) each unreadable file: a footer check of every file first cost
    0.3-0.4 s of the 1.4 s a 1000-trial folder takes to read."""
    # Hidden and underscore files are writers' temporaries (pyarrow.dataset skips them too).
    files = sorted(
        f
        for f in path.rglob("*.parquet")
        if not any(p.startswith((".", "_")) for p in f.relative_to(path).parts)
    )
    if not files:
        raise ValueError(f"{path}: no *.parquet files in this directory or below it")
    try:
        return read_files(files, folder=str(path))
    except (pa.ArrowException, OSError):
        tables = []  # find the files that cannot be read
        for f in files:
            try:
                tables.append(read_file(str(f)))
            except (pa.ArrowException, OSError) as err:
                _corrupt(f, err, on_corrupt)
        if not tables:
            raise ValueError(f"{path}: none of its {len(files)} parquet files could be read")
        return pa.concat_tables(tables, promote_options="default")


def _corrupt(f: Path, err: Exception, on_corrupt: str) -> None:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    message = f"{f}: not a readable parquet file ({reason})"
    if on_corrupt == "raise":
        raise ValueError(message + "; skip it with --skip-corrupt (CLI) or on_corrupt='skip'")
    warnings.warn(message + "; skipped", SkippedFileWarning, stacklevel=3)


def _float_column(table: pa.Table, name: str, source: str, field: str) -> np.ndarray:
    """Column `name` as floats; field: what it holds (Columns' field, the CLI's --flag)."""
    if name not in table.column_names:
        raise ValueError(f"{source}: {field} column {name!r} not found; columns are {table.column_names}")
    try:
        column = pc.cast(table.column(name), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"{source}: column {name!r} is not numeric ({err})") from err
    values = column.fill_null(np.nan).to_numpy()
    if not np.isfinite(values).any():
        raise ValueError(f"{source}: column {name!r} has no finite values ({len(values)} rows)")
    return values


def snap_budgets(flops: np.ndarray) -> np.ndarray:
    """IsoFLOP budget per point by the BUDGET_GROUP_RATIO rule (one loop step per group)."""
    log_c = np.log(np.asarray(flops, dtype=float))
    order = np.argsort(log_c)
    sorted_c = log_c[order]
    group = np.empty(len(sorted_c), dtype=np.int64)
    start, g, width = 0, 0, np.log(BUDGET_GROUP_RATIO)
    while start < len(sorted_c):
        end = int(np.searchsorted(sorted_c, sorted_c[start] + width, side="right"))
        group[start:end], start, g = g, end, g + 1
    centre = np.exp(np.bincount(group, weights=sorted_c) / np.bincount(group))
    budget = np.empty_like(sorted_c)
    budget[order] = centre[group]
    return budget


def convention_columns(
    params: str, flops: str, param_convention: str, flops_convention: str
) -> tuple[str, str]:
    """The N and C column names: our schema's column for the convention when the name is left
    at its default ("params" under "non_embedding" reads non_embedding_params)."""
    if param_convention not in PARAM_COLUMNS:
        raise ValueError(f"param_convention={param_convention!r}; allowed: {list(PARAM_COLUMNS)}")
    if flops_convention not in FLOPS_COLUMNS:
        raise ValueError(f"flops_convention={flops_convention!r}; allowed: {list(FLOPS_COLUMNS)}")
    return (
        PARAM_COLUMNS[param_convention] if params == "params" else params,
        FLOPS_COLUMNS[flops_convention] if flops == "flops" else flops,
    )


def load_points(
    source,
    *,
    params: str = "params",
    tokens: str = "tokens",
    flops: str = "flops",
    loss: str = "val_loss",
    run: str = "trial_id",
    budget: str = "budget_flops",
    param_convention: str = "total",
    flops_convention: str = "exact",
    curves: bool = False,
    on_corrupt: str = "raise",
    unique_tokens: str | None = None,
) -> Points:
    """Fit-ready points from any source load_table reads.

    param_convention "total" | "non_embedding" and flops_convention "exact" | "6n" pick our
    schema's columns (params / non_embedding_params, flops / flops_6n) when the column names
    are left at their defaults. curves=False keeps each run's final row (rows with final True
    where the column exists, else every row); curves=True keeps every evaluation. Rows with
    status failed/diverged (with curves, every row of such a run) and rows whose loss, params,
    tokens or FLOPs are not finite and > 0 are dropped and counted in `excluded`, and so are a
    branching study's trunk rows (group "trunk": constant-LR runs, never annealed, and their
    curves pass the held-out budgets' token counts, which the back-test must not see).
    unique_tokens: the column of unique tokens U (tokens / epochs), for laws that need it."""
    params, flops = convention_columns(params, flops, param_convention, flops_convention)
    name = source_name(source)
    table = load_table(source, on_corrupt=on_corrupt)
    if table.num_rows == 0:
        raise ValueError(f"{name}: the table has no rows")
    if not curves and "final" in table.column_names:
        table = table.filter(pc.fill_null(table.column("final"), False))
        if table.num_rows == 0:
            raise ValueError(f"{name}: no row has final == True; pass curves=True for curves")
    values, derived = _numeric_columns(table, name, params, tokens, flops, loss)
    if unique_tokens is not None:
        values["unique"] = _float_column(table, unique_tokens, name, "unique_tokens")
    runs, sweep = _run_ids(table, run)
    keep, excluded = _keep_mask(table, values, runs, curves)
    if not keep.any():
        raise ValueError(f"{name}: every row was excluded ({excluded})")
    budget_values = _budgets(table, budget, values["flops"], keep, runs if curves else None)
    final = (
        pc.fill_null(table.column("final"), False).to_numpy(zero_copy_only=False)
        if "final" in table.column_names
        else np.ones(table.num_rows, dtype=bool)
    )
    group = _group(table)
    return Points(
        params=values["params"][keep],
        tokens=values["tokens"][keep],
        flops=values["flops"][keep],
        loss=values["loss"][keep],
        run=runs[keep],
        budget=budget_values,
        final=final[keep],
        excluded=excluded,
        source=name,
        sweep=None if sweep is None else sweep[keep],
        derived=tuple(derived),
        group=None if group is None else group[keep],
        unique=values["unique"][keep] if "unique" in values else None,
    )


def _group(table) -> np.ndarray | None:
    """The planner's group per row ("" for an ordinary run, "held_out" for a back-test budget);
    None for tables without the column (published data, other tools)."""
    if "group" not in table.column_names:
        return None
    column = pc.cast(table.column("group"), pa.string()).fill_null("")
    return column.to_numpy(zero_copy_only=False).astype(str)


def _numeric_columns(table, name, params, tokens, flops, loss):
    """N, D, C, L as float arrays; N, D or C from C = 6 N D when its column is absent (N only
    when both D and C are there, e.g. Llama 3's table of budgets and token counts, and only
    under the default params column name: a named column that is absent is a typo)."""
    have = table.column_names
    if tokens not in have and flops not in have:
        raise ValueError(
            f"{name}: neither tokens column {tokens!r} nor flops column {flops!r} found; columns are {have}"
        )
    values = {"loss": _float_column(table, loss, name, "loss")}
    derived = []
    if tokens in have:
        values["tokens"] = _float_column(table, tokens, name, "tokens")
    if flops in have:
        values["flops"] = _float_column(table, flops, name, "flops")
    if params not in have and params in PARAM_COLUMNS.values() and tokens in have and flops in have:
        values["params"] = values["flops"] / (6.0 * values["tokens"])
        derived.append(f"params = {flops} / (6 {tokens})")
    else:
        values["params"] = _float_column(table, params, name, "params")
    if tokens not in have:  # Epoch's Chinchilla data: D = C / (6 N)
        values["tokens"] = values["flops"] / (6.0 * values["params"])
        derived.append(f"tokens = {flops} / (6 {params})")
    if flops not in have:
        values["flops"] = 6.0 * values["params"] * values["tokens"]
        derived.append(f"flops = 6 {params} {tokens}")
    return values, derived


def _run_ids(table, run):
    """Run id per row; with several sweeps in one table ids become '<sweep>/<id>'."""
    n = table.num_rows
    runs = (
        pc.cast(table.column(run), pa.string()).fill_null("").to_numpy(zero_copy_only=False)
        if run in table.column_names
        else np.arange(n).astype(str)
    )
    if "sweep" not in table.column_names:
        return runs, None
    sweep_col = pc.cast(table.column("sweep"), pa.string()).fill_null("")
    sweep = sweep_col.to_numpy(zero_copy_only=False)
    if len(pc.unique(sweep_col)) > 1:  # load_table warned
        runs = np.char.add(np.char.add(sweep.astype(str), "/"), runs.astype(str)).astype(object)
    return runs, sweep


def _keep_mask(table, values, runs, curves):
    n, excluded = table.num_rows, {}
    keep = np.ones(n, dtype=bool)
    if "status" in table.column_names:
        status = pc.cast(table.column("status"), pa.string()).fill_null("ok")
        for reason in BAD_STATUSES:
            bad = pc.equal(status, reason).to_numpy(zero_copy_only=False)
            if curves and bad.any():  # the whole curve of a run that blew up or crashed
                codes = pc.dictionary_encode(pa.array(runs)).indices.to_numpy()
                bad = np.isin(codes, np.unique(codes[bad]))
            excluded[reason] = int((bad & keep).sum())
            keep &= ~bad
    if "group" in table.column_names:
        trunk = pc.equal(pc.cast(table.column("group"), pa.string()).fill_null(""), TRUNK)
        trunk = trunk.to_numpy(zero_copy_only=False)
        excluded[TRUNK] = int((trunk & keep).sum())
        keep &= ~trunk
    stacked = np.vstack([values[k] for k in ("loss", "params", "tokens", "flops", "unique") if k in values])
    finite = np.isfinite(stacked).all(axis=0)
    excluded["non-finite"] = int((keep & ~finite).sum())
    keep &= finite
    positive = (stacked > 0).all(axis=0)
    excluded["non-positive"] = int((keep & ~positive).sum())
    keep &= positive
    return keep, {k: v for k, v in excluded.items() if v}


def _budgets(table, budget, flops, keep, runs=None):
    """The budget column where it is finite and > 0; snapped FLOPs for the other rows.

    With curves (runs given) a row's FLOPs are those of its run's last evaluation: every
    evaluation of a run belongs to the budget the run was trained for."""
    kept_flops = flops[keep]
    if runs is not None:
        codes = pc.dictionary_encode(pa.array(runs[keep])).indices.to_numpy()
        run_flops = np.zeros(codes.max() + 1 if len(codes) else 0)
        np.maximum.at(run_flops, codes, kept_flops)
        kept_flops = run_flops[codes]
    if budget in table.column_names:
        given = pc.cast(table.column(budget), pa.float64()).fill_null(np.nan).to_numpy()[keep]
        missing = ~(np.isfinite(given) & (given > 0))
        if missing.any():
            given[missing] = snap_budgets(kept_flops[missing])
        return given
    return snap_budgets(kept_flops)
