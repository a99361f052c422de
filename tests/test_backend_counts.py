"""model.counts: the planner sizes a model of the user's own with the user's counts, and a
backend section planned into trials (ids, resources, the plan's JSON round trip)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError

EXTERNAL = Path(__file__).resolve().parents[1] / "examples" / "external.yaml"
COUNTS = '''
def counts(shape):
    d, layers, vocab = shape["d_model"], shape["n_layer"], shape["vocab_size"]
    params = 12 * layers * d * d + vocab * d      # no biases, no LayerNorms, no positions
    return {"params": params, "flops_per_token": 6.0 * params}

def broken(shape):
    return {"params": -1, "flops_per_token": 1.0}
'''


def spec(tmp_path: Path, **model) -> dict:
    (tmp_path / "lab_counts.py").write_text(COUNTS)
    raw = yaml.safe_load(EXTERNAL.read_text())
    raw["model"].update(model)
    return raw


def test_model_counts_replace_the_block_formulas_in_the_plan(tmp_path):
    plan = make_plan(parse_sweep(spec(tmp_path, counts="lab_counts:counts"), str(tmp_path / "s.yaml")))
    builtin = make_plan(parse_sweep(spec(tmp_path), str(tmp_path / "s.yaml")))
    for trial in plan.trials:
        d, layers = trial.shape.d_model, trial.shape.n_layer
        params = 12 * layers * d * d + 256 * d
        assert trial.shape.param_counts()["total"] == params and trial.shape.flops_per_token() == 6.0 * params
        assert abs(trial.flops / trial.budget_flops - 1) < 0.02  # tokens from the user's FLOPs
        again = TrialSpec.from_dict(trial.to_dict())  # as a Ray worker rebuilds it
        assert again == trial and again.trial_id == trial.trial_id
    assert {t.trial_id for t in plan.trials}.isdisjoint(t.trial_id for t in builtin.trials)
    first, plain = plan.trials[0], builtin.trials[0]
    assert first.train.total_tokens != plain.train.total_tokens


def test_model_counts_errors_name_the_field(tmp_path):
    for counts, start in [("lab_counts:missing", "model.counts: lab_counts:missing: lab_counts has no"),
                          ("lab_counts:broken", "model.counts: lab_counts:broken(1L x 16d)['params']: -1"),
                          ("lab_counts.counts", "model.counts: 'lab_counts.counts'")]:
        with pytest.raises(SpecError) as info:
            parse_sweep(spec(tmp_path, counts=counts), str(tmp_path / "s.yaml"))
        assert start in str(info.value) and "\n" not in str(info.value)


def test_a_backend_is_planned_into_every_trial(tmp_path):
    raw = spec(tmp_path)
    raw["resources"] = {"num_workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 1}
    plan = make_plan(parse_sweep(raw, str(EXTERNAL)))
    assert {t.backend for t in plan.trials} == {"command"}
    assert {(t.resources.num_workers, t.resources.gpus_per_worker) for t in plan.trials} == {(0, 2.0)}
    assert plan.trials[0].trainer["spec_dir"] == str(EXTERNAL.parent)
    raw.pop("backend")
    ids = {t.trial_id for t in make_plan(parse_sweep(raw, str(EXTERNAL))).trials}
    assert ids.isdisjoint(t.trial_id for t in plan.trials)  # another trainer, another result
