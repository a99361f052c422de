"""Faults of the driver itself, through the real CLI in subprocesses: a second `scaling run` on
a folder in use, a driver SIGKILLed mid-sweep and the same command run again.

One sweep serves both: driver A starts; while A holds the lock, driver B on the same folder
must refuse (exit 2, one line naming A's pid); once some but not all of A's trials are final,
A is SIGKILLed; driver C, the same command again, takes A's stale lock over, ends what A's
local Ray left behind, and finishes the sweep without touching A's finished trials.
Figures are printed (`pytest -s`).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from scaling_orchestrator.orchestrator.store.lock import node_processes
from scaling_orchestrator.orchestrator.store.results import Store

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
# 6 trials of 1-2 layer GPTs on byte-level pydoc (plan: 79..158 steps of 512 tokens, about
# 1-2 s of training each on one core, 2 at a time).
SPEC = """\
name: driverkill
budgets_flops: [6e9, 1.2e10]
sizes_per_budget: 3
model:
  shapes:
    - {n_layer: 1, d_model: 16, n_head: 2}
    - {n_layer: 1, d_model: 32, n_head: 2}
    - {n_layer: 2, d_model: 32, n_head: 2}
  seq_len: 32
data: {corpus: pydoc, tokenizer: byte}
train: {batch_tokens: 512, evals_per_trial: 4, eval_tokens: 1024, threads: 1, min_steps: 10}
resources: {num_workers: 0, cpus_per_worker: 1}
max_concurrent_trials: 2
max_failures: 1
"""
N_TRIALS = 6


def scaling(*args: str, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "scaling_orchestrator", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(predicate, what: str, driver: subprocess.Popen, timeout_seconds: float = 240.0):
    deadline = time.time() + timeout_seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if driver.poll() is not None:
            raise AssertionError(f"driver exited ({driver.returncode}) before {what}: "
                                 f"{driver.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def planned_pairs(spec: Path) -> set[tuple[str, int]]:
    """(trial_id, step) of every evaluation the plan's trials make: every eval_every_steps and
    at the last step (79 steps every 19 -> 19, 38, 57, 76, 79)."""
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep

    out = set()
    for t in make_plan(load_sweep(str(spec))).trials:
        every, total = t.train.eval_every_steps, t.train.total_steps
        out |= {(t.trial_id, s) for s in [*range(every, total + 1, every), total]}
    return out


def pairs(results: Path) -> list[tuple[str, int]]:
    table = ds.dataset(str(results), format="parquet").to_table(columns=["trial_id", "step"])
    return list(zip(table["trial_id"].to_pylist(), table["step"].to_pylist()))


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("driverkill")
    spec, results = tmp / "spec.yaml", tmp / "results"
    spec.write_text(SPEC)
    store, facts = Store(str(results), create=False), {}
    command = ("run", str(spec), "--results", str(results), "--no-progress")
    a = scaling(*command)
    try:
        holder = wait_for(lambda: store.read_json(store.path("_lock")), "A's lock", a)
        b = scaling(*command)
        facts["b_out"], facts["b_err"] = b.communicate(timeout=120)
        facts.update(holder=holder, b_rc=b.returncode, a_alive_after_b=a.poll() is None)
        wait_for(lambda: store.done_trial_ids(), "A's first finished trial", a)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
    finally:
        if a.poll() is None:
            a.kill()
    done = store.done_trial_ids()  # after the kill: another may have finished meanwhile
    facts["done_at_kill"] = done
    facts["lock_at_kill"] = store.read_json(store.path("_lock"))
    facts["kept"] = {tid: (os.stat(store.trial_file(tid)).st_mtime_ns, store.read_trial(tid))
                     for tid in done}
    node = facts["lock_at_kill"].get("ray_node_id")
    facts["leftover_before"] = node_processes(node) if node else []
    facts["pairs_at_kill"] = pairs(results)
    facts["planned"] = planned_pairs(spec)
    c = scaling(*command)
    facts["c_out"], facts["c_err"] = c.communicate(timeout=300)
    facts["c_rc"] = c.returncode
    facts["leftover_after"] = node_processes(node) if node else []
    return results, store, facts


def test_second_driver_on_the_same_folder_is_refused(killed_sweep):
    _, _, facts = killed_sweep
    lines = facts["b_err"].splitlines()
    print(f"\n[fault] concurrent run: exit {facts['b_rc']}, stderr {lines}")
    assert facts["b_rc"] == 2 and facts["a_alive_after_b"]
    assert len(lines) == 1 and lines[0].startswith("scaling: error: results folder ")
    assert f"in use by pid {facts['holder']['pid']} on host {facts['holder']['host']}" in lines[0]
    assert "_lock" in lines[0]


def test_killed_driver_rerun_finishes_without_redoing_work(killed_sweep):
    results, store, facts = killed_sweep
    found = pairs(results)
    dups = sum(n - 1 for n in collections.Counter(found).values() if n > 1)
    finals = store.read_table().filter(ds.field("final")).column("trial_id").to_pylist()
    unchanged = [tid for tid, (mtime, rows) in facts["kept"].items()
                 if os.stat(store.trial_file(tid)).st_mtime_ns == mtime
                 and store.read_trial(tid) == rows]
    print(f"\n[fault] driver SIGKILL: {len(facts['done_at_kill'])}/{N_TRIALS} trials final and "
          f"{len(facts['pairs_at_kill'])} rows at the kill; {len(facts['leftover_before'])} "
          f"processes of its Ray left, {len(facts['leftover_after'])} after the rerun; rerun "
          f"exit {facts['c_rc']}: {facts['c_out'].strip().splitlines()[-1:]}; rows expected "
          f"{len(facts['planned'])}, found {len(found)}, duplicates {dups}; finished trials untouched "
          f"{len(unchanged)}/{len(facts['kept'])}")
    assert 0 < len(facts["done_at_kill"]) < N_TRIALS
    assert facts["lock_at_kill"]["ray_node_id"]  # what the reaper needs was recorded
    assert facts["c_rc"] == 0, facts["c_err"][-2000:]
    assert f"{len(facts['done_at_kill'])} already done" in facts["c_out"]
    assert sorted(unchanged) == sorted(facts["kept"])
    assert sorted(found) == sorted(facts["planned"]) and dups == 0
    assert collections.Counter(finals) == {tid: 1 for tid, _ in set(found)}
    assert len(set(finals)) == N_TRIALS
    assert facts["leftover_after"] == []
    assert not (results / "_lock").exists()
