"""The spec's `simulate:` section: a rehearsal whose losses are drawn from a known law.

`simulate: {law: chinchilla, params: {E, A, B, alpha, beta}, noise: 0.01, seed: 0}` names a law
form of the analysis registry and its constants; backends/simulate.py draws each trial's losses
from it. Checked here, with the rest of the spec, so a law that cannot give a loss is refused
before any trial is planned.
"""

from __future__ import annotations

import math

from scaling_orchestrator.analysis.laws.curves.fit import CURVE_LAWS, curve_law_loss
from scaling_orchestrator.analysis.laws.curves.forms import curve_form
from scaling_orchestrator.analysis.laws.curves.schedule import recipe_lr
from scaling_orchestrator.analysis.laws.registry import forms
from scaling_orchestrator.orchestrator.spec.validate import SpecError, choice, mapping, number, whole_number

DEFAULT_NOISE = 0.01      # 1% multiplicative run-to-run noise
KEYS = ("law", "params", "noise", "seed")
PROBE = (1e8, 2e9)        # a (N, D) where every sensible law gives a finite loss > 0


def parse_simulate(raw) -> dict:
    """The `simulate:` section, checked: {"law", "params": {constant: float}, "noise", "seed"}."""
    raw = mapping(raw, "simulate", KEYS)
    known = forms()
    law = choice(raw.get("law", "chinchilla"), "simulate.law", tuple(known) + CURVE_LAWS)
    if law in CURVE_LAWS:
        return parse_curve_law(raw, law)
    form = known[law]
    if "unique_tokens" in form.required_columns:
        raise SpecError(f"simulate.law: {law!r} needs unique tokens per run, which a trial "
                        "does not have; allowed: "
                        + ", ".join(n for n, f in known.items() if not f.required_columns))
    given = mapping(raw.get("params"), "simulate.params", form.constants)
    missing = [k for k in form.constants if k not in given]
    if missing:
        raise SpecError(f"simulate.params: {', '.join(missing)} missing; the {law} law needs "
                        f"{', '.join(form.constants)}")
    params = {k: number(given[k], f"simulate.params.{k}") for k in form.constants}
    probe = float(form.predict_values(params, *PROBE))
    if not (math.isfinite(probe) and probe > 0):
        raise SpecError(f"simulate.params: the {law} law gives loss {probe:g} at N={PROBE[0]:g}, "
                        f"D={PROBE[1]:g}; must be a finite loss > 0")
    noise = number(raw.get("noise", DEFAULT_NOISE), "simulate.noise", "a number in [0, 1)",
                   lambda x: 0 <= x < 1)
    seed = whole_number(raw.get("seed", 0), "simulate.seed")
    return {"law": law, "params": params, "noise": noise, "seed": seed}


def parse_curve_law(raw: dict, law: str) -> dict:
    """A curve law across sizes (analysis/laws/curves/forms.py, joint): each trial's losses are
    drawn under its own schedule. Its constants: E, A_N, alpha_N and the law's own."""
    constants = curve_form(law, joint=True).constants
    given = mapping(raw.get("params"), "simulate.params", constants)
    missing = [k for k in constants if k not in given]
    if missing:
        raise SpecError(f"simulate.params: {', '.join(missing)} missing; the {law} law across sizes "
                        f"needs {', '.join(constants)}")
    params = {k: number(given[k], f"simulate.params.{k}") for k in constants}
    probe = float(curve_law_loss(law, params, PROBE[0], recipe_lr(1000, 1e-3), [1000])[0])
    if not (math.isfinite(probe) and probe > 0):
        raise SpecError(f"simulate.params: the {law} law gives loss {probe:g} at N={PROBE[0]:g} after a "
                        "1000-step cosine at lr 1e-3; must be a finite loss > 0")
    noise = number(raw.get("noise", DEFAULT_NOISE), "simulate.noise", "a number in [0, 1)",
                   lambda x: 0 <= x < 1)
    seed = whole_number(raw.get("seed", 0), "simulate.seed")
    return {"law": law, "params": params, "noise": noise, "seed": seed}
