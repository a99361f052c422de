"""The README's programmatic API: plan from a spec, and our trainable inside a user's own Tuner."""

import pyarrow.dataset as ds
import pytest
import yaml

from analysis.schema import check_table


def test_lazy_api_names_resolve_without_ray():
    import subprocess
    import sys

    code = ("import sys, orchestrator as o; o.load_sweep, o.make_plan, o.TrialSpec; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_trainable_in_a_users_own_tuner_with_asha(tmp_path):
    import ray
    from ray import tune

    from orchestrator import load_sweep, make_plan, with_trial_resources
    from orchestrator.tuner import start_local_ray

    spec = {"name": "api", "budgets_flops": [1.2e10], "sizes_per_budget": 3,
            "model": {"depth": {"min": 1, "max": 3}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 64},
            "data": {"corpus": "pydoc", "tokenizer": "byte"},
            "train": {"batch_tokens": 512, "evals_per_trial": 4, "eval_tokens": 1024},
            "resources": {"num_workers": 0, "cpus_per_worker": 1}}
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(spec))
    trial = make_plan(load_sweep(str(path))).trials[0]
    results = tmp_path / "results"

    start_local_ray(num_cpus=2)
    try:
        tuner = tune.Tuner(
            with_trial_resources(trial),
            param_space={"trial": trial.to_dict(), "results_dir": str(results),
                         "lr": tune.grid_search([1e-3, 3e-3, 1e-2, 3e-2])},
            tune_config=tune.TuneConfig(metric="val_loss", mode="min", max_concurrent_trials=2,
                                        scheduler=tune.schedulers.ASHAScheduler(
                                            time_attr="tokens", grace_period=1, reduction_factor=2)),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0))
        grid = tuner.fit()
    finally:
        ray.shutdown()
    assert not grid.errors and len(grid) == 4
    table = check_table(ds.dataset(str(results), format="parquet").to_table())
    lrs = sorted(set(table.column("lr").to_pylist()))
    assert lrs == [1e-3, 3e-3, 1e-2, 3e-2]  # each config is its own trial (id from the override)
    assert len(set(table.column("trial_id").to_pylist())) == 4
    pairs = list(zip(table.column("trial_id").to_pylist(), table.column("step").to_pylist()))
    assert len(pairs) == len(set(pairs))
    assert grid.get_best_result().config["lr"] in lrs
