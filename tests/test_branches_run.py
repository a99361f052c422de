"""A branching study on a local Ray, end to end through run_plan, and its faults: a trunk killed
between two of its branch points, and the driver killed while branches run.

The study (SPEC): 3 tiny GPTs on byte-level pydoc, budgets 6e9 and 1.2e10 FLOPs plus 2.4e10
held out; 3 trunks (138..505 steps of 512 tokens) and 9 branches (43..631 steps, each training
only its last 20%), about 8e10 FLOPs in all: a few seconds of training on 2 cores, the rest is
Ray. Four 0.5-CPU slots, so the trunks run together and a branch takes the fourth slot as soon
as its checkpoint is kept. Figures print with `pytest -s`.

Measured with the machine's 2 cores shared with other work (load average 5-8): the clean study
71 s (Ray's start included), the trunk fault 41 s, the driver kill 112 s (two drivers, each
starting Ray: 47 s to the first final branch, 65 s for the rerun).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_helpers import rows_by_trial

from scaling_orchestrator.analysis.data.load import load_points
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.execution.run import run_plan
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
from scaling_orchestrator.orchestrator.store.results import Store

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
name: branchrun
budgets_flops: [6e9, 1.2e10]
held_out_budgets_flops: [2.4e10]
sizes_per_budget: 3
model:
  shapes:
    - {n_layer: 1, d_model: 16, n_head: 2}
    - {n_layer: 1, d_model: 32, n_head: 2}
    - {n_layer: 2, d_model: 32, n_head: 2}
  seq_len: 32
data: {corpus: pydoc, tokenizer: byte}
train: {batch_tokens: 512, evals_per_trial: 2, eval_tokens: 1024, threads: 1, min_steps: 10}
resources: {num_workers: 0, cpus_per_worker: 0.5}
max_concurrent_trials: 4
max_failures: 1
design: branches
"""
N_TRIALS = 12


def study(tmp_path: Path, *, held_out: bool = True):
    """The spec's file and plan; held_out=False drops the 2.4e10 budget (3 trunks half as long,
    6 branches)."""
    spec = tmp_path / "branches.yaml"
    spec.write_text(SPEC if held_out else SPEC.replace("held_out_budgets_flops: [2.4e10]\n", ""))
    return spec, make_plan(load_sweep(str(spec)))


def planned_pairs(plan) -> set[tuple[str, int]]:
    """(trial_id, step) of every evaluation: every eval_every_steps after the trial's first step
    (a branch's is its branch point), at each of a trunk's branch points, and at the last step."""
    out = set()
    for t in plan.trials:
        first, every, total = (
            t.branch_tokens // t.train.batch_tokens,
            t.train.eval_every_steps,
            t.train.total_steps,
        )
        steps = (
            {s for s in range(every, total + 1, every) if s > first} | set(t.train.eval_at_steps) | {total}
        )
        out |= {(t.trial_id, s) for s in steps}
    return out


def check_rows(results: Path, plan) -> dict[str, list[dict]]:
    """Every planned evaluation once, every trial final once with status ok; returns the rows."""
    rows = rows_by_trial(results)
    found = [(r["trial_id"], r["step"]) for trial in rows.values() for r in trial]
    dups = sum(n - 1 for n in collections.Counter(found).values() if n > 1)
    expected = planned_pairs(plan)
    print(f"rows expected {len(expected)}, found {len(found)}, duplicates {dups}")
    assert dups == 0 and set(found) == expected
    for trial in rows.values():
        assert [r["final"] for r in trial] == [False] * (len(trial) - 1) + [True]
        assert trial[-1]["status"] == "ok"
    return rows


