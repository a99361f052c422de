"""The plan knows the data: each trial's tokens against the unique tokens its training split holds.

A trial of D tokens on a split of U unique tokens sees D / U epochs. Past one epoch it repeats
data, and the loss it reaches is no longer the loss of D fresh tokens: Muennighoff et al. (2023,
"Scaling Data-Constrained Language Models", Fig. 3) find up to ~4 epochs cost little, while 40
are worth almost nothing more than one. So `scaling plan` says the epochs of every trial, warns
when some repeat, and each trial carries U so its rows have `unique_tokens` and `epochs` (the
data_constrained law's columns). U comes from the prepared manifest (`scaling prepare`; `run`
prepares before it plans); before that it is 0, unknown, and the plan says so.
"""

from __future__ import annotations

import dataclasses

from scaling_orchestrator.models.data.tokens import unique_train_tokens
from scaling_orchestrator.orchestrator.fmt import si


def with_unique_tokens(plan):
    """The plan with every trial's unique_tokens set from the spec's prepared data (when known)."""
    unique = 0 if plan.sweep.simulate else unique_train_tokens(plan.sweep.data)
    if not unique:
        return plan
    mark = lambda trials: tuple(dataclasses.replace(t, unique_tokens=unique) for t in trials)  # noqa: E731
    return dataclasses.replace(plan, trials=mark(plan.trials), hparam_trials=mark(plan.hparam_trials))


def epochs(trial) -> float | None:
    """Passes over the training split a trial makes, None when its unique tokens are unknown."""
    return trial.train.total_tokens / trial.unique_tokens if trial.unique_tokens else None


def data_lines(plan) -> list[str]:
    """`scaling plan`'s data line, and a warning line when trials repeat data."""
    trials = [*plan.trials, *plan.hparam_trials]
    if not trials or plan.sweep.simulate:
        return []
    unique = trials[0].unique_tokens
    if not unique:
        return ["data: not prepared yet, so epochs are unknown (`scaling prepare SPEC`; `scaling run` "
                "prepares first)"]
    seen = [epochs(t) for t in trials]
    lines = [f"data: {si(unique)} unique training tokens; trials see {min(seen):.3g} to {max(seen):.3g} "
             "epochs"]
    repeating = [e for e in seen if e > 1]
    if repeating:
        lines.append(
            f"warning: {len(repeating)} of {len(trials)} trials repeat their data (up to {max(seen):.3g} "
            f"epochs): their losses are data-constrained, not those of fresh tokens; a larger corpus, "
            f"or `scaling fit --law data_constrained` on the rows' unique_tokens"
        )
    return lines
