"""`design: branches`: one constant-LR trunk per size, one cooldown branch per token count.

Hagele et al. 2024 (arXiv 2405.18392) show that warmup, a constant LR and a short cooldown
(about 20% of the steps, 1-sqrt shape) matches a cosine schedule of the same length, so one
trunk per size, trained once at constant LR, can be branched at several token counts, each
branch decaying to its own end (their study: about 35% fewer FLOPs). The plan, per size and seed:

- sizes: the union of the grid's brackets (plan.select_sizes at each budget's prior N*);
- points: the token counts T whose exact FLOPs land on a study budget within plan's 2% rule
  (every budget whose bracket holds the size, and with `points: below` also every smaller
  budget, which the trunk passes anyway), plus `tokens_per_param: [...]` extras;
- a branch to T starts at s = T - max(1, round(cooldown_fraction x T)) whole steps (T = 518:
  s = 518 - 104 = 414) from the trunk's checkpoint there and decays (wsd, decay_shape) to T;
- the trunk: warmup, then constant LR to its last branch point, a checkpoint kept at each;
  trunk and branches share one warmup in tokens (5% of the trunk's steps), so their LR paths
  agree up to every branch point.

A branch's flops count the whole path (its tokens continue the trunk's), so it is a point like
any run; the study spends trunks + cooldowns (Plan.total_flops), while the same points as
independent runs would cost `grid_equivalent_flops`. Held-out budgets' branches are group
"held_out" (with their parent), the rest "branch"; trunks are "trunk" and never fit points.
An extra point above the largest fitting budget would enter the back-test's fit from beyond
the held-out budget, so it is dropped when there are held-out budgets. The options
(cooldown_fraction, decay_shape, points, tokens_per_param) are spec/sections/design.py's BranchesOptions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaling_orchestrator.analysis.data.schema import BRANCH, HELD_OUT, TRUNK
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.designs.queue import TrialQueue
from scaling_orchestrator.orchestrator.plan.build import (
    FLOPS_TOLERANCE,
    MIN_SIZES,
    Dropped,
    Plan,
    infeasible,
    make_hparam_trial,
    select_sizes,
    trial_lr,
)
from scaling_orchestrator.orchestrator.spec.sections.design import BranchesOptions
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError


@dataclass(frozen=True)
class _Point:
    steps: int  # T, the branch's last step
    budget_flops: float
    group: str


def make_plan(sweep) -> Plan:
    options: BranchesOptions = sweep.design.options or BranchesOptions()
    points, dropped = _points_per_size(sweep, options)
    trunks, branches = [], []
    for shape, size_points in points.items():
        for seed in sweep.seeds:
            trunk, size_branches, too_early = _trunk_and_branches(sweep, options, shape, size_points, seed)
            dropped += too_early
            if trunk is not None:
                trunks.append(trunk)
                branches += size_branches
    _check_profiles(sweep, branches, dropped)
    trunks.sort(key=lambda t: -t.flops)
    spend = sum(t.flops for t in trunks) + sum(cooldown_flops(b) for b in branches)
    grid_equivalent = sum(b.flops for b in branches)
    hparam = tuple(make_hparam_trial(sweep, size) for size in (sweep.hparams.sizes if sweep.hparams else ()))
    notes = [f"branches: {len(trunks)} trunks, {len(branches)} branches ({options.cooldown_fraction:.0%} "
             f"{options.decay_shape} cooldowns); spends {spend:.3e} FLOPs, the same points as independent "
             f"runs {grid_equivalent:.3e} ({spend / grid_equivalent:.2f}x)"]
    extra = {"grid_equivalent_flops": grid_equivalent, "trunk_flops": sum(t.flops for t in trunks),
             "cooldown_flops": spend - sum(t.flops for t in trunks),
             "design_options": dataclasses.asdict(options)}
    return Plan(sweep, tuple(trunks + branches), tuple(dropped), tuple(notes), hparam, extra=extra,
                spend_flops=spend)


def cooldown_flops(branch: TrialSpec) -> float:
    """What a branch itself trains: its tokens past the branch point."""
    return branch.own_flops


def branch_start_steps(steps: int, cooldown_fraction: float) -> int:
    """s = T - max(1, round(f T)): the step a branch to T leaves its trunk, the first step of
    TrainConfig's wsd decay (lr_at decays over max(1, round(decay_fraction x T)) steps)."""
    return steps - max(1, round(cooldown_fraction * steps))


