"""A results folder's compacted rows (_compacted/rows.parquet): the same rows as the row files,
whatever changed since it was written; unreadable, it is ignored. No Ray needed."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
from test_store import measurement, spec

from scaling_orchestrator.analysis.data import parquet
from scaling_orchestrator.analysis.data.load import load_table
from scaling_orchestrator.analysis.data.parquet import COMPACT, FILES_KEY
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row


def rows(table) -> list[tuple]:
    """The table's rows as tuples, NaN written as a string (NaN != NaN)."""
    plain = lambda v: "nan" if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    return [tuple(plain(v) for v in row.values()) for row in table.to_pylist()]


def study(folder, trials: int = 4) -> Store:
    store = Store(str(folder))
    for seed in range(trials):
        for step in (2, 4):
            store.write_row(measurement_row(spec(seed), measurement(step, 6.0 - step / 10 - seed / 100,
                                                                    final=step == 4)))
    return store


def same_as_the_files(store: Store, folder) -> None:
    """Both readers give, with the compacted rows, exactly what they give from the files."""
    compacted = (rows(store.read_table()), rows(load_table(str(folder))))
    saved = (folder / COMPACT).read_bytes()
    (folder / COMPACT).unlink()
    try:
        assert compacted == (rows(store.read_table()), rows(load_table(str(folder))))
    finally:
        (folder / COMPACT).write_bytes(saved)


def test_the_compacted_rows_list_every_file_and_read_the_same(tmp_path, monkeypatch):
    store = study(tmp_path)
    store.compact()
    listing = pq.read_schema(tmp_path / COMPACT).metadata[FILES_KEY]
    assert all(f"{spec(seed).trial_id}.parquet".encode() in listing for seed in range(4))
    decoded = []
    real = parquet.read_file
    monkeypatch.setattr(parquet, "read_file", lambda source, *a: decoded.append(source) or real(source, *a))
    assert store.read_table().num_rows == 8 and load_table(str(tmp_path)).num_rows == 8
    assert decoded == [str(tmp_path / COMPACT)] * 2  # no row file decoded: each matched
    monkeypatch.undo()
    same_as_the_files(store, tmp_path)


def test_files_changed_added_or_deleted_since_are_read_as_they_are(tmp_path):
    store = study(tmp_path)
    store.compact()
    store.write_row(measurement_row(spec(0), measurement(6, 5.0, final=True)))  # a new evaluation
    Store(str(tmp_path)).write_row(measurement_row(spec(9), measurement(2, 5.5)))  # a new trial
    (tmp_path / f"{spec(3).trial_id}.parquet").unlink()  # a trial deleted
    table = store.read_table()
    assert sorted(table.column("step").to_pylist()) == [2, 2, 2, 2, 4, 4, 4, 6]
    assert spec(3).trial_id not in table.column("trial_id").to_pylist()
    assert store.done_trial_ids() == {spec(0).trial_id, spec(1).trial_id, spec(2).trial_id}
    same_as_the_files(store, tmp_path)


def test_a_file_rewritten_with_the_same_size_is_caught_by_its_crc(tmp_path):
    store = study(tmp_path, trials=1)
    store.compact()
    path = tmp_path / f"{spec(0).trial_id}.parquet"
    size, table = path.stat().st_size, pq.read_table(path)
    losses = table.column("val_loss").to_pylist()
    swapped = table.set_column(table.column_names.index("val_loss"), "val_loss",
                               pa.array(losses[::-1], pa.float64()))
    pq.write_table(swapped, path)
    assert path.stat().st_size == size  # the same size, other bytes
    assert store.read_table().column("val_loss").to_pylist() == losses[::-1]
    assert load_table(str(tmp_path)).column("val_loss").to_pylist() == losses[::-1]


def test_an_unreadable_compacted_file_is_ignored(tmp_path):
    store = study(tmp_path)
    (tmp_path / COMPACT).parent.mkdir()
    (tmp_path / COMPACT).write_bytes(b"not parquet")
    assert store.read_table().num_rows == 8
    assert load_table(str(tmp_path)).num_rows == 8
    store.compact()  # written again over it
    assert pq.read_schema(tmp_path / COMPACT).metadata[FILES_KEY]
