"""The result store, the study lock, concurrency sizing and `scaling status`: no Ray needed."""

from __future__ import annotations

import dataclasses
import json
import os
import socket

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

from scaling_orchestrator.analysis.data.schema import COLUMNS, check_table
from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import Measurement, TrainConfig
from scaling_orchestrator.orchestrator.execution.tuner import apply_overrides
from scaling_orchestrator.orchestrator.plan.resources import driver_resources, max_concurrent
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.store.lock import StudyLock, StudyLockedError
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row
from scaling_orchestrator.orchestrator.store.status import Tally, progress_line, status_text


def spec(seed: int = 0, **resources) -> TrialSpec:
    return TrialSpec(
        sweep="unit", kind="scaling",
        shape=ModelShape(n_layer=2, d_model=64, n_head=2, vocab_size=256, seq_len=32),
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=4096, batch_tokens=512, eval_every_tokens=1024, seed=seed),
        budget_flops=1e10, resources=Resources(**resources))


def measurement(step: int, val_loss: float = 5.0, final: bool = False, status: str = "ok"):
    tokens = step * 512
    return Measurement(step=step, tokens=tokens, flops=tokens * 1e5, flops_6n=tokens * 9e4,
                       train_loss=val_loss + 0.1, val_loss=val_loss, val_bpb=val_loss / 0.69,
                       lr_now=1e-3, wall_seconds=step * 0.1, tokens_per_second=5e3,
                       final=final, status=status)


def test_rows_match_schema_and_every_reader(tmp_path):
    store = Store(str(tmp_path))
    s = spec()
    for step in (2, 4, 6, 8):
        store.write_row(measurement_row(s, measurement(step, 6.0 - step / 10, final=step == 8)))
    store.write_plan([s])
    (tmp_path / f".{s.trial_id}.parquet.tmp-1-dead").write_bytes(b"half a file")  # a crashed write
    table = check_table(ds.dataset(str(tmp_path), format="parquet").to_table())
    assert table.num_rows == 4 and tuple(table.column_names) == COLUMNS
    assert len(pd.read_parquet(tmp_path)) == 4
    query = f"select count(*), max(step) from read_parquet('{tmp_path}/*.parquet')"
    assert duckdb.sql(query).fetchall() == [(4, 8)]
    row = store.read_trial(s.trial_id)[-1]
    assert row["params"] == s.shape.param_counts()["total"]
    assert row["embedding_params"] == 256 * 64 + 32 * 64  # token + position tables, tied head
    assert row["lr"] == s.train.lr and row["final"] and row["status"] == "ok"
    assert store.done_trial_ids() == {s.trial_id}


def test_reevaluated_steps_replace_rows_never_duplicate(tmp_path):
    store = Store(str(tmp_path))
    s = spec()
    for step in (2, 4, 6):
        store.write_row(measurement_row(s, measurement(step, 5.0)))
    # crash after step 6's row, resume from the step-4 checkpoint: step 6 is evaluated again
    store.write_row(measurement_row(s, measurement(6, 4.5)))
    store.write_row(measurement_row(s, measurement(8, 4.4, final=True)))
    rows = store.read_trial(s.trial_id)
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert rows[2]["val_loss"] == 4.5


def test_failed_trial_is_marked_and_lifted_on_resume(tmp_path):
    store = Store(str(tmp_path))
    s, never = spec(0), spec(1)
    store.write_row(measurement_row(s, measurement(2)))
    store.mark_failed(s)
    store.mark_failed(never)  # failed before its first evaluation: a step-0 placeholder
    assert [(r["step"], r["final"], r["status"]) for r in store.read_trial(s.trial_id)] == [
        (2, True, "failed")]
    assert [(r["step"], r["status"]) for r in store.read_trial(never.trial_id)] == [(0, "failed")]
    assert store.done_trial_ids() == set()  # failed trials run again
    store.write_row(measurement_row(s, measurement(4)))
    store.write_row(measurement_row(never, measurement(2)))
    assert [(r["step"], r["final"], r["status"]) for r in store.read_trial(s.trial_id)] == [
        (2, False, "ok"), (4, False, "ok")]
    assert [r["step"] for r in store.read_trial(never.trial_id)] == [2]