def scaling(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scaling_orchestrator", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_driver_killed_while_branches_run_rerun_finishes_without_redoing_work(tmp_path):
    """Two drivers, each starting its own local Ray, on the study without its held-out budget."""
    spec, plan = study(tmp_path, held_out=False)
    results = tmp_path / "results"
    store = Store(str(results), create=False)
    branches = {t.trial_id for t in plan.trials if t.parent_trial_id}
    command = ("run", str(spec), "--results", str(results), "--no-progress")
    started = time.time()
    a = scaling(*command)
    try:
        deadline = time.time() + 240
        while not (store.done_trial_ids() & branches) and time.time() < deadline and a.poll() is None:
            time.sleep(0.05)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
    finally:
        if a.poll() is None:
            a.kill()
    done = store.done_trial_ids()
    kept = {tid: (os.stat(store.trial_file(tid)).st_mtime_ns, store.read_trial(tid)) for tid in done}
    killed = time.time()
    c = scaling(*command)
    out, err = c.communicate(timeout=300)
    print(f"\n[fault] first driver ran {killed - started:.0f} s, the rerun {time.time() - killed:.0f} s")
    print(
        f"[fault] driver SIGKILL with {len(done & branches)} branches and {len(done - branches)} trunks "
        f"final of {len(plan.trials)}; rerun exit {c.returncode}: {out.strip().splitlines()[-1:]}"
    )
    assert done & branches and len(done) < len(plan.trials) == 9
    assert c.returncode == 0, err[-2000:]
    check_rows(results, plan)
    untouched = [
        tid
        for tid, (mtime, rows) in kept.items()
        if os.stat(store.trial_file(tid)).st_mtime_ns == mtime and store.read_trial(tid) == rows
    ]
    assert sorted(untouched) == sorted(kept)  # nothing final was trained again
    assert not (results / "_lock").exists()


@pytest.fixture(scope="module")
def clean_study(local_ray, tmp_path_factory):
    """The study run once without faults, in this process's local Ray."""
    tmp = tmp_path_factory.mktemp("branches")
    _, plan = study(tmp)
    summary = run_plan(plan, str(tmp / "results"), progress=False)
    return plan, tmp / "results", summary


def test_branch_study_end_to_end(clean_study):
    plan, results, summary = clean_study
    assert len(summary.completed) == N_TRIALS and not summary.failed
    rows = check_rows(results, plan)
    store = Store(str(results))
    trunks = {t.trial_id: t for t in plan.trials if t.group == "trunk"}
    beside = 0
    for t in plan.trials:
        if not t.parent_trial_id:
            continue
        first = rows[t.trial_id][0]
        assert (first["parent_trial_id"], first["branch_tokens"]) == (t.parent_trial_id, t.branch_tokens)
        assert first["step"] > t.branch_tokens // t.train.batch_tokens  # continued from the trunk
        last = rows[t.trial_id][-1]
        assert last["flops"] == pytest.approx(t.train.total_tokens * t.shape.flops_per_token())  # whole path
        assert store.has_kept_checkpoint(t.parent_trial_id, t.branch_tokens)
        beside += store.read_meta(t.trial_id)["started"] < store.read_meta(t.parent_trial_id)["finished"]
    print(f"\n{beside} of {N_TRIALS - len(trunks)} branches started before their trunk ended")
    assert beside >= 1  # branches run beside their trunk, not after it
    # Trunk rows never become fit points; every branch's final row does.
    points = load_points(str(results))
    assert set(points.run) == {t.trial_id for t in plan.trials if t.parent_trial_id}
    assert points.excluded["trunk"] == len(trunks)
    assert set(points.group) == {"branch", "held_out"}


def test_trunk_killed_between_two_branch_points_loses_and_repeats_nothing(clean_study, tmp_path):
    """One size's trunk and its 3 branches; the trunk raises once at its second branch point,
    after that row and before that checkpoint is kept, and Tune's retry resumes it from the
    first."""
    plan, clean_results, _ = clean_study
    trunk = max((t for t in plan.trials if t.group == "trunk"), key=lambda t: t.train.total_steps)
    plan = dataclasses.replace(
        plan, trials=tuple(t for t in plan.trials if trunk.trial_id in (t.trial_id, t.parent_trial_id))
    )
    second = sorted(trunk.train.eval_at_steps)[1]
    store = Store(str(tmp_path / "results"))
    for t in plan.trials:  # fail_at_step reaches every trial; a marker makes it fire for this trunk only
        if t.trial_id != trunk.trial_id:
            store.write_bytes(store.path("_trials", f"{t.trial_id}.injected"), b"not this one")
    summary = run_plan(plan, store.uri, progress=False, extra_config={"fail_at_step": second})
    assert len(summary.completed) == len(plan.trials) == 4 and not summary.failed
    rows, clean = check_rows(tmp_path / "results", plan), rows_by_trial(clean_results)
    assert store.read_meta(trunk.trial_id)["attempts"] == 2
    assert store.read_bytes(store.path("_trials", f"{trunk.trial_id}.injected")) == str(second).encode()
    # Each row carries the same losses as the uninterrupted study (bitwise-resumable on CPU).
    for tid, trial in rows.items():
        assert [r["step"] for r in trial] == [r["step"] for r in clean[tid]]
        assert [r["val_loss"] for r in trial] == pytest.approx([r["val_loss"] for r in clean[tid]], rel=1e-6)
    print(
        f"\n[fault] trunk {trunk.trial_id} killed at step {second} of {trunk.train.total_steps}: "
        f"{len(summary.completed)} of {len(plan.trials)} trials ok, rows as the clean study's"
    )
