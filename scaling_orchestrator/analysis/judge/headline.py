"""The answer, stated: one recommendation per target budget, with a verdict on how far to
trust it.

A fit yields up to three recommendations per target (parametric, IsoFLOP, envelope). The
headline picks ONE: the method whose extrapolation back-test held best (forecast.py
ranks them: both forecasts within threshold first, then by the worst miss in threshold units),
leaving out a parametric law that is degenerate; with no back-test, the parametric law (it
alone carries intervals for N*, D* and L*). Methods whose back-test held (every judged
forecast within its threshold) are tied: the back-test cannot tell a 9% miss from a 23% one on
a 25% threshold, one held-out budget at a time. A tie goes to a method with intervals, so the
envelope (one winning run per FLOP value, no interval) answers only when no bootstrapped
method's back-test held. E.g. on examples/simulated.yaml's first design (seed 0) the
envelope's N* forecast missed by 9% and IsoFLOP's by 23%, both held; the envelope's headline
was 37% below the law's N* at 3e21 FLOPs with no interval, IsoFLOP's 12% below with the law
inside its interval. Among tied methods with intervals the narrowest N* interval at the
largest target answers: the held-out budget's vertex scatters too widely to rank them (its
own interval, vertex.py), their intervals do not. The verdict:

- "confident": its loss and N* forecasts both held, N*'s 95% interval spans at most 4x
  (CONFIDENT_SPAN) and N* is at most 10x (CONFIDENT_EXTRAPOLATION) the largest model trained;
- "indicative": every forecast that could be judged held, but the interval is wider, the
  reach longer, one forecast could not be judged, or the measured N* it was judged against
  is flagged uncertain (backtest.py's caveat: near-duplicate sizes, a grid capped by the dial);
- "untested": no back-test could run, or it could judge nothing of this method;
- "unreliable": a forecast of this method missed its threshold, or its fit is degenerate.
  When no method's back-test held, the headline's intervals span every sound method's answer
  and interval at that target (the methods' disagreement is then part of the uncertainty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scaling_orchestrator.analysis.judge.recommend import METHODS
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM, forms

CONFIDENT_SPAN = 4.0           # N* interval hi / lo
CONFIDENT_EXTRAPOLATION = 10.0  # N* / largest N trained
# Published fits put alpha and beta at 0.3-0.6 (Chinchilla 0.34/0.28, Besiroglu 0.35/0.37);
# above 3 a term vanishes within a factor of 2 in N or D: the fit has collapsed, not found a law.
MAX_EXPONENT = 3.0
# An irreducible loss under 1e-3 nats/token means the runs did not pin the floor (text
# entropy is ~1.7 nats/token on web text and >2 on the small corpora studied here).
MIN_E = 1e-3


def fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def sci(x: float, digits: int = 2) -> str:
    """2.8e5 for 283000 (digits 2); 1.26e13 for 1.26e13 and 4.2e13 for 4.2e13 (digits 3):
    no '+0' in the exponent, no trailing zeros in the mantissa."""
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    if "." in mantissa and digits > 2:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def span(ci) -> float | None:
    """hi / lo of a positive interval; inf when lo <= 0; None without one."""
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return math.inf if ci[0] <= 0 else ci[1] / ci[0]


def degenerate(result: dict) -> list[str]:
    """What makes the parametric fit nonsense, as short facts (empty when nothing does):
    'A not finite', 'E = 6.1e-12 nats/token, no loss floor', 'alpha = 73 where published
    fits give 0.3-0.6'."""
    par = result.get("parametric", {})
    if not par.get("fittable"):
        return []
    known = forms()
    form = known.get(par.get("law") or DEFAULT_FORM, known[DEFAULT_FORM])
    out = [f"{k} not finite" for k in form.constants
           if k in par and par[k] is None and k not in form.may_be_infinite]
    floor = form.loss_floor   # Farseer's E is an exponent's constant, not a floor
    if floor and par.get(floor) is not None and par[floor] < MIN_E:
        out.append(f"{floor} = {fmt(par[floor])} nats/token, no loss floor")
    out += [f"{k} = {fmt(par[k])} where published fits give 0.3-0.6"
            for k in form.term_exponents if par.get(k) is not None and par[k] > MAX_EXPONENT]
    return out


def broken_methods(result: dict) -> dict:
    """method -> why its fit is degenerate: the parametric law's sentences above; an IsoFLOP
    or envelope power law whose N* or D* falls as compute grows (a = -0.28: a 10x budget
    wanting a 1.9x smaller model)."""
    out = {}
    if degenerate(result):
        out["parametric"] = ", ".join(degenerate(result))
    for method in ("isoflop", "envelope"):
        sec = result.get(method, {})
        bad = [f"{k} = {fmt(sec[k], 3)}" for k in ("a", "b")
               if sec.get("fittable") and sec.get(k) is not None and sec[k] <= 0]
        if bad:
            out[method] = (f"its power law has {' and '.join(bad)}: N* or D* shrinking as "
                           "compute grows")
    return out


