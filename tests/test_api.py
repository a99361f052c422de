"""The programmatic API: names that load without Ray, and our trainable inside a user's own Tuner:
a relative results_dir read from the driver's directory, asha_for counting in tokens, how a stop
ends a trial in the store, and the scheduler that stops every trial at its first report named.

Tiny trials: 1 layer on byte-level pydoc, 512-token steps, 4 evaluations each.
"""

import os

import pytest
import yaml

from scaling_orchestrator.models.training.config import Measurement
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row


@pytest.mark.slow  # a Python subprocess
def test_lazy_api_names_resolve_without_ray():
    """Every name but adaptive_searcher (a Ray Searcher) resolves without loading Ray; the
    types users get back are among them."""
    import subprocess
    import sys

    code = (
        "import sys, scaling_orchestrator.orchestrator as o\n"
        "assert 'ray' not in sys.modules and 'scaling_orchestrator.orchestrator.spec' not in sys.modules\n"
        "[getattr(o, n) for n in o.__all__ if n != 'adaptive_searcher']\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_the_api_gives_back_typed_results(tmp_path):
    import pyarrow as pa

    import scaling_orchestrator.orchestrator as api
    from scaling_orchestrator.orchestrator.execution.run import RunSummary
    from scaling_orchestrator.orchestrator.plan.build import Plan
    from scaling_orchestrator.orchestrator.spec.sweep import Sweep
    from scaling_orchestrator.orchestrator.spec.trial import TrialSpec

    assert {"Sweep", "Plan", "RunSummary", "TrialSpec", "load_sweep", "make_plan", "run_plan", "run_search",
            "read_results"} <= set(api.__all__)
    assert (api.Sweep, api.Plan, api.RunSummary, api.TrialSpec) == (Sweep, Plan, RunSummary, TrialSpec)
    trial = api_trial(tmp_path)
    store = Store(str(tmp_path / "r"))
    write_evaluations(store, trial, 2)
    table = api.read_results(str(tmp_path / "r"))
    assert isinstance(table, pa.Table) and table.num_rows == 2
    assert table.column("trial_id").to_pylist() == [trial.trial_id] * 2
    with pytest.raises(FileNotFoundError, match="not found"):
        api.read_results(str(tmp_path / "nothing"))


def api_trial(tmp_path):
    from scaling_orchestrator.orchestrator import load_sweep, make_plan

    spec = {
        "name": "api",
        "budgets_flops": [1.2e10],
        "sizes_per_budget": 3,
        "model": {"depth": {"min": 1, "max": 3}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 64},
        "data": {"corpus": "pydoc", "tokenizer": "byte"},
        "train": {"batch_tokens": 512, "evals_per_trial": 4, "eval_tokens": 1024},
        "resources": {"num_workers": 0, "cpus_per_worker": 1},
    }
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(spec))
    return make_plan(load_sweep(str(path))).trials[0]


def write_evaluations(store: Store, spec, count: int) -> None:
    every = spec.train.eval_every_steps
    for k in range(1, count + 1):
        step = k * every
        store.write_row(
            measurement_row(
                spec,
                Measurement(
                    step=step,
                    tokens=step * spec.train.batch_tokens,
                    flops=1.0,
                    flops_6n=1.0,
                    train_loss=5.0,
                    val_loss=5.0,
                    val_bpb=7.0,
                    lr_now=1e-3,
                    wall_seconds=1.0,
                    tokens_per_second=1.0,
                    final=step == spec.train.total_steps,
                    status="ok",
                ),
            )
        )


