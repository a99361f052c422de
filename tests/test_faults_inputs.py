"""Bad input through the CLI: bad sweep specs for `scaling run` (exit 2, one line on stderr
naming the field, nothing started: no results folder, no Ray) and bad results folders for
`scaling fit` (a clear one-line error with exit 2, or, with --skip-corrupt, a one-line warning
that names what was skipped; never a silent fit of the wrong rows). Figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scaling_orchestrator.cli.study import main
from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import Measurement, TrainConfig
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row

ROOT = Path(__file__).resolve().parents[1]


def good() -> dict:
    return {"name": "bad", "budgets_flops": [6e9, 1.2e10], "sizes_per_budget": 3,
            "model": {"shapes": [{"n_layer": 1, "d_model": 16, "n_head": 2},
                                 {"n_layer": 1, "d_model": 32, "n_head": 2},
                                 {"n_layer": 2, "d_model": 32, "n_head": 2}], "seq_len": 32},
            "data": {"corpus": "pydoc", "tokenizer": "byte"},
            "train": {"batch_tokens": 512, "min_steps": 10},
            "resources": {"num_workers": 0, "cpus_per_worker": 1}}


def edit(path: str, value) -> str:
    spec = good()
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    node[last] = value
    return yaml.safe_dump(spec)


# (case, file text, what the one stderr line must contain)
BAD_SPECS = [
    ("empty file", "", "empty"),
    ("not YAML", "name: [unclosed\n", "not valid YAML"),
    ("not a mapping", "- a\n- b\n", "must be a mapping"),
    ("budget negative", edit("budgets_flops", [6e9, -5]), "budgets_flops[1]: -5 must be a positive"),
    ("budget zero", edit("budgets_flops", [0, 6e9]), "budgets_flops[0]: 0 must be a positive"),
    ("budget not a number", edit("budgets_flops", ["lots"]), "budgets_flops[0]: 'lots'"),
    ("budgets not a list", edit("budgets_flops", 6e9), "budgets_flops: 6e+09 must be a non-empty list"),
    (
        "budget too small for the smallest model",
        edit("budgets_flops", [1e8, 6e9]),
        "budgets_flops[0]: 1e+08 must be >=",
    ),
    ("unknown key", edit("budget_flops", [6e9]), "budget_flops: unknown key; did you mean 'budgets_flops'?"),
    ("unknown nested key", edit("train.batch_token", 512), "train.batch_token: unknown key"),
    ("wrong type: bool", edit("train.compile", "yes"), "train.compile: 'yes' must be true or false"),
    ("wrong type: int", edit("sizes_per_budget", "three"), "sizes_per_budget: 'three'"),
    ("wrong type: mapping", edit("model", [1, 2]), "model"),
    ("missing corpus path", edit("data.corpus", "no/such/corpus.txt"), "data.corpus: 'no/such/corpus.txt'"),
    ("zero lr", edit("train.lr", 0), "train.lr: 0 must be > 0"),
    ("batch not a multiple of seq_len", edit("train.batch_tokens", 500), "train.batch_tokens: 500"),
    ("too few sizes", edit("sizes_per_budget", 2), "sizes_per_budget: 2 must be a whole number >= 3"),
    ("gpus without workers", edit("resources.gpus_per_worker", 1), "resources.gpus_per_worker: 1"),
    ("zero workers' cpus", edit("resources.cpus_per_worker", 0), "resources.cpus_per_worker: 0"),
    ("bad tokenizer", edit("data.tokenizer", "wordpiece"), "data.tokenizer: 'wordpiece'"),
]


@pytest.fixture
def no_ray(monkeypatch):
    """Any attempt to start or join Ray fails the test."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("ray.init was called for a bad spec")

    monkeypatch.setattr(ray, "init", refuse)
    assert not ray.is_initialized()


