"""The README's "our trainable in your own Tuner" block, run verbatim as a user would: a fresh
directory holding a copy of examples/, Ray started by the Tuner itself, the block's relative
results_dir. Every trial must reach a final row under ./results/lr-search of that directory (at
its total tokens, or where asha_for's ASHA stopped it), and no row may land in Ray's folders.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
from scaling_orchestrator.orchestrator.store.results import Store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def tuner_block() -> str:
    """The README's one python block that builds a tune.Tuner, as written."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if "tune.Tuner(" in b]
    assert len(found) == 1, f"README.md: {len(found)} python blocks build a tune.Tuner, expected 1"
    return found[0]


def user_env(home: Path, ray_tmp: str) -> dict:
    """A user's shell with its own home (Tune's ~/ray_results lands there) and Ray temp folder;
    the tokenizer cache is shared so the block does not retrain the demo's BPE."""
    cache = os.environ.get("SCALING_CACHE") or os.path.expanduser("~/.cache/scaling-orchestrator")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "HOME": str(home), "RAY_TMPDIR": ray_tmp, "SCALING_CACHE": cache,
            "PYTHONPATH": path}


def files_under(folder) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]


def test_readme_tuner_block_runs_verbatim(tmp_path):
    code = tuner_block()
    work, home = tmp_path / "user", tmp_path / "home"
    home.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    ray_tmp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths must fit in 107 bytes
    start = time.time()
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=work, env=user_env(home, ray_tmp),
                             capture_output=True, text=True, timeout=900)
        ray_files = files_under(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"\nREADME Tuner block: exit {out.returncode} in {time.time() - start:.0f} s; "
          f"{out.stdout.strip().splitlines()[-1] if out.stdout.strip() else 'no output'}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best lr" in out.stdout

    index = int(re.search(r"spec = plan\.trials\[(\d+)\]", code).group(1))
    spec = make_plan(load_sweep(str(ROOT / "examples" / "demo.yaml"))).trials[index]
    store = Store(str(work / "results" / "lr-search"), create=False)
    ids = sorted(set(store.read_table()["trial_id"].to_pylist()))
    assert len(ids) == int(re.search(r"num_samples=(\d+)", code).group(1))
    full = []
    for tid in ids:
        last, meta = store.read_trial(tid)[-1], store.read_meta(tid)
        assert last["final"] and last["status"] == "ok", (tid, last["final"], last["status"], meta)
        if last["tokens"] == spec.train.total_tokens:
            full.append(tid)
        else:  # stopped by asha_for's ASHA at its rung: a finished point at fewer tokens
            assert meta["stopped_early"] and meta["stopped_at_tokens"] == last["tokens"]
            assert last["tokens"] == spec.train.eval_every_steps * spec.train.batch_tokens
    assert full  # ASHA never stops the first trial to reach a rung

    tune_files = files_under(home / "ray_results")
    assert tune_files  # the Tuner's own folders are where this looks
    for path in tune_files + ray_files:
        assert "lr-search" not in path and not path.endswith(".parquet"), path