# -- no Ray cluster --------------------------------------------------------------------------------
def test_asha_for_counts_in_the_trials_own_tokens(tmp_path):
    from scaling_orchestrator.orchestrator import asha_for

    trial = api_trial(tmp_path)
    asha = asha_for(trial)
    first_eval = trial.train.eval_every_steps * trial.train.batch_tokens
    assert asha._time_attr == "tokens" and asha._max_t == trial.train.total_tokens
    rungs = [milestone for milestone, _ in asha._brackets[0]._rungs]
    assert min(rungs) == first_eval < trial.train.total_tokens  # grace: the first evaluation
    assert 100 < first_eval  # Ray's default max_t, read in tokens, would stop every trial there


def test_a_relative_results_dir_is_read_from_the_drivers_directory(tmp_path, monkeypatch):
    from scaling_orchestrator.orchestrator.execution import worker
    from scaling_orchestrator.orchestrator.execution.tuner import results_dir_for

    trial = api_trial(tmp_path)
    monkeypatch.setattr(worker, "trainable", lambda config: config["results_dir"])
    monkeypatch.chdir(tmp_path)
    wrapped = worker.with_trial_resources(trial)  # the driver's directory, captured here
    (tmp_path / "working_dirs").mkdir()
    monkeypatch.chdir(tmp_path / "working_dirs")  # where Tune runs each trial
    assert wrapped({"results_dir": "results/lr-search"}) == str(tmp_path / "results" / "lr-search")
    for given in ("/abs/r", "s3://b/r"):
        assert wrapped({"results_dir": given}) == given
    # the bare trainable: Tune's variable for the directory a trial process started in
    monkeypatch.setenv("TUNE_ORIG_WORKING_DIR", str(tmp_path))
    assert results_dir_for(trial, {"results_dir": "r"}) == str(tmp_path / "r")
    monkeypatch.delenv("TUNE_ORIG_WORKING_DIR")
    assert results_dir_for(trial, {"results_dir": "r"}) == str(tmp_path / "working_dirs" / "r")


def test_sampled_numpy_values_train_the_trial_a_plain_value_names(tmp_path):
    import numpy as np

    from scaling_orchestrator.orchestrator.execution.tuner import apply_overrides

    trial = api_trial(tmp_path)
    sampled = apply_overrides(
        trial, {"seed": np.int64(3), "lr": np.float64(2e-3)}
    )  # tune.randint, loguniform
    assert sampled.trial_id == apply_overrides(trial, {"seed": 3, "lr": 2e-3}).trial_id != trial.trial_id
    assert type(sampled.train.seed) is int and type(sampled.train.lr) is float


def test_a_stop_the_scheduler_recorded_makes_the_last_row_a_finished_point(tmp_path):
    from scaling_orchestrator.orchestrator.execution.stops import record_stop, stopped

    trial = api_trial(tmp_path)
    store = Store(str(tmp_path / "r"))
    write_evaluations(store, trial, 2)
    tokens = 2 * trial.train.eval_every_steps * trial.train.batch_tokens
    record_stop({"trial": trial.to_dict(), "results_dir": store.uri}, tokens)
    stopped(store, trial)
    rows = store.read_trial(trial.trial_id)
    assert [(r["final"], r["status"]) for r in rows] == [(False, "ok"), (True, "ok")]
    meta = store.read_meta(trial.trial_id)
    assert meta["stopped_early"] and meta["stopped_at_tokens"] == tokens
    assert trial.trial_id in store.done_trial_ids()