def _points_per_size(sweep, options: BranchesOptions) -> tuple[dict, list]:
    """{shape: [_Point]} by params, and what was dropped (a bracket's size that cannot spend a
    budget in whole steps within 2%; an extra point that is too short or would leak)."""
    budgets = sorted(sweep.budgets_flops + sweep.held_out_budgets_flops)
    brackets: dict[ModelShape, set[float]] = {}  # shape -> the budgets whose bracket holds it
    for budget in budgets:
        for shape in select_sizes(
            sweep.model.shapes,
            sweep.prior.optimal_params(budget),
            sweep.sizes_per_budget,
            sweep.prior.span,
            sweep.prior.params,
        ):
            brackets.setdefault(shape, set()).add(budget)
    points, dropped = {}, []
    for shape in sorted(brackets, key=lambda s: s.param_counts()["total"]):
        bracket, chosen = brackets[shape], []
        for budget in budgets:
            if budget > max(bracket) or (options.points == "bracket" and budget not in bracket):
                continue
            reason = infeasible(budget, shape, sweep.train, sweep.model.label(shape))
            if reason and budget in bracket:
                dropped.append(Dropped(budget, shape, reason))
            elif not reason:
                group = HELD_OUT if budget in sweep.held_out_budgets_flops else BRANCH
                chosen.append(_Point(sweep.train.steps(budget, shape), float(budget), group))
        extras, extra_dropped = _extra_points(sweep, options, shape, chosen)
        points[shape] = sorted(chosen + extras, key=lambda p: p.steps)
        dropped += extra_dropped
    return points, dropped


def _extra_points(
    sweep, options: BranchesOptions, shape: ModelShape, chosen: list[_Point]
) -> tuple[list, list]:
    """tokens_per_param points: T = round(r N / batch_tokens) steps; budget_flops = their exact FLOPs.
    One within 2% of a budget point is that point; one above the largest fitting budget is dropped
    when there are held-out budgets (it would be fitted from beyond what the back-test predicts)."""
    batch, fpt = sweep.train.config.batch_tokens, shape.flops_per_token()
    n, label = shape.param_counts()[sweep.prior.params], sweep.model.label(shape)
    ceiling = max(sweep.budgets_flops, default=0.0) * (1 + FLOPS_TOLERANCE)
    extras, dropped = [], []
    for ratio in options.tokens_per_param:
        steps = round(ratio * n / batch)
        flops = steps * batch * fpt
        if any(abs(flops / (p.steps * batch * fpt) - 1) <= FLOPS_TOLERANCE for p in chosen + extras):
            continue
        short = sweep.train.too_few_steps(steps)
        if short or (sweep.held_out_budgets_flops and flops > ceiling):
            why = (
                short
                or f"{flops:.3g} FLOPs, above the largest fitting budget: it would enter the back-test's fit"
            )
            dropped.append(Dropped(flops, shape, f"{label}: tokens_per_param {ratio:g}: {why}"))
            continue
        extras.append(_Point(steps, float(flops), BRANCH))
    return extras, dropped


def _trunk_and_branches(
    sweep, options: BranchesOptions, shape: ModelShape, points: list[_Point], seed: int
) -> tuple[TrialSpec | None, list[TrialSpec], list[Dropped]]:
    """The size's trunk (None without points) and its branches; points whose branch would
    start inside the shared warmup are dropped (their cooldown would not follow a constant LR)."""
    recipe, batch = sweep.train, sweep.train.config.batch_tokens
    if not points:
        return None, [], []
    last_start = branch_start_steps(points[-1].steps, options.cooldown_fraction)
    warmup = int(recipe.config.warmup_fraction * last_start)
    label = sweep.model.label(shape)
    dropped = [
        Dropped(
            p.budget_flops,
            shape,
            f"{label}: its branch would start at step "
            f"{branch_start_steps(p.steps, options.cooldown_fraction)}, inside the {warmup}-step warmup",
        )
        for p in points
        if branch_start_steps(p.steps, options.cooldown_fraction) < max(warmup, 1)
    ]
    points = [p for p in points if branch_start_steps(p.steps, options.cooldown_fraction) >= max(warmup, 1)]
    starts = sorted({branch_start_steps(p.steps, options.cooldown_fraction) * batch for p in points})
    # warmup_tokens 0 would mean warmup_fraction of each run's own steps: say no warmup instead.
    base = dict(
        seed=seed,
        lr=trial_lr(recipe, shape),
        warmup_tokens=warmup * batch,
        warmup_fraction=recipe.config.warmup_fraction if warmup else 0.0,
    )
    trunk_tokens = last_start * batch
    trunk_config = dataclasses.replace(
        recipe.config,
        **base,
        total_tokens=trunk_tokens,
        schedule="constant",
        eval_every_tokens=recipe.eval_every_tokens(trunk_tokens, batch),
        eval_at_tokens=tuple(starts),
    )
    common = dict(
        sweep=sweep.name,
        kind="scaling",
        shape=shape,
        data=sweep.data,
        resources=sweep.resources,
        size_label=label,
        simulate=sweep.simulate,
        trainer=sweep.backend,
    )
    trunk = TrialSpec(
        train=trunk_config, budget_flops=trunk_tokens * shape.flops_per_token(), group=TRUNK, **common
    )
    branches = []
    for p in points:
        tokens = p.steps * batch
        config = dataclasses.replace(
            recipe.config,
            **base,
            total_tokens=tokens,
            schedule="wsd",
            decay_fraction=options.cooldown_fraction,
            decay_shape=options.decay_shape,
            eval_every_tokens=recipe.eval_every_tokens(tokens, batch),
        )
        branches.append(
            TrialSpec(
                train=config,
                budget_flops=p.budget_flops,
                group=p.group,
                parent_trial_id=trunk.trial_id,
                branch_tokens=branch_start_steps(p.steps, options.cooldown_fraction) * batch,
                **common,
            )
        )
    return trunk, branches, dropped


