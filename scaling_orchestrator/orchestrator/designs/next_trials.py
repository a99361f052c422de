"""`scaling next RESULTS --target-flops C --budget-flops B [--out plan.yaml]`: from finished
results, the trials to run next, as a spec `scaling run` accepts (for a study run round by round).

The candidates are built from what RESULTS holds: its recipe (the trials in _plan.json: data,
training recipe, resources, simulate), its sizes (every shape in _plan.json and in the rows)
and its budgets plus the next two steps up its ladder below C (budgets 1e18, 3e18, 1e19 ->
3e19 and 1e20); at each budget, the sizes within a factor CANDIDATE_SPAN of the present fit's
N* that spend it in whole steps. scaling_orchestrator.analysis.design.select.propose then picks, within B
FLOPs, what
narrows N*(C)'s 95% interval most per FLOP (and re-centres edge minima first).

The spec is the study's own (designs/next_spec.py: every section as written, same name and
storage, so the rows join the others) with the trials listed under design: {kind: adaptive,
trials: [...]} with their round and reason.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import yaml

from scaling_orchestrator.analysis.data.schema import TRUNK
from scaling_orchestrator.analysis.design.select import Runs, flops_label, per_token_model, propose
from scaling_orchestrator.analysis.laws.registry import law_form
from scaling_orchestrator.orchestrator.designs.adaptive_queue import candidate
from scaling_orchestrator.orchestrator.designs.next_spec import spec_of
from scaling_orchestrator.orchestrator.plan.build import infeasible
from scaling_orchestrator.orchestrator.spec.paths import NEXT_FILE
from scaling_orchestrator.orchestrator.spec.sweep import Recipe
from scaling_orchestrator.orchestrator.store.results import Store

CANDIDATE_SPAN = 8.0  # the grid's span 4 plus one bracket step (designs/adaptive.py)
LADDER_STEPS = 2  # budgets added above the largest run, each one ladder step up


def ladder(budgets, target_flops: float) -> list[float]:
    """The next LADDER_STEPS budgets up the study's geometric ladder, below the target: budgets
    1e18, 3e18, 1e19 step by sqrt(10) on average -> 3.16e19, 1e20."""
    logs = np.log(np.asarray(sorted(budgets), float))
    if len(logs) < 2:
        return []
    step = float(np.mean(np.diff(logs)))
    up = [float(np.exp(logs[-1] + k * step)) for k in range(1, LADDER_STEPS + 1)]
    return [b for b in up if b < target_flops]


def finished_rows(store: Store) -> list[dict]:
    table = store.read_table()
    return [
        r
        for r in table.to_pylist()
        if r["final"]
        and r["status"] == "ok"
        and r["kind"] == "scaling"
        and r["group"] != TRUNK
        and r["val_loss"] > 0
    ]


def study_shapes(template, plan, rows) -> list:
    """Every size the study knows: its plan's shapes and those its rows name."""
    shapes = {t.shape for t in plan if t.kind == "scaling"}
    shapes |= {
        dataclasses.replace(
            template.shape, n_layer=r["n_layer"], d_model=r["d_model"], n_head=r["n_head"], d_ff=r["d_ff"]
        )
        for r in rows
    }
    return sorted(shapes, key=lambda s: s.param_counts()["total"])


def trial_at(template, shape, budget: float):
    """The template trial moved to (shape, budget): whole steps nearest the budget, or None when
    that size cannot spend it (plan.infeasible with the template's recipe: train.min_steps'
    default, within 2%)."""
    recipe = Recipe(template.train)
    if infeasible(budget, shape, recipe):
        return None
    tokens = recipe.steps(budget, shape) * template.train.batch_tokens
    config = dataclasses.replace(template.train, total_tokens=tokens, eval_every_tokens=0, eval_at_tokens=())
    return dataclasses.replace(
        template,
        shape=shape,
        train=config,
        budget_flops=float(budget),
        group="",
        parent_trial_id="",
        branch_tokens=0,
        size_label="",
    )


def candidates(template, shapes, budgets, law, done: set) -> list:
    """Trials not yet run at each budget, within CANDIDATE_SPAN of the fit's N* there."""
    out = []
    for budget in budgets:
        n_star = law.compute_optimal(float(budget))[0]
        for shape in shapes:
            n = shape.param_counts()["total"]
            if (shape.n_layer, shape.d_model, budget) in done or not (
                n_star / CANDIDATE_SPAN <= n <= n_star * CANDIDATE_SPAN
            ):
                continue
            spec = trial_at(template, shape, budget)
            if spec is not None:
                out.append(spec)
    return out


