"""Run a plan's trials on Ray: skip what the store says is done, tune.Tuner over the rest, summarize.

Resume is driven by the store, not by Tune's experiment state: a re-run plans the same trial
ids, skips those with a final row, and each unfinished trial resumes from its own checkpoint
(store checkpoint for in-process trials, Ray Train's snapshot under _ray/train/<trial_id> for
worker-group trials). So a crash of the driver, of a node or of a trial costs at most the
steps since that trial's last evaluation, and Tuner.restore is never needed.
"""

from __future__ import annotations

import hashlib
import socket
import time
from dataclasses import dataclass, field

from scaling_orchestrator.orchestrator.designs import make_queue
from scaling_orchestrator.orchestrator.designs.queue import TrialQueue
from scaling_orchestrator.orchestrator.execution.progress import make_live_progress
from scaling_orchestrator.orchestrator.execution.tracking import tracking_callbacks
from scaling_orchestrator.orchestrator.execution.tuner import (
    build_tuner,
    check_batch_split,
    check_cluster,
    cluster_capacity,
    joins_a_cluster,
    local_ray_record,
    one_line,
    ray_session,
)
from scaling_orchestrator.orchestrator.execution.worker import trainable
from scaling_orchestrator.orchestrator.plan.build import Plan
from scaling_orchestrator.orchestrator.plan.resources import max_concurrent
from scaling_orchestrator.orchestrator.spec.paths import check_on_driver
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.lock import StudyLock
from scaling_orchestrator.orchestrator.store.results import Store
from scaling_orchestrator.orchestrator.store.status import NO_REASON, Failure, failure_of


@dataclass(frozen=True)
class RunSummary:
    """Trial ids by outcome. skipped: final in the store before this run (ok or diverged);
    completed / diverged: finished in this run; failed: not ok or diverged after this run, run
    again by the next `scaling run`; failures: each failed trial's one-line reason and log."""

    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    results_dir: str = ""
    wall_seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"{len(self.completed)} completed, {len(self.skipped)} skipped, "
                          f"{len(self.diverged)} diverged, {len(self.failed)} failed in "
                          f"{self.wall_seconds:.1f} s; results in {self.results_dir}",
                          *(f"  {f}" for f in self.failures)])


def experiment_name(trials: list[TrialSpec]) -> str:
    """<sweep>-<hash of the plan's trial ids>: the same plan gets the same Tune folder."""
    blob = "\n".join(sorted(t.trial_id for t in trials)).encode()
    return f"{trials[0].sweep}-{hashlib.sha256(blob).hexdigest()[:8]}"


@dataclass(frozen=True)
class _Settings:
    """What every Tuner pass of one run shares."""

    max_failures: int
    max_concurrent_trials: int | None
    progress: bool
    extra_config: dict
    callbacks: tuple = ()  # the spec's trackers' (tracking.py) and the caller's


def run_plan(plan: Plan, results_dir: str | None = None, *, address: str | None = None,
             max_concurrent_trials: int | None = None, progress: bool = True,
             extra_config: dict | None = None, callbacks=()) -> RunSummary:
    """Run every trial of the plan that the results folder does not hold a final row for.

    results_dir defaults to the spec's storage. Retries per trial within this run come from
    the spec's max_failures (Tune's FailureConfig, and Train's for a worker group): a crashed
    worker or a lost node costs one, and the retry resumes from the trial's last checkpoint.
    Trials at a time: max_concurrent_trials, else the spec's, else what the cluster holds.
    Before anything is written or Tune starts, a live lock holder is refused
    (StudyLockedError) and a trial the cluster can never place is a ValueError naming its
    resources field; a results folder that did not exist is then not created.
    extra_config is merged into every trial's Tune config (worker.trainable documents the
    keys, e.g. fail_at_step for fault-injection drills, torch_backend). callbacks: any Tune
    callbacks for every Tuner pass, next to the trackers of the spec's tracking: section.
    """
    start, sweep = time.time(), plan.sweep
    trials = list({t.trial_id: t for t in plan.trials}.values())  # a trial planned twice runs once
    check_batch_split(trials)
    store = Store(results_dir or sweep.storage, create=False)
    lock = StudyLock(store)
    lock.check()
    done = store.done_trial_ids()  # once: it reads every row file
    pending = [t for t in trials if t.trial_id not in done]
    more = bool(pending) or make_queue(plan, [], store).has_work()  # an adaptive study's later rounds
    if pending:
        check_on_driver(pending, store.uri)  # a cluster's paths, checked where the study runs
    settings = _Settings(sweep.max_failures, max_concurrent_trials or sweep.max_concurrent_trials,
                         progress, extra_config or {},
                         (*tracking_callbacks(sweep.tracking, sweep.name, store.uri), *callbacks))
    with ray_session(address, needed=more) as started:
        if pending:
            check_cluster(pending)
        with lock:
            if started and not joins_a_cluster(address):
                # our own local Ray (never a joined cluster's node: the reaper would end it)
                lock.record(**local_ray_record())
            store.write_plan(trials, sweep.spec)
            done_before = store.done_trial_ids()
            todo = [t for t in trials if t.trial_id not in done_before]
            if todo or more:
                todo = _tune(plan, todo, trials, done_before, store, settings)
                trials = _union(trials, todo)
                store.compact()  # the rows in one file: fit, status and re-runs read it
            return _summarize(trials, todo, done_before, store, time.time() - start)


