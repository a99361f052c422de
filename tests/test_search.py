"""scaling_orchestrator.orchestrator.execution.search: Tune primitives from the spec, stopped trials
finalized, and real searches
on a local Ray (ASHA that stops trials early, a seeded re-run that trains nothing twice, Optuna).

Tiny trials: 1 x 32 GPT on byte-level pydoc, 16 steps of 256 tokens (4,096 tokens), evaluated
every 1,024 tokens; ASHA with grace 1,024 and reduction factor 2 has rungs at 1,024 and 2,048
tokens (4,096 is the end). One trial at a time, so ASHA's decisions can be replayed exactly.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row

GRACE, FULL = 1024, 4096


def tiny(results, **hparams) -> dict:
    search = {
        "sizes": [1],
        "space": {"lr": {"loguniform": [1e-4, 3e-2]}},
        "search": "random",
        "num_samples": 8,
        "tokens_per_trial": FULL,
        "scheduler": {"type": "asha", "grace_period_tokens": GRACE, "reduction_factor": 2},
    }
    search.update(hparams)
    return {
        "name": "hp",
        "storage": str(results),
        "max_concurrent_trials": 1,
        "model": {"depth": {"min": 1, "max": 2}, "aspect_ratio": 32, "head_dim": 16, "seq_len": 32},
        "data": {"corpus": "pydoc", "tokenizer": "byte"},
        "train": {
            "batch_tokens": 256,
            "eval_tokens": 1024,
            "evals_per_trial": 4,
            "min_steps": 4,
            "threads": 1,
        },
        "resources": {"num_workers": 0, "cpus_per_worker": 1},
        "hparams": search,
    }


def rows_by_trial(results) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in sorted(Store(str(results)).read_table().to_pylist(), key=lambda r: (r["trial_id"], r["step"])):
        out.setdefault(row["trial_id"], []).append(row)
    return out


# -- no Ray cluster needed ------------------------------------------------------------------------
def test_tune_space_maps_the_spec_primitives(tmp_path):
    from ray.tune.search.sample import Categorical, Float, Integer

    from scaling_orchestrator.orchestrator.execution.search import tune_space

    space = {
        "lr": {"loguniform": [1e-4, 1e-2]},
        "seed": {"randint": [0, 3]},
        "warmup_fraction": {"uniform": [0, 0.1]},
        "batch_tokens": {"choice": [256, 512]},
        "weight_decay": {"grid": [0.0, 0.1]},
    }
    out = tune_space(parse_sweep(tiny(tmp_path, space=space, scheduler="fifo")).hparams)
    assert isinstance(out["lr"], Float) and (out["lr"].lower, out["lr"].upper) == (1e-4, 1e-2)
    assert isinstance(out["seed"], Integer) and (out["seed"].lower, out["seed"].upper) == (
        0,
        4,
    )  # hi inclusive
    assert isinstance(out["batch_tokens"], Categorical) and out["weight_decay"] == {"grid_search": [0.0, 0.1]}
    grid = tune_space(
        parse_sweep(
            tiny(tmp_path, search="grid", num_samples=1, space={"lr": {"choice": [1e-3, 3e-3]}})
        ).hparams
    )
    assert grid == {"lr": {"grid_search": [1e-3, 3e-3]}}


def test_resolve_casts_sampled_values_so_ids_match_the_worker(tmp_path):
    from scaling_orchestrator.orchestrator.execution.search import resolve
    from scaling_orchestrator.orchestrator.execution.tuner import apply_overrides

    base = make_plan(parse_sweep(tiny(tmp_path))).hparam_trials[0]
    config, spec = resolve({"trial": base.to_dict(), "lr": np.float64(2e-3), "batch_tokens": np.int64(512)})
    assert type(config["batch_tokens"]) is int and type(config["lr"]) is float
    assert spec.trial_id == apply_overrides(base, {"lr": 2e-3, "batch_tokens": 512}).trial_id != base.trial_id
    assert (spec.train.lr, spec.train.batch_tokens, spec.kind) == (2e-3, 512, "hparam")
    assert (spec.size_label, spec.group) == ("d1", "")


def test_finalize_stopped_marks_the_last_row_final(tmp_path):
    from scaling_orchestrator.models.training.loop import Measurement
    from scaling_orchestrator.orchestrator.execution.stops import finalize_stopped

    spec = make_plan(parse_sweep(tiny(tmp_path))).hparam_trials[0]
    store = Store(str(tmp_path / "r"))
    for step in (4, 8):
        m = Measurement(
            step=step,
            tokens=256 * step,
            flops=1.0,
            flops_6n=1.0,
            train_loss=5.0,
            val_loss=5.0,
            val_bpb=7.0,
            lr_now=1e-3,
            wall_seconds=1.0,
            tokens_per_second=1.0,
            final=False,
            status="ok",
        )
        store.write_row(measurement_row(spec, m))
    store.update_meta(spec.trial_id, status="error", error="SystemExit: 0", stopped_early=True)
    finalize_stopped(store, spec)
    rows = store.read_trial(spec.trial_id)
    assert [(r["step"], r["final"], r["status"]) for r in rows] == [(4, False, "ok"), (8, True, "ok")]
    assert spec.trial_id in store.done_trial_ids()
    meta = store.read_meta(spec.trial_id)
    assert meta["status"] == "ok" and meta["error"] is None and meta["stopped_early"]
    finalize_stopped(store, spec)  # idempotent: the driver may repeat what the trial did
    assert store.read_trial(spec.trial_id) == rows


# -- a local Ray (conftest's local_ray) ---------------------------------------------------------
@pytest.fixture(scope="module")
def asha(local_ray, tmp_path_factory):
    from scaling_orchestrator.orchestrator.execution.search import run_search

    results = tmp_path_factory.mktemp("asha")
    sweep = parse_sweep({**tiny(results), "tracking": {"tensorboard": True}})  # a tracker run per trial
    return sweep, results, run_search(make_plan(sweep), str(results), progress=False)


def _asha_stops(trials: list[list[dict]]) -> set[str]:
    """ASHA's rule (Li et al. 2020, Alg. 2; Tune's _Bracket): at each rung a trial stops when its
    loss is above the (1 - 1/rf) quantile of the losses recorded there before it; rf 2: the median."""
    recorded: dict[int, list[float]] = {GRACE: [], 2 * GRACE: []}
    stopped = set()
    for rows in trials:
        for row in rows:
            if row["tokens"] not in recorded or row["tokens"] == FULL:
                continue
            seen = recorded[row["tokens"]]
            if seen and -row["val_loss"] < np.nanpercentile([-x for x in seen], 50):
                stopped.add(row["trial_id"])
            seen.append(row["val_loss"])
            if row["trial_id"] in stopped:
                break
    return stopped


@pytest.mark.ray
@pytest.mark.slow
def test_asha_stops_trials_early_and_lands_every_row(asha):
    sweep, results, summary = asha
    (size,) = summary.sizes
    rows = rows_by_trial(results)
    store = Store(str(results))
    full_flops = FULL * make_plan(sweep).hparam_trials[0].shape.flops_per_token()
    assert size.label == "d1" and size.n_trials == 8 == len(rows) and not size.failed and not size.skipped
    assert (
        size.stopped_early and size.completed and set(size.completed) | set(size.stopped_early) == set(rows)
    )
    for tid, trial_rows in rows.items():
        assert [r["final"] for r in trial_rows] == [False] * (len(trial_rows) - 1) + [True]
        assert {(r["kind"], r["status"], r["budget_flops"]) for r in trial_rows} == {
            ("hparam", "ok", full_flops)
        }
        assert 1e-4 <= trial_rows[0]["lr"] <= 3e-2
        tokens = [r["tokens"] for r in trial_rows]
        meta = store.read_meta(tid)
        if tid in size.stopped_early:  # stopped at a rung: a final row there, not at 4,096 tokens
            assert tokens in ([1024], [1024, 2048]) and meta["stopped_at_tokens"] == tokens[-1]
        else:
            assert tokens == [1024, 2048, 3072, 4096] and not meta.get("stopped_early")
        assert meta["status"] == "ok" and meta.get("error") is None
    assert not (results / "_checkpoints").exists() or not any((results / "_checkpoints").iterdir())
    by_start = sorted(rows.values(), key=lambda rs: store.read_meta(rs[0]["trial_id"])["started"])
    assert _asha_stops(by_start) == set(size.stopped_early)
    assert size.flops_upper_bound == pytest.approx(8 * full_flops)
    assert size.flops == pytest.approx(sum(rs[-1]["flops"] for rs in rows.values()))
    assert size.flops == pytest.approx(sum(rs[-1]["tokens"] for rs in rows.values()) / FULL * full_flops)
    assert size.best["val_loss"] == min(rows[t][-1]["val_loss"] for t in size.completed)
    assert "d1 (" in str(summary) and "stopped early" in str(summary)
    runs = {p.name.split("_")[-1] for p in (results / "_tensorboard").iterdir()}  # the spec's tracker
    assert runs == set(rows)


@pytest.mark.ray
@pytest.mark.slow
def test_rerun_replays_the_same_configs_and_trains_nothing(asha):
    from scaling_orchestrator.orchestrator.execution.search import run_search

    sweep, results, first = asha
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.parquet")}
    again = run_search(make_plan(sweep), str(results), progress=False)
    (size,), (was,) = again.sizes, first.sizes
    assert sorted(size.skipped) == sorted(name[: -len(".parquet")] for name in before) and len(before) == 8
    assert set(size.stopped_early) == set(was.stopped_early) and set(size.completed) == set(was.completed)
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.parquet")} == before


@pytest.mark.ray
@pytest.mark.slow
def test_more_samples_later_train_only_the_new_configs(local_ray, tmp_path):
    from scaling_orchestrator.orchestrator.execution.search import run_search

    spec = tiny(tmp_path, num_samples=2, scheduler="fifo")
    first = run_search(make_plan(parse_sweep(spec)), str(tmp_path), progress=False).sizes[0]
    assert len(first.completed) == 2 and not first.skipped
    more = copy.deepcopy(spec)
    more["hparams"]["num_samples"] = 3  # the seeded generator draws the same two first
    second = run_search(make_plan(parse_sweep(more)), str(tmp_path), progress=False).sizes[0]
    assert sorted(second.skipped) == sorted(first.completed) and len(second.completed) == 3
    assert len(rows_by_trial(tmp_path)) == 3


@pytest.mark.slow  # a local Ray
@pytest.mark.ray  # about 5 s on a running local Ray
def test_optuna_search_smoke(local_ray, tmp_path):
    pytest.importorskip("optuna")
    from scaling_orchestrator.orchestrator.execution.search import run_search

    spec = tiny(
        tmp_path,
        search="optuna",
        num_samples=3,
        scheduler="fifo",
        space={"lr": {"loguniform": [1e-3, 3e-2]}, "batch_tokens": {"choice": [256, 512]}},
    )
    (size,) = run_search(make_plan(parse_sweep(spec)), str(tmp_path), progress=False).sizes
    rows = rows_by_trial(tmp_path)
    assert len(size.completed) == 3 == len(rows) and not size.failed
    for trial_rows in rows.values():
        assert trial_rows[-1]["final"] and trial_rows[-1]["tokens"] == FULL
        assert trial_rows[0]["batch_tokens"] in (256, 512) and 1e-3 <= trial_rows[0]["lr"] <= 3e-2