def _usable(result: dict) -> list[str]:
    """Methods with recommendations, degenerate ones last."""
    rows = result.get("compute_optimal", [])
    ok = [m for m in METHODS if result.get(m, {}).get("fittable")
          and any(r["method"] == m and r.get("fittable", True) for r in rows)]
    broken = broken_methods(result)
    return [m for m in ok if m not in broken] + [m for m in ok if m in broken]


def choose_method(result: dict) -> tuple[str, str]:
    """(method, why) for the headline: the back-test's ranking among the usable methods,
    degenerate ones last."""
    usable = _usable(result) or ["parametric"]
    broken = broken_methods(result)
    bt = result.get("backtest", {})
    if not bt.get("fittable") or not bt.get("methods"):
        method = usable[0]
        why = f"no back-test ran ({bt.get('reason', 'not attempted')})"
        if method == "parametric":
            why += "; the parametric law alone carries intervals for N*, D* and L*"
    else:
        ranked = [m for m in bt["ranking"] if m in usable]
        ranked = [m for m in ranked if m not in broken] + [m for m in ranked if m in broken]
        best = (ranked or usable)[0]
        ranked = held_with_intervals_first(ranked, bt["methods"], result)
        method = (ranked or usable)[0]
        why = f"{lead_text(method, best, bt['methods'], result)}: {miss_text(bt['methods'][method])}"
        why += budget_caveats(bt)
    if method in broken:
        why += "; every method that could answer is degenerate here, this one included"
    elif broken:
        why += "; " + "; ".join(f"the {m} fit is degenerate ({broken[m]})" for m in broken)
    return method, why


def has_intervals(result: dict, method: str) -> bool:
    """Whether every recommendation of `method` carries a 95% interval for N*."""
    rows = [r for r in result.get("compute_optimal", [])
            if r["method"] == method and r.get("fittable", True)]
    return bool(rows) and all(None not in ((r.get("ci95") or {}).get("params") or [None])
                              for r in rows)


def held(summary: dict) -> bool:
    """Every forecast of the method that could be judged held (tiers 0 and 1)."""
    return summary["tier"] in (0, 1)


def held_with_intervals_first(ranked: list[str], summaries: dict, result: dict) -> list[str]:
    """`ranked` with the methods whose back-test held tied: among them, those with intervals
    come first, the narrowest N* interval at the largest target first (the back-test cannot
    tell them apart, their intervals can); the rest keep their order."""
    held_ones = [m for m in ranked if held(summaries[m])]
    with_ci = sorted((m for m in held_ones if has_intervals(result, m)),
                     key=lambda m: interval_span(result, m))
    first = with_ci + [m for m in held_ones if m not in with_ci]
    return first + [m for m in ranked if m not in first]


def interval_span(result: dict, method: str) -> float:
    """hi / lo of `method`'s N* interval at the largest target it answers (inf without one)."""
    rows = [r for r in result.get("compute_optimal", [])
            if r["method"] == method and r.get("fittable", True)]
    if not rows:
        return math.inf
    top = max(rows, key=lambda r: r["flops"])
    return span((top.get("ci95") or {}).get("params")) or math.inf


def lead_text(method: str, best: str, summaries: dict, result: dict) -> str:
    """Why `method` answers, in the back-test's own words (held / missed / not judged); best:
    the method the back-test alone ranks first."""
    summary = summaries[method]
    if not held(summary):
        return {2: "no method's back-test held; this one missed least",
                3: "no method's forecasts could be judged"}[summary["tier"]]
    if summary["tier"] == 1:
        return "its back-test held where it could be judged"
    if method == best:
        return "its back-test held best"
    if not has_intervals(result, best):
        return (f"its back-test held, as did {best}'s (closer, but without intervals); a tie "
                "within the thresholds goes to a method with intervals")
    return (f"its back-test held, as did {best}'s (closer); a tie within the thresholds goes to "
            f"the narrowest N* interval ({interval_span(result, method):.2g}x against "
            f"{interval_span(result, best):.2g}x at the largest target)")


def budget_caveats(bt: dict) -> str:
    """'; at 1e+21 FLOPs the measured N* is uncertain: ...' for each flagged held-out budget."""
    return "".join(f"; at {fmt(b['held_out_flops'])} FLOPs the measured N* is uncertain: "
                   f"{b['caveat']}" for b in bt.get("budgets", []) if b.get("caveat"))


def miss_text(summary: dict) -> str:
    """'N* -28% at 4.2e+12 FLOPs (threshold 25%); loss +0.26% at 4.2e+12 FLOPs (threshold 3%)':
    each forecast at the held-out budget where it missed most; judged ones first."""
    judged, not_judged = [], []
    for key, name, digits in (("params", "N*", 0), ("loss", "loss", 2)):
        f = summary[key]
        where = f"at {fmt(f.get('held_out_flops'))} FLOPs"
        if f["judged"] and f["error"] is not None:
            judged.append(f"{name} {100 * f['error']:+.{digits}f}% {where} (threshold "
                          f"{100 * f['threshold']:.0f}%)")
        elif f["judged"]:
            judged.append(f"{name}: no finite forecast {where} ({f.get('note', '')})")
        else:
            not_judged.append(f"its {name} forecast could not be judged ({f.get('note', '')})")
    return "; ".join(judged + not_judged)


