"""Faults inside one `run_plan` on a local Ray: a worker that crashes once (in-process trial and
TorchTrainer trial), errors a retry would repeat (run once, reported with their reason), a
trial whose loss turns NaN, a trial the cluster can never place.

Each test prints its figures (rows expected vs found, duplicate (trial_id, step) pairs); see
them with `pytest -s`. Tiny trials: 1 x 32 GPT on byte-level pydoc, 8 steps of 512 tokens,
evaluated every 2 steps (4 rows), about 0.3 s of training each on 2 cores.
"""

from __future__ import annotations

import collections
import dataclasses
import socket

import pyarrow.dataset as ds
import pytest
from ray_helpers import plan_of, rows_by_trial

from scaling_orchestrator.analysis.data.load import load_points
from scaling_orchestrator.cli.study import main
from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.loop import TrainConfig, train
from scaling_orchestrator.orchestrator.execution.run import run_plan
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store
from scaling_orchestrator.orchestrator.store.status import status_text

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = [2, 4, 6, 8]


def tiny(seed: int = 0, *, d_model: int = 32, lr: float = 1e-3, workers: int = 0,
         gpus: float = 0.0) -> TrialSpec:
    return TrialSpec(
        sweep="faults", kind="scaling",
        shape=ModelShape(n_layer=1, d_model=d_model, n_head=2, vocab_size=256, seq_len=32),
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=4096, batch_tokens=512, eval_every_tokens=1024,
                          eval_tokens=1024, lr=lr, seed=seed),
        budget_flops=1e9,
        resources=Resources(num_workers=workers, cpus_per_worker=1, gpus_per_worker=gpus))


def duplicates(results) -> int:
    """(trial_id, step) pairs that occur more than once across the folder's row files."""
    table = ds.dataset(str(results), format="parquet").to_table(columns=["trial_id", "step"])
    counts = collections.Counter(zip(table["trial_id"].to_pylist(), table["step"].to_pylist()))
    return sum(n - 1 for n in counts.values() if n > 1)


def reference_losses(spec: TrialSpec) -> list[float]:
    """val_loss at every evaluation of an uninterrupted run, no Ray (1 thread, as the trial)."""
    losses = []
    train(spec.shape, dataclasses.replace(spec.train, threads=1), prepare_data(spec.data),
          on_eval=lambda m, ckpt: losses.append(m.val_loss))
    return losses


def report(fault: str, expected: int, found: int, dups: int, extra: str = "") -> None:
    print(f"\n[fault] {fault}: rows expected {expected}, found {found}, duplicates {dups}"
          + (f"; {extra}" if extra else ""))


def test_worker_crash_in_process_resumes_within_the_run(local_ray, tmp_path):
    trials = [tiny(seed) for seed in (10, 11)]
    # each trial raises once after its step-4 row, before that checkpoint is kept: Tune's
    # FailureConfig retries it, the retry resumes from the step-2 checkpoint
    summary = run_plan(plan_of(trials, max_failures=1), str(tmp_path), progress=False,
                       extra_config={"fail_at_step": 4})
    rows = rows_by_trial(tmp_path)
    found = sum(len(r) for r in rows.values())
    report("worker crash, in-process", 4 * len(trials), found, duplicates(tmp_path),
           f"completed {len(summary.completed)}/{len(trials)}")
    assert sorted(summary.completed) == sorted(t.trial_id for t in trials)
    assert found == 8 and duplicates(tmp_path) == 0
    store = Store(str(tmp_path))
    for spec in trials:
        trial_rows = rows[spec.trial_id]
        assert [r["step"] for r in trial_rows] == STEPS
        assert [r["final"] for r in trial_rows] == [False, False, False, True]
        assert [r["val_loss"] for r in trial_rows] == reference_losses(spec)  # bitwise resume
        meta = store.read_meta(spec.trial_id)
        assert meta["attempts"] == 2 and meta["resumed_from_checkpoint"]
        assert store.read_bytes(store.path("_trials", f"{spec.trial_id}.injected")) == b"4"


def test_worker_crash_torchtrainer_resumes_within_the_run(local_ray, tmp_path):
    spec = tiny(20, workers=1)
    summary = run_plan(plan_of([spec], max_failures=1), str(tmp_path), progress=False,
                       extra_config={"fail_at_step": 4, "torch_backend": "gloo"})
    trial_rows = rows_by_trial(tmp_path).get(spec.trial_id, [])
    report("worker crash, TorchTrainer (1 worker, gloo)", 4, len(trial_rows),
           duplicates(tmp_path), f"completed {len(summary.completed)}/1")
    assert summary.completed == [spec.trial_id]
    assert [r["step"] for r in trial_rows] == STEPS and duplicates(tmp_path) == 0
    assert [r["val_loss"] for r in trial_rows] == reference_losses(spec)
    meta = Store(str(tmp_path)).read_meta(spec.trial_id)
    # Train's own FailureConfig restarted the worker group from its step-2 checkpoint
    assert meta["attempts"] == 2 and meta["resumed_from_checkpoint"]


