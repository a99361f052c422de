"""Run a plan on Ray: skip what the store says is done, tune.Tuner over the rest, summarize.

Resume is driven by the store, not by Tune's experiment state: a re-run plans the same trial
ids, skips those with a final row, and each unfinished trial resumes from its own checkpoint
(store checkpoint for in-process trials, Ray Train's snapshot under _ray/train/<trial_id> for
worker-group trials). So a crash of the driver, of a node or of a trial costs at most the
steps since that trial's last evaluation, and Tuner.restore is never needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

from orchestrator.lock import StudyLock
from orchestrator.progress import status_text  # noqa: F401  (re-exported for the CLI)
from orchestrator.store import Store
from orchestrator.trial import TrialSpec


@dataclass(frozen=True)
class RunSummary:
    """Trial ids by outcome. skipped: final in the store before this run (ok or diverged);
    completed / diverged: finished in this run; failed: not final after this run (see the
    trial's _trials/<id>.log), run again by the next `scaling run`."""

    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    results_dir: str = ""
    wall_seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{len(self.completed)} completed, {len(self.skipped)} skipped, "
                f"{len(self.diverged)} diverged, {len(self.failed)} failed in "
                f"{self.wall_seconds:.1f} s; results in {self.results_dir}")


def experiment_name(trials: list[TrialSpec]) -> str:
    """<sweep>-<hash of the plan's trial ids>: the same plan gets the same Tune folder."""
    blob = "\n".join(sorted(t.trial_id for t in trials)).encode()
    return f"{trials[0].sweep}-{hashlib.sha256(blob).hexdigest()[:8]}"


def start_local_ray(num_cpus: int | None = None, **kwargs) -> None:
    """A quiet local Ray whose workers import this package from where the driver found it
    (a source checkout works without `pip install`; cluster nodes install it, cluster.yaml).

    Logical CPUs = cores by default: in-process trials reserve cpus_per_worker each and set as
    many torch threads, so 2 cores run 2 one-thread trials, never 4 oversubscribed ones."""
    import ray

    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _drop_auth_enabled_notice)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}}, **{**QUIET, **kwargs})


def _drop_auth_enabled_notice(record: logging.LogRecord) -> bool:
    """Ray 2.60 turns token authentication on for a new local Ray (RAY_AUTH_MODE unset) and
    says so in a WARNING line on stderr, which would break the CLI's one-line errors. Only
    that notice is dropped: "authentication is disabled" still shows."""
    return not record.getMessage().startswith("Token authentication is enabled")


QUIET = dict(log_to_driver=False, configure_logging=True, logging_level="WARNING")


def _connect(address: str | None) -> bool:
    """Join `address` (or $RAY_ADDRESS, as under `ray job submit`), else start a local Ray.
    Returns True when this call started Ray (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, **QUIET)
    else:
        start_local_ray()
    return True


def _check_resources(trials: list[TrialSpec]) -> None:
    """num_workers > 1 trains data-parallel (models.train under DDP): each rank takes an equal
    share of every step's batch, so batch_tokens must split evenly over the workers."""
    from models.train_config import rows_per_rank

    for t in trials:
        try:
            rows_per_rank(t.train.batch_tokens, t.shape.seq_len, max(1, t.resources.num_workers))
        except ValueError as exc:
            raise ValueError(f"{exc} (trial {t.trial_id}, Resources.num_workers="
                             f"{t.resources.num_workers})") from None


def run_plan(trials: list[TrialSpec], results_dir: str, *, address: str | None = None,
             max_failures: int = 2, max_concurrent_trials: int | None = None,
             progress: bool = True, extra_config: dict | None = None) -> RunSummary:
    """Run every trial of the plan that the results folder does not hold a final row for.

    max_failures: retries per trial within this run (Tune's FailureConfig, and Train's for a
    worker group): a crashed worker or a lost node costs one, and the retry resumes from the
    trial's last checkpoint. Before anything is written or Tune starts, a live lock holder is
    refused (StudyLockedError) and a trial the cluster can never place is a ValueError naming
    its resources field; a results folder that did not exist is then not created.
    extra_config is merged into every trial's Tune config (worker.trainable documents the
    keys, e.g. fail_at_step for fault-injection drills, torch_backend).
    """
    start = time.time()
    trials = list({t.trial_id: t for t in trials}.values())  # a trial planned twice runs once
    _check_resources(trials)
    store = Store(results_dir, create=False)
    lock = StudyLock(store)
    lock.check()
    done = store.done_trial_ids()
    pending = [t for t in trials if t.trial_id not in done]
    started = _connect(address) if pending else False
    try:
        if pending:
            _check_cluster(pending)
        with lock:
            if started and not (address or os.environ.get("RAY_ADDRESS")):
                # our own local Ray (never a joined cluster's node: the reaper would end it)
                lock.record(**_local_ray_processes())
            store.write_plan(trials)
            done_before = store.done_trial_ids()
            todo = [t for t in trials if t.trial_id not in done_before]
            if todo:
                _tune(todo, trials, done_before, store, max_failures=max_failures,
                      max_concurrent_trials=max_concurrent_trials, progress=progress,
                      extra_config=extra_config or {})
            return _summarize(trials, todo, done_before, store, time.time() - start)
    finally:
        if started:
            import ray

            ray.shutdown()


def cluster_capacity() -> tuple[dict, list[dict]]:
    """(the most the cluster can hold per resource, each node's resources). An autoscaling
    cluster (cluster.yaml: min_workers 0) starts with no GPU node: its capacity is what the
    autoscaler may launch (node group x max_count, the figure Ray Train V2 checks), else
    the alive nodes' totals."""
    import ray
    from ray._private.state import state

    total = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    try:
        config = state.get_cluster_config()
        launchable = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # no autoscaler state (a local Ray)
        config, launchable = None, {}
    for key, most in launchable.items():
        total[key] = max(total.get(key, 0.0), float(most))
    if config is not None:
        nodes += [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]
    return total, nodes