def next_round(
    results: str,
    *,
    target_flops: float,
    budget_flops: float,
    tolerance: float = 1.25,
    law: str = "chinchilla",
    bootstrap: int = 200,
    seed: int = 0,
):
    """(proposal, {trial_id: TrialSpec} of the candidates, the template trial, sweep name)."""
    store = Store(results, create=False)
    plan = [t for t in store.read_plan() if t.kind == "scaling"]
    rows = finished_rows(store)
    if not plan or not rows:
        raise ValueError(
            f"{results}: no finished scaling runs with their plan (_plan.json); "
            "`scaling next` continues a study that `scaling run` wrote"
        )
    budgets = sorted({float(r["budget_flops"]) for r in rows} | {t.budget_flops for t in plan})
    if not target_flops > budgets[-1]:
        raise ValueError(
            f"--target-flops {flops_label(target_flops)}: must exceed the largest "
            f"budget in {results} ({flops_label(budgets[-1])})"
        )
    template = plan[0]
    runs = Runs.of(
        [r["params"] for r in rows],
        [r["tokens"] for r in rows],
        [r["val_loss"] for r in rows],
        [r["budget_flops"] for r in rows],
        [r["trial_id"] for r in rows],
    )
    fitted = law_form(law).fit(runs.params, runs.tokens, runs.loss)
    done = {(r["n_layer"], r["d_model"], float(r["budget_flops"])) for r in rows}
    pool = candidates(
        template, study_shapes(template, plan, rows), budgets + ladder(budgets, target_flops), fitted, done
    )
    if not pool:
        raise ValueError(f"{results}: no size spends any budget in whole steps near the fit's N*")
    by_id = {t.trial_id: t for t in pool}
    cands = [candidate(t) for t in pool]
    proposal = propose(
        runs,
        cands,
        target_flops=target_flops,
        budget_flops=budget_flops,
        tolerance=tolerance,
        round=max(int(r.get("round") or 1) for r in rows) + 1,
        law=law,
        n_bootstrap=bootstrap,
        seed=seed,
        flops_per_token=per_token_model(*zip(*[(c.params, c.tokens, c.cost_flops) for c in cands])),
    )
    return proposal, by_id, template, rows[0]["sweep"]


def run_next(args) -> int:
    """The `scaling next` command: the choice and its reasons on stdout, the spec to --out (or
    stdout); no spec is written when the stop rule already holds. Its answer, the stop
    included, is kept in RESULTS/_next.json for `scaling status`, fit and report."""
    proposal, by_id, template, name = next_round(
        args.results,
        target_flops=args.target_flops,
        budget_flops=args.budget_flops,
        tolerance=args.tolerance,
        law=args.law,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    store = Store(args.results, create=False)
    record(store, proposal, args)
    out = sys.stderr if args.out is None else sys.stdout
    print(f"scaling next: {proposal.message}", file=out)
    for note in proposal.notes:
        print(f"  note: {note}", file=out)
    if proposal.stop:
        return 0
    for c in proposal.choices:
        t = by_id[c.candidate.key]
        print(
            f"  {t.shape.n_layer}L x {t.shape.d_model}d at {flops_label(t.budget_flops)} FLOPs: {c.reason}",
            file=out,
        )
    spec = spec_of(proposal, by_id, template, name, args.results, target_flops=args.target_flops,
                   budget_flops=args.budget_flops, tolerance=args.tolerance, law=args.law,
                   source=store.read_plan_spec())
    text = yaml.safe_dump(spec, sort_keys=False)
    header = (
        f"# The next {len(proposal.choices)} trials of {name} "
        f"({flops_label(proposal.cost_flops)} FLOPs), chosen by `scaling next` from "
        f"{args.results}.\n# Run them with `scaling run` on this file; then ask again.\n"
    )
    if args.out is None:
        print(header + text, end="")
    else:
        with open(args.out, "w") as f:
            f.write(header + text)
        print(f"wrote {args.out}: {len(proposal.choices)} trials", file=out)
    return 0


def record(store: Store, proposal, args) -> None:
    """RESULTS/_next.json: the question, the answer, and how many trials had rows when asked
    (a later round's rows make the answer stale)."""
    store.write_json(store.path(NEXT_FILE), {
        "target_flops": args.target_flops, "budget_flops": args.budget_flops,
        "tolerance": args.tolerance, "law": args.law, "stop": proposal.stop,
        "message": proposal.message, "chosen": len(proposal.choices),
        "n_trials": len(store.row_files()),
    })
