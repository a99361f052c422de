"""The adaptive selection core (analysis/adaptive.py, analysis/adaptive_ensemble.py) on a known law.

A Chinchilla law (Epoch's constants) with 1% multiplicative noise; candidates are 6 budgets
1e17..1e20 FLOPs x 7 sizes N*/4..4N* (6ND); the seed is the 3 smallest budgets x the middle 3
sizes. Each proposal is a fit plus a 100-resample bootstrap (about 3 s on 2 cores).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling_orchestrator.analysis.design.ensemble import Ensemble
from scaling_orchestrator.analysis.design.select import (
    STOP_BUDGET,
    STOP_TOLERANCE,
    Candidate,
    Runs,
    edges,
    propose,
)
from scaling_orchestrator.analysis.laws.forms.chinchilla import optimal_6nd

TRUTH = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
BUDGETS = np.geomspace(1e17, 1e20, 6)
TARGET = 1e21


def law(N, D):
    return TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]


def grid(offsets=np.geomspace(0.25, 4, 7)) -> list[Candidate]:
    out = []
    for C in BUDGETS:
        n_star = optimal_6nd(TRUTH["A"], TRUTH["B"], TRUTH["alpha"], TRUTH["beta"], C)[0]
        out += [Candidate(n_star * k, C / (6 * n_star * k), C, C) for k in offsets]
    return out


def observe(cands, rng, noise=0.01) -> Runs:
    N = np.array([c.params for c in cands])
    D = np.array([c.tokens for c in cands])
    L = law(N, D) * np.exp(noise * rng.standard_normal(len(N)))
    return Runs.of(N, D, L, [c.budget_flops for c in cands])


def extend(runs: Runs, cands, rng) -> Runs:
    more = observe(cands, rng)
    return Runs.of(*(np.concatenate([a, b]) for a, b in
                     ((runs.params, more.params), (runs.tokens, more.tokens),
                      (runs.loss, more.loss), (runs.budget_flops, more.budget_flops))))


@pytest.fixture(scope="module")
def seeded():
    cands = grid()
    seed = [c for i, c in enumerate(cands) if c.budget_flops <= BUDGETS[2] and i % 7 in (2, 3, 4)]
    rest = [c for c in cands if c not in seed]
    rng = np.random.default_rng(0)
    return observe(seed, rng), rest, rng


@pytest.fixture(scope="module")
def first(seeded):
    runs, rest, _ = seeded
    budget = 0.2 * sum(c.cost_flops for c in rest)
    return propose(runs, rest, target_flops=TARGET, budget_flops=budget, round=2,
                   n_bootstrap=100, max_choices=6, trust_span=math.inf), budget  # the law is exact here


def test_choices_are_distinct_affordable_and_explained(first):
    proposal, budget = first
    assert proposal.stop == "" and 1 <= len(proposal.choices) <= 6
    picked = [c.candidate for c in proposal.choices]
    assert len(set(picked)) == len(picked)
    assert proposal.cost_flops <= budget
    for choice in proposal.choices:
        assert choice.round == 2 and choice.reason.startswith("round 2: ")
        assert ("re-centre budget" in choice.reason
                or "largest variance reduction per FLOP of log N*(1e21)" in choice.reason
                or "largest variance reduction per FLOP of log L*(1e21)" in choice.reason)


def test_observing_the_picks_narrows_the_interval(seeded, first):
    runs, rest, rng = seeded
    proposal, budget = first
    before = proposal.answer.ratio
    more = extend(runs, [c.candidate for c in proposal.choices], rng)
    left = [c for c in rest if c not in {ch.candidate for ch in proposal.choices}]
    after = propose(more, left, target_flops=TARGET, budget_flops=budget - proposal.cost_flops,
                    round=3, n_bootstrap=100, max_choices=4, trust_span=math.inf).answer
    assert after.n_points == len(runs) + len(proposal.choices)
    assert after.ratio < before / 2     # seed alone: N*(1e21) known to x/÷ 10 or worse


def test_picks_stay_near_the_fits_optimum(seeded):
    # Runs 16x off their budget's N* (0.08 or 5,000 tokens per parameter) are where a law fits
    # worst; the trust region (x/÷4 of the fit's N* at the run's compute) keeps them out.
    runs, rest, _ = seeded
    far = [Candidate(c.params * k, c.tokens / k, c.cost_flops, c.budget_flops)
           for c in rest if c.params == max(r.params for r in rest if r.budget_flops == c.budget_flops)
           for k in (16.0, 1 / 64)]
    proposal = propose(runs, rest + far, target_flops=TARGET, budget_flops=1e30, round=2,
                       n_bootstrap=50, max_choices=6)
    assert proposal.choices and not {c.candidate for c in proposal.choices} & set(far)
    assert any("candidates left out: N beyond x/÷4 of the fit's N*" in n for n in proposal.notes)


def test_stop_rule_tolerance_when_interval_is_narrow():
    rng = np.random.default_rng(1)
    runs = observe(grid(np.geomspace(0.25, 4, 9)), rng, noise=0.001)
    proposal = propose(runs, grid()[:3], target_flops=3e20, budget_flops=1e30,
                       tolerance=1.25, n_bootstrap=100)
    assert proposal.stop == STOP_TOLERANCE and proposal.choices == ()
    assert proposal.answer.ratio <= 1.25 ** 2
    assert "<= tolerance^2 1.562" in proposal.message
    lo, hi = proposal.answer.params_ci
    truth = optimal_6nd(TRUTH["A"], TRUTH["B"], TRUTH["alpha"], TRUTH["beta"], 3e20)[0]
    assert lo <= truth <= hi


def test_without_the_tolerance_stop_the_budget_is_spent():
    """The same narrow interval, stop_at_tolerance=False: the picks go on while runs fit the
    budget, and the V-optimal loss term (loss_span) ranks them."""
    rng = np.random.default_rng(1)
    runs = observe(grid(np.geomspace(0.25, 4, 9)), rng, noise=0.001)
    more = grid(np.geomspace(0.3, 3.3, 4))
    budget = sum(c.cost_flops for c in more[:6])
    proposal = propose(runs, more, target_flops=3e20, budget_flops=budget, tolerance=1.25,
                       n_bootstrap=100, stop_at_tolerance=False, loss_span=4.0, cost_exponent=0.4)
    assert proposal.answer.within(1.25) and proposal.stop == ""
    assert len(proposal.choices) >= 2 and proposal.cost_flops <= budget
    assert "confirm" not in proposal.message


def test_stop_rule_budget_when_nothing_is_affordable(seeded):
    runs, rest, _ = seeded
    proposal = propose(runs, rest, target_flops=TARGET, budget_flops=1e16, n_bootstrap=100)
    assert proposal.stop == STOP_BUDGET and proposal.choices == ()
    assert "stopped: budget spent" in proposal.message and "> tolerance^2" in proposal.message


def test_edge_minimum_is_recentred_first():
    """Budget 1e18 run only at N*/4, N*/2.8, N*/2: its lowest loss sits at the largest size."""
    cands = grid()
    at = [c for c in cands if c.budget_flops == BUDGETS[2]]
    seed = [c for c in cands if c.budget_flops <= BUDGETS[1] and c in cands[1:6] + cands[8:13]]
    seed += at[:3]
    rng = np.random.default_rng(2)
    runs = observe(seed, rng, noise=0.002)
    assert (float(BUDGETS[2]), "largest", at[2].params) in edges(runs)
    rest = [c for c in cands if c not in seed]
    proposal = propose(runs, rest, target_flops=TARGET, budget_flops=1e21, round=2,
                       n_bootstrap=100, max_choices=3)
    recentre = [c for c in proposal.choices if "re-centre" in c.reason]
    assert recentre and recentre[0].candidate == at[3]          # the next size up
    assert recentre[0].reason == (f"round 2: re-centre budget {BUDGETS[2]:.3g}: minimum at the "
                                  f"largest size ({at[2].params:.3g})").replace("e+", "e")


def test_kalman_update_removes_exactly_the_predicted_variance():
    """Square-root update (Whitaker & Hamill 2002): Var(t) after observing y_k is
    Var(t) - Cov(t, y_k)^2 / (Var y_k + sigma^2), and observing y_k again helps less."""
    rng = np.random.default_rng(3)
    theta = rng.standard_normal((500, 3))
    t = theta @ [1.0, 0.5, 0.0]
    y = theta @ rng.standard_normal((3, 4)) * 0.1
    ens = Ensemble(t - t.mean(), 0.1 * (t - t.mean()), y - y.mean(0), 0.01 ** 2)
    gain_t, _ = ens.gains()
    k = int(np.argmax(gain_t))
    after = ens.observe(k)
    assert after.variances()[0] == pytest.approx(ens.variances()[0] - gain_t[k], rel=1e-9)
    assert after.gains()[0][k] < gain_t[k] / 10
