"""Adaptive selection: the next runs that pin down N*(C_target) most per FLOP spent.

Given the runs observed so far (N, D, L), a candidate set (N, D, cost in FLOPs) and a target
compute C_target, `propose` fits the law with the run bootstrap and

1. stops when N*(C_target)'s 95% interval is within x/÷ tolerance, i.e. hi / lo <= tolerance^2
   (1.25 -> hi / lo <= 1.5625), the rule this module uses throughout, at this fit and (for a
   caller that passes held_before) the previous one;
2. re-centres first: a budget whose lowest loss sits at its smallest or largest observed size
   (of 3 or more) gets the candidate just beyond that edge (the valley's minimum lies outside
   the sizes run, Chinchilla Sec. 3.2);
3. then picks greedily, among the candidates whose N lies within x/÷ trust_span (4) of the fit's
   N* at their own compute (beyond_trust: far from it the law fits worst), by (variance
   removed from log N*(C_target), plus loss_weight times the
   share removed from log L*, as shares of their present variances) per FLOP, updating the
   ensemble after each pick (design/ensemble.py) so a batch spreads over points
   that tell different things; a pick stops the batch once the predicted interval is within
   tolerance, at max_choices, or when nothing affordable is left.

Every choice says why ("round 3: largest variance reduction per FLOP of log N*(1e18): 0.012
per 1e15 FLOPs"). Runs still in flight (`pending`) count as observed for the ensemble, so a
study that proposes while others run does not pick what they will already tell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scaling_orchestrator.analysis.design.ensemble import Answer, Ensemble, build
from scaling_orchestrator.analysis.laws.registry import law_form

STOP_TOLERANCE = "tolerance"   # N*'s interval within x/÷ tolerance
STOP_BUDGET = "budget"         # no candidate fits in what is left of the budget
STOP_EXHAUSTED = "exhausted"   # every candidate (within the trust region) has been run
LOSS_WEIGHT = 0.5              # L*'s share of the score, next to N*'s (weight 1)
MIN_EDGE_SIZES = 3             # a valley needs 3 sizes before its minimum can sit at an edge
LOSS_POINTS = 5               # sizes on C_target's iso-FLOP line the V-optimal loss term covers
TRUST_SPAN = 4.0               # greedy picks N within x/÷4 of the fit's N* at their compute


@dataclass(frozen=True)
class Runs:
    """Observed runs: params N, tokens D, final loss L (nats/token), IsoFLOP budget, run id."""

    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    budget_flops: np.ndarray
    run: np.ndarray

    @classmethod
    def of(cls, params, tokens, loss, budget_flops, run=None) -> Runs:
        arrays = [np.asarray(x, float).ravel() for x in (params, tokens, loss, budget_flops)]
        for name, x in zip(("params", "tokens", "loss", "budget_flops"), arrays):
            if len(x) != len(arrays[0]):
                raise ValueError(f"{name}: {len(x)} values for {len(arrays[0])} runs")
            if not np.all(np.isfinite(x) & (x > 0)):
                raise ValueError(f"{name}: every value must be finite and > 0")
        ids = np.arange(len(arrays[0])) if run is None else np.asarray(run)
        return cls(*arrays, ids)

    def __len__(self) -> int:
        return len(self.loss)


@dataclass(frozen=True)
class Candidate:
    """A run that could be added: N params, D tokens, its cost in FLOPs (6ND unless known
    exactly), the IsoFLOP budget it belongs to, and the caller's handle for it."""

    params: float
    tokens: float
    cost_flops: float
    budget_flops: float
    key: object = None


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    round: int
    reason: str
    gain: float = 0.0            # predicted Var(log N*(C_target)) removed


@dataclass(frozen=True)
class Proposal:
    """One selection step: the present answer, what to run next and why, or why to stop."""

    answer: Answer
    choices: tuple[Choice, ...]
    stop: str                    # "" | STOP_TOLERANCE | STOP_BUDGET | STOP_EXHAUSTED
    message: str                 # the stop rule's state in one sentence
    notes: tuple[str, ...] = ()
    law: dict = field(default_factory=dict)   # the fitted constants

    @property
    def cost_flops(self) -> float:
        return float(sum(c.candidate.cost_flops for c in self.choices))


def flops_label(x: float) -> str:
    """1e18 -> '1e18', 3.2e17 -> '3.2e17': FLOPs and sizes in the reasons."""
    return f"{x:.3g}".replace("e+", "e")


