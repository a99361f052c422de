"""Trainers of the user's own on a local Ray: an ASHA stop of a command trial ends its process
and leaves a final row; a function trainer as the train_loop_per_worker of a 2-worker
TorchTrainer, rank 0's reports (and curve points) recorded.

The command is tests/trainers/fake_trainer.py (no training: its loss a formula of tokens and lr);
the function is written beside the test. Each test prints what it found (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from ray_helpers import plan_of, rows_by_trial

from scaling_orchestrator.analysis import load_curves
from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.execution.run import run_plan
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FAKE = Path(__file__).parent / "trainers" / "fake_trainer.py"
WORKER_FUNCTION = '''
import torch
import torch.distributed as dist

def train(ctx):
    for tokens in ctx.trial["eval_at_tokens"]:
        ctx.report(tokens=tokens - 256, train_loss=5.0 + ctx.rank, lr=1e-3)   # a curve point
        total = torch.tensor([float(ctx.rank + 1)])
        dist.all_reduce(total)   # the process group Ray Train set up: 1 + 2 over 2 ranks
        ctx.report(tokens=tokens, val_loss=6.0 * tokens ** -0.1, rank=ctx.rank,
                   world_size=ctx.world_size, rank_sum=total.item())
'''


def trial(trainer: dict, *, workers: int = 0, cpus: float = 1.0, lr: float = 1e-3) -> TrialSpec:
    return TrialSpec(
        sweep="ext", kind="scaling",
        shape=ModelShape(n_layer=1, d_model=32, n_head=2, vocab_size=256, seq_len=32),
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=4096, batch_tokens=512, eval_every_tokens=1024, eval_tokens=1024,
                          lr=lr),
        budget_flops=1e9, trainer=trainer,
        resources=Resources(num_workers=workers, cpus_per_worker=cpus))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_an_asha_stop_ends_the_command_and_leaves_a_final_row(local_ray, tmp_path):
    from ray import tune

    from scaling_orchestrator.orchestrator import asha_for, with_trial_resources

    spec = trial({"kind": "command", "command": f"{{python}} -S {FAKE} ok {tmp_path} 1.5"})
    results = str(tmp_path / "results")
    # one at a time, the better lr first: the second reaches the first rung worse and is stopped
    grid = tune.Tuner(
        with_trial_resources(spec),
        param_space={"trial": spec.to_dict(), "results_dir": results, "lr": tune.grid_search([1e-3, 0.5])},
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=asha_for(spec),
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0),
    ).fit()
    store = Store(results)
    rows = {tid: store.read_trial(tid) for tid in set(store.read_table()["trial_id"].to_pylist())}
    by_lr = {r[-1]["lr"]: tid for tid, r in rows.items()}
    stopped = by_lr[0.5]
    starts = [json.loads(line) for line in (tmp_path / "starts.jsonl").read_text().splitlines()]
    pids = [s["pid"] for s in starts if s["trial_id"] == stopped]
    deadline = time.time() + 20
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    print(f"\n[asha command] stopped trial rows {[(r['tokens'], r['final']) for r in rows[stopped]]}, "
          f"its processes alive {[alive(p) for p in pids]}, full trial rows {len(rows[by_lr[1e-3]])}")
    assert not grid.errors and len(rows) == 2
    assert [r["tokens"] for r in rows[by_lr[1e-3]]] == [1024, 2048, 3072, 4096]
    assert [(r["tokens"], r["final"], r["status"]) for r in rows[stopped]] == [(1024, True, "ok")]
    assert store.read_meta(stopped)["stopped_early"] and rows[stopped][0]["backend"] == "command"
    assert pids and not any(alive(p) for p in pids)


def test_a_function_trainer_under_a_two_worker_torchtrainer(local_ray, tmp_path):
    (tmp_path / "lab_ddp.py").write_text(WORKER_FUNCTION)
    # 2 workers x 0.5 CPU + the 0.01-CPU driver fit the session's 2 CPUs
    spec = trial({"kind": "python", "function": "lab_ddp:train", "spec_dir": str(tmp_path)}, workers=2,
                 cpus=0.5)
    summary = run_plan(plan_of([spec], max_failures=0), str(tmp_path / "results"), progress=False,
                       extra_config={"torch_backend": "gloo"})
    rows = rows_by_trial(tmp_path / "results")[spec.trial_id]
    extras = [json.loads(r["metrics"]) for r in rows]
    print(f"\n[function, 2 workers] completed {summary.completed}, rows {len(rows)}, metrics {extras[0]}")
    assert summary.completed == [spec.trial_id]
    assert [r["tokens"] for r in rows] == [1024, 2048, 3072, 4096] and rows[-1]["final"]
    assert all(e == {"rank": 0, "world_size": 2, "rank_sum": 3.0} for e in extras)  # rank 0's
    assert rows[0]["backend"] == "python" and os.path.exists(Store(str(tmp_path / "results")).log_file(
        spec.trial_id))
    curve = load_curves(str(tmp_path / "results"))  # rank 0's curve points, in _curves/
    assert curve["tokens"].to_pylist() == [768, 1792, 2816, 3840]
    assert set(curve["train_loss"].to_pylist()) == {5.0}
