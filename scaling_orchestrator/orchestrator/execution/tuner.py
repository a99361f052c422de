"""The Ray Tune edge: join or start Ray, check trials against the cluster, wrap a trainable with
what its trials reserve, and build the Tuner. run_plan (the grid) and run_search (the hparam
search) both go through here, so a new kind of trial needs only its own param space.

Defaults every Tuner gets: a stable experiment name (resume finds its folder), storage under
<results>/_ray/tune, Tune's FailureConfig and the trial's own retries from one max_failures,
reuse_actors (the next trial runs in a finished trial's process: torch is imported and the
token cache mapped already, about 2 s per trial on 2 cores), and Tune's own trial table off.

A Tune config -> the TrialSpec it trains and the folder its rows go to (spec_of,
results_dir_for): the trial (worker.trainable), the driver settling an ASHA stop
(stops.record_stop), the trackers and the search (search.resolve) read a config the same way, so
they agree on its trial id and folder. A config is JSON-plain (worker's docstring lists its
keys): "trial" is TrialSpec.to_dict(), and any TrainConfig field at its top level replaces the
trial's. An override changes what is trained, so it changes the trial id (the content hash): a
search over "lr" is one trial id, and one row file, per lr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import numbers
import os
import threading

from scaling_orchestrator.models.training.config import rows_per_rank
from scaling_orchestrator.orchestrator.plan.autoscaling import launchable as bootstrap_launchable
from scaling_orchestrator.orchestrator.plan.resources import check_fits, driver_resources
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.store.lock import local_ray_processes
from scaling_orchestrator.orchestrator.store.results import Store, absolute

QUIET = dict(log_to_driver=False, configure_logging=True, logging_level="WARNING")
# the folder holding the scaling_orchestrator package: a source checkout's root
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


# -- a trial's Tune config (module doc) -----------------------------------------------------------
CONFIG_KEYS = ("trial", "results_dir", "fail_at_step", "torch_backend", "max_failures", "driver_host")
# Searched values arrive as numpy numbers (tune.randint gives numpy.int64), which json hashes
# differently from the int a spec holds ("4096" vs 4096): cast to the field's declared type.
CASTS = {"int": (numbers.Integral, int), "float": (numbers.Real, float), "str": (str, str)}


def overrides(spec: TrialSpec, config: dict) -> dict:
    """The TrainConfig fields a Tune config sets at its top level, cast to the field's type."""
    fields = {f.name: f.type for f in dataclasses.fields(spec.train)}
    unknown = [k for k in config if k not in CONFIG_KEYS and k not in fields]
    if unknown:
        raise ValueError(f"trainable config keys {unknown}: allowed {list(CONFIG_KEYS)} and "
                         f"TrainConfig fields {sorted(fields)}")
    out = {}
    for key in (k for k in config if k in fields):
        kind, cast = CASTS.get(str(fields[key]), (None, None))
        value = config[key]
        castable = kind is not None and isinstance(value, kind) and not isinstance(value, bool)
        out[key] = cast(value) if castable else value
    return out


def apply_overrides(spec: TrialSpec, config: dict) -> TrialSpec:
    """The trial a Tune config trains: its TrainConfig fields replace the trial's."""
    changes = overrides(spec, config)
    if not changes:
        return spec
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **changes))


def spec_of(config: dict) -> TrialSpec:
    return apply_overrides(TrialSpec.from_dict(config["trial"]), config)


def results_dir_for(spec: TrialSpec, config: dict) -> str:
    """config's results_dir, else ~/scaling-results/<sweep>. A relative one is read from the
    directory the Tuner was started in: worker.with_trial_resources makes it absolute on the
    driver; used bare, Tune's TUNE_ORIG_WORKING_DIR (the trial process's directory before Tune
    moved it into .../working_dirs/<trial>; on a local Ray, the driver's) stands in."""
    path = config.get("results_dir") or os.path.join("~", "scaling-results", spec.sweep)
    return absolute(path, os.environ.get("TUNE_ORIG_WORKING_DIR") or os.getcwd())


# -- Ray and the Tuner ----------------------------------------------------------------------------


