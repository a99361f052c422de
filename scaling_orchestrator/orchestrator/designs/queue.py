"""When each trial of a study may start: the one thing a design decides at run time.

run_plan hands Tune a `StudySearcher` (execution/searcher.py) over a TrialQueue. Tune asks
the searcher for a trial whenever a slot is free; the searcher asks the queue:

    take(store) -> TrialSpec   run this one next
                -> None        nothing is runnable now, ask again soon (a branch waiting for its
                               trunk's checkpoint; an adaptive study waiting for a fit)
                -> FINISHED    nothing more will come; Tune ends when the running ones end

The base queue is the grid's: every trial runnable at once, the longest (most FLOPs) first, so
a study's makespan approaches total work / slots (Graham's LPT rule, within 4/3 of optimal).
Designs subclass it in their own module (branches.py, adaptive_queue.py) and hear each
trial's reports (on_result) and its end (on_complete) to decide what becomes runnable; each
design's make_queue builds its queue, and designs.make_queue picks the plan's design's.
"""

from __future__ import annotations

FINISHED = "FINISHED"  # ray.tune.search.Searcher.FINISHED, without importing Ray here


class TrialQueue:
    """Every trial runnable from the start, longest first (the grid's queue)."""

    def __init__(self, trials):
        self.pending = sorted(trials, key=lambda t: (-t.flops, t.trial_id))
        self.running: set[str] = set()
        self.known = {t.trial_id: t for t in trials}

    def take(self, store):
        """The next runnable trial, None when none is runnable yet, FINISHED when none will be."""
        for i, spec in enumerate(self.pending):
            if self.runnable(spec, store):
                self.running.add(spec.trial_id)
                return self.pending.pop(i)
        return None if self.pending or self.running else FINISHED

    def runnable(self, spec, store) -> bool:
        """Whether `spec` may start now; every trial may, in the grid."""
        return True

    def on_result(self, spec, metrics: dict, store) -> None:
        """A report of a running trial (one evaluation)."""

    def on_complete(self, spec, metrics: dict | None, store, error: bool) -> None:
        """A trial ended (error: it raised for good in this pass)."""
        self.running.discard(spec.trial_id)

    def add(self, specs) -> None:
        """More trials (an adaptive study's next round), queued longest first among the pending."""
        fresh = [s for s in specs if s.trial_id not in self.known]
        self.known.update((s.trial_id, s) for s in fresh)
        self.pending = sorted(self.pending + fresh, key=lambda t: (-t.flops, t.trial_id))

    def has_work(self) -> bool:
        """Whether a Tune run of this queue would start anything: run_plan asks a queue built
        with no todo trials, so a design that adds trials (adaptive) can resume its later rounds."""
        return bool(self.pending or self.running)

    def planned(self) -> list:
        """Every trial known so far, for the plan file and the progress line."""
        return list(self.known.values())