def _check_cluster(trials: list[TrialSpec]) -> None:
    from orchestrator.resources import check_fits

    check_fits(trials, *cluster_capacity())


def _local_ray_processes() -> dict:
    """The local Ray this driver started, for the lock (lock.reap_leftover_ray)."""
    import ray

    from orchestrator.lock import local_ray_processes

    try:
        node = ray._private.worker._global_node
        pids = [info.process.pid for infos in node.all_processes.values() for info in infos]
        return local_ray_processes(ray.get_runtime_context().get_node_id(), pids)
    except Exception:  # private API moved: only the clean-up after a crash is lost
        return {}


# Errors that say the cluster lost the trial's process (a node died, an actor was killed, an
# object's owner vanished), not that the trial's code raised. Tune counts them against
# max_failures like any other, and with reuse_actors a retry can land on the dead node's cached
# actor and burn every retry at once (seen in tests/test_faults_node.py); such trials get a
# fresh Tuner pass instead, resuming from their checkpoints.
LOST_TO_THE_CLUSTER = {"RayActorError", "ActorDiedError", "ActorUnavailableError", "NodeDiedError",
                       "WorkerCrashedError", "ObjectLostError", "OwnerDiedError", "RaySystemError"}
CLUSTER_LOSS_PASSES = 2


def _lost_to_the_cluster(error: BaseException | None) -> bool:
    while error is not None:
        if {c.__name__ for c in type(error).__mro__} & LOST_TO_THE_CLUSTER:
            return True
        error = error.__cause__ or error.__context__
    return False


def _tune(todo, trials, done_before, store: Store, *, max_failures, max_concurrent_trials,
          progress, extra_config) -> None:
    """Run `todo` under Tune; trials the cluster lost get up to CLUSTER_LOSS_PASSES more passes.
    Anything still not final afterwards is marked failed, with its error."""
    errors, lost, remaining = {}, set(), list(todo)
    for attempt in range(CLUSTER_LOSS_PASSES + 1):
        errors, lost = _tune_pass(remaining, trials, done_before, store, attempt,
                                  max_failures=max_failures, max_concurrent_trials=max_concurrent_trials,
                                  progress=progress, extra_config=extra_config)
        done = store.done_trial_ids()
        remaining = [t for t in remaining if t.trial_id not in done and t.trial_id in lost]
        if not remaining:
            break
    done = store.done_trial_ids()
    for spec in todo:  # anything not final now failed for good in this run
        if spec.trial_id not in done:
            store.mark_failed(spec)
            store.update_meta(spec.trial_id, status="failed",
                              error=errors.get(spec.trial_id, "stopped before its last step"))


def _tune_pass(todo, trials, done_before, store: Store, attempt: int, *, max_failures,
               max_concurrent_trials, progress, extra_config) -> tuple[dict, set]:
    """One Tuner over `todo`: (one-line error per failed trial, ids lost to the cluster)."""
    from ray import tune
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    from orchestrator.progress import make_live_progress
    from orchestrator.resources import driver_resources, max_concurrent
    from orchestrator.worker import trainable

    # verbose=0 alone still prints the new engine's config box; the classic reporter at
    # verbosity 0 prints nothing, and our live line takes its place.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    cluster = cluster_capacity()[0]
    concurrency = max_concurrent_trials or max_concurrent([t.resources for t in todo], cluster)

    def trial(config: dict) -> None:  # a wrapper: with_resources tags the function it gets
        return trainable(config)

    def resources_for(config: dict):
        res = TrialSpec.from_dict(config["trial"]).resources
        return resource_dict_to_pg_factory(driver_resources(res, cluster))

    name = experiment_name(trials) + (f"-pass{attempt}" if attempt else "")
    tuner = tune.Tuner(
        tune.with_resources(trial, resources_for),
        param_space={"trial": tune.grid_search([t.to_dict() for t in todo]),
                     "results_dir": store.uri, "max_failures": max_failures, **extra_config},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency,
            # The next trial runs in the finished trial's process: torch is imported and the
            # token cache mapped already (about 2 s per trial on 2 cores).
            reuse_actors=True,
            trial_name_creator=lambda t: t.config["trial"]["trial_id"],
            trial_dirname_creator=lambda t: t.config["trial"]["trial_id"]),
        run_config=tune.RunConfig(
            name=name,
            storage_path=store.path("_ray", "tune") if store.local else f"{store.uri}/_ray/tune",
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,
            callbacks=[make_live_progress(trials, done_before)] if progress else []),
    )
    errors, lost = {}, set()
    for result in tuner.fit():
        if result.error is not None and result.config:
            trial_id = result.config["trial"]["trial_id"]
            errors[trial_id] = _one_line(result.error)
            if _lost_to_the_cluster(result.error):
                lost.add(trial_id)
    return errors, lost


def _one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summarize(trials, todo, done_before, store: Store, wall_seconds: float) -> RunSummary:
    final: dict[str, str] = {}
    table = store.read_table()
    for tid, is_final, status in zip(table["trial_id"].to_pylist(), table["final"].to_pylist(),
                                     table["status"].to_pylist()):
        if is_final:
            final[tid] = status
    ran = [t.trial_id for t in todo]
    return RunSummary(
        completed=[t for t in ran if final.get(t) == "ok"],
        skipped=[t.trial_id for t in trials if t.trial_id in done_before],
        failed=[t for t in ran if final.get(t) not in ("ok", "diverged")],
        diverged=[t for t in ran if final.get(t) == "diverged"],
        results_dir=store.uri, wall_seconds=wall_seconds)
