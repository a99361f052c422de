"""The spec's `prior:` section: where each budget's bracket of sizes is centred, N*(C) =
coefficient C^exponent (Chinchilla's 20 tokens per parameter by default, or a previous fit)."""

from __future__ import annotations

from dataclasses import dataclass

from scaling_orchestrator.orchestrator.spec.validate import choice, fail, mapping, number


@dataclass(frozen=True)
class Prior:
    """N*(C) = coefficient * C^exponent, N counted as `params` ("total" or "non_embedding")."""

    coefficient: float  # 0 until a prior.from_fit is read (resolve)
    exponent: float
    span: float = 4.0
    params: str = "total"
    source: str = "tokens_per_param=20"
    from_fit: str = ""  # prior.from_fit as written: the `scaling fit --json` file it comes from

    def optimal_params(self, budget_flops: float) -> float:
        if not self.coefficient:
            raise ValueError(f"prior.from_fit {self.from_fit!r} is not read yet: "
                             "resolve(sweep) (spec/references.py; make_plan runs it) reads it")
        return self.coefficient * float(budget_flops) ** self.exponent



def parse_prior(raw) -> Prior:
    mapping(raw, "prior", ("tokens_per_param", "coefficient", "exponent", "from_fit", "span", "params"))
    span = number(raw.get("span", 4), "prior.span", "a number > 1", lambda x: x > 1)
    params = choice(raw.get("params", "total"), "prior.params", ("total", "non_embedding"))
    given = [k for k in ("tokens_per_param", "coefficient", "from_fit") if k in raw]
    if len(given) > 1 or ("exponent" in raw and "coefficient" not in raw):
        fail(
            "prior",
            {k: raw[k] for k in raw if k not in ("span", "params")},
            "one of tokens_per_param, coefficient (+ exponent: N* = coefficient C^exponent), from_fit",
        )
    if "coefficient" in raw:
        k = number(raw["coefficient"], "prior.coefficient", "a positive number", lambda x: x > 0)
        a = number(raw.get("exponent", 0.5), "prior.exponent", "in (0, 1)", lambda x: 0 < x < 1)
        return Prior(k, a, span, params, f"N* = {k:.3g} C^{a:.3g}")
    if "from_fit" in raw:  # read by resolve (spec/references.py), before planning
        path = raw["from_fit"]
        if not isinstance(path, str) or not path:
            fail("prior.from_fit", path, "a path")
        return Prior(0.0, 0.0, span, params, f"from_fit {path}", from_fit=path)
    # Chinchilla: C = 6 N D and D = r N give N* = sqrt(C / (6 r)); r = 20 -> sqrt(C / 120), so
    # 1e12 FLOPs -> 91k params (Hoffmann et al. 2022, Table 3: 20 tokens per parameter).
    r = number(
        raw.get("tokens_per_param", 20), "prior.tokens_per_param", "a positive number", lambda x: x > 0
    )
    return Prior((6.0 * r) ** -0.5, 0.5, span, params, f"tokens_per_param={r:g}: N* = sqrt(C/{6 * r:g})")
