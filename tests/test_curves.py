"""Per-step curves: the loop's recorder, the store's writer, the curve table and its reader."""

import dataclasses
import math

import pyarrow.parquet as pq
import pytest

from scaling_orchestrator.analysis.data.curves import (
    CURVE_SCHEMA,
    CURVE_SCHEMA_VERSION,
    VERSION_KEY,
    read_curves,
    spike_step,
)
from scaling_orchestrator.models.training.config import TrainConfig, lr_at
from scaling_orchestrator.models.training.curves import CurveRecorder, log_every_steps, peak_bf16_flops
from scaling_orchestrator.orchestrator.store.curves import CurveWriter


def test_default_cadence_is_about_100_points_and_at_least_every_20_steps():
    assert log_every_steps(1000, 2048) == 10
    assert log_every_steps(50_000, 2048) == 20
    assert log_every_steps(60, 2048) == 1
    assert log_every_steps(1000, 2048, log_every_tokens=5 * 2048) == 5
    assert log_every_steps(1000, 2048, log_every_tokens=100) == 1  # below a step: every step


def test_log_every_tokens_does_not_change_a_trial_id():
    from scaling_orchestrator.orchestrator.spec.trial import _fields

    base = TrainConfig(total_tokens=4096, batch_tokens=1024)
    assert _fields(base) == _fields(dataclasses.replace(base, log_every_tokens=2048))
    with pytest.raises(ValueError, match="log_every_tokens"):
        TrainConfig(total_tokens=4096, batch_tokens=1024, log_every_tokens=-1)


def test_known_gpu_peaks_are_matched_most_specific_first():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_bf16_flops("NVIDIA L40") == 181e12  # not the L4's 121e12
    assert peak_bf16_flops("Some Future GPU") is None


def test_recorder_points_rates_mfu_and_a_nonfinite_step():
    batches = []
    rec = CurveRecorder(batches.append, every_steps=2, batch_tokens=100, flops_per_token=10.0, peak_flops=1e4)
    for step in range(1, 6):
        rec.add(step, 3.0 - 0.1 * step, 1e-3, 0.5, step_start=0.0)  # start 0: a huge step time
    rec.add(6, math.nan, 1e-3, None, step_start=0.0)  # not a multiple of 2, recorded: not finite
    assert batches == []  # nothing before a flush
    rec.flush()
    (points,) = batches
    assert [p["step"] for p in points] == [2, 4, 6]
    assert points[0]["tokens"] == 200 and points[0]["grad_norm"] == 0.5 and points[-1]["grad_norm"] is None
    assert points[0]["mfu"] == pytest.approx(10.0 * points[0]["tokens_per_second"] / 1e4)
    assert math.isnan(points[-1]["train_loss"])
    off = CurveRecorder(None, every_steps=1, batch_tokens=1, flops_per_token=1.0)
    off.add(1, 1.0, 1.0, None, 0.0)
    assert off.points == []


def test_loop_hands_the_curve_over_before_each_evaluation(pydoc_bytes):
    from scaling_orchestrator.models.training.loop import train
    from tests.test_train import TINY, _config

    config = _config(total_tokens=4096, eval_every_tokens=2048, log_every_tokens=1024, eval_tokens=512)
    events = []
    train(TINY, config, pydoc_bytes, on_eval=lambda m, ckpt: events.append(("eval", m.step)),
          on_curve=lambda points: events.append(("curve", points)))
    assert [e[0] for e in events] == ["curve", "eval", "curve", "eval"]
    points = events[0][1] + events[2][1]
    assert [p["step"] for p in points] == [1, 2, 3, 4]
    for p in points:
        assert p["lr"] == lr_at(p["step"] - 1, config) and p["tokens"] == p["step"] * 1024
        assert 0 < p["train_loss"] < 6 and p["grad_norm"] > 0 and p["tokens_per_second"] > 0
        assert p["mfu"] is None  # CPU: no peak to divide by


def test_writer_batches_versions_and_replaces_a_lost_attempts_points(tmp_path):
    writer = CurveWriter(str(tmp_path), "t1")
    writer.extend([{"step": s, "tokens": 10 * s, "train_loss": 5 - s / 10, "lr": 1e-3} for s in (1, 2, 3, 4)])
    path = tmp_path / "_curves" / "t1.parquet"
    meta = pq.read_schema(path).metadata
    assert int(meta[VERSION_KEY]) == CURVE_SCHEMA_VERSION
    # A resumed attempt from step 2 records 3, 4, ... again: the old 3 and 4 go.
    again = CurveWriter(str(tmp_path), "t1")
    again.add({"step": 3, "tokens": 30, "train_loss": 1.0, "lr": 1e-3})
    again.flush()
    table = read_curves(str(tmp_path))
    assert table.schema.equals(CURVE_SCHEMA, check_metadata=False)
    assert table.column("step").to_pylist() == [1, 2, 3]
    assert table.column("train_loss").to_pylist()[-1] == 1.0
    assert table.column("grad_norm").null_count == 3  # not given: null, not 0


