"""run_plan on a local Ray: a sweep of tiny trials, a no-op re-run, a crash and its resume.

Tiny trials: 1 x 32 GPT on byte-level pydoc, 8 steps of 512 tokens, evaluated every 2 steps
(4 rows each). In-process trials (num_workers=0) cost about 1.5 s of Ray each here; the
TorchTrainer path is exercised by tests/test_multinode.py.
"""

from __future__ import annotations

import json
import sys

import duckdb
import pyarrow.parquet as pq
import pytest
from ray_helpers import plan_of, rows_by_trial

from scaling_orchestrator.analysis.data.parquet import COMPACT, FILES_KEY
from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.loop import TrainConfig
from scaling_orchestrator.orchestrator.execution.run import run_plan
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store
from scaling_orchestrator.orchestrator.store.status import status_text
from scaling_orchestrator.orchestrator.store.weights import kept_weights

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = [2, 4, 6, 8]


def tiny(seed: int) -> TrialSpec:
    return TrialSpec(
        sweep="local", kind="scaling",
        shape=ModelShape(n_layer=1, d_model=32, n_head=2, vocab_size=256, seq_len=32),
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=4096, batch_tokens=512, eval_every_tokens=1024,
                          eval_tokens=1024, lr=1e-3, seed=seed),
        budget_flops=1e9, resources=Resources(num_workers=0, cpus_per_worker=1))


@pytest.fixture(scope="module")
def sweep(local_ray, tmp_path_factory):
    trials = [tiny(seed) for seed in range(4)]
    results = tmp_path_factory.mktemp("sweep")
    return trials, results, run_plan(plan_of(trials), str(results), progress=False)


def test_sweep_writes_one_row_per_evaluation(sweep):
    trials, results, summary = sweep
    ids = sorted(t.trial_id for t in trials)
    assert sorted(summary.completed) == ids and summary.failed == summary.skipped == []
    rows = rows_by_trial(results)
    assert sorted(rows) == ids
    for tid, trial_rows in rows.items():
        assert [r["step"] for r in trial_rows] == STEPS
        assert [r["tokens"] for r in trial_rows] == [512 * s for s in STEPS]
        assert [r["final"] for r in trial_rows] == [False, False, False, True]
        assert {r["status"] for r in trial_rows} == {"ok"}
        assert trial_rows[0]["val_loss"] < 5.6  # below ln(256) = 5.545 + noise: it learned
    query = (f"select count(*), count(distinct trial_id), sum(final::int) "
             f"from read_parquet('{results}/*.parquet')")
    assert duckdb.sql(query).fetchall() == [(16, 4, 4)]
    # the study run ended by compacting its rows: every row file listed, 16 rows
    listing = json.loads(pq.read_schema(results / COMPACT).metadata[FILES_KEY])
    assert sorted(name for name, *_ in listing) == [f"{tid}.parquet" for tid in ids]
    assert pq.read_metadata(results / COMPACT).num_rows == 16
    meta = Store(str(results)).read_meta(ids[0])
    assert meta["attempts"] == 1 and meta["status"] == "ok" and meta["node_id"]
    # every finished trial keeps its model, and says where
    assert meta["weights"] == f"{results}/_weights/{ids[0]}"
    assert sorted(kept_weights(Store(str(results)))) == ids


def test_rerun_of_a_finished_study_starts_nothing(sweep):
    trials, results, _ = sweep
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.parquet")}
    again = run_plan(plan_of(trials), str(results), progress=False)
    assert sorted(again.skipped) == sorted(t.trial_id for t in trials)
    assert again.completed == again.failed == []
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.parquet")} == before
    assert "4 trials | 4 done, 0 diverged, 0 failed, 0 running, 0 pending" in status_text(
        str(results))


def test_crash_then_rerun_resumes_without_duplicate_rows(sweep, tmp_path):
    trials = sweep[0][:2]
    ids = sorted(t.trial_id for t in trials)
    # each trial raises once, after its step-4 row and before that checkpoint is kept
    crashed = run_plan(plan_of(trials, max_failures=0), str(tmp_path), progress=False,
                       extra_config={"fail_at_step": 4})
    assert sorted(crashed.failed) == ids and crashed.completed == []
    rows = rows_by_trial(tmp_path)
    assert {tid: [(r["step"], r["status"]) for r in rs] for tid, rs in rows.items()} == {
        tid: [(2, "ok"), (4, "failed")] for tid in ids}
    assert "2 failed" in status_text(str(tmp_path)) and "_trials" in status_text(str(tmp_path))

    resumed = run_plan(plan_of(trials, max_failures=0), str(tmp_path), progress=False,
                       extra_config={"fail_at_step": 4})
    assert sorted(resumed.completed) == ids
    query = f"select count(*), count(distinct (trial_id, step)) from read_parquet('{tmp_path}/*.parquet')"
    assert duckdb.sql(query).fetchall() == [(8, 8)]
    uninterrupted = rows_by_trial(sweep[1])
    for tid, trial_rows in rows_by_trial(tmp_path).items():
        assert [r["step"] for r in trial_rows] == STEPS
        # resumed from the step-2 checkpoint: bitwise the same losses as the unbroken run
        assert [r["val_loss"] for r in trial_rows] == [r["val_loss"] for r in uninterrupted[tid]]
        meta = Store(str(tmp_path)).read_meta(tid)
        assert meta["attempts"] == 2 and meta["resumed_from_checkpoint"]


def test_failure_config_retries_within_one_run(sweep, tmp_path):
    trial = sweep[0][2]
    summary = run_plan(plan_of([trial], max_failures=1), str(tmp_path), progress=False,
                       extra_config={"fail_at_step": 6})
    assert summary.completed == [trial.trial_id]
    rows = rows_by_trial(tmp_path)[trial.trial_id]
    assert [r["step"] for r in rows] == STEPS
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in
                                             rows_by_trial(sweep[1])[trial.trial_id]]
    assert Store(str(tmp_path)).read_meta(trial.trial_id)["attempts"] == 2


def test_tunes_own_trial_logs_are_off_and_their_absence_is_not_warned(sweep):
    import logging

    _, results, _ = sweep  # the rows are the record: no second copy in Tune's per-trial logs
    assert not list(results.rglob("progress.csv")) and not list(results.rglob("result.json"))
    analysis, seen = logging.getLogger("ray.tune.analysis.experiment_analysis"), []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    analysis.addHandler(handler)
    try:
        analysis.warning("Failed to fetch metrics for 4 trial(s):\n- a: FileNotFoundError()")
        analysis.warning("another warning")
    finally:
        analysis.removeHandler(handler)
    assert seen == ["another warning"]


@pytest.mark.slow  # a task on the session's local Ray, under a second once it is up
def test_the_workers_of_a_local_ray_import_this_checkout(local_ray):
    """start_local_ray hands its workers the checkout's root on PYTHONPATH (a source checkout
    runs without `pip install`) through the environment, not a runtime_env."""
    import ray  # the test's own task; collecting this module need not load Ray

    from scaling_orchestrator.orchestrator.execution.tuner import SOURCE_ROOT

    @ray.remote(num_cpus=0)
    def where() -> tuple[list[str], str]:
        import scaling_orchestrator

        return sys.path, scaling_orchestrator.__file__

    path, package = ray.get(where.remote())
    assert SOURCE_ROOT in path and package.startswith(SOURCE_ROOT)
    assert not ray.get_runtime_context().runtime_env.get("env_vars")