def per_token_model(params, tokens, cost_flops) -> Callable | None:
    """FLOPs per token as a function of N, log(C / D) = c + s log N by least squares over the
    candidates (the exact Chinchilla App. F count is close to such a law); None when every
    C = 6ND (the closed-form optimum applies). Vectorised, for the ensemble's N* search."""
    N, D, C = (np.asarray(x, float) for x in (params, tokens, cost_flops))
    per_token = C / D
    if np.allclose(per_token, 6.0 * N, rtol=1e-6) or np.ptp(np.log(N)) == 0:
        return None
    s, c = np.polyfit(np.log(N), np.log(per_token), 1)
    return lambda n: np.exp(c + s * np.log(np.asarray(n, float)))


def fit_members(form, runs: Runs, *, n_bootstrap: int, seed: int):
    """(fitted law, finite bootstrap rows) of the form on the runs."""
    N, D, L = runs.params, runs.tokens, runs.loss
    law = form.fit(N, D, L)
    boot = form.bootstrap(N, D, L, runs.run, n_resamples=n_bootstrap, seed=seed, fit=law)
    return law, form.finite_samples(boot["samples"])


def propose(runs: Runs, candidates, *, target_flops: float, budget_flops: float,
            tolerance: float = 1.25, round: int = 1, pending=(), max_choices: int | None = None,
            law: str = "chinchilla", n_bootstrap: int = 200, seed: int = 0,
            flops_per_token: Callable | None = None,
            loss_weight: float = LOSS_WEIGHT, cost_exponent: float = 1.0,
            held_before: bool = True, trust_span: float = TRUST_SPAN,
            stop_at_tolerance: bool = True, loss_span: float | None = None) -> Proposal:
    """The next runs (module doc). budget_flops: what is left to spend on new choices;
    pending: Candidates already chosen and not yet observed. cost_exponent: the score divides
    by cost^cost_exponent: 1 is per FLOP; below 1 discounts cost, leaning toward larger runs
    (arXiv 2604.22753's code uses 0.4), which extrapolate better where the law is only
    approximately right (bench/design.py measures both on published pools). held_before:
    whether the stop rule held at the previous fit; a caller that keeps its fits passes it,
    so the study stops only when two fits in a row are within tolerance (one narrow interval
    is often bootstrap noise, and stopping on it leaves the interval short of 95%).
    trust_span: greedy picks only candidates whose N is within x/÷ trust_span of the fit's
    N* at the candidate's own compute (beyond_trust); math.inf turns the limit off.
    stop_at_tolerance=False: the interval never stops the study nor ends a batch; picks go on
    while the budget allows (beyond the trust region once nothing inside it is left).
    loss_span: the loss term becomes the mean variance of log L over LOSS_POINTS sizes from
    N*/loss_span to N* x loss_span on C_target's iso-FLOP line (V-optimal, arXiv 2604.22753's
    criterion) instead of log L* at each member's own optimum."""
    if not tolerance > 1:
        raise ValueError(f"tolerance: {tolerance} must be > 1 (1.25: within x/÷1.25)")
    if not (budget_flops >= 0 and target_flops > 0):
        raise ValueError(f"budget_flops {budget_flops:g}, target_flops {target_flops:g}: "
                         "must be >= 0 and > 0")
    form = law_form(law)
    fitted, samples = fit_members(form, runs, n_bootstrap=n_bootstrap, seed=seed)
    every = list(candidates) + list(pending)
    answer, ens = build(form, fitted, samples, target_flops=target_flops,
                        observed=(runs.params, runs.tokens, runs.loss),
                        candidates_N=[c.params for c in every],
                        candidates_D=[c.tokens for c in every], flops_per_token=flops_per_token,
                        loss_points=target_points(fitted, target_flops, loss_span, flops_per_token))
    state = stop_message(answer, tolerance)
    if answer.within(tolerance) and held_before and stop_at_tolerance:
        return Proposal(answer, (), STOP_TOLERANCE, state, law=fitted.params())
    if answer.within(tolerance) and stop_at_tolerance:
        state += "; once: more runs to confirm it"
    for i in range(len(candidates), len(every)):
        ens = ens.observe(i)
    picks, notes = recentre(runs, candidates, pending, budget_flops, round)
    for i, _ in picks:
        ens = ens.observe(i)
    left = budget_flops - sum(c.candidate.cost_flops for _, c in picks)
    outside = beyond_trust(fitted, candidates, trust_span, flops_per_token)
    if outside:
        notes.append(f"{len(outside)} of {len(candidates)} candidates left out: N beyond x/÷"
                     f"{trust_span:g} of the fit's N* at their own compute")
    settings = dict(max_choices=None if max_choices is None else max_choices - len(picks),
                    width=math.log(answer.ratio) if stop_at_tolerance else math.inf,
                    tolerance=tolerance, round=round, target_flops=target_flops,
                    loss_weight=loss_weight, cost_exponent=cost_exponent)
    more = greedy(ens, candidates, {i for i, _ in picks} | outside, left, **settings)
    if not (more or picks or stop_at_tolerance) and outside:
        notes.append("nothing left near the fit's N*: picking beyond it while the budget allows")
        more = greedy(ens, candidates, set(), left, **settings)
    choices = tuple(c for _, c in picks) + more
    usable = [c for i, c in enumerate(candidates) if i not in outside]
    stop = "" if choices or pending else exhausted(usable, budget_flops)
    said = why(stop, usable, budget_flops, len(outside), trust_span) if stop else ""
    return Proposal(answer, choices, stop, f"{state}; {said}" if stop else state,
                    tuple(notes), fitted.params())


