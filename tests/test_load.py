"""Loading results: directories, file formats, conventions, exclusions, budgets, bad input."""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from scaling_orchestrator.analysis.data.load import (
    MixedSweepsWarning,
    load_points,
    load_table,
    snap_budgets,
    table_sweeps,
)
from scaling_orchestrator.analysis.data.schema import COLUMNS, SchemaError, rows_to_table


def run_rows(trial_id, params, budget, *, sweep="s1", evals=3, status="ok", loss=3.0):
    """evals rows of one trial; the last one final. flops = 6.2 N D, flops_6n = 5.4 N D."""
    tokens_final = int(budget / (6 * params))
    rows = []
    for k in range(1, evals + 1):
        tokens = tokens_final * k // evals
        row = dict.fromkeys(COLUMNS)
        row.update(sweep=sweep, trial_id=trial_id, kind="scaling", params=params,
                   non_embedding_params=int(params * 0.9), budget_flops=budget, tokens=tokens,
                   step=k, flops=6.2 * params * tokens, flops_6n=5.4 * params * tokens,
                   val_loss=loss + 1.0 / k, final=k == evals,
                   status=status if k == evals else "ok", schema_version=1)
        rows.append(row)
    return rows


def table_of(*runs):
    return rows_to_table([row for rows in runs for row in rows])