def test_an_error_a_retry_would_repeat_runs_once_and_is_reported(local_ray, tmp_path):
    # Both pass construction and fail before the first step, the same way on every attempt: a
    # model vocabulary smaller than the bytes' 256, in-process and in a TorchTrainer worker group
    # (which Train would retry too).
    narrow = dataclasses.replace(tiny(41), shape=dataclasses.replace(tiny(41).shape, vocab_size=128))
    narrow_group = dataclasses.replace(tiny(42, workers=1), shape=narrow.shape)
    trials = [narrow, narrow_group]
    results = tmp_path / "results"
    summary = run_plan(plan_of(trials, max_failures=2), str(results), progress=False,
                       extra_config={"torch_backend": "gloo"})
    store = Store(str(results))
    report("repeating errors (vocab 128 < 256, in-process and in a group)", 2, 2, duplicates(results),
           "; ".join(str(f) for f in summary.failures))
    assert sorted(summary.failed) == sorted(t.trial_id for t in trials)
    for spec in trials:
        meta = store.read_meta(spec.trial_id)
        assert meta["attempts"] == 1 and meta["status"] == "failed"  # max_failures 2: not retried
        assert meta["error"].startswith("ValueError: ModelShape.vocab_size=128: must be >= the data's")
        assert "\n" not in meta["error"]
        rows = store.read_trial(spec.trial_id)
        assert [(r["step"], r["final"], r["status"]) for r in rows] == [(0, True, "failed")]
        with open(store.log_file(spec.trial_id)) as f:
            assert f.read().count("Traceback") == 1
        line = f"failed: {spec.trial_id}: {meta['error']} (log: {store.log_file(spec.trial_id)})"
        assert f"  {line}" in str(summary).splitlines() and line in status_text(str(results))


def test_a_corpus_missing_where_the_study_runs_is_refused_before_tune(tmp_path):
    # The driver checks every trial's paths before Tune starts
    # (scaling_orchestrator.orchestrator.spec.paths.check_on_driver):
    # one line naming this node and the path, and nothing written. No Ray is started.
    corpus = DataSpec(corpus=str(tmp_path / "no-such.txt"), tokenizer="byte")
    missing_group = dataclasses.replace(tiny(42, workers=1), data=corpus)
    results = tmp_path / "results"
    with pytest.raises(ValueError) as info:
        run_plan(plan_of([tiny(40), missing_group], max_failures=2), str(results), progress=False)
    message = str(info.value)
    print(f"\n[fault] a corpus missing on the driver: {message}")
    assert message.startswith(
        f"node {socket.gethostname()} (driver): data.corpus: '{tmp_path / 'no-such.txt'}'"
    )
    assert "\n" not in message and Store(str(results)).done_trial_ids() == set()


def test_divergence_is_recorded_excluded_and_reported(local_ray, tmp_path):
    healthy = [tiny(0, d_model=d) for d in (16, 32, 64)]
    blown = tiny(0, d_model=32, lr=1e4)  # Adam steps of 1e4 per weight: NaN at the first eval
    results, out = tmp_path / "results", tmp_path / "report"
    summary = run_plan(plan_of([*healthy, blown]), str(results), progress=False)
    rows = rows_by_trial(results)
    last = rows[blown.trial_id][-1]
    report(
        "divergence (lr 1e4)",
        4 * len(healthy) + 1,
        sum(len(r) for r in rows.values()),
        duplicates(results),
        f"diverged {summary.diverged}, its last row {last['step']}/{last['status']}/final={last['final']}",
    )
    assert summary.diverged == [blown.trial_id]
    assert sorted(summary.completed) == sorted(t.trial_id for t in healthy)
    assert last["final"] and last["status"] == "diverged" and last["step"] < 8
    assert [r["status"] for r in rows[blown.trial_id]] == ["diverged"]  # no "ok" NaN row kept
    assert Store(str(results)).done_trial_ids() == {t.trial_id for t in [*healthy, blown]}
    points = load_points(str(results))
    assert points.excluded == {"diverged": 1} and len(points) == 3
    assert blown.trial_id not in set(points.run)
    assert main(["report", str(results), "--out", str(out), "--bootstrap", "0"]) == 0
    text = (out / "report.md").read_text()
    assert blown.trial_id in text and "diverged" in text
    assert "excluded" in (out / "fit.json").read_text()


def test_gpus_beyond_the_cluster_refused_before_tune(local_ray, tmp_path):
    spec = tiny(30, workers=1, gpus=2)
    results = tmp_path / "never"
    with pytest.raises(ValueError) as info:
        run_plan(plan_of([spec]), str(results), progress=False)
    message = str(info.value)
    print(f"\n[fault] 2 GPUs per worker on a 0-GPU cluster: {message}")
    assert "\n" not in message
    assert message.startswith("resources.gpus_per_worker=2 x num_workers=1")
    assert "the cluster has GPU=0 in total" in message
    assert not results.exists()  # refused before the lock, the plan or Tune touched anything