def start_local_ray(num_cpus: int | None = None, **kwargs) -> None:
    """A quiet local Ray whose workers import this package from where the driver found it
    (a source checkout works without `pip install`; cluster nodes install it, cluster.yaml).

    Logical CPUs = cores by default: in-process trials reserve cpus_per_worker each and set as
    many torch threads, so 2 cores run 2 one-thread trials, never 4 oversubscribed ones."""
    # Ray loads only when a study runs: planning and `scaling status` need none
    import ray

    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _drop_auth_enabled_notice)
    # Ray's processes, and the workers they start, inherit this environment: PYTHONPATH set here
    # rather than as a runtime_env, which costs every new worker process about 1 s (measured)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, before) if p)
    try:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **{**QUIET, **kwargs})
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _drop_auth_enabled_notice(record: logging.LogRecord) -> bool:
    """Ray 2.60 turns token authentication on for a new local Ray (RAY_AUTH_MODE unset) and
    says so in a WARNING line on stderr, which would break the CLI's one-line errors. Only
    that notice is dropped: "authentication is disabled" still shows."""
    return not record.getMessage().startswith("Token authentication is enabled")


def joins_a_cluster(address: str | None) -> bool:
    """An address given here or in $RAY_ADDRESS (as under `ray job submit`) means a running
    cluster, never a local Ray of our own."""
    return bool(address or os.environ.get("RAY_ADDRESS"))


@contextlib.contextmanager
def ray_session(address: str | None, *, needed: bool = True):
    """Join `address` (or $RAY_ADDRESS), else start a local Ray; yields True when this call
    started Ray, and shuts down only what it started. needed=False starts nothing (every trial
    is done already): a no-op re-run costs no Ray start-up."""
    # Ray loads only when a study runs: planning and `scaling status` need none
    import ray

    started = needed and not ray.is_initialized()
    if started:
        # Tune's modules import on a thread while Ray starts: ray.init mostly waits on the
        # processes it starts. A local Ray with the imports, 2 cores: 9.1 s one after the
        # other, 6.6 s side by side (three runs each).
        importing = threading.Thread(target=_import_tune, name="import-tune", daemon=True)
        importing.start()
        try:
            if joins_a_cluster(address):
                ray.init(address=address, **QUIET)
            else:
                start_local_ray()
        finally:
            importing.join()
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def _import_tune() -> None:
    """The Tune modules a study's driver uses (build_tuner, the searcher, the schedulers). An
    import that fails here fails again, with its message, where the module is used."""
    try:
        # Ray loads only when a study runs (here beside ray.init, on a thread: ray_session)
        from ray import tune  # noqa: F401
        from ray.tune.execution import placement_groups  # noqa: F401
        from ray.tune.schedulers import FIFOScheduler  # noqa: F401
        from ray.tune.search import Searcher  # noqa: F401
    except Exception:  # noqa: BLE001 - reported where the module is used
        pass


def check_batch_split(trials: list[TrialSpec]) -> None:
    """num_workers > 1 trains data-parallel (scaling_orchestrator.models.training.loop under DDP):
    each rank takes an equal share of every step's batch, so batch_tokens must split evenly over
    the workers."""
    for t in trials:
        try:
            rows_per_rank(t.train.batch_tokens, t.shape.seq_len, max(1, t.resources.num_workers))
        except ValueError as exc:
            raise ValueError(
                f"{exc} (trial {t.trial_id}, Resources.num_workers={t.resources.num_workers})"
            ) from None


def cluster_capacity() -> tuple[dict, list[dict]]:
    """(the most the cluster can hold per resource, each node's resources). An autoscaling
    cluster (cluster.yaml: min_workers 0) starts with no GPU node: its capacity is what the
    autoscaler may launch (node group x max_count, the figure Ray Train V2 checks), else
    the alive nodes' totals."""
    # Ray loads only when a study runs: planning and `scaling status` need none
    import ray
    from ray._private.state import state

    total = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    try:
        config = state.get_cluster_config()
        launchable = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # no autoscaler state (a local Ray)
        config, launchable = None, {}
    if config is None:  # a `ray up` cluster: the v1 monitor publishes none (plan/autoscaling.py)
        launchable, types = bootstrap_launchable() or ({}, [])
        nodes += types
    for key, most in launchable.items():
        total[key] = max(total.get(key, 0.0), float(most))
    if config is not None:
        nodes += [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]
    return total, nodes