def test_spike_step_flags_a_loss_spike_and_a_nan():
    steps = list(range(10, 210, 10))
    healthy = [5.0 - 0.15 * i for i in range(20)]
    assert spike_step(steps, healthy) is None
    spiky = healthy[:12] + [healthy[11] * 1.8] + healthy[13:]
    assert spike_step(steps, spiky) == 130
    assert spike_step(steps, healthy[:5] + [math.inf] + healthy[6:]) == 60


def test_simulated_curve_follows_the_schedule_and_lands_on_the_final_loss():
    from tests.test_simulate import run, trial

    batches = []
    spec = trial(schedule="wsd", total_steps=1000)
    final, _ = run(spec, on_curve=batches.append)
    points = [p for batch in batches for p in batch]
    assert [p["step"] for p in points] == list(range(10, 1001, 10))  # 1,000 steps: every 10th
    losses = [p["train_loss"] for p in points]
    assert losses[-1] == pytest.approx(final.val_loss)
    decay_start = int(0.8 * 1000)  # wsd: the LR drops over the last 20%, and the loss with it
    before = next(p for p in points if p["step"] == decay_start)
    assert before["lr"] == pytest.approx(spec.train.lr)
    drop = before["train_loss"] - losses[-1]
    stable = points[59]["train_loss"] - before["train_loss"]  # steps 600..800, lr flat
    assert drop > stable > 0


def test_status_shows_a_running_trials_last_loss_and_rate(tmp_path):
    from scaling_orchestrator.orchestrator.store.results import Store, measurement_row
    from scaling_orchestrator.orchestrator.store.status import status_text
    from tests.test_store import measurement, spec

    store = Store(str(tmp_path))
    running = spec(1)
    store.write_plan([running])
    store.write_row(measurement_row(running, measurement(2)))
    CurveWriter(store, running.trial_id).extend(
        [{"step": 3, "tokens": 3072, "train_loss": 3.21049, "lr": 1e-3, "tokens_per_second": 12345.6}]
    )
    assert "| step 3 loss 3.2105 12,346 tok/s" in status_text(str(tmp_path))


def test_load_curves_joins_each_trials_columns(tmp_path):
    from scaling_orchestrator.analysis import load_curves
    from scaling_orchestrator.orchestrator.store.results import Store, measurement_row
    from tests.test_store import measurement, spec

    store = Store(str(tmp_path))
    a, b = spec(0), spec(1)
    for s in (a, b):
        store.write_row(measurement_row(s, measurement(2)))
        points = [{"step": k, "tokens": 512 * k, "train_loss": 4.0} for k in (1, 2)]
        CurveWriter(store, s.trial_id).extend(points)
    table = load_curves(str(tmp_path))
    assert table.num_rows == 4
    assert set(table.column("trial_id").to_pylist()) == {a.trial_id, b.trial_id}
    row = table.to_pylist()[0]
    assert row["params"] > 0 and row["sweep"] == a.sweep and row["peak_lr"] == a.train.lr


def _spiky_results(folder) -> tuple:
    from scaling_orchestrator.orchestrator.store.results import Store, measurement_row
    from tests.test_store import measurement, spec

    store = Store(str(folder))
    healthy, spiky = spec(0), spec(1)
    for trial, spike_at in ((healthy, None), (spiky, 70)):
        store.write_row(measurement_row(trial, measurement(100, final=True)))
        losses = [5.0 - 0.02 * k for k in range(1, 101)]
        if spike_at:
            losses[spike_at - 1] = math.nan
        points = [{"step": k, "tokens": 512 * k, "train_loss": y} for k, y in enumerate(losses, 1)]
        CurveWriter(store, trial.trial_id).extend(points)
    return healthy, spiky


def test_report_lists_a_train_loss_divergence_with_its_step(tmp_path):
    from scaling_orchestrator.analysis.report.curves import spike_blocks

    _, spiky = _spiky_results(tmp_path)
    blocks = spike_blocks(str(tmp_path))
    assert blocks[0] == ("h2", "Training-loss divergences")
    (item,) = blocks[-1][1]
    assert item.endswith(f"(trial {spiky.trial_id}): step 70")
    assert spike_blocks(str(tmp_path / "nowhere")) == []


@pytest.mark.slow  # matplotlib
def test_report_draws_the_curves(tmp_path):
    from scaling_orchestrator.analysis.report.curves import plot_curves

    _spiky_results(tmp_path)
    assert plot_curves(str(tmp_path), tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_curves("", tmp_path / "x.png") is None