def test_checkpoint_latest_survives_and_old_copies_go(tmp_path):
    store = Store(str(tmp_path / "results"))
    for step in (2, 4):
        local = tmp_path / f"ckpt{step}"
        local.mkdir()
        (local / "checkpoint.pt").write_text(f"step {step}")
        store.save_checkpoint("abc", str(local), step)
    restored = store.load_checkpoint("abc", str(tmp_path / "restore"))
    assert open(os.path.join(restored, "checkpoint.pt")).read() == "step 4"
    assert sorted(os.listdir(tmp_path / "results/_checkpoints/abc")) == ["LATEST", "step-000000004"]
    assert store.load_checkpoint("other", str(tmp_path / "none")) is None


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    store = Store(str(tmp_path))
    live = {"pid": os.getppid(), "host": socket.gethostname(), "started": 0}
    (tmp_path / "_lock").write_text(json.dumps(live))
    with pytest.raises(StudyLockedError, match=f"pid {os.getppid()} on host {socket.gethostname()}"):
        StudyLock(store).acquire()
    dead_pid = 2**22 + 12345  # above the default pid_max of 4,194,304: never a live process
    (tmp_path / "_lock").write_text(json.dumps({**live, "pid": dead_pid}))
    with StudyLock(store):
        assert json.loads((tmp_path / "_lock").read_text())["pid"] == os.getpid()
        with pytest.raises(StudyLockedError, match=f"pid {os.getpid()}"):
            StudyLock(store).acquire()
    assert not (tmp_path / "_lock").exists()


def test_concurrency_from_the_limiting_resource():
    # 2 CPUs: in-process trials of 1 CPU -> 2; one 1-CPU worker each -> 2 // 1.01 = 1
    assert max_concurrent([Resources(num_workers=0)], {"CPU": 2.0}) == 2
    assert max_concurrent([Resources(num_workers=1)], {"CPU": 2.0}) == 1
    # GPUs limit: 8 GPUs over 2 nodes, trials of 2 workers x 1 GPU -> 4 (CPU would allow 31)
    gpu = Resources(num_workers=2, cpus_per_worker=1, gpus_per_worker=1)
    assert max_concurrent([gpu], {"CPU": 64.0, "GPU": 8.0}) == 4
    with pytest.raises(ValueError, match="needs GPU=2 but the cluster has GPU=0"):
        max_concurrent([gpu], {"CPU": 64.0})
    assert driver_resources(gpu, {"driver": 1.0}) == {"cpu": 0.01, "gpu": 0.0, "driver": 0.001}
    assert driver_resources(Resources(cpus_per_worker=2), {}) == {"cpu": 2.0, "gpu": 0.0}


def test_overrides_make_a_new_trial():
    s = spec()
    moved = apply_overrides(s, {"trial": s.to_dict(), "lr": 1e-2, "results_dir": "/x"})
    assert moved.train.lr == 1e-2 and moved.trial_id != s.trial_id
    assert apply_overrides(s, {"trial": s.to_dict()}) is s
    with pytest.raises(ValueError, match=r"trainable config keys \['learning_rate'\]"):
        apply_overrides(s, {"trial": s.to_dict(), "learning_rate": 1e-2})


def test_status_text_from_the_store_alone(tmp_path):
    store = Store(str(tmp_path))
    done, running, pending = spec(0), spec(1), spec(2)
    store.write_plan([done, running, pending])
    for step in (2, 4, 6, 8):
        store.write_row(measurement_row(done, measurement(step, final=step == 8)))
    store.write_row(measurement_row(running, measurement(2)))
    text = status_text(str(tmp_path))
    assert "3 trials | 1 done, 0 diverged, 0 failed, 1 running, 1 pending" in text
    flops = done.flops
    assert flops == done.shape.flops_per_token() * 4096
    assert f"{8 * 512 * 1e5 + 2 * 512 * 1e5:.2e}/{3 * flops:.2e} FLOPs" in text


def test_progress_line_eta_weighs_flops():
    line = progress_line(done=3, running=1, pending=4, failed=0, flops_done=3e12, flops_total=8e12,
                         elapsed_seconds=60, flops_this_run=3e12)
    assert line.endswith("1m00s elapsed, ETA 1m40s")  # 5e12 left at 5e10 FLOP/s
    assert "3.00e+12/8.00e+12 FLOPs (38%)" in line