def test_an_unrecorded_stop_at_the_first_report_is_named_in_one_line(tmp_path, capsys):
    from scaling_orchestrator.orchestrator.execution.stops import stopped
    from scaling_orchestrator.orchestrator.execution.tuner import apply_overrides

    first = api_trial(tmp_path)
    second = apply_overrides(first, {"lr": 1e-2})
    store = Store(str(tmp_path / "r"))
    write_evaluations(store, first, 1)
    stopped(store, first)
    meta = store.read_meta(first.trial_id)
    tokens = first.train.eval_every_steps * 512
    assert meta["status"] == "stopped" and meta["error"].startswith(
        f"trial {first.trial_id} was stopped at its first evaluation ({tokens:,} of "
        f"{first.train.total_tokens:,} tokens) before any other trial had reported"
    )
    assert "scaling_orchestrator.orchestrator.asha_for(spec)" in meta["error"]
    assert capsys.readouterr().err == f"scaling: error: {meta['error']}\n"
    assert not store.read_trial(first.trial_id)[-1]["final"]  # not a finished point: resumable
    # a peer had reported: ASHA may have compared them, so no claim; a later stop neither
    write_evaluations(store, second, 1)
    stopped(store, second)
    write_evaluations(store, first, 2)
    stopped(store, first)
    for spec in (first, second):
        meta = store.read_meta(spec.trial_id)
        assert meta["status"] == "stopped" and meta["error"] is None and "stopped by Tune at" in meta["note"]
    assert capsys.readouterr().err == ""


# -- a local Ray -------------------------------------------------------------------------------------
def users_tuner(trial, scheduler, lrs, results: str, storage, concurrency: int, reuse_actors=False):
    from ray import tune

    from scaling_orchestrator.orchestrator import with_trial_resources

    return tune.Tuner(
        with_trial_resources(trial),
        param_space={"trial": trial.to_dict(), "results_dir": results, "lr": tune.grid_search(lrs)},
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            scheduler=scheduler,
            max_concurrent_trials=concurrency,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
    )


@pytest.mark.ray
@pytest.mark.slow
def test_trainable_in_a_users_own_tuner(local_ray, tmp_path, monkeypatch):
    from ray.tune.schedulers import ASHAScheduler

    from scaling_orchestrator.orchestrator import asha_for

    trial = api_trial(tmp_path)
    monkeypatch.chdir(tmp_path)
    lrs = [1e-3, 3e-3, 1e-2, 3e-2]
    grid = users_tuner(trial, asha_for(trial), lrs, "results", tmp_path / "tune", 2).fit()
    # Ray's default max_t=100, read in tokens: every trial stops at its first report. Actors
    # reused: Tune then waits for the first trial's thread (2 s) to write what it saw, where
    # a fresh actor per trial may end it first (its stderr line comes first either way)
    plain = users_tuner(
        trial,
        ASHAScheduler(time_attr="tokens"),
        [2e-3, 5e-3],
        "plain",
        tmp_path / "tune",
        1,
        reuse_actors=True,
    ).fit()
    assert not grid.errors and len(grid) == 4 and not plain.errors
    store = Store(str(tmp_path / "results"))
    rows = {tid: store.read_trial(tid) for tid in set(store.read_table()["trial_id"].to_pylist())}
    assert sorted(r[-1]["lr"] for r in rows.values()) == lrs  # each config is its own trial
    full = [tid for tid, r in rows.items() if r[-1]["tokens"] == trial.train.total_tokens]
    assert full  # ASHA never stops the first trial to reach a rung
    for tid, trial_rows in rows.items():
        assert trial_rows[-1]["final"] and trial_rows[-1]["status"] == "ok"
        assert tid in full or store.read_meta(tid)["stopped_early"]
    assert grid.get_best_result().config["lr"] in lrs
    tune_files = [f for _, _, files in os.walk(tmp_path / "tune") for f in files]
    assert tune_files and not [f for f in tune_files if f.endswith(".parquet")]

    store = Store(str(tmp_path / "plain"))
    by_lr = {store.read_trial(t)[-1]["lr"]: t for t in set(store.read_table()["trial_id"].to_pylist())}
    metas = {lr: store.read_meta(tid) for lr, tid in by_lr.items()}
    assert sorted(metas) == [2e-3, 5e-3] and metas[2e-3]["status"] == "stopped"
    assert "stopped at its first evaluation" in metas[2e-3]["error"]  # the first to report
    assert metas[5e-3].get("error") is None  # a peer had reported first: nothing to claim
    assert not any(store.read_trial(t)[-1]["final"] for t in by_lr.values())
