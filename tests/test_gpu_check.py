"""bench/gpu_check.py, the check a lent GPU runs: its micro-batch search, peak table and study spec
here, and the whole check on CPU (--smoke) as a slow test, so it cannot rot between lendings."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """A bench module by path: bench/ stays off sys.path, where its coverage.py or memory.py
    would shadow other imports for the rest of the session."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # gpu_check imports gpu_check_lib by name
    spec.loader.exec_module(module)
    return module


lib = _load("gpu_check_lib")
gpu_check = _load("gpu_check")


def test_largest_fitting_doubles_then_bisects():
    calls = []

    def fits(rows: int) -> bool:
        calls.append(rows)
        return rows <= 40

    assert lib.largest_fitting(fits, 256) == (40, "1 2 4 8 16 32 64x 48x 40 44x 42x".split())
    assert calls == [1, 2, 4, 8, 16, 32, 64, 48, 40, 44, 42]
    assert lib.largest_fitting(lambda rows: True, 12) == (12, ["1", "2", "4", "8", "12"])
    assert lib.largest_fitting(lambda rows: rows <= 10, 12) == (10, "1 2 4 8 12x 10 11x".split())
    assert lib.largest_fitting(lambda rows: False, 256) == (0, ["1x"])


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A10G", 125e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L4", 121e12),
        ("Tesla T4", None),
    ],
)
def test_peak_table_reads_the_names_torch_reports(name, peak):
    assert lib.peak_flops(name)[0] == peak


def test_the_studies_plan_four_trials_on_worker_groups():
    gpu = make_plan(parse_sweep(lib.study_spec(gpu_check.GPU_STUDY))).trials
    assert len(gpu) == 4 and {(t.train.dtype, t.train.compile) for t in gpu} == {("bfloat16", True)}
    assert {(t.resources.num_workers, t.resources.gpus_per_worker) for t in gpu} == {(1, 0.25)}
    smoke = make_plan(parse_sweep(lib.study_spec(gpu_check.SMOKE_STUDY))).trials
    assert len(smoke) == 4 and [t.resources.num_workers for t in smoke] == [0, 0, 0, 1]  # the largest


def test_planner_stays_under_the_memory_models_largest_on_an_h100():
    """On an H100's 81,559 MiB at seq_len 2048 in bf16: the planner keeps a 10% margin and picks a
    divisor of the batch's 256 sequences, so it gives at most what the memory model alone allows."""
    device_bytes = 81559 * 2**20
    runs = gpu_check.GPU_RUNS
    for depth in runs["depths"]:
        shape = gpu_check.ModelShape.from_depth(depth, vocab_size=runs["vocab_size"], seq_len=runs["seq_len"],
                                                aspect_ratio=runs["aspect_ratio"], head_dim=runs["head_dim"])
        planner = lib.planner_rows(shape, "bfloat16", 256, device_bytes, gpu=True)
        model = lib.model_rows(shape, "bfloat16", 256, device_bytes, "cuda")
        assert 256 % planner == 0 and 16 <= planner <= model, (depth, planner, model)


@pytest.mark.slow
@pytest.mark.ray
def test_smoke_run_prints_every_named_line():
    """The whole check on CPU at tiny sizes: about a minute here on idle cores, most of it Ray's
    start and the study's worker processes."""
    out = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for depth in (1, 2):
        for mode in ("eager", "compile"):
            assert re.search(rf"^MFU d{depth} gpt2 {mode}: \d+\.\d%", text, re.M), text
            assert re.search(rf"^memory d{depth} gpt2 {mode}: model \S+B, measured n/a$", text, re.M), text
    assert re.search(r"compile: .*; 2 compiled graphs\)$", text, re.M), text  # training + evaluation
    assert re.search(r"^memory model worst error on GPU: n/a", text, re.M), text
    assert re.search(r"^micro-batch d2 gpt2: planner 8, memory model 8, largest that fits 8 sequences", text,
                     re.M), text
    assert re.search(r"^profile d2 gpt2 eager, ops by self_cpu_time_total:", text, re.M), text
    assert re.search(r"^gpu study: 4/4 final \(\d+ rows, 0.45 CPU per trial, bfloat16,", text, re.M), text
    workers = r"^worker group: gloo, world size 1, bfloat16 on a TorchTrainer: 1/1 final$"
    assert re.search(workers, text, re.M), text
    assert re.search(r"^gpu check wall: \d+ s", text, re.M), text
