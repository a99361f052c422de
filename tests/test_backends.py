"""A trainer of the user's own, without Ray: the backend section, the template fields, the metrics
contract, exit codes, and a command SIGKILLed mid-trial resuming from its kept checkpoint.

The command is tests/trainers/fake_trainer.py (a subprocess honouring the contract, its loss a
formula); rows go through the store as the worker writes them (write_row, save_checkpoint).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.backends import metrics
from scaling_orchestrator.orchestrator.backends.command import run_command
from scaling_orchestrator.orchestrator.backends.contract import (
    Paths,
    environment,
    process_count,
    template_values,
    write_trial_json,
)
from scaling_orchestrator.orchestrator.backends.function import run_function
from scaling_orchestrator.orchestrator.spec.sections.backend import (
    parse_backend,
    template_fields,
    trial_resources,
)
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError
from scaling_orchestrator.orchestrator.store.results import Store, measurement_row

FAKE = Path(__file__).parent / "trainers" / "fake_trainer.py"
EVALS = [1024, 2048, 3072, 4096]


def trial(command: str = "", *, kind: str = "command", spec_dir: str = "", **trainer) -> TrialSpec:
    return TrialSpec(
        sweep="ext", kind="scaling",
        shape=ModelShape(n_layer=2, d_model=32, n_head=2, vocab_size=256, seq_len=32),
        data=DataSpec(corpus="pydoc", tokenizer="byte"),
        train=TrainConfig(total_tokens=4096, batch_tokens=512, eval_every_tokens=1024, eval_tokens=1024,
                          lr=2e-3, seed=7),
        budget_flops=1e9,
        trainer={"kind": kind, "spec_dir": spec_dir, **({"command": command} if command else {}), **trainer})


def paths(tmp: Path) -> Paths:
    return Paths(trial_json=write_trial_json(SPEC, str(tmp / "trial.json")),
                 metrics=str(tmp / "metrics.jsonl"), checkpoint_dir=str(tmp / "ckpt"),
                 workdir=str(tmp / "work"))


SPEC = trial("x")


def fake(mode: str, out: Path, pause: float = 0.0) -> TrialSpec:
    return trial(f"{{python}} -S {FAKE} {mode} {out} {pause}")


def run_attempt(spec: TrialSpec, store: Store, tmp: Path, attempt: int):
    """One attempt as execution/worker.py makes it: resume from the store's checkpoint, a row per
    evaluation, the checkpoint kept after its row."""
    scratch = tmp / f"attempt-{attempt}"
    resume = store.load_checkpoint(spec.trial_id, str(scratch / "resume"))

    def on_eval(m, ckpt_dir):
        store.write_row(measurement_row(spec, m))
        if ckpt_dir and not m.final:
            store.save_checkpoint(spec.trial_id, ckpt_dir, m.step)

    p = dataclasses.replace(paths(scratch), trial_json=write_trial_json(spec, str(scratch / "trial.json")))
    return run_command(spec, paths=p, on_eval=on_eval, resume_from=resume)


# -- the spec section ---------------------------------------------------------------------------

def test_backend_section_forms_and_one_line_errors():
    assert parse_backend(None) is None and parse_backend("torch") is None
    command = parse_backend({"kind": "command", "command": "python t.py --l {n_layer} --lr {lr:.3g}"})
    assert command["kind"] == "command" and command["spec_dir"] == os.getcwd()
    assert parse_backend({"kind": "python", "function": "pkg.mod:train"})["function"] == "pkg.mod:train"
    cases = {
        "backend.command: unknown field {layers}": {"kind": "command", "command": "t.py {layers}"},
        "backend.function": {"kind": "python", "function": "pkg.mod.train"},
        "backend.kind": {"kind": "megatron"},
        "backend: simulate needs the simulate: section": "simulate",
        "backend.function: not a field of backend kind command": {"kind": "command", "command": "x",
                                                                  "function": "a:b"},
    }
    for start, raw in cases.items():
        with pytest.raises(SpecError) as info:
            parse_backend(raw)
        assert str(info.value).startswith(start) and "\n" not in str(info.value)


def test_every_template_field_reaches_the_command_and_its_environment(tmp_path):
    fields = template_fields()
    dump = tmp_path / "dump.py"
    dump.write_text("import json, os, sys\njson.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, "
                    f"open({str(tmp_path / 'seen.json')!r}, 'w'))\n")
    command = f"{{python}} -S {dump} " + " ".join(f"'{{{f}}}'" for f in fields)
    spec = trial(command, spec_dir=str(tmp_path))
    p = paths(tmp_path)
    with pytest.raises(metrics.ContractError, match="exited 0 without a metrics line"):
        run_command(spec, paths=p, on_eval=lambda m, c: None, nproc=1)
    seen = json.loads((tmp_path / "seen.json").read_text())
    expected = {"n_layer": "2", "d_model": "32", "n_head": "2", "n_kv_heads": "2", "d_ff": "128",
                "seq_len": "32", "vocab_size": "256", "tokens": "4096", "total_tokens": "4096", "steps": "8",
                "batch_tokens": "512", "lr": "0.002", "seed": "7", "trial_id": spec.trial_id,
                "trial_json": p.trial_json, "metrics": p.metrics, "checkpoint_dir": p.checkpoint_dir,
                "nproc": "1", "python": sys.executable, "spec_dir": str(tmp_path), "start_from": "",
                "schedule": "cosine", "sweep": "ext", "budget_flops": "1000000000.0"}
    by_field = dict(zip(fields, seen["argv"]))
    assert len(seen["argv"]) == len(fields)
    assert {k: by_field[k] for k in expected} == expected
    values = template_values(spec, p, 1)
    for field in fields:  # every field, as an argument and as SCALING_<FIELD>
        assert by_field[field] == str(values[field])
        assert seen["env"][f"SCALING_{field.upper()}"] == by_field[field].replace("True", "1").replace(
            "False", "0")
    assert seen["env"]["SCALING_TRIAL"] == p.trial_json and seen["env"]["SCALING_METRICS"] == p.metrics
    assert json.loads(Path(p.trial_json).read_text())["eval_at_tokens"] == EVALS


def test_a_command_trial_gets_all_its_gpus_in_one_process():
    res = Resources(num_workers=4, cpus_per_worker=2, gpus_per_worker=1)
    one = trial_resources(trial("x"), res)
    assert (one.num_workers, one.cpus_per_worker, one.gpus_per_worker) == (0, 8, 4)
    assert trial_resources(trial(kind="python", function="a:b"), res) == res  # a worker group
    assert process_count([0, 1, 2, 3], one.gpus_per_trial) == 4 and process_count([], 0.0) == 1
    assert process_count([], one.gpus_per_trial) == 4
    env = environment({"nproc": 4}, paths_of_nothing(), gpu_ids=[2, 3, 5, 7])
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3,5,7" and env["SCALING_NPROC"] == "4"


def paths_of_nothing() -> Paths:
    return Paths(trial_json="t.json", metrics="m.jsonl", checkpoint_dir="ckpt")


# -- the metrics contract -----------------------------------------------------------------------

def test_metrics_lines_are_checked_and_named_by_line_number(tmp_path):
    file = tmp_path / "metrics.jsonl"
    file.write_text('{"tokens": 512, "val_loss": 5.1, "mfu": 0.4, "phase": "eval"}\n{"tokens": 10')
    reader = metrics.MetricsReader(str(file))
    first = reader.read()
    assert first == [{"tokens": 512, "val_loss": 5.1, "metrics": {"mfu": 0.4}}]
    assert reader.read() == []  # a half-written line waits for its newline
    with pytest.raises(metrics.ContractError, match=r"^metrics.jsonl line 2: not JSON"):
        reader.read(at_end=True)
    bad = {'{"val_loss": 3.0}': "missing required key tokens", '{"tokens": 1.5, "val_loss": 3}':
           "tokens=1.5 must be a whole number", '{"tokens": 5, "val_loss": "low"}': "val_loss='low'",
           "[1, 2]": "a JSON object is required"}
    for text, reason in bad.items():
        with pytest.raises(metrics.ContractError, match=f"^where: .*{reason}"):
            metrics.parse_line(text, "where")


@pytest.mark.parametrize("mode, error, reason", [
    ("short", metrics.ContractError, "exited 0 at 1,024 tokens, short of the trial's 4,096"),
    ("badline", metrics.ContractError, "metrics.jsonl line 4: not JSON"),  # its 2nd evaluation
    ("missing", metrics.ContractError, "metrics.jsonl line 1: missing required key val_loss"),
    ("crash", metrics.TrainerCrashed, "exited with status 3"),
])
def test_exit_codes_and_bad_lines(tmp_path, mode, error, reason):
    with pytest.raises(error, match=reason):
        run_command(fake(mode, tmp_path), paths=paths(tmp_path), on_eval=lambda m, c: None)
    assert not issubclass(metrics.TrainerCrashed, ValueError)  # the worker retries only this one


def test_a_finished_command_gives_rows_with_its_columns(tmp_path):
    spec, seen, lines, events = fake("params", tmp_path), [], [], []

    def on_eval(m, c):
        seen.append((m, c))
        events.append(("row", m.step))

    last = run_command(spec, paths=paths(tmp_path), on_eval=on_eval, log=lines.append,
                       on_curve=lambda points: events.append(("curve", [p["step"] for p in points])))
    # curve lines and the evaluations' train_loss reach the curve sink before each row
    assert events == [e for k in (2, 4, 6, 8) for e in (("curve", [k - 1, k]), ("row", k))]
    rows = [measurement_row(spec, m) for m, _ in seen]
    assert [r["tokens"] for r in rows] == EVALS and [r["step"] for r in rows] == [2, 4, 6, 8]
    assert last.final and [r["final"] for r in rows] == [False, False, False, True]
    assert rows[0]["val_loss"] == pytest.approx(6.0 * 1024 ** -0.1 * (1 + 2e-3))
    assert rows[0]["train_loss"] > rows[0]["val_loss"]
    assert json.loads(rows[0]["metrics"]) == {"grad_norm": 0.5} and seen[0][0].lr_now == 1e-3
    planned = spec.shape.param_counts()["total"]
    assert rows[0]["params"] == int(planned * 1.1)
    assert rows[0]["flops"] == 1024 * spec.shape.flops_per_token()
    assert all(c and os.path.isfile(os.path.join(c, "state.json")) for _, c in seen)
    assert any(line.startswith("warning: ") and "+10.0% from the plan's" in line for line in lines)


def test_a_command_sigkilled_mid_trial_resumes_from_its_kept_checkpoint(tmp_path):
    spec, store = fake("kill", tmp_path), Store(str(tmp_path / "results"))
    with pytest.raises(metrics.TrainerCrashed, match="signal SIGKILL"):
        run_attempt(spec, store, tmp_path, 1)
    assert [r["tokens"] for r in store.read_trial(spec.trial_id)] == EVALS[:2]
    last = run_attempt(spec, store, tmp_path, 2)  # the retry: same trial, checkpoint from the store
    rows = store.read_trial(spec.trial_id)
    starts = [json.loads(line) for line in (tmp_path / "starts.jsonl").read_text().splitlines()]
    pairs = collections.Counter((r["trial_id"], r["tokens"]) for r in rows)
    print(f"\n[command SIGKILL] starts at tokens {[s['resumed_at'] for s in starts]}, rows {len(rows)}, "
          f"duplicate (trial_id, tokens) {sum(n - 1 for n in pairs.values())}")
    assert [s["resumed_at"] for s in starts] == [0, 2048]  # resumed from its save at the 2nd eval
    assert last.final and [r["tokens"] for r in rows] == EVALS and max(pairs.values()) == 1
    assert [r["final"] for r in rows] == [False, False, False, True]


def test_a_branch_command_starts_from_its_trunks_checkpoint(tmp_path):
    trunk = tmp_path / "trunk"
    trunk.mkdir()
    (trunk / "state.json").write_text('{"tokens": 3072}')
    seen = []
    p = dataclasses.replace(paths(tmp_path), start_from=str(trunk))
    run_command(fake("ok", tmp_path), paths=p, on_eval=lambda m, c: seen.append(m.tokens))
    start = json.loads((tmp_path / "starts.jsonl").read_text())
    assert start["start_from"] == str(trunk) and start["resumed_at"] == 3072 and seen == [3072, 4096]


def test_a_function_trainer_reports_rows_and_resumes(tmp_path):
    (tmp_path / "lab_trainer.py").write_text(
        "import json, os\n"
        "def train(ctx):\n"
        "    start = json.load(open(os.path.join(ctx.resume_dir, 's.json')))['t'] if ctx.resume_dir else 0\n"
        "    for t in ctx.trial['eval_at_tokens']:\n"
        "        if t <= start: continue\n"
        "        json.dump({'t': t}, open(os.path.join(ctx.checkpoint_dir, 's.json'), 'w'))\n"
        "        ctx.report(tokens=t, val_loss=6.0 * t ** -0.1, tok_per_s=10.0)\n")
    spec = trial(kind="python", function="lab_trainer:train", spec_dir=str(tmp_path))
    seen = []
    last = run_function(spec, checkpoint_dir=str(tmp_path / "ckpt"), on_eval=lambda m, c: seen.append(c))
    assert last.final and last.tokens == 4096 and len(seen) == 4 and all(seen)
    (tmp_path / "resume").mkdir()
    (tmp_path / "resume" / "s.json").write_text('{"t": 2048}')
    resumed = []
    last = run_function(spec, checkpoint_dir=str(tmp_path / "ckpt2"), resume_from=str(tmp_path / "resume"),
                        on_eval=lambda m, c: resumed.append(m))
    assert [m.tokens for m in resumed] == [3072, 4096] and last.final
    assert json.loads(measurement_row(spec, resumed[0])["metrics"]) == {"tok_per_s": 10.0}


def test_a_function_reports_curve_points_between_its_evaluations(tmp_path):
    (tmp_path / "curvy.py").write_text(
        "def train(ctx):\n"
        "    for t in ctx.trial['eval_at_tokens']:\n"
        "        ctx.report(tokens=t - 512, train_loss=5.0, lr=1e-3, grad_norm=0.3, note='x')\n"
        "        ctx.report(tokens=t, val_loss=4.0)\n")
    spec = trial(kind="python", function="curvy:train", spec_dir=str(tmp_path))
    batches, rows = [], []
    run_function(spec, checkpoint_dir=str(tmp_path / "ckpt"), on_eval=lambda m, c: rows.append(m.tokens),
                 on_curve=batches.append)
    assert rows == EVALS and [[p["tokens"] for p in b] for b in batches] == [[t - 512] for t in EVALS]
    assert batches[0] == [{"step": 1, "tokens": 512, "train_loss": 5.0, "lr": 1e-3, "grad_norm": 0.3}]
    with pytest.raises(metrics.ContractError, match="each curve line tokens and train_loss"):
        metrics.parse_line('{"tokens": 5, "lr": 0.1}', "where")


def test_a_function_that_reports_nothing_fails_once(tmp_path):
    spec = trial(kind="python", function="builtins:id")
    with pytest.raises(metrics.ContractError, match="builtins:id returned without a report"):
        run_function(spec, checkpoint_dir=str(tmp_path), on_eval=lambda m, c: None)


@pytest.mark.slow  # four runs of the example trainer (torch), about 15 s
def test_the_example_trainer_resumes_bitwise_after_an_interruption(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):  # the example reads the corpus's text files as bytes
        (corpus / f"doc{i:02d}.txt").write_text(f"Document {i}. " + "the quick brown fox jumps. " * 200)
    example = Path(__file__).resolve().parents[1] / "examples" / "external" / "train.py"
    spec = dataclasses.replace(
        trial(f"{{python}} {example}"),
        data=DataSpec(corpus=str(corpus), tokenizer="byte", val_fraction=0.1),
        train=TrainConfig(total_tokens=24 * 512, batch_tokens=512, eval_every_tokens=4096,
                          eval_tokens=1024))

    def attempt(name: str, on_eval, resume=None, on_curve=None):
        p = dataclasses.replace(paths(tmp_path / name),
                                trial_json=write_trial_json(spec, str(tmp_path / name / "t")))
        return run_command(spec, paths=p, on_eval=on_eval, resume_from=resume, on_curve=on_curve)

    whole, points = [], []
    attempt("whole", lambda m, c: whole.append(m), on_curve=points.extend)
    # a curve line every log_every_steps (here every step of 24); an evaluation's own train_loss
    # at a step with a curve point is not a second point
    assert [p["step"] for p in points] == list(range(1, 25))
    assert all(p["train_loss"] > 0 and p["lr"] > 0 for p in points)

    class Stop(Exception):
        pass

    def interrupt(m, ckpt):
        shutil.copytree(ckpt, tmp_path / "kept")  # what the store keeps at the first evaluation
        raise Stop

    with pytest.raises(Stop):
        attempt("first", interrupt)
    resumed = []
    attempt("second", lambda m, c: resumed.append(m), resume=str(tmp_path / "kept"))
    print(f"\n[example trainer] val_loss {[round(m.val_loss, 4) for m in whole]}, resumed "
          f"{[round(m.val_loss, 4) for m in resumed]}")
    assert [m.tokens for m in whole] == [4096, 8192, 12288]
    # The kept copy is the newest save when the 4096 line was read: that save, or a later one when
    # the trainer saved again before the line was polled (a loaded machine). The trainer repeats the
    # lines saved with it, then goes on with the same batches: every line again, bitwise.
    assert [m.tokens for m in resumed] == [m.tokens for m in whole]
    assert [m.val_loss for m in resumed] == [m.val_loss for m in whole]
    # The same trainer as a function (examples/external-python.yaml) resumes from ctx.resume_dir.
    as_function = dataclasses.replace(spec, trainer={"kind": "python", "function": "train:train",
                                                      "spec_dir": str(example.parent)})
    again = []
    run_function(as_function, checkpoint_dir=str(tmp_path / "fn"), resume_from=str(tmp_path / "kept"),
                 on_eval=lambda m, c: again.append(m))
    assert [m.val_loss for m in again] == [m.val_loss for m in whole]
    assert whole[-1].val_loss < whole[0].val_loss < math.log(256)
    assert whole[0].overrides["params"] == spec.shape.param_counts()["total"]  # the planned count, exactly
