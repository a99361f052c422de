"""Security faults: results are never unpickled, checkpoints load weights-only (and still
round-trip RNG and optimizer state), a pickled payload in a checkpoint is refused, and the
study lock's clean-up after a crash touches only the dead driver's own Ray."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.store.lock import (
    local_ray_processes,
    node_processes,
    reap_leftover_ray,
)

ROOT = Path(__file__).resolve().parents[1]
# a call that turns bytes into objects by running pickle's opcodes
UNPICKLING = re.compile(r"\b(pickle\.loads?|cloudpickle\.loads?|read_pickle|dill\.loads?|"
                        r"joblib\.load|allow_pickle\s*=\s*True|Unpickler|torch\.load)\b")


def test_results_are_never_unpickled():
    hits = []
    for package in ("orchestrator", "analysis"):
        folder = ROOT / "scaling_orchestrator" / package
        assert any(folder.rglob("*.py")), f"no sources under {folder}"
        for path in sorted(folder.rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if UNPICKLING.search(line.split("#", 1)[0]):
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    print(f"\n[security] unpickling calls in orchestrator/ and analysis/: {hits}")
    assert hits == []


def test_every_torch_load_is_weights_only():
    calls = [(path, m.group(0)) for path in sorted((ROOT / "scaling_orchestrator" / "models").rglob("*.py"))
             for m in re.finditer(r"torch\.load\([^)]*\)", path.read_text())]
    print(f"\n[security] torch.load calls in models/: {[c for _, c in calls]}")
    assert calls and all("weights_only=True" in call for _, call in calls)


SHAPE = ModelShape(n_layer=1, d_model=16, n_head=2, vocab_size=256, seq_len=16)
CONFIG = TrainConfig(total_tokens=256, batch_tokens=128)


def tiny_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_weights_only_checkpoint_round_trips_rng_and_optimizer(tmp_path):
    model, optimizer = tiny_model()
    torch.manual_seed(1), np.random.seed(2), random.seed(3), np.random.standard_normal()
    save_checkpoint(str(tmp_path), model=model, optimizer=optimizer, loop_state={"step": 7},
                    shape=SHAPE, config=CONFIG, fingerprint="f")
    expected = (torch.rand(3).tolist(), np.random.standard_normal(3).tolist(), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restored_model, restored_opt = torch.nn.Linear(4, 3), None
    restored_opt = torch.optim.AdamW(restored_model.parameters(), lr=1e-2)
    loop = load_checkpoint(str(tmp_path), model=restored_model, optimizer=restored_opt,
                           shape=SHAPE, config=CONFIG, fingerprint="f")
    got = (torch.rand(3).tolist(), np.random.standard_normal(3).tolist(), random.random())
    assert loop == {"step": 7} and got == expected  # incl. numpy's cached Gaussian
    assert torch.equal(restored_model.weight, model.weight)
    saved, back = optimizer.state_dict(), restored_opt.state_dict()
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(saved["state"][0][key], back["state"][0][key])


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    torch.save({"model": Payload()}, tmp_path / CHECKPOINT_FILE)
    model, optimizer = tiny_model()
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|unsupported"):
        load_checkpoint(str(tmp_path), model=model, optimizer=optimizer, shape=SHAPE,
                        config=CONFIG, fingerprint="f")


@pytest.mark.slow  # spawns processes
def test_stale_lock_clean_up_ends_only_that_nodes_processes():
    node = "ab" * 28  # a made-up node id: only processes carrying it are ended
    env = {**os.environ, "RAY_NODE_ID": node}
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        found = node_processes(node)
        reaped = reap_leftover_ray(local_ray_processes(node, [ours.pid]))
        print(f"\n[security] node processes found {found}, reaped {reaped}")
        assert found == [ours.pid] and reaped == [ours.pid]
        assert ours.wait(timeout=10) != 0 and other.poll() is None
        # a recorded pid whose start time no longer matches (the pid was reused) is left alone
        assert reap_leftover_ray({"ray_pids": [[other.pid, "0"]]}) == [] and other.poll() is None
    finally:
        for proc in (ours, other):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