def target_points(fitted, target_flops: float, span: float | None, flops_per_token=None):
    """(N, D) of LOSS_POINTS sizes N*/span .. N* x span at target_flops (the fit's N*), or None
    without a span or a finite N*."""
    if span is None:
        return None
    with np.errstate(all="ignore"):
        n_opt = float(np.ravel(fitted.compute_optimal(float(target_flops), flops_per_token)[0])[0])
    if not (math.isfinite(n_opt) and n_opt > 0):
        return None
    N = n_opt * span ** np.linspace(-1.0, 1.0, LOSS_POINTS)
    per_token = 6.0 * N if flops_per_token is None else flops_per_token(N)
    return N, target_flops / per_token


def beyond_trust(fitted, candidates, span: float, flops_per_token=None) -> set[int]:
    """Indices of candidates whose N lies beyond x/÷ span of the fitted law's N* at their own
    compute (a run far from its compute optimum: 0.2 or 900 tokens per parameter). There the
    law's variance says such a run is informative, yet the law fits worst: the picks that
    made selection lose to random draws on Epoch's pool (extreme tokens-per-parameter runs
    inflated beta) and, in a real laptop study, runs of 1-4 tokens per parameter that moved
    N* 63% off the held-out budget's measured vertex. The default span, 4, is the grid's own
    bracket (prior.span: sizes N*/4 .. 4 N*). Recentring picks are not limited, and when every
    candidate lies beyond, none is left out (a fit that far off is no guide)."""
    if not (math.isfinite(span) and candidates):
        return set()
    cost = np.array([c.cost_flops for c in candidates], float)
    try:
        n_opt = np.asarray(fitted.compute_optimal(cost, flops_per_token)[0], float).ravel()
    except (ArithmeticError, ValueError):  # no finite optimum: nothing to trust-limit against
        return set()
    ratio = np.array([c.params for c in candidates], float) / n_opt
    far = ~(np.isfinite(ratio) & (ratio >= 1.0 / span) & (ratio <= span))
    return set() if far.all() else {int(i) for i in np.flatnonzero(far)}


def stop_message(answer: Answer, tolerance: float) -> str:
    lo, hi = answer.params_ci
    verdict = "<=" if answer.within(tolerance) else ">"
    return (f"N*({flops_label(answer.target_flops)}) = {answer.params:.3g}, 95% interval "
            f"{lo:.3g}..{hi:.3g}: hi/lo {answer.ratio:.3g} {verdict} tolerance^2 "
            f"{tolerance ** 2:.4g} (x/÷{tolerance:g})")


def exhausted(candidates, budget_flops: float) -> str:
    """Why nothing was chosen: no candidate fits in the budget left, or none would help."""
    if candidates and min(c.cost_flops for c in candidates) > budget_flops:
        return STOP_BUDGET
    return STOP_EXHAUSTED


def why(stop: str, candidates, budget_flops: float, n_beyond: int = 0, span: float = TRUST_SPAN) -> str:
    """The stop in words; candidates: those within the trust region, n_beyond: those beyond it."""
    if stop == STOP_BUDGET:
        cheapest = min(c.cost_flops for c in candidates)
        return (f"stopped: budget spent ({flops_label(budget_flops)} FLOPs left, the cheapest "
                f"candidate costs {flops_label(cheapest)})")
    if candidates:
        return "stopped: no remaining candidate would narrow the interval"
    beyond = f" ({n_beyond} more lie beyond x/÷{span:g} of the fit's N*)" if n_beyond else ""
    return f"stopped: every candidate near the fit's optimum has been run{beyond}"


def edges(runs: Runs) -> list[tuple[float, str, float]]:
    """(budget, "smallest" | "largest", that size's N) for each budget of 3+ sizes whose lowest
    loss (mean over replicates of a size) sits at its smallest or largest size."""
    out = []
    for budget in np.unique(runs.budget_flops):
        at = runs.budget_flops == budget
        sizes = np.unique(runs.params[at])
        if len(sizes) < MIN_EDGE_SIZES:
            continue
        mean = [runs.loss[at & (runs.params == n)].mean() for n in sizes]
        best = int(np.argmin(mean))
        if best in (0, len(sizes) - 1):
            out.append((float(budget), "smallest" if best == 0 else "largest", float(sizes[best])))
    return out


