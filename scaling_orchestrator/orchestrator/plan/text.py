"""`scaling plan`'s text: the scaling grid as a table, the search section, the cost in FLOPs and time.

Reads a `Plan` (build.py, which imports this module for Plan.render) through its
fields and methods; numbers print through orchestrator/fmt.py like everywhere else.
"""

from __future__ import annotations

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.orchestrator.fmt import duration, si
from scaling_orchestrator.orchestrator.plan.data import data_lines
from scaling_orchestrator.orchestrator.spec.paths import plan_notes


def render(plan) -> str:
    """The whole plan, as `scaling plan` prints it; `plan` is an
    scaling_orchestrator.orchestrator.plan.build.Plan."""
    s = plan.sweep
    lines = [
        f"sweep {s.name} ({s.source}) -> {s.storage}",
        f"sizes: {len(s.model.shapes)} candidates ({s.model.dial}), seq_len {s.model.seq_len}, "
        f"vocab {s.data.effective_vocab_size}; prior {s.prior.source}, span {s.prior.span:g}x "
        f"({s.prior.params} params)",
        "",
    ]
    if plan.trials:
        lines += _scaling_table(plan)
        if s.held_out_budgets_flops:
            lines.append(
                "* held out of the back-test fit; the headline fit uses every run (group 'held_out')"
            )
        lines += [f"dropped {d.budget_flops:.3g}: {d.reason}" for d in plan.dropped]
    lines += data_lines(plan)  # unique tokens, and a warning when trials repeat data
    lines += [f"note: {n}" for n in (*plan.notes, *plan_notes(s))]  # plan_notes: paths left to the cluster
    if plan.trials:
        serial = sum(plan.trial_seconds(t) for t in plan.trials)
        lines += [
            "",
            f"{len(plan.trials)} trials, {plan.total_flops:.3e} FLOPs in all; at "
            f"{s.flops_per_second:.3g} FLOP/s and {s.overhead_seconds_per_trial:g} s overhead per "
            f"trial: {duration(serial)} of trial time, about {duration(plan.estimated_wall_seconds)} "
            f"wall with {plan.concurrency} at a time",
            weights_line(plan.trials),
        ]
        cost = plan.cluster
        if cost["gpu_hours"]:
            span = (
                f", makespan {duration(cost['makespan_seconds'])} on {cost['gpus']:g} GPUs "
                f"(utilisation {cost['utilisation']:.2f})"
                if cost["makespan_seconds"]
                else " (declare max_concurrent_trials for a makespan on the cluster's GPUs)"
            )
            widest = max(plan.trial_row(t)["memory_bytes"] for t in plan.trials)
            lines.append(
                f"GPU cost: {cost['gpu_hours']:.1f} GPU-hours{span}; largest worker's memory "
                f"{widest / 1e9:.1f} GB (scaling plan --json: memory_bytes, micro_batch_tokens per trial)"
            )
    if s.hparams:
        lines += ([""] if plan.trials else []) + _hparams(plan)
    return "\n".join(lines)


def _scaling_table(plan) -> list[str]:
    s = plan.sweep
    show_lr = len({t.train.lr for t in plan.trials}) > 1  # lr*(N) from a fit: one lr per size
    header = (
        ("budget", "N*", "id", "size", "shape", "params", "tokens", "tok/param", "steps")
        + (("lr",) if show_lr else ())
        + ("FLOPs", "/budget", "est time")
    )
    rows = []
    for t in plan.trials:
        r = plan.trial_row(t)
        budget = f"{t.budget_flops:.3g}" + ("*" if r["held_out"] else "")
        rows.append(
            (
                budget,
                si(s.prior.optimal_params(t.budget_flops)),
                r["trial_id"][:8],
                t.size_label,
                _shape(t.shape),
                si(r["params"]),
                si(r["tokens"]),
                f"{r['tokens_per_param']:.1f}",
                str(r["steps"]),
            )
            + ((f"{t.train.lr:.3g}",) if show_lr else ())
            + (f"{r['flops']:.3e}", f"{r['flops_over_budget']:.4f}", duration(r["estimated_seconds"]))
        )
    return _table(header, rows)


def _hparams(plan) -> list[str]:
    """The search section: sizes, space, samples and the FLOPs a search can spend at most."""
    h, d = plan.sweep.hparams, plan.hparams_dict()
    scheduler = (
        f"asha (grace {h.grace_period_tokens:,} tokens, reduction factor {h.reduction_factor:g}), "
        "so the FLOPs are an upper bound"
        if h.scheduler == "asha"
        else "fifo (every trial runs to the end)"
    )
    lines = [
        f"hparam search (kind 'hparam', one size_label per size): {h.search}, {h.num_samples} samples, "
        f"{h.trials_per_size} trials per size, {h.token_rule}, searcher seed {h.seed}",
        f"  space: {'; '.join(dim.describe() for dim in h.space)}",
        f"  scheduler: {scheduler}",
    ]
    searched = {dim.name for dim in h.space}
    header = (
        "size",
        "id",
        "shape",
        "params",
        "tokens",
        "tok/param",
        "eval every",
        "lr",
        "trials",
        "FLOPs/trial",
        "FLOPs max",
        "est time max",
    )
    rows = [
        (
            x["label"],
            x["trial_id"][:8],
            _shape(t.shape),
            si(x["params"]),
            si(x["tokens"]),
            f"{x['tokens'] / x['params']:.3g}",
            si(x["eval_every_tokens"]),
            "searched" if "lr" in searched else f"{x['lr']:.3g}",
            str(x["trials"]),
            f"{x['flops_per_trial']:.3e}",
            f"{x['flops_upper_bound']:.3e}",
            duration(x["estimated_seconds_upper_bound"]),
        )
        for x, t in zip(d["sizes"], plan.hparam_trials)
    ]
    serial = sum(x["estimated_seconds_upper_bound"] for x in d["sizes"])
    return (
        lines
        + _table(header, rows)
        + [
            "",
            f"hparams: {d['n_trials']} trials at {len(rows)} sizes, at "
            f"most {d['flops_upper_bound']:.3e} FLOPs "
            f"and {duration(serial)} of trial time; `scaling run` runs them before the scaling grid",
        ]
    )


def kept_weight_bytes(trials) -> int:
    """What the study keeps on disk (store/weights.py): fp32 params x 4 bytes of every trial that
    keeps its weights (not simulated, train.keep_weights final). 16 trials of 10M params: 640 MB."""
    return sum(4 * t.shape.param_counts()["total"] for t in trials
               if not t.simulate and t.train.keep_weights == "final")


def weights_line(trials) -> str:
    kept = kept_weight_bytes(trials)
    if not kept:
        return "weights kept: none (simulated trials, or train.keep_weights: none)"
    return f"weights kept: {kept / 1e6:,.1f} MB in _weights/ (fp32, params x 4 bytes, each finished trial)"


def _table(header, rows) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return ["  ".join(x.rjust(w) for x, w in zip(row, widths)).rstrip() for row in (header, *rows)]


def _shape(shape: ModelShape) -> str:
    return f"{shape.n_layer}L x {shape.d_model}d x {shape.n_head}h"