def check_cluster(trials: list[TrialSpec]) -> dict:
    """Refuse a trial the cluster can never place (resources.check_fits); returns the capacity."""
    capacity, nodes = cluster_capacity()
    check_fits(trials, capacity, nodes)
    return capacity


def local_ray_record() -> dict:
    """The local Ray this driver started, for the study lock (lock.reap_leftover_ray)."""
    # Ray loads only when a study runs: planning and `scaling status` need none
    import ray

    try:
        node = ray._private.worker._global_node
        pids = [info.process.pid for infos in node.all_processes.values() for info in infos]
        return local_ray_processes(ray.get_runtime_context().get_node_id(), pids)
    except Exception:  # private API moved: only the clean-up after a crash is lost
        return {}


def with_trial_resources(fn, cluster: dict, resources: Resources | None = None, *, cwd: str | None = None):
    """`fn` wrapped with what each trial reserves (resources.driver_resources): `resources`,
    else those of the trial in the config's "trial". A fresh wrapper each call:
    tune.with_resources tags the function it is given, and the trainables stay untagged.
    cwd: the driver's working directory, against which a relative "results_dir" is read; Tune
    runs each trial in its own .../working_dirs/<trial>/ folder, where a relative path would
    land otherwise (and be copied into the experiment folder, never into ./results)."""
    # Ray loads only when a study runs: planning and `scaling status` need none
    from ray import tune
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    def trial(config: dict) -> None:
        if cwd and config.get("results_dir"):
            config = {**config, "results_dir": absolute(config["results_dir"], cwd)}
        return fn(config)

    def reservation(config: dict):
        res = resources if resources is not None else TrialSpec.from_dict(config["trial"]).resources
        return resource_dict_to_pg_factory(driver_resources(res, cluster))

    return tune.with_resources(trial, reservation)


def storage_path(store: Store) -> str:
    return store.path("_ray", "tune") if store.local else f"{store.uri}/_ray/tune"


class _NoLoggedMetrics(logging.Filter):
    """Drops the warning Tune's ExperimentAnalysis logs at the end of Tuner.fit for every trial
    without result.json or progress.csv: with its loggers off (build_tuner) none has them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics")


NO_LOGGED_METRICS = _NoLoggedMetrics()  # one instance: addFilter ignores a filter it holds


def build_tuner(
    fn,
    store: Store,
    *,
    name: str,
    param_space: dict,
    max_failures: int,
    cluster: dict,
    callbacks=(),
    **tune_config,
):
    """A Tuner over `fn` with the defaults of the module doc. param_space gets the results
    folder and max_failures (worker.trainable passes it to Ray Train's own FailureConfig);
    tune_config adds to TuneConfig (concurrency, searcher, scheduler, trial names)."""
    # Ray loads only when a study runs: planning and `scaling status` need none
    from ray import tune

    # verbose=0 alone still prints the new engine's config box; the classic reporter at
    # verbosity 0 prints nothing, and the callbacks' lines take its place.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Every evaluation is already a Parquet row (store/results.py); Tune's own per-trial CSV, JSON and
    # TensorBoard logs would be a second copy the driver writes and reads back at the end
    # (bench/scale.py, 1,000 trials on 32 slots: utilisation 0.89 with them, 0.93 without).
    # Nothing here reads them: run.py and search.py take each result's config and error.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1":
        logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(NO_LOGGED_METRICS)
    return tune.Tuner(
        with_trial_resources(fn, cluster),
        param_space={"results_dir": store.uri, "max_failures": max_failures, **param_space},
        tune_config=tune.TuneConfig(reuse_actors=True, **tune_config),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path(store),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            callbacks=list(callbacks),
        ),
    )


def one_line(error: BaseException, limit: int = 500) -> str:
    """A trial's error for its metadata and the summary: type, message, one line, 500 chars."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
