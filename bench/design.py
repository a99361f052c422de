"""Adaptive design vs the fixed grid: FLOPs to pin N* down, its error and interval coverage,
and adaptive selection from published pools of runs.

    python bench/design.py [--seeds 20] [--noise 0.01] [--bootstrap 200] [--skip-simulated]
                           [--skip-pools] [--draws 10] [--law auto]

1. Simulated truth (analysis level: a law oracle with log-normal noise stands in for trials,
   no Ray; every figure printed says "simulated"). The law is Epoch's refit of Chinchilla;
   candidates are budgets 1e18..1e21 in half-decade steps x 7 sizes N*/8..8N* (N* = sqrt(C/120),
   6ND), the target is C = 3e21. The grid runs the middle 5 sizes of each budget, budgets in
   increasing order, and stops at the first budget whose fit brings N*(C)'s 95% interval within
   x/÷1.25 (hi/lo <= 1.5625) at two fits in a row; the adaptive design seeds at the 3 smallest
   budgets x the middle 3 sizes, then adds scaling_orchestrator.analysis.design.select.propose's picks (3 at a
   time) until
   the same rule holds or it has spent what the whole grid costs. Per seed: the FLOPs each spent, N*(C)'s
   error and
   whether its 95% interval holds the true N*. Goal: adaptive <= 0.5x the grid's FLOPs,
   coverage >= 90%.
2. Published pools (the shared reference-data folder: Epoch's Chinchilla points, the OLMo
   ladder's c4 losses; a pool that is absent is skipped): the largest-compute 10% of runs are
   held out, `scaling select`'s procedure (its defaults: --law auto, gain / cost^0.4, the
   budget spent) picks runs with 10% of the rest's FLOPs (target: the largest held-out
   compute), and the held-out losses are predicted from the fit of the chosen runs and of
   random selections at the same cost (`--draws`, 10 by default: each draw is 3 fits, about
   15 s on a loaded 2-core machine), each fitted with the law `--law` picks on it. Figures:
   mean |relative error| on the held-out runs (the protocol of arXiv 2604.22753), selection
   vs the random draws' median side by side, also with chinchilla fits for both, and how far
   N* at the target lands from the all-data fit's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv

from scaling_orchestrator.analysis.design.law_pick import pick_law
from scaling_orchestrator.analysis.design.pool import Pool, select_pool
from scaling_orchestrator.analysis.design.select import Candidate, Runs, propose
from scaling_orchestrator.analysis.laws.choice import AUTO
from scaling_orchestrator.analysis.laws.forms.chinchilla import optimal_6nd
from scaling_orchestrator.analysis.laws.registry import law_form

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference-data"
TRUTH = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
BUDGETS = tuple(1e18 * 10 ** (k / 2) for k in range(7))  # 1e18 .. 1e21
OFFSETS = tuple(2.0**k for k in range(-3, 4))  # N*/8 .. 8N*, grid: the middle 5
TARGET = 3e21
TOLERANCE = 1.25


def true_loss(N, D):
    return TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]


def candidates() -> list[Candidate]:
    out = []
    for C in BUDGETS:
        n_prior = (C / 120) ** 0.5
        out += [
            Candidate(n_prior * k, C / (6 * n_prior * k), C, C, key=(C, i)) for i, k in enumerate(OFFSETS)
        ]
    return out


class Oracle:
    """A law with fresh log-normal noise per run: what a trial would report, simulated."""

    def __init__(self, seed: int, noise: float):
        self.rng, self.noise, self.seen = np.random.default_rng(seed), noise, {}

    def loss(self, c: Candidate) -> float:
        if c.key not in self.seen:
            self.seen[c.key] = float(
                true_loss(c.params, c.tokens) * np.exp(self.noise * self.rng.standard_normal())
            )
        return self.seen[c.key]


def runs_of(chosen, oracle: Oracle) -> Runs:
    return Runs.of(
        [c.params for c in chosen],
        [c.tokens for c in chosen],
        [oracle.loss(c) for c in chosen],
        [c.budget_flops for c in chosen],
    )


def outcome(answer, spent: float, reached: bool) -> dict:
    truth = optimal_6nd(TRUTH["A"], TRUTH["B"], TRUTH["alpha"], TRUTH["beta"], TARGET)[0]
    lo, hi = answer.params_ci
    return {
        "flops": spent,
        "reached": reached,
        "error": abs(answer.params / truth - 1),
        "covered": bool(lo <= truth <= hi),
        "ratio": answer.ratio,
    }


def grid_design(oracle: Oracle, n_bootstrap: int, seed: int) -> dict:
    pool = candidates()
    chosen, held = [], False
    for C in BUDGETS:
        chosen += [c for c in pool if c.budget_flops == C and c.key[1] in (1, 2, 3, 4, 5)]
        if C < BUDGETS[2]:
            continue
        p = propose(
            runs_of(chosen, oracle),
            [],
            target_flops=TARGET,
            budget_flops=0,
            tolerance=TOLERANCE,
            n_bootstrap=n_bootstrap,
            seed=seed,
            held_before=held,
        )
        if p.stop == "tolerance":
            break
        held = p.answer.within(TOLERANCE)
    spent = sum(c.cost_flops for c in chosen)
    return outcome(p.answer, spent, p.stop == "tolerance")


def adaptive_design(oracle: Oracle, n_bootstrap: int, seed: int, cap_flops: float) -> dict:
    pool = candidates()
    chosen = [c for c in pool if c.budget_flops <= BUDGETS[2] and c.key[1] in (2, 3, 4)]
    held = False
    for round_ in range(2, 100):
        spent = sum(c.cost_flops for c in chosen)
        left = [c for c in pool if c not in chosen]
        p = propose(
            runs_of(chosen, oracle),
            left,
            target_flops=TARGET,
            budget_flops=cap_flops - spent,
            tolerance=TOLERANCE,
            round=round_,
            max_choices=3,
            n_bootstrap=n_bootstrap,
            seed=seed,
            held_before=held,
        )
        held = p.answer.within(TOLERANCE)
        if p.stop:
            return outcome(p.answer, spent, p.stop == "tolerance")
        chosen += [c.candidate for c in p.choices]
    raise AssertionError("100 rounds without a stop")


def simulated(args) -> None:
    grid_cost = sum(5 * C for C in BUDGETS)
    rows = []
    for seed in range(args.seeds):
        start = time.time()
        grid = grid_design(Oracle(seed, args.noise), args.bootstrap, seed)
        adaptive = adaptive_design(Oracle(seed, args.noise), args.bootstrap, seed, grid_cost)
        rows.append((grid, adaptive))
        print(
            f"  seed {seed}: "
            + ", ".join(
                f"{name} {d['flops']:.3g} FLOPs (x/÷{d['ratio'] ** 0.5:.3f}, error {d['error']:.1%}, "
                f"{'covers' if d['covered'] else 'misses'})"
                for name, d in (("grid", grid), ("adaptive", adaptive))
            )
            + f" [{time.time() - start:.0f} s]",
            flush=True,
        )
    n = len(rows)
    grid, adaptive = ({k: np.array([r[i][k] for r in rows]) for k in rows[0][0]} for i in (0, 1))
    print(
        f"simulated ({n} seeds, {args.noise:.0%} noise, target {TARGET:.0e}, law oracle, no "
        "training): every figure below is a rehearsal, not a measurement"
    )
    print(
        f"simulated adaptive / grid FLOPs to x/÷{TOLERANCE}: "
        f"{np.median(adaptive['flops'] / grid['flops']):.2f}x (median; goal <= 0.5x; a grid "
        "that never got there counts its whole cost, a lower bound on what it needs)"
    )
    print(
        f"simulated reached x/÷{TOLERANCE}: adaptive {adaptive['reached'].sum()}/{n}, "
        f"grid {grid['reached'].sum()}/{n} (grid: at most {grid_cost:.3g} FLOPs)"
    )
    for name, d in (("adaptive", adaptive), ("grid", grid)):
        print(
            f"simulated {name} N*({TARGET:.0e}) error: median {np.median(d['error']):.1%}, "
            f"worst {d['error'].max():.1%}"
        )
        print(
            f"simulated {name} 95% interval coverage of the true N*: {d['covered'].sum()}/{n} "
            f"({d['covered'].mean():.0%}; goal >= 90%)"
        )


def reference_pools() -> dict:
    """name -> (N, D, C, L) for each pool present."""
    pools = {}
    epoch = REFERENCE / "epoch_chinchilla_besiroglu2024" / "svg_extracted_data.csv"
    if epoch.exists():
        t = pa_csv.read_csv(epoch)
        N, C, L = (t[c].to_numpy() for c in ("Model Size", "Training FLOP", "loss"))
        keep = L < np.sort(L)[-5]  # Epoch drops the 5 highest losses: 240 points
        pools["epoch_chinchilla"] = (N[keep], C[keep] / (6 * N[keep]), C[keep], L[keep])
    ladder = REFERENCE / "olmo_ladder_bhagia2024" / "ladder_final_points.csv"
    if ladder.exists():
        t = pa_csv.read_csv(ladder)
        N, D = t["n_params_nonembed"].to_numpy(), t["tokens"].to_numpy()
        pools["olmo_ladder_c4"] = (N, D, 6 * N * D, t["c4_en_loss"].to_numpy())
    return pools


def held_out_error(law, N, D, L) -> float:
    return float(np.mean(np.abs(law.predict(N, D) / L - 1)))


def random_rows(cost, budget: float, rng) -> list[int]:
    """Rows in random order, each kept while it fits in what is left of the budget."""
    rows, left = [], budget
    for i in rng.permutation(len(cost)):
        if cost[i] <= left:
            rows.append(int(i))
            left -= cost[i]
    return rows


def pool_bench(name: str, data, args) -> None:
    N, D, C, L = (np.asarray(x, float) for x in data)
    held = C >= np.quantile(C, 0.9)
    pool = Pool.of(N[~held], D[~held], C[~held], L[~held])
    budget, target = 0.1 * pool.total_flops, float(C[held].max())

    def judged(rows, law: str) -> tuple[float, float]:
        """(held-out mean |relative error|, |log| of N*(target) over the all-data fit's) of
        the law fitted on the rows."""
        fitted = law_form(law).fit(pool.params[rows], pool.tokens[rows], pool.loss[rows])
        return (
            held_out_error(fitted, N[held], D[held], L[held]),
            abs(np.log(fitted.compute_optimal(target)[0] / n_all)),
        )

    everything = law_form("chinchilla").fit(N[~held], D[~held], L[~held])
    n_all = everything.compute_optimal(target)[0]
    print(
        f"{name}: {held.sum()} held-out runs (top 10% by compute), pool {len(pool)} runs, "
        f"budget 10% of the pool's FLOPs, target {target:.3g} FLOPs"
    )
    print(f"{name} held-out error, all data (chinchilla): "
          f"{held_out_error(everything, N[held], D[held], L[held]):.2%}")
    start = time.time()
    rng, randoms = np.random.default_rng(0), []
    for _ in range(args.draws):
        r = np.asarray(random_rows(pool.cost_flops, budget, rng))
        if len(r) >= 2 * len(law_form("chinchilla").constants):
            law, _ = pick_law(pool.runs(r), args.law)   # what `scaling select --law` would fit
            randoms.append((*judged(r, law), judged(r, "chinchilla")[0]))
    randoms = np.array(randoms)
    print(f"{name} random 10%: {len(randoms)} draws, each fitted as `scaling select --law {args.law}` "
          f"fits its choice [{time.time() - start:.0f} s]")
    start = time.time()
    selection = select_pool(pool, target_flops=target, budget_flops=budget, law=args.law,
                            n_bootstrap=args.bootstrap)
    rows = np.asarray(selection.rows)
    error, miss = judged(rows, selection.law)
    rank = np.sum(randoms[:, 0] >= error)
    print(f"{name} select: {len(rows)} runs, {selection.spent_flops / pool.total_flops:.1%} of the "
          f"pool's FLOPs, {selection.law} law, stop: {selection.stop} [{time.time() - start:.0f} s]")
    print(f"{name} select vs random median held-out loss error: {error:.2%} vs "
          f"{np.median(randoms[:, 0]):.2%} (at or below {rank}/{len(randoms)} draws)")
    print(f"{name} select vs random median held-out loss error, both fitted with chinchilla: "
          f"{judged(rows, 'chinchilla')[0]:.2%} vs {np.median(randoms[:, 2]):.2%}")
    print(f"{name} select vs random median N* off the all-data chinchilla fit's: "
          f"{np.expm1(miss):.0%} vs {np.median(np.expm1(randoms[:, 1])):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--law", default=AUTO)
    parser.add_argument("--skip-simulated", action="store_true")
    parser.add_argument("--skip-pools", action="store_true")
    args = parser.parse_args()
    if not args.skip_pools:
        pools = reference_pools()
        if not pools:
            print(f"published pools: none found under {REFERENCE.name}; skipped")
        for name, data in pools.items():
            pool_bench(name, data, args)
    if not args.skip_simulated:
        simulated(args)


if __name__ == "__main__":
    main()