def _check_profiles(sweep, branches: list[TrialSpec], dropped: list[Dropped]) -> None:
    """Every study budget needs an IsoFLOP profile: branches of at least MIN_SIZES sizes."""
    for budget in sweep.budgets_flops + sweep.held_out_budgets_flops:
        sizes = {b.shape for b in branches if b.budget_flops == float(budget)}
        if len(sizes) < MIN_SIZES:
            field = "held_out_budgets_flops" if budget in sweep.held_out_budgets_flops else "budgets_flops"
            why = next((d.reason for d in reversed(dropped) if d.budget_flops == float(budget)), "")
            raise SpecError(
                f"{sweep.source}: {field} {budget:g}: only {len(sizes)} sizes have a branch "
                f"there (need {MIN_SIZES}){': ' + why if why else ''}"
            )


class BranchQueue(TrialQueue):
    """Trunks first, longest first; a branch the moment its trunk's checkpoint at branch_tokens
    is kept (so it runs beside its trunk, never after the whole trunk). A trunk that ends
    without reaching a branch point (diverged, failed for good) fails those branches with the
    reason, so the study ends instead of waiting for a checkpoint that will never come."""

    def __init__(self, trials, over: dict[str, str]):
        super().__init__(trials)
        self.pending = sorted(trials, key=_queue_order)
        self.over = dict(over)  # trunk id -> why it will keep no more checkpoints ("" when it ended ok)
        self.kept: set[tuple[str, int]] = set()

    def take(self, store):
        self._fail_orphans(store)
        return super().take(store)

    def runnable(self, spec, store) -> bool:
        if not spec.parent_trial_id:
            return True
        key = (spec.parent_trial_id, spec.branch_tokens)
        if key not in self.kept and store.has_kept_checkpoint(*key):
            self.kept.add(key)
        return key in self.kept

    def on_complete(self, spec, metrics: dict | None, store, error: bool) -> None:
        super().on_complete(spec, metrics, store, error)
        if spec.group == TRUNK:
            self.over[spec.trial_id] = _trunk_end(spec, metrics, store, error)
            self._fail_orphans(store)

    def _fail_orphans(self, store) -> None:
        """Pending branches whose trunk is over and kept no checkpoint at their branch point."""
        for spec in [s for s in self.pending if s.parent_trial_id in self.over]:
            if self.runnable(spec, store):
                continue
            ended = self.over[spec.parent_trial_id] or f"trunk {spec.parent_trial_id} ended"
            reason = f"{ended} before its branch point at {spec.branch_tokens} tokens"
            store.mark_failed(spec)
            store.update_meta(spec.trial_id, status="failed", error=reason)
            self.pending.remove(spec)


def make_queue(plan: Plan, todo: list[TrialSpec], store) -> BranchQueue:
    """The queue for `todo` (the trials not final). The not-final branches of a trunk in `todo`
    join it (a trunk re-run after a lost node brings its waiting branches along); a trunk that
    is final already is over, with the reason its last row gives."""
    ids = {t.trial_id for t in todo}
    rerun = {t.trial_id for t in todo if t.group == TRUNK}
    waiting = [t for t in plan.trials if t.parent_trial_id in rerun and t.trial_id not in ids]
    if waiting:
        done = store.done_trial_ids()
        todo = list(todo) + [t for t in waiting if t.trial_id not in done]
    over = {}
    for trunk_id in {t.parent_trial_id for t in todo if t.parent_trial_id} - rerun:
        rows = store.read_trial(trunk_id)
        status = rows[-1]["status"] if rows and rows[-1]["final"] else ""
        over[trunk_id] = (
            f"trunk {trunk_id} {status} at step {rows[-1]['step']}" if status not in ("", "ok") else ""
        )
    return BranchQueue(todo, over)


def _queue_order(spec: TrialSpec) -> tuple:
    """Trunks (longest first), then branches (longest cooldown first)."""
    if spec.group == TRUNK:
        return (0, -spec.flops, spec.trial_id)
    return (1, -cooldown_flops(spec), spec.trial_id)


def _trunk_end(spec: TrialSpec, metrics: dict | None, store, error: bool) -> str:
    """Why a trunk keeps no more checkpoints: '' when it ended ok, else what ended it."""
    status = (metrics or {}).get("status", "")
    if not error and status == "ok":
        return ""
    step = (metrics or {}).get("step")
    where = f" at step {step}" if step is not None else ""
    if status == "diverged":
        return f"trunk {spec.trial_id} diverged{where}"
    why = store.read_meta(spec.trial_id).get("error") or (metrics or {}).get("error") or "an error"
    return f"trunk {spec.trial_id} failed{where} ({why})"