def test_live_tally_counts_states_and_weighs_flops():
    a, b, c, d = (spec(seed) for seed in range(4))
    tally = Tally([a, b, c, d], done_before={a.trial_id, "not-in-this-plan"}, start=0.0)
    tally.started(b.trial_id)
    tally.started(c.trial_id)
    tally.reported(b.trial_id, a.flops / 4)
    tally.finished(c.trial_id)  # a finished trial counts its planned FLOPs, not its last report
    tally.failed(d.trial_id)
    # done: a (before) + c; FLOPs a + c + b/4 = 2.25 of 4 trials in 90 s -> 1.75 left at 1.25/90 s
    line = tally.line(now=90.0)
    assert line.startswith("[scaling] 2 done, 1 running, 0 pending, 1 failed")
    assert f"{2.25 * a.flops:.2e}/{4 * a.flops:.2e} FLOPs (56%)" in line
    assert line.endswith("1m30s elapsed, ETA 2m06s")


def test_trial_dict_round_trip_keeps_identity():
    s = spec(3, num_workers=1, gpus_per_worker=1.0)
    assert TrialSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert dataclasses.replace(s, resources=Resources()).trial_id == s.trial_id


def test_version_1_files_stay_readable_with_the_new_columns_filled(tmp_path):
    """A results folder written before schema_version 2 (no group, size_label, parent_trial_id,
    backend) reads with their defaults, alone or beside a version-2 file, and a resumed v1
    trial's upsert rewrites it whole in the new schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scaling_orchestrator.analysis.data.schema import ADDED_IN, SCHEMA_VERSION

    store = Store(str(tmp_path))
    old_spec = spec(seed=0)
    new_spec = dataclasses.replace(spec(seed=1), group="held_out", size_label="d2")
    store.write_row(measurement_row(old_spec, measurement(2)))
    store.write_row(measurement_row(new_spec, measurement(8, final=True)))
    path = store.trial_file(old_spec.trial_id)
    old = pq.read_table(path).drop_columns(list(ADDED_IN[2]))
    old = old.set_column(old.schema.get_field_index("schema_version"), "schema_version",
                         pa.array([1] * old.num_rows, pa.int32()))
    pq.write_table(old, path)
    by_id = {r["trial_id"]: r for r in store.read_table().to_pylist()}
    assert (by_id[old_spec.trial_id]["group"], by_id[old_spec.trial_id]["backend"]) == ("", "torch")
    assert (by_id[new_spec.trial_id]["group"], by_id[new_spec.trial_id]["size_label"]) == ("held_out", "d2")
    store.write_row(measurement_row(old_spec, measurement(4)))   # a resumed v1 trial
    assert [r["step"] for r in store.read_trial(old_spec.trial_id)] == [2, 4]
    assert pq.read_table(path).column("schema_version").to_pylist() == [1, SCHEMA_VERSION]


def test_a_failed_trial_is_one_line_with_its_reason_and_log(tmp_path):
    from scaling_orchestrator.orchestrator.execution.run import RunSummary
    from scaling_orchestrator.orchestrator.store.status import failure_of

    store, s = Store(str(tmp_path)), spec()
    store.write_plan([s])
    store.mark_failed(s)
    store.update_meta(s.trial_id, error="ValueError: DataSpec.corpus='x.txt': must be ...")
    failure = failure_of(store, s.trial_id)
    line = (f"failed: {s.trial_id}: ValueError: DataSpec.corpus='x.txt': must be ... "
            f"(log: {tmp_path}/_trials/{s.trial_id}.log)")
    assert str(failure) == line and line in status_text(str(tmp_path)).splitlines()
    summary = RunSummary(failed=[s.trial_id], failures=[failure], results_dir=store.uri)
    assert str(summary).splitlines()[1:] == [f"  {line}"]
    store.update_meta(s.trial_id, error=None)  # nothing recorded: the trial just never ended
    assert failure_of(store, s.trial_id).reason == "stopped before its last step"


def test_live_progress_counts_a_trial_that_reported_failed_as_failed():
    from types import SimpleNamespace

    from scaling_orchestrator.orchestrator.execution.progress import make_live_progress

    a, b = spec(0), spec(1)
    lines = []
    stream = SimpleNamespace(write=lines.append, flush=lambda: None)
    live = make_live_progress([a, b], set(), stream=stream)
    for s, status in ((a, "ok"), (b, "failed")):  # b: an error it would repeat, recorded, returned
        trial = SimpleNamespace(config={"trial": s.to_dict()}, last_result={"status": status})
        live.on_trial_start(0, [], trial)
        live.on_trial_complete(0, [], trial)
    live.on_experiment_end([])
    assert "1 done, 0 running, 0 pending, 1 failed" in "".join(lines)
