"""Trunks + the curve method against the grid, branches and adaptive designs, on a known curve law.

    python bench/trunks.py [--seeds 20] [--first-seed 0] [--scales 3e19 1e20 3e20] [--resamples 100]
                           [--designs trunks grid branches adaptive] [--above 3] [--above-share 0.1]
                           [--below 1] [--repeats 6] [--largest-repeats 1] [--adaptive-budget 2.19e21]

The truth is a joint multi-power law (analysis/laws/curves, Luo et al. 2025) whose floor is
Epoch's Chinchilla N term (E = 1.82, A_N = 482, alpha_N = 0.348) and whose data term is Epoch's
D term read through examples/simulated.yaml's recipe (lr 1e-3, 262,144 tokens a step: S1 =
3.8e-9 D, so A = 2085 x (3.8e-9)^0.366 = 1.72, alpha = 0.366), with an annealing term (B = 300,
C = 2, beta = 0.6, gamma = 0.5). Its N*(C) is the minimum of its own IsoFLOP profile under the
reference schedule (cosine to 10%, 5% warmup) over examples/simulated.yaml's depth dial.

Per study scale (the largest budget B: budgets B x 10^(-k/2), k = 0..4) and seed, each design is
planned as `scaling run` would (designs.make_plan on examples/simulated.yaml with the simulate
section set to the truth), every trial's evaluations are drawn as the simulate backend draws them
(the same curve_loss and per-run noise, a branch sharing its trunk's draw), and the rows are
fitted: the grid and branches by `scaling fit` (the headline's N*), trunks by the curve method
(multi_power). The adaptive design runs as its queue would, a batch of 4 a round (adaptive_study:
round 1 its seed trials, then propose's picks from its candidates until its stop rule, N*(target
= 1e21) within x/÷1.25 at two fits in a row, or --adaptive-budget), and is fitted like the grid;
its FLOPs vary by seed, and the most any seed spent is its figure. The trunks design takes
--above, --above-share, --below and --repeats (designs/trunks.py); --first-seed draws seeds no
design choice saw. A seed succeeds when N*(C_target = 1e21) is within x1.25 of the truth and
the truth lies in its 95% interval.
Prints per design and scale the study's FLOPs and the share of seeds that succeed, then
`FLOPs to x1.25 with the truth inside in 90% of seeds: ...` per design and
`trunks+curve vs grid: X`. No Ray.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_orchestrator.analysis import fit  # noqa: E402
from scaling_orchestrator.analysis.design.select import Runs, per_token_model, propose  # noqa: E402
from scaling_orchestrator.analysis.laws.curves.fit import CurveFit  # noqa: E402
from scaling_orchestrator.analysis.laws.curves.forms import curve_form  # noqa: E402
from scaling_orchestrator.analysis.methods.curve import CurveMethod, Sizes, curve_section  # noqa: E402
from scaling_orchestrator.models.training.config import Measurement, lr_at  # noqa: E402
from scaling_orchestrator.orchestrator.backends.simulate import curve_loss, eval_steps, run_noise  # noqa: E402
from scaling_orchestrator.orchestrator.designs import make_plan  # noqa: E402
from scaling_orchestrator.orchestrator.designs.adaptive import candidates as adaptive_pool  # noqa: E402
from scaling_orchestrator.orchestrator.designs.adaptive_queue import candidate  # noqa: E402
from scaling_orchestrator.orchestrator.spec.sections.design import AdaptiveOptions, Design, TrunksOptions  # noqa: E402
from scaling_orchestrator.orchestrator.spec.sweep import load_sweep  # noqa: E402
from scaling_orchestrator.orchestrator.store.results import measurement_row  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "examples" / "simulated.yaml"
TRUTH = {"E": 1.82, "A_N": 482.0, "alpha_N": 0.348, "A": 1.72, "alpha": 0.366, "B": 300.0, "C": 2.0,
         "beta": 0.6, "gamma": 0.5}
TARGET = 1e21
TOLERANCE = 1.25
SHARE = 0.9


def sweep_for(scale: float, design: Design, seed: int):
    sweep = load_sweep(SPEC)
    # the design the figures in bench/README.md were measured on (examples/simulated.yaml before
    # its 15-size grid): 5 sizes per budget over N*/4 .. 4 N*, depth at most 48
    model = dataclasses.replace(sweep.model, shapes=tuple(s for s in sweep.model.shapes if s.n_layer <= 48))
    sweep = dataclasses.replace(sweep, sizes_per_budget=5, prior=dataclasses.replace(sweep.prior, span=4.0),
                                model=model)
    budgets = tuple(sorted(scale * 10 ** (-k / 2) for k in range(5)))
    simulate = {"law": "multi_power", "params": TRUTH, "noise": 0.01, "seed": seed}
    return dataclasses.replace(sweep, budgets_flops=budgets, held_out_budgets_flops=(), design=design,
                               simulate=simulate)


def rows(plan) -> pa.Table:
    """Every evaluation of every planned trial, drawn as the simulate backend draws them."""
    return trial_rows(plan.trials)


def trial_rows(trials) -> pa.Table:
    out = []
    for trial in trials:
        config, sim = trial.train, trial.simulate
        noise = run_noise(sim, trial.parent_trial_id or trial.trial_id)
        params = float(trial.shape.param_counts()["total"])
        start = trial.branch_tokens // config.batch_tokens
        for step in eval_steps(config, start):
            loss = curve_loss(sim, params, config, step, trial.shape.vocab_size, noise)
            tokens = step * config.batch_tokens
            m = Measurement(step=step, tokens=tokens, flops=tokens * trial.shape.flops_per_token(),
                            flops_6n=tokens * trial.shape.flops_per_token_6n(), train_loss=loss,
                            val_loss=loss,
                            val_bpb=float("nan"), lr_now=lr_at(step - 1, config), wall_seconds=0.0,
                            tokens_per_second=0.0, final=step == config.total_steps, status="ok")
            out.append(measurement_row(trial, m))
    return pa.Table.from_pylist(out)


def true_optimum(sweep) -> float:
    shapes = sweep.model.shapes
    n = np.array([s.param_counts()["total"] for s in shapes], float)
    sizes = Sizes(n, np.array([s.flops_per_token() for s in shapes]), np.full(len(n), 262144.0),
                  np.full(len(n), 1e-3))
    return CurveMethod(CurveFit(curve_form("multi_power", True), TRUTH, 0, 0, 0), sizes).params_opt(TARGET)


def adaptive_study(sweep, resamples: int):
    """The adaptive design as its queue runs it (designs/adaptive_queue.py), one batch of 4 a
    round, no Ray: round 1 is the plan's seed trials; each later round refits the final losses
    (scaling_orchestrator.analysis.design.select.propose) and adds its choices from the
    design's candidates, until its stop rule (N*(target) within x/÷ tolerance at two fits in a
    row) or its budget ends it. Returns the trials it ran."""
    options, ran = sweep.design.options, list(make_plan(sweep).trials)
    pool = {t.trial_id: t for t in adaptive_pool(sweep)}
    costs = [candidate(t) for t in pool.values()]
    fpt = per_token_model([c.params for c in costs], [c.tokens for c in costs], [c.cost_flops for c in costs])
    held, loss = False, {}
    for round_ in range(2, 200):
        new = [t for t in ran if t.trial_id not in loss]   # each trial's evaluations drawn once
        final = trial_rows(new).filter(pc.field("final"))
        loss.update(zip(final["trial_id"].to_pylist(), final["val_loss"].to_pylist()))
        runs = Runs.of([t.shape.param_counts()["total"] for t in ran], [t.train.total_tokens for t in ran],
                       [loss[t.trial_id] for t in ran], [t.budget_flops for t in ran],
                       [t.trial_id for t in ran])
        spent = sum(t.flops for t in ran)
        known = {t.trial_id for t in ran}
        proposal = propose(runs, [candidate(t) for tid, t in pool.items() if tid not in known],
                           target_flops=options.target_flops,
                           budget_flops=max(options.study_budget_flops - spent, 0.0),
                           tolerance=options.tolerance, round=round_, max_choices=options.batch,
                           law=options.law, n_bootstrap=options.bootstrap, seed=round_ - 1,
                           flops_per_token=fpt, held_before=held)
        held = proposal.answer.within(options.tolerance)
        if not proposal.choices:
            return ran
        ran += [pool[c.candidate.key] for c in proposal.choices]
    raise AssertionError("200 rounds without a stop")


def answer(kind: str, plan, table: pa.Table, resamples: int, seed: int):
    """(N* at the target, its 95% interval) of the design's own analysis."""
    if kind == "trunks":
        recipes = {t.trial_id: dataclasses.asdict(t.train) for t in plan.trials}
        method = curve_section(table, plan.sweep.budgets_flops, n_bootstrap=resamples, seed=seed,
                               recipes=recipes)
        return method.params_opt(TARGET), method.interval(TARGET)["params"]
    result = fit(table, options={"target_flops": [TARGET], "n_bootstrap": resamples, "seed": seed,
                                 "curve_law": "none"})
    head = result.headline[0]
    return head.params, head.ci95.get("params")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed drawn")
    parser.add_argument("--scales", type=float, nargs="+", default=[3e19, 1e20, 3e20])
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--verbose", action="store_true", help="a line per seed")
    parser.add_argument("--designs", nargs="+", default=["trunks", "grid", "branches"])
    parser.add_argument("--above", type=int, default=3, help="trunks: sizes over the largest budget's N*")
    parser.add_argument("--above-share", type=float, default=0.1, help="trunks: each one's share of it")
    parser.add_argument("--below", type=int, default=1, help="trunks: sizes under the smallest budget's")
    parser.add_argument("--repeats", type=int, default=6, help="trunks: seeds per size")
    parser.add_argument("--largest-repeats", type=int, default=1, help="trunks: of the largest budget's size")
    parser.add_argument("--adaptive-budget", type=float, default=2.19e21,
                        help="adaptive: the study's FLOPs cap (default the grid's at 3e20, 2.19e21)")
    args = parser.parse_args()
    options = TrunksOptions(below=args.below, above=args.above, above_share=args.above_share,
                            repeats=args.repeats, largest_repeats=args.largest_repeats)
    designs = {"grid": Design("grid"), "branches": Design("branches", None),
               "trunks": Design("trunks", options),
               "adaptive": Design("adaptive", AdaptiveOptions(
                   target_flops=TARGET, study_budget_flops=args.adaptive_budget, tolerance=TOLERANCE,
                   batch=4, bootstrap=args.resamples))}
    truth = true_optimum(load_sweep(SPEC))
    print(f"truth: N*({TARGET:.0e}) = {truth:.4g}")
    needed = {}
    for kind in args.designs:
        for scale in sorted(args.scales):
            hits, cost, began = 0, 0.0, time.time()
            spent = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                plan = make_plan(sweep_for(scale, designs[kind], seed))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if kind == "adaptive":
                        ran = adaptive_study(plan.sweep, args.resamples)
                        plan = dataclasses.replace(plan, trials=tuple(ran))
                    n_opt, ci = answer(kind, plan, rows(plan), args.resamples, seed)
                spent.append(plan.total_flops)
                cost = max(spent)
                within = max(n_opt / truth, truth / n_opt) <= TOLERANCE
                inside = bool(ci) and None not in ci and ci[0] <= truth <= ci[1]
                hits += within and inside
                if args.verbose:
                    print(f"  seed {seed}: {plan.total_flops:.3g} FLOPs, N* {n_opt / truth - 1:+.1%} "
                          "of the truth, 95% "
                          f"[{(ci or [np.nan])[0] / truth:.2f}, {(ci or [np.nan, np.nan])[1] / truth:.2f}]x",
                          flush=True)
            share = hits / args.seeds
            if kind == "adaptive":   # its FLOPs vary by seed: the most any seed spent counts
                print(f"adaptive FLOPs over the seeds: mean {np.mean(spent):.3e}, "
                      f"median {np.median(spent):.3e}, most {max(spent):.3e} "
                      f"(its budget {designs[kind].options.study_budget_flops:.3e})")
            print(f"{kind:8s} largest budget {scale:.0e}: {cost:.3e} FLOPs, {hits}/{args.seeds} seeds within "
                  f"x{TOLERANCE} with the truth inside ({time.time() - began:.0f} s)", flush=True)
            if share >= SHARE and kind not in needed:
                needed[kind] = cost
    said = ", ".join(f"{k} {v:.3e}" if v else f"{k} not reached" for k, v in
                     ((k, needed.get(k)) for k in args.designs))
    print(f"FLOPs to x{TOLERANCE} with the truth inside in {SHARE:.0%} of seeds: {said}")
    if "trunks" in needed and "grid" in needed:
        print(f"trunks+curve vs grid: {needed['trunks'] / needed['grid']:.2f}x")


if __name__ == "__main__":
    main()
