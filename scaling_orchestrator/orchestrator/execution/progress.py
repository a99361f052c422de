"""The live progress line of a running study: a Ray Tune callback feeding store/status.py's Tally.

Ray Tune's own trial table is turned off (verbose=0): it prints every config key of every
trial, a nested TrialSpec makes that unreadable. This callback prints the Tally's one line
instead (trials by state, FLOPs done, ETA) at most every few seconds and at the end.
"""

from __future__ import annotations

import sys
import time

from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.status import Tally


def make_live_progress(trials, done_before: set[str], stream=None, every_seconds: float = 5.0,
                       queue=None):
    """A ray.tune.Callback printing the Tally's line at most every `every_seconds` (and at the
    end). queue: the design's TrialQueue; what it has queued or started since (an adaptive
    study's later rounds) is counted with the plan's trials."""
    from ray import tune  # Ray loads when a study runs, not when run.py is imported (RunSummary)

    tally, out = Tally(trials, done_before), stream or sys.stderr

    def tid(trial) -> str:
        return trial.config["trial"]["trial_id"]

    def catch_up(trial=None) -> None:
        """Count what the queue knows now, and a started trial it never listed."""
        if queue is not None:
            tally.add(queue.planned())
        if trial is not None:
            tally.add([TrialSpec.from_dict(trial.config["trial"])])

    class LiveProgress(tune.Callback):
        last_print = 0.0

        def on_trial_start(self, iteration, trials, trial, **info):
            catch_up(trial)
            tally.started(tid(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            tally.reported(tid(trial), result.get("flops", 0.0))

        def on_trial_complete(self, iteration, trials, trial, **info):
            if (trial.last_result or {}).get("status") == "failed":  # an error it will repeat:
                tally.failed(tid(trial))  # recorded and returned, not raised (worker.trainable)
            else:
                tally.finished(tid(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            tally.failed(tid(trial))

        def on_step_end(self, iteration, trials, **info):
            if time.time() - self.last_print >= every_seconds:
                self.last_print = time.time()
                catch_up()
                print(tally.line(), file=out, flush=True)

        def on_experiment_end(self, trials, **info):
            catch_up()
            print(tally.line(), file=out, flush=True)

    return LiveProgress()