@pytest.mark.parametrize("case,text,expected", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_run_exits_2_starting_nothing(tmp_path, capsys, no_ray, case, text, expected):
    spec, results = tmp_path / "BAD.yaml", tmp_path / "results"
    spec.write_text(text)
    code = main(["run", str(spec), "--results", str(results)])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    print(f"[bad spec] {case}: exit {code}, {lines}")
    assert code == 2 and captured.out == "" and len(lines) == 1
    assert lines[0].startswith("scaling: error: ") and expected in lines[0]
    assert not results.exists()


def test_fifteen_kinds_of_bad_spec_through_the_cli():
    fields = {expected.split(":")[0].split("[")[0] for _, _, expected in BAD_SPECS}
    print(f"\n[bad spec] {len(BAD_SPECS)} cases over {len(fields)} fields")
    assert len(BAD_SPECS) >= 15


@pytest.mark.ray
@pytest.mark.slow
def test_gpus_beyond_the_cluster_exit_2_before_tune(tmp_path):
    spec, results = tmp_path / "gpu.yaml", tmp_path / "results"
    spec.write_text(edit("resources", {"num_workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 4}))
    done = subprocess.run(
        [sys.executable, "-m", "scaling_orchestrator", "run", str(spec), "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = done.stderr.splitlines()
    print(f"\n[bad spec] 4 GPUs per worker on this machine: exit {done.returncode}, {lines}")
    assert done.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("scaling: error: resources.gpus_per_worker=4 x num_workers=1")
    assert "the cluster has GPU=0 in total" in lines[0]
    assert not results.exists()


# -- bad results folders ------------------------------------------------------------------------
def trial(sweep: str, d_model: int) -> TrialSpec:
    return TrialSpec(
        sweep=sweep,
        kind="scaling",
        shape=ModelShape(n_layer=1, d_model=d_model, n_head=2, vocab_size=256, seq_len=32),
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=4096, batch_tokens=512),
        budget_flops=1e9,
    )


def write_sweep(folder: Path, sweep: str, widths=(16, 32, 64)) -> list[TrialSpec]:
    """Finished trials (up to four) with made-up losses (rows as the worker writes them)."""
    store, trials = Store(str(folder)), [trial(sweep, d) for d in widths]
    for t, loss in zip(trials, (4.0, 3.6, 3.8, 3.7), strict=False):
        for step in (4, 8):
            tokens = step * 512
            m = Measurement(
                step=step,
                tokens=tokens,
                flops=tokens * 1e5,
                flops_6n=tokens * 9e4,
                train_loss=loss,
                val_loss=loss,
                val_bpb=loss / 0.69,
                lr_now=1e-3,
                wall_seconds=1.0,
                tokens_per_second=4e3,
                final=step == 8,
                status="ok",
            )
            store.write_row(measurement_row(t, m))
    return trials


def fit(source: Path, *flags: str):
    return subprocess.run(
        [sys.executable, "-m", "scaling_orchestrator", "fit", str(source), "--bootstrap", "0", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def truncate(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])  # a copy cut short: no footer


@pytest.mark.slow  # `scaling fit` subprocesses
def test_fit_truncated_parquet_is_a_one_line_error(tmp_path):
    trials = write_sweep(tmp_path, "a")
    path = Store(str(tmp_path)).trial_file(trials[1].trial_id)
    truncate(path)
    done = fit(tmp_path)
    lines = done.stderr.splitlines()
    print(f"\n[bad results] truncated parquet: exit {done.returncode}, {lines}")
    assert done.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("scaling fit: error: ") and os.path.basename(path) in lines[0]
    assert "not a readable parquet file" in lines[0] and done.stdout == ""
    assert "--skip-corrupt" in lines[0]  # what a CLI user can do about it


@pytest.mark.slow  # `scaling fit` subprocesses
def test_fit_skip_corrupt_warns_once_and_fits_the_rest(tmp_path):
    trials = write_sweep(tmp_path, "a", (16, 32, 64, 128))
    path = Store(str(tmp_path)).trial_file(trials[1].trial_id)
    truncate(path)
    done = fit(tmp_path, "--skip-corrupt")
    lines = done.stderr.splitlines()
    print(
        f"\n[bad results] truncated parquet, --skip-corrupt: exit {done.returncode}, {lines}, "
        f"stdout head {done.stdout.splitlines()[:1]}"
    )
    assert done.returncode == 0 and len(lines) == 1
    assert lines[0].startswith("scaling fit: warning: ") and os.path.basename(path) in lines[0]
    assert lines[0].endswith("; skipped")
    assert ": 3 points, 3 runs," in done.stdout.splitlines()[0]  # 4 trials less the skipped one


@pytest.mark.slow  # `scaling fit` subprocesses
def test_fit_newer_schema_version_is_a_one_line_error(tmp_path):
    from scaling_orchestrator.analysis.data.schema import SCHEMA_VERSION

    trials = write_sweep(tmp_path, "a")
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Store(str(tmp_path)).trial_file(trials[0].trial_id)
    table = pq.read_table(path)
    newer = pc.add(table["schema_version"], 1).cast(table.schema.field("schema_version").type)
    pq.write_table(
        table.set_column(table.schema.get_field_index("schema_version"), "schema_version", newer), path
    )
    done = fit(tmp_path)
    lines = done.stderr.splitlines()
    print(f"\n[bad results] schema_version {SCHEMA_VERSION + 1} file: exit {done.returncode}, {lines}")
    assert done.returncode == 2 and len(lines) == 1
    assert (
        f"schema_version {SCHEMA_VERSION + 1} is newer than this reader's {SCHEMA_VERSION}" in lines[0]
        and done.stdout == ""
    )


@pytest.mark.slow  # `scaling fit` subprocesses
def test_fit_two_sweeps_in_one_folder_are_refused_unless_one_is_named(tmp_path):
    # (the trial id hashes what is trained, not the sweep's name: other widths, other files)
    a, b = write_sweep(tmp_path, "alpha"), write_sweep(tmp_path, "beta", (24, 48, 96, 192))
    assert len({t.trial_id for t in a} | {t.trial_id for t in b}) == 7
    done = fit(tmp_path)
    lines = done.stderr.splitlines()
    print(f"\n[bad results] sweeps alpha + beta in one folder: exit {done.returncode}, {lines}")
    assert (
        done.returncode == 2
        and done.stdout == ""
        and lines
        == [
            f"scaling fit: error: {tmp_path} holds rows of sweeps ['alpha', 'beta']; "
            "pass --sweep NAME to fit one"
        ]
    )
    for name, runs in (("alpha", 3), ("beta", 4)):
        done = fit(tmp_path, "--sweep", name)
        print(
            f"[bad results] --sweep {name}: exit {done.returncode}, stderr "
            f"{done.stderr.splitlines()}, stdout head {done.stdout.splitlines()[:1]}"
        )
        assert done.returncode == 0 and done.stderr == ""
        assert f": {runs} points, {runs} runs," in done.stdout.splitlines()[0]
    done = fit(tmp_path, "--sweep", "gamma")
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"scaling fit: error: --sweep 'gamma': no such sweep in {tmp_path}; its sweeps are ['alpha', 'beta']"
    ]