@dataclass(frozen=True)
class Headline:
    """The recommendation at one target budget: what to train, what loss to expect, and how
    far to trust it."""

    flops: float
    method: str
    params: float
    tokens: float
    loss: float | None
    ci95: dict = field(default_factory=dict)    # "params" / "tokens" / "loss" -> [lo, hi] | None
    verdict: str = "untested"
    why: str = ""
    extrapolation: float | None = None          # N* / the largest N trained

    def to_dict(self) -> dict:
        return {"flops": self.flops, "method": self.method, "params": self.params,
                "tokens": self.tokens, "loss": self.loss,
                "ci95": {k: self.ci95.get(k) for k in ("params", "tokens", "loss")},
                "verdict": self.verdict, "why": self.why, "extrapolation": self.extrapolation}

    @classmethod
    def from_dict(cls, d: dict) -> Headline:
        return cls(float(d["flops"]), d["method"], d["params"], d["tokens"], d.get("loss"),
                   dict(d.get("ci95") or {}), d.get("verdict", "untested"), d.get("why", ""),
                   d.get("extrapolation"))

    def advice(self) -> str:
        """'train 2.8e5 parameters (95%: 7.6e4-5.4e5) on 1.7e7 tokens (95%: 9.6e6-5.5e7);
        expected loss 3.462 (95%: 3.337-3.610)'."""
        ci = self.ci95
        loss = "" if self.loss is None else (
            f"; expected loss {self.loss:.3f}{_interval(ci.get('loss'), '{:.3f}'.format)}")
        return (f"train {sci(self.params)} parameters{_interval(ci.get('params'), sci)} on "
                f"{sci(self.tokens)} tokens{_interval(ci.get('tokens'), sci)}{loss}")

    def sentence(self) -> str:
        """'at 4.2e13 FLOPs: ' and the advice."""
        return f"at {sci(self.flops, 3)} FLOPs: {self.advice()}"


def _interval(ci, show) -> str:
    if not ci or None in ci:
        return " (no interval)"
    return f" (95%: {show(ci[0])}-{show(ci[1])})"


def verdict(summary: dict | None, broken: bool, params_span, reach, caveat: bool = False) -> str:
    if broken or (summary is not None and summary["tier"] == 2):
        return "unreliable"
    if summary is None or summary["tier"] == 3:
        return "untested"
    if (summary["tier"] == 0 and not caveat and params_span is not None
            and params_span <= CONFIDENT_SPAN
            and reach is not None and reach <= CONFIDENT_EXTRAPOLATION):
        return "confident"
    return "indicative"


def spanning_interval(result: dict, flops: float, key: str) -> list[float] | None:
    """[lo, hi] over every sound method's answer and 95% interval for `key` at `flops`: the
    headline's interval when no method's back-test held, so that the methods' disagreement
    is part of its width; None when no method answers."""
    broken = broken_methods(result)
    values = []
    for row in result.get("compute_optimal", []):
        if (row["flops"] == flops and row.get("fittable", True) and row["method"] not in broken
                and row.get(key) is not None):
            ci = (row.get("ci95") or {}).get(key) or []
            values += [v for v in [row[key], *ci] if v is not None and math.isfinite(v)]
    return [min(values), max(values)] if values else None


def headline(result: dict, largest_params: float | None) -> list[Headline]:
    """One Headline per target (result: the to_dict() structure); largest_params: the largest
    N trained, for the extrapolation factor."""
    method, why = choose_method(result)
    bt = result.get("backtest", {})
    summary = (bt.get("methods") or {}).get(method) if bt.get("fittable") else None
    broken = method in broken_methods(result)
    caveat = bool(budget_caveats(bt)) if summary is not None else False
    missed = summary is not None and summary["tier"] == 2
    if missed:
        why += "; its intervals span every method's answer, as no method's back-test held"
    out = []
    for row in result.get("compute_optimal", []):
        if row["method"] != method or not row.get("fittable", True):
            continue
        ci = row.get("ci95") or {}
        if missed:
            ci = {k: spanning_interval(result, row["flops"], k) or ci.get(k)
                  for k in ("params", "tokens", "loss")}
        reach = row["params"] / largest_params if largest_params else None
        out.append(Headline(row["flops"], method, row["params"], row["tokens"], row.get("loss"),
                            {k: ci.get(k) for k in ("params", "tokens", "loss")},
                            verdict(summary, broken, span(ci.get("params")), reach, caveat), why,
                            reach))
    return sorted(out, key=lambda h: h.flops)
