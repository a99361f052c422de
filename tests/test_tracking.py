"""Trackers (spec `tracking:`): its parsing, run names, and one simulated study through a local
Ray with W&B (offline), MLflow (file store) and TensorBoard at once: one run per trial holding
every evaluation and curve point, and a re-run that adds no run."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from scaling_orchestrator.orchestrator.spec.sections.tracking import (
    MlflowTracking,
    Tracking,
    WandbTracking,
    parse_tracking,
)
from scaling_orchestrator.orchestrator.spec.sweep import SpecError


def test_tracking_section_is_checked():
    assert parse_tracking(None) == Tracking() and Tracking().named == ()
    got = parse_tracking({"wandb": {"project": "p", "mode": "offline"}, "mlflow": {}, "tensorboard": True})
    assert got.wandb == WandbTracking(project="p", mode="offline") and got.mlflow == MlflowTracking()
    assert got.named == ("wandb", "mlflow", "tensorboard")
    with pytest.raises(SpecError, match="tracking.wandb.mode: 'offlne' must be one of online, offline"):
        parse_tracking({"wandb": {"mode": "offlne"}})
    with pytest.raises(SpecError, match="tracking.tensorbord: unknown key; did you mean 'tensorboard'"):
        parse_tracking({"tensorbord": True})
    with pytest.raises(SpecError, match="tracking.mlflow.experiment: 3 must be a non-empty string"):
        parse_tracking({"mlflow": {"experiment": 3}})


def test_run_names_say_size_budget_and_kind():
    from scaling_orchestrator.orchestrator.store.tracker_runs import run_id, run_name
    from tests.test_store import spec

    trial = dataclasses.replace(spec(0), size_label="d4", budget_flops=1.4e12)
    assert run_name(trial) == "d4@1.4e12"
    assert run_name(dataclasses.replace(trial, group="branch", round=2)) == "d4@1.4e12+branch+r2"
    searched = dataclasses.replace(trial, kind="hparam", train=dataclasses.replace(trial.train, lr=3e-3))
    assert run_name(searched) == "d4@1.4e12+hparam+lr0.003"
    assert run_id(trial) == f"{trial.sweep}-{trial.trial_id}"


def test_a_missing_tracker_names_its_extra(monkeypatch):
    import importlib.util

    from scaling_orchestrator.orchestrator.execution import tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    with pytest.raises(tracking.TrackerMissing, match=r"pip install 'scaling-orchestrator\[mlflow\]'"):
        tracking.check_installed(Tracking(mlflow=MlflowTracking()))


def wandb_history_counts(root: Path) -> dict[str, int]:
    """run id -> history records over every offline run folder of that id under root, read from
    the .wandb files: W&B's LevelDB-style log (a 7-byte file header, 32 KiB blocks, records of
    crc32 (4), length (2), type (1: whole, 2-4: first, middle, last piece) and data)."""
    from wandb.proto import wandb_internal_pb2

    counts: dict[str, int] = {}
    for path in root.rglob("*.wandb"):
        run = path.stem.removeprefix("run-")
        counts.setdefault(run, 0)
        data, pos, piece = path.read_bytes(), 7, b""
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
            piece += data[pos + 7 : pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(piece)
                counts[run] += record.WhichOneof("record_type") == "history"
                piece = b""
    return counts


@pytest.mark.slow  # a local Ray: 2 simulated trials twice, each W&B run a Ray actor of its own
@pytest.mark.ray
def test_each_tracker_gets_one_run_per_trial_and_a_rerun_adds_none(local_ray, tmp_path):
    import mlflow

    from scaling_orchestrator.analysis.data.curves import read_curves
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.execution.run import run_plan
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
    from scaling_orchestrator.orchestrator.store.results import Store

    sweep = load_sweep("examples/simulated.yaml")
    recipe = dataclasses.replace(sweep.train, config=dataclasses.replace(
        sweep.train.config, log_every_tokens=200 * sweep.train.config.batch_tokens))  # 6-12 points
    sweep = dataclasses.replace(
        sweep, budgets_flops=sweep.budgets_flops[:1], held_out_budgets_flops=(), train=recipe,
        tracking=parse_tracking({"wandb": {"mode": "offline"}, "mlflow": {}, "tensorboard": True}))
    plan = make_plan(sweep)
    plan = dataclasses.replace(plan, trials=tuple(sorted(plan.trials, key=lambda t: t.train.total_steps)[:2]))
    results = tmp_path / "res"
    assert len(run_plan(plan, str(results), progress=False).completed) == 2
    rows, curves = Store(str(results)).read_table(), read_curves(str(results))
    ids = {t.trial_id for t in plan.trials}
    expected = {f"{sweep.name}-{tid}": rows["trial_id"].to_pylist().count(tid)
                + curves["trial_id"].to_pylist().count(tid) for tid in ids}
    assert all(n >= 8 + 6 for n in expected.values())  # 8-9 evaluations, 6-12 curve points
    assert wandb_history_counts(results / "_wandb") == expected

    def mlflow_runs() -> list:
        mlflow.set_tracking_uri(f"file:{results / '_mlflow'}")
        return mlflow.search_runs(experiment_names=[sweep.name], output_format="list")

    assert sorted(r.data.tags["scaling.trial_id"] for r in mlflow_runs()) == sorted(ids)
    events = list((results / "_tensorboard").glob("*/events.out.tfevents.*"))
    assert len(events) == 2 and {p.parent.name.split("_")[-1] for p in events} == ids

    # A trial run again (its rows lost) goes to the runs it had: no tracker gains one.
    again = plan.trials[0].trial_id
    (results / f"{again}.parquet").unlink()
    assert run_plan(plan, str(results), progress=False).completed == [again]
    assert set(wandb_history_counts(results / "_wandb")) == set(expected)
    assert len(list((results / "_wandb").rglob("*.wandb"))) == 3  # offline: one more folder, same id
    assert len(mlflow_runs()) == 2 and len(list((results / "_tensorboard").iterdir())) == 2


def test_curve_feed_orders_points_before_their_evaluation_and_skips_what_a_past_run_logged(tmp_path):
    from scaling_orchestrator.orchestrator.store.curves import CurveWriter
    from scaling_orchestrator.orchestrator.store.results import Store, measurement_row
    from scaling_orchestrator.orchestrator.store.tracker_runs import TRAINING_ITERATION, CurveFeed
    from tests.test_store import measurement, spec

    store, trial = Store(str(tmp_path)), spec(0)
    for step in (4, 8, 12):
        store.write_row(measurement_row(trial, measurement(step)))
    CurveWriter(store, trial.trial_id).extend(
        [{"step": k, "tokens": 512 * k, "train_loss": 5.0, "lr": 1e-3} for k in range(2, 13, 2)])
    # A study run again resumes the trial after step 8: its first report is step 12's.
    items = CurveFeed(str(tmp_path)).items(trial, {"step": 12, "val_loss": 4.0})
    assert [(i.get("step"), i[TRAINING_ITERATION]) for i in items] == [(10, 20), (12, 24), (12, 25)]
    assert items[0]["curve/train_loss"] == 5.0 and "curve/grad_norm" not in items[0]  # null: not logged
    fresh = CurveFeed(str(tmp_path))
    first = fresh.items(trial, {"step": 4})
    assert [i[TRAINING_ITERATION] for i in first] == [4, 8, 9]
    assert [i[TRAINING_ITERATION] for i in fresh.items(trial, {"step": 8})] == [12, 16, 17]
