"""How a Tune stop ends a trial: ASHA in the trial's own units, and what the store keeps.

Ray's ASHAScheduler reads max_t and grace_period in its time_attr. With time_attr="tokens" its
default max_t=100 is 100 tokens, far below any trial's first evaluation (demo.yaml's first
trial evaluates at 1,660,928 of 3,321,856 tokens), so every trial stops there and looks
finished. asha_for(spec) sets max_t = the trial's tokens and grace_period = its first
evaluation, and its scheduler settles each stop on the driver before Tune acts on it: the
trial's last row becomes final (status ok), a finished point at fewer tokens that a re-run does
not train again, with stopped_early in its metadata. The driver does it, not the trial: Tune
ends a stopped trial's process within a fraction of a second (reuse_actors=False, the
default); written from the trial, both stopped trials of a 4-trial run of the README example
got their metadata and lost their final row.

A stop nobody recorded (another scheduler, a stop criterion, the Tuner ending) leaves the rows
not final, so running that config again resumes it, and the stop that hits every trial at its
first report is named in one line where it can be told apart (first_report_error).
"""

from __future__ import annotations

import sys
import time

from scaling_orchestrator.orchestrator.execution.tuner import results_dir_for, spec_of
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store

TIME_ATTR = "tokens"


def asha_for(spec: TrialSpec, *, reduction_factor: int = 2, **asha_kwargs):
    """ASHA over trials like `spec`, in tokens: max_t = spec's total tokens, grace_period = its
    first evaluation; reduction_factor 2 keeps the better half at each rung. With 2 evaluations
    per trial (demo.yaml) the one rung is half-way: 1,660,928 of 3,321,856 tokens."""
    first_eval_tokens = spec.train.eval_every_steps * spec.train.batch_tokens
    return recording_asha(time_attr=TIME_ATTR, max_t=spec.train.total_tokens,
                          grace_period=first_eval_tokens, reduction_factor=reduction_factor,
                          **asha_kwargs)


def recording_asha(**asha_kwargs):
    """An ASHAScheduler that settles its stops in the store before Tune acts on them (the trial
    waits in its report meanwhile, so nothing else writes its rows) and lets a trial's last
    evaluation finish normally. stop_last_trials=False: a trial ends by itself at max_t."""
    # Ray loads when the scheduler is built: asha_for resolves without it
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def on_trial_result(self, controller, trial, result):
            action = super().on_trial_result(controller, trial, result)
            if result.get("final"):
                return TrialScheduler.CONTINUE
            if action == TrialScheduler.STOP and not result.get("replayed"):
                record_stop(trial.config, int(result[TIME_ATTR]))
            return action

    return RecordingASHA(**{"stop_last_trials": False, **asha_kwargs})


def record_stop(config: dict, tokens: int) -> None:
    """On the driver: the trial's id is recomputed from its config (Tune's own trial_id
    overwrites the one the worker reports), its folder resolved as the trial resolves it."""
    spec = spec_of(config)
    store = Store(results_dir_for(spec, config))
    store.update_meta(spec.trial_id, stopped_at_tokens=tokens)
    finalize_stopped(store, spec)


def finalize_stopped(store: Store, spec: TrialSpec) -> None:
    """A trial ASHA stopped: its last row becomes final (status ok) and its checkpoint goes.
    Idempotent: search's driver repeats it for a trial whose rows a crash left behind."""
    store.update_meta(spec.trial_id, status="ok", stopped_early=True, error=None,
                      finished=time.time())
    rows = store.read_trial(spec.trial_id)
    if rows and not rows[-1]["final"]:
        store.write_row({**rows[-1], "final": True, "status": "ok"})
    store.drop_checkpoint(spec.trial_id)


def stopped(store: Store, spec: TrialSpec) -> None:
    """In the trial, after Tune stopped it at a report. A stop the scheduler settled (meta
    stopped_early) is done. Any other is noted in its metadata and log, rows left not final;
    the one-line error goes to stderr first, as Tune may end the process at any moment now."""
    tid = spec.trial_id
    if store.read_meta(tid).get("stopped_early"):
        return
    rows = store.read_trial(tid)
    error = first_report_error(store, spec, rows)
    if error:
        print(f"scaling: error: {error}", file=sys.stderr, flush=True)
    tokens = rows[-1]["tokens"] if rows else 0
    note = (f"trial {tid}: stopped by Tune at {tokens:,} of {spec.train.total_tokens:,} tokens; "
            f"its rows stay not final and running it again resumes it")
    store.update_meta(tid, status="stopped", note=note, error=error)
    store.append_log(tid, f"{time.strftime('%H:%M:%S')} {error or note}")


def first_report_error(store: Store, spec: TrialSpec, rows: list[dict]) -> str | None:
    """The one-line error for a scheduler that stops every trial at its first report, or None.

    ASHA never stops the first result it sees (nothing to compare it with), and every trial
    writes its row before it reports, so a trial stopped at its first evaluation while no other
    trial of its sweep has a row was stopped without a comparison: by a max_t at or below that
    evaluation, or by a stop criterion, and every trial will stop there. Only the first trial
    to report can tell, and not when another reports at the same moment (then no line); a
    Tuner that ends at that very report (time_budget_s, an interrupt) reads the same."""
    if len(rows) != 1:
        return None
    table = store.read_table()
    if any(sweep == spec.sweep and tid != spec.trial_id
           for tid, sweep in zip(table["trial_id"].to_pylist(), table["sweep"].to_pylist())):
        return None
    return (f"trial {spec.trial_id} was stopped at its first evaluation ({rows[0]['tokens']:,} of "
            f"{spec.train.total_tokens:,} tokens) before any other trial had reported: the "
            f"scheduler's max_t (ASHA's default 100 is read in its time_attr, e.g. tokens) or a "
            f"stop criterion is at or below it, so every trial stops there; "
            f"scaling_orchestrator.orchestrator.asha_for(spec) sets "
            f"ASHA's max_t and grace_period from the trial")