def beyond(c: Candidate, side: str, edge_params: float) -> bool:
    return c.params > edge_params if side == "largest" else c.params < edge_params


def recentre(runs: Runs, candidates, pending, budget_flops: float, round: int):
    """([(candidate index, Choice)], notes): the candidate just beyond each edge minimum."""
    picks, notes, left = [], [], budget_flops
    for budget, side, edge_params in edges(runs):
        def here(c: Candidate) -> bool:
            return (math.isclose(c.budget_flops, budget, rel_tol=1e-6)
                    and beyond(c, side, edge_params))
        if any(here(c) for c in pending):
            continue
        same = [(i, c) for i, c in enumerate(candidates) if here(c)]
        where = (f"budget {flops_label(budget)}: minimum at the {side} size "
                 f"({flops_label(edge_params)})")
        if not same:
            notes.append(f"{where}; no candidate beyond it")
            continue
        i, best = min(same, key=lambda ic: abs(math.log(ic[1].params / edge_params)))
        if best.cost_flops > left:
            notes.append(f"{where}; the next size costs {flops_label(best.cost_flops)} FLOPs, "
                         f"{flops_label(left)} left")
            continue
        picks.append((i, Choice(best, round, f"round {round}: re-centre {where}")))
        left -= best.cost_flops
    return picks, notes


def pick_reason(round: int, target_flops: float, unit: float, per_flop_t: float,
                per_flop_l: float, by_loss: bool, cost_exponent: float = 1.0) -> str:
    """Why a pick was made, naming the quantity whose share of the score was larger; the
    figures are per FLOP whatever the ranking's cost exponent."""
    names = (f"log N*({flops_label(target_flops)})", "log L*")
    values = (per_flop_t, per_flop_l)
    if by_loss:
        names, values = (f"log L*({flops_label(target_flops)})", "log N*"), values[::-1]
    per = {1: " per FLOP", 0: ""}.get(cost_exponent, f" per FLOP^{cost_exponent:g}")
    return (f"round {round}: largest variance reduction{per} of {names[0]}: "
            f"{values[0] * unit:.3g} per {flops_label(unit)} FLOPs ({names[1]}: "
            f"{values[1] * unit:.2g})")


def greedy(ens: Ensemble, candidates, taken: set, budget_flops: float, *, max_choices,
           width: float, tolerance: float, round: int, target_flops: float,
           loss_weight: float, cost_exponent: float = 1.0) -> tuple[Choice, ...]:
    """Picks by score per FLOP, updating the ensemble after each (module doc, step 3).
    width: log(hi / lo) of N*'s interval now; the batch ends once the ensemble's spread
    predicts log(hi / lo) <= 2 log(tolerance), after one pick at least; width inf: never."""
    cost = np.array([c.cost_flops for c in candidates], float)
    if not len(cost):
        return ()
    unit = 10.0 ** math.floor(math.log10(target_flops) - 3)   # C_target 1e21 -> per 1e18
    var_t0, var_l0 = ens.variances()
    if not var_t0 > 0:
        return ()
    open_ = np.ones(len(cost), bool)
    open_[list(taken)] = False
    choices, left = [], budget_flops
    while max_choices is None or len(choices) < max_choices:
        # after the first pick: an interval within tolerance once still gets a run to confirm it
        if choices and math.isfinite(width) and (
                width * math.sqrt(max(ens.variances()[0], 0.0) / var_t0) <= 2 * math.log(tolerance)):
            break
        g_t, g_l = (g[:len(cost)] for g in ens.gains())
        share_l = g_l / var_l0 if var_l0 > 0 else 0.0
        score = np.where(open_ & (cost <= left),
                         (g_t / var_t0 + loss_weight * share_l) / cost ** cost_exponent,
                         -np.inf)
        k = int(np.argmax(score))
        if not (np.isfinite(score[k]) and score[k] > 0):
            break
        by_loss = bool(np.ndim(share_l)) and loss_weight * share_l[k] > g_t[k] / var_t0
        reason = pick_reason(round, target_flops, unit, g_t[k] / cost[k], g_l[k] / cost[k],
                             by_loss, cost_exponent)
        choices.append(Choice(candidates[k], round, reason, float(g_t[k])))
        open_[k], left = False, left - cost[k]
        ens = ens.observe(k)
    return tuple(choices)