# Errors that say the cluster lost the trial's process (a node died, an actor was killed, an
# object's owner vanished), not that the trial's code raised. Tune counts them against
# max_failures like any other, and with reuse_actors a retry can land on the dead node's cached
# actor and burn every retry at once (seen in tests/test_faults_node.py); such trials get a
# fresh Tuner pass instead, resuming from their checkpoints.
LOST_TO_THE_CLUSTER = {"RayActorError", "ActorDiedError", "ActorUnavailableError", "NodeDiedError",
                       "WorkerCrashedError", "ObjectLostError", "OwnerDiedError", "RaySystemError"}
CLUSTER_LOSS_PASSES = 2


def lost_to_the_cluster(error: BaseException | None) -> bool:
    """True when `error`, or an error it was raised from, is one of LOST_TO_THE_CLUSTER."""
    while error is not None:
        if {c.__name__ for c in type(error).__mro__} & LOST_TO_THE_CLUSTER:
            return True
        error = error.__cause__ or error.__context__
    return False


def _union(trials, more) -> list[TrialSpec]:
    """trials, then those of `more` it lacks (an adaptive study's later rounds), in order."""
    return list({t.trial_id: t for t in [*trials, *more]}.values())


def _tune(plan, todo, trials, done_before, store: Store, settings: _Settings) -> list[TrialSpec]:
    """Run `todo` under Tune through the design's queue; trials the cluster lost get up to
    CLUSTER_LOSS_PASSES more passes. Anything still not final afterwards is marked failed,
    with its error. Returns every trial the queues handed out or held (a design may add some)."""
    errors, remaining = {}, list(todo)
    for attempt in range(CLUSTER_LOSS_PASSES + 1):
        queue = make_queue(plan, remaining, store)
        errors, lost = _tune_pass(queue, trials, done_before, store, attempt, settings)
        todo = _union(todo, queue.planned())
        if len(_union(trials, todo)) > len(trials):
            store.write_plan(_union(trials, todo))  # `scaling status` sees the added trials
        done = store.done_trial_ids()
        remaining = [t for t in _union(remaining, queue.planned())
                     if t.trial_id not in done and t.trial_id in lost]
        if not remaining:
            break
    done = store.done_trial_ids()
    for spec in todo:  # anything not final now failed for good in this run
        if spec.trial_id not in done:
            # The trial's own one-line reason first (run_loop records it; Tune's error repeats
            # the whole traceback); Tune's when the trial's process died before it could write.
            store.mark_failed(spec)
            reason = store.read_meta(spec.trial_id).get("error") or errors.get(spec.trial_id)
            store.update_meta(spec.trial_id, status="failed", error=reason or NO_REASON)
    return todo


def _tune_pass(queue: TrialQueue, trials, done_before, store: Store, attempt: int,
               settings: _Settings) -> tuple[dict, set]:
    """One Tuner over the queue's trials: (one-line error per failed trial, ids lost to the cluster)."""
    # searcher.py subclasses Ray's Searcher: Ray loads here, not when RunSummary is imported
    from scaling_orchestrator.orchestrator.execution.searcher import StudySearcher

    cluster = cluster_capacity()[0]
    tuner = build_tuner(
        trainable, store, cluster=cluster,
        name=experiment_name(trials) + (f"-pass{attempt}" if attempt else ""),
        param_space={**settings.extra_config, "driver_host": socket.gethostname()},
        search_alg=StudySearcher(queue, store), num_samples=-1,
        max_failures=settings.max_failures,
        max_concurrent_trials=(settings.max_concurrent_trials
                               or max_concurrent([t.resources for t in queue.planned()], cluster)),
        trial_name_creator=lambda t: t.config["trial"]["trial_id"],
        trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
        callbacks=[*([make_live_progress(trials, done_before, queue=queue)] if settings.progress else []),
                   *settings.callbacks])
    errors, lost = {}, set()
    for result in tuner.fit():
        if result.error is not None and result.config:
            trial_id = result.config["trial"]["trial_id"]
            errors[trial_id] = one_line(result.error)
            if lost_to_the_cluster(result.error):
                lost.add(trial_id)
    return errors, lost


def _summarize(trials, todo, done_before, store: Store, wall_seconds: float) -> RunSummary:
    final: dict[str, str] = {}
    table = store.read_table()
    for tid, is_final, status in zip(table["trial_id"].to_pylist(), table["final"].to_pylist(),
                                     table["status"].to_pylist()):
        if is_final:
            final[tid] = status
    ran = [t.trial_id for t in todo if t.trial_id not in done_before]
    failed = [t for t in ran if final.get(t) not in ("ok", "diverged")]
    return RunSummary(
        completed=[t for t in ran if final.get(t) == "ok"],
        skipped=[t.trial_id for t in trials if t.trial_id in done_before],
        failed=failed, diverged=[t for t in ran if final.get(t) == "diverged"],
        results_dir=store.uri, wall_seconds=wall_seconds,
        failures=[failure_of(store, t) for t in failed])