def write(table, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_directory_is_read_recursively_and_final_rows_kept(tmp_path):
    write(table_of(run_rows("t1", 1_000_000, 1e15), run_rows("t2", 2_000_000, 1e15)),
          tmp_path / "s1" / "part-0.parquet")
    write(table_of(run_rows("t3", 4_000_000, 1e16)), tmp_path / "s1" / "deep" / "part-1.parquet")
    pts = load_points(tmp_path)
    assert len(pts) == 3 and pts.final.all() and pts.excluded == {}
    order = np.argsort(pts.params)
    np.testing.assert_array_equal(pts.run[order], ["t1", "t2", "t3"])
    np.testing.assert_allclose(pts.loss, 3.0 + 1 / 3)
    np.testing.assert_array_equal(np.sort(pts.budget), [1e15, 1e15, 1e16])
    assert len(load_points(tmp_path, curves=True)) == 9


def test_param_and_flops_conventions_pick_schema_columns():
    table = table_of(run_rows("t1", 1_000_000, 1e15))
    total = load_points(table)
    kaplan = load_points(table, param_convention="non_embedding", flops_convention="6n")
    assert kaplan.params[0] == 900_000 and total.params[0] == 1_000_000
    assert kaplan.flops[0] / total.flops[0] == pytest.approx(5.4 / 6.2)
    with pytest.raises(ValueError, match="param_convention"):
        load_points(table, param_convention="embedding")


def test_exclusions_are_counted_by_reason():
    table = table_of(run_rows("ok", 1_000_000, 1e15),
                     run_rows("f", 2_000_000, 1e15, status="failed"),
                     run_rows("d", 3_000_000, 1e15, status="diverged"),
                     run_rows("nan", 4_000_000, 1e15, loss=float("nan")),
                     run_rows("neg", 5_000_000, 1e15, loss=-5.0))
    pts = load_points(table)
    assert list(pts.run) == ["ok"]
    assert pts.excluded == {"failed": 1, "diverged": 1, "non-finite": 1, "non-positive": 1}
    # Curves: every row of a failed or diverged run goes (3 each), not just its last.
    curves = load_points(table, curves=True)
    assert curves.excluded["failed"] == 3 and curves.excluded["diverged"] == 3
    assert curves.excluded["non-finite"] == 3 and curves.excluded["non-positive"] == 3
    assert list(curves.run) == ["ok"] * 3


def test_truncated_parquet_is_named_or_skipped(tmp_path):
    write(table_of(run_rows("t1", 1_000_000, 1e15)), tmp_path / "good.parquet")
    write(table_of(run_rows("t2", 2_000_000, 1e15)), tmp_path / "bad.parquet")
    data = (tmp_path / "bad.parquet").read_bytes()
    (tmp_path / "bad.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="bad.parquet") as raised:
        load_table(tmp_path)
    assert str(raised.value).endswith("; skip it with --skip-corrupt (CLI) or on_corrupt='skip'")
    with pytest.warns(UserWarning, match="bad.parquet"):
        pts = load_points(tmp_path, on_corrupt="skip")
    assert list(pts.run) == ["t1"]


def test_two_sweeps_warn_and_stay_apart(tmp_path):
    write(table_of(run_rows("same", 1_000_000, 1e15, sweep="a")), tmp_path / "a" / "p.parquet")
    write(table_of(run_rows("same", 1_000_000, 1e15, sweep="b", loss=4.0)),
          tmp_path / "b" / "p.parquet")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pts = load_points(tmp_path)
    assert [(w.category, str(w.message)) for w in seen] == [
        (MixedSweepsWarning, f"{tmp_path}: rows from 2 sweeps ['a', 'b']; "
                             "their runs are kept apart by sweep")]   # once
    assert sorted(pts.run) == ["a/same", "b/same"] and sorted(pts.sweep) == ["a", "b"]
    one = table_of(run_rows("x", 1_000_000, 1e15))
    assert table_sweeps(one) == ["s1"] and table_sweeps(one.drop_columns(["sweep"])) == []


def test_csv_without_tokens_derives_them_and_arrow_formats(tmp_path):
    table = pa.table({"N": [1e8, 2e8, 4e8], "C": [6e17, 6e17, 1.2e18], "L": [3.1, 3.0, 2.9]})
    pa_csv.write_csv(table, tmp_path / "runs.csv")
    pts = load_points(tmp_path / "runs.csv", params="N", flops="C", loss="L")
    np.testing.assert_allclose(pts.tokens, [1e9, 5e8, 5e8])   # D = C / (6 N)
    assert pts.derived == ("tokens = C / (6 N)",) and len(set(pts.run)) == 3
    np.testing.assert_allclose(pts.budget[:2], 6e17)   # snapped: within +-10%
    feather.write_feather(table, tmp_path / "runs.feather")
    with pa.OSFile(str(tmp_path / "runs.ipc"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    for name in ("runs.feather", "runs.ipc"):
        assert load_table(tmp_path / name).equals(table)


def test_flops_derived_when_absent():
    table = pa.table({"params": [1e8, 2e8], "tokens": [1e9, 2e9], "val_loss": [3.0, 2.9]})
    pts = load_points(table)
    np.testing.assert_allclose(pts.flops, [6e17, 2.4e18])


def test_budget_snapping_rule():
    # 0.95e18, 1.0e18, 1.08e18 lie within 1.21x of the smallest: one budget, their geometric
    # mean 1.0096e18; 1.2e18 starts the next group; 5e18 is alone.
    budget = snap_budgets(np.array([1.08e18, 0.95e18, 5e18, 1.0e18, 1.2e18]))
    mean = (1.08e18 * 0.95e18 * 1.0e18) ** (1 / 3)
    np.testing.assert_allclose(budget, [mean, mean, 5e18, mean, 1.2e18])


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="nope"), "'nope' not found"), (dict(params="missing"), "'missing' not found"),
])
def test_missing_column_names_column_and_source(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_points(table_of(run_rows("t1", 1_000_000, 1e15)), **kwargs)


def test_all_nan_and_empty_tables_are_errors():
    nan_table = pa.table({"params": [1e8], "tokens": [1e9], "val_loss": [float("nan")]})
    with pytest.raises(ValueError, match="'val_loss' has no finite values"):
        load_points(nan_table)
    with pytest.raises(ValueError, match="no rows"):
        load_points(nan_table.slice(0, 0))


def test_our_rows_are_checked_against_the_schema():
    table = table_of(run_rows("t1", 1_000_000, 1e15)).drop_columns(["val_bpb"])
    with pytest.raises(SchemaError, match="val_bpb"):
        load_table(table)


def test_unknown_suffix_and_missing_path(tmp_path):
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(ValueError, match="suffix"):
        load_table(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_table(tmp_path / "absent.parquet")


def test_epoch_csv_loads_with_derived_tokens(epoch_csv):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pts = load_points(epoch_csv, params="Model Size", flops="Training FLOP", loss="loss")
    assert len(pts) == 245
    np.testing.assert_allclose(6 * pts.params * pts.tokens, pts.flops, rtol=1e-12)


def test_curves_without_budget_column_take_their_runs_final_flops():
    table = pa.table({"run": ["a"] * 3 + ["b"] * 2, "params": [1e8] * 3 + [2e8] * 2,
                      "tokens": [1e8, 5e8, 1e9, 2.5e8, 5e8], "val_loss": [4.0, 3.5, 3.0, 3.6, 3.2]})
    pts = load_points(table, run="run", curves=True)
    np.testing.assert_allclose(pts.budget, 6e17)   # both runs end at 6 N D = 6e17 FLOPs
