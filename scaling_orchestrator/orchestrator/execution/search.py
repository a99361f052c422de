"""Hyperparameter search on Ray Tune: one Tuner per size over worker.trainable, rows in the store.

Each size of the spec's `hparams` section gets its own Tuner, so ASHA (Li et al. 2020) only
ever compares trials of one size, never sizes with each other and never the scaling grid. A
trial's config is {"trial": the size's base TrialSpec, "results_dir", <searched TrainConfig
fields>}; worker.trainable applies the fields and hashes the result into the trial id, so every
config writes its own rows (kind "hparam", its size label in size_label) into the sweep's store.

ASHA stops a trial at a rung: the scheduler (scaling_orchestrator.orchestrator.execution.stops) marks its last
row final with
status "ok" and writes `stopped_early` into its metadata (_trials/<id>.json) before Tune stops
it: a finished point at fewer tokens. Metric "val_loss", time "tokens": worker.tune_metrics
reports both at every evaluation, and every trial of a size evaluates at the same token counts
(spec/sections/hparams.py rounds them to every batch size searched).

Resume: a finished trial (final row ok or diverged) is not trained again; its rows are replayed
to Tune, so the searcher and ASHA see what they saw the first time. random and grid draw their
configs from a seeded generator (hparams.seed), so a re-run proposes the same configs and only
the unfinished ones train; an interrupted trial resumes from its checkpoint. optuna (TPE, seeded)
proposes configs from the results it has been told: with max_concurrent_trials 1 the replayed
results arrive in the same order and it proposes the same configs; with more at a time the order
can differ, and a re-run may train new configs besides the finished ones (all stay in the store).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass

from scaling_orchestrator.orchestrator.execution.stops import TIME_ATTR, finalize_stopped, recording_asha
from scaling_orchestrator.orchestrator.execution.tracking import tracking_callbacks
from scaling_orchestrator.orchestrator.execution.tuner import (
    apply_overrides,
    build_tuner,
    check_batch_split,
    check_cluster,
    joins_a_cluster,
    local_ray_record,
    one_line,
    overrides,
    ray_session,
    results_dir_for,
)
from scaling_orchestrator.orchestrator.execution.worker import trainable
from scaling_orchestrator.orchestrator.fmt import si, value
from scaling_orchestrator.orchestrator.plan.build import Plan
from scaling_orchestrator.orchestrator.plan.resources import max_concurrent
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.lock import StudyLock
from scaling_orchestrator.orchestrator.store.results import Store, is_done
from scaling_orchestrator.orchestrator.store.status import NO_REASON, Failure, failure_of

METRIC = "val_loss"


@dataclass(frozen=True)
class SizeResult:
    """One size's search: trial ids by outcome and the FLOPs they spent."""

    label: str
    params: int
    full_tokens: int  # tokens of a trial that runs to its end
    completed: tuple[str, ...]  # ran to full_tokens
    stopped_early: tuple[str, ...]  # stopped by ASHA at a rung: final rows at fewer tokens
    diverged: tuple[str, ...]
    failed: tuple[str, ...]  # not final after this run; the next run resumes them
    failures: tuple[Failure, ...]  # each failed trial's one-line reason and log
    skipped: tuple[str, ...]  # finished before this run (replayed to the searcher), any outcome
    flops: float  # exact FLOPs spent by every trial above (last row of each)
    flops_upper_bound: float  # trials * full-length FLOPs: what FIFO would have spent
    best: dict  # {"trial_id", "val_loss", <searched field>: value} among full-length trials

    @property
    def n_trials(self) -> int:
        return len(self.completed) + len(self.stopped_early) + len(self.diverged) + len(self.failed)

    def line(self) -> str:
        share = self.flops / self.flops_upper_bound if self.flops_upper_bound else 0.0
        best = ", ".join(f"{k} {value(v)}" for k, v in self.best.items() if k != "trial_id")
        return (
            f"  {self.label} ({si(self.params)} params, {si(self.full_tokens)} tokens per full trial): "
            f"{self.n_trials} trials: {len(self.completed)} full, {len(self.stopped_early)} stopped early, "
            f"{len(self.diverged)} diverged, {len(self.failed)} failed ({len(self.skipped)} done before); "
            f"{self.flops:.3e} of at most {self.flops_upper_bound:.3e} FLOPs ({share:.0%})"
            + (f"; best {best}" if best else "")
        )


@dataclass(frozen=True)
class SearchSummary:
    sizes: tuple[SizeResult, ...]
    results_dir: str
    wall_seconds: float

    @property
    def failed(self) -> list[str]:
        return [t for s in self.sizes for t in s.failed]

    @property
    def failures(self) -> list[Failure]:
        return [f for s in self.sizes for f in s.failures]

    @property
    def flops(self) -> float:
        return sum(s.flops for s in self.sizes)

    def __str__(self) -> str:
        total = sum(s.n_trials for s in self.sizes)
        bound = sum(s.flops_upper_bound for s in self.sizes)
        return "\n".join(
            [
                f"hparam search: {total} trials at {len(self.sizes)} sizes, {self.flops:.3e} of at most "
                f"{bound:.3e} FLOPs in {self.wall_seconds:.1f} s; results in {self.results_dir}",
                *(s.line() for s in self.sizes),
                *(f"  {f}" for f in self.failures),
            ]
        )


def resolve(config: dict) -> tuple[dict, TrialSpec]:
    """A Tune config with its searched fields cast to TrainConfig's types (a sampled int may be a
    numpy int, which would hash differently), and the TrialSpec it trains."""
    base = TrialSpec.from_dict(config["trial"])
    config = {**config, **overrides(base, config)}
    return config, apply_overrides(base, config)


def search_trainable(config: dict) -> None:
    """Tune function trainable of one search trial: replay a finished trial, else train it."""
    # Ray loads only when a search runs
    from ray import tune

    config, spec = resolve(config)
    rows = Store(results_dir_for(spec, config)).read_trial(spec.trial_id)
    if is_done(rows):
        for row in rows:  # what the searcher and ASHA saw the first time; nothing is written
            tune.report({**{k: row[k] for k in REPORTED}, "replayed": True})
        return
    trainable(config)  # an ASHA stop is settled by the scheduler itself (stops.recording_asha)


REPORTED = ("step", "tokens", "flops", "train_loss", "val_loss", "val_bpb", "wall_seconds", "final", "status")


def run_search(
    plan: Plan,
    results_dir: str | None = None,
    *,
    address: str | None = None,
    progress: bool = True,
    max_concurrent_trials: int | None = None,
    callbacks=(),
) -> SearchSummary:
    """Run the plan's hparams search, one Tuner per base trial (plan.hparam_trials, one per
    size); finished trials are replayed, not retrained. results_dir defaults to the spec's
    storage; trials at a time: max_concurrent_trials, else the spec's, else what the cluster
    holds; retries per trial: the spec's max_failures. callbacks: Tune callbacks for every
    Tuner, next to the trackers of the spec's tracking: section (one run per search trial)."""
    sweep = plan.sweep
    if sweep.hparams is None:
        raise ValueError(f"{sweep.source}: hparams: missing; the spec has no search to run")
    if sweep.hparams.search == "optuna":
        _require_optuna()
    start = time.time()
    check_batch_split(list(plan.hparam_trials))  # num_workers > 1: batch_tokens must split
    store = Store(results_dir or sweep.storage)
    callbacks = (*tracking_callbacks(sweep.tracking, sweep.name, store.uri), *callbacks)
    with StudyLock(store) as lock, ray_session(address) as started:
        if started and not joins_a_cluster(address):  # as run_plan: a crash's leftovers get reaped
            lock.record(**local_ray_record())
        cluster = check_cluster(list(plan.hparam_trials))
        sizes = tuple(
            _search_size(
                sweep, base, store, cluster, progress=progress, max_concurrent_trials=max_concurrent_trials,
                callbacks=callbacks,
            )
            for base in plan.hparam_trials
        )
    return SearchSummary(sizes, store.uri, time.time() - start)


def _search_size(
    sweep, base: TrialSpec, store: Store, cluster: dict, *, progress: bool, max_concurrent_trials: int | None,
    callbacks=(),
) -> SizeResult:
    done_before = store.done_trial_ids()
    specs, errors = {}, {}
    for result in _tuner(sweep, base, store, cluster, progress, max_concurrent_trials, callbacks).fit():
        if result.config:
            spec = resolve(result.config)[1]
            specs[spec.trial_id] = spec
            if result.error is not None:
                errors[spec.trial_id] = one_line(result.error)
    for tid, spec in specs.items():
        _settle(store, spec, errors.get(tid))
    return _size_result(store, base, specs, done_before, sweep.hparams)


def _tuner(
    sweep, base: TrialSpec, store: Store, cluster: dict, progress: bool, max_concurrent_trials: int | None,
    callbacks=(),
):
    h = sweep.hparams
    concurrency = (
        max_concurrent_trials or sweep.max_concurrent_trials or max_concurrent([base.resources], cluster)
    )
    return build_tuner(
        search_trainable,
        store,
        cluster=cluster,
        name=_experiment_name(sweep, base),
        param_space={"trial": base.to_dict(), **tune_space(h)},
        max_failures=sweep.max_failures,
        metric=METRIC,
        mode="min",
        search_alg=_searcher(h, concurrency),
        scheduler=_scheduler(h, base),
        num_samples=h.num_samples,
        trial_name_creator=lambda t: resolve(t.config)[1].trial_id,
        trial_dirname_creator=lambda t: f"{resolve(t.config)[1].trial_id}-{t.trial_id}",
        callbacks=[*([_progress(base.size_label, h.trials_per_size)] if progress else []), *callbacks],
    )


def tune_space(h) -> dict:
    """The search space as Tune primitives. randint's high is inclusive in the spec (Tune's is
    not); search: grid turns every choice into a grid."""
    # Ray loads only when a search runs
    from ray import tune

    out = {}
    for dim in h.space:
        kind = "grid" if h.search == "grid" else dim.primitive
        if kind == "grid":
            out[dim.name] = tune.grid_search(list(dim.values))
        elif kind == "choice":
            out[dim.name] = tune.choice(list(dim.values))
        elif kind == "randint":
            out[dim.name] = tune.randint(dim.values[0], dim.values[1] + 1)
        else:
            out[dim.name] = getattr(tune, kind)(*dim.values)
    return out


def _searcher(h, concurrency: int):
    """Seeded, so a re-run proposes the same configs. (TuneConfig.max_concurrent_trials is
    ignored with a searcher instance: the limit goes to the searcher itself.)"""
    if h.search == "optuna":
        # Ray loads only when a search runs
        from ray.tune.search import ConcurrencyLimiter

        return ConcurrencyLimiter(_require_optuna()(seed=h.seed), max_concurrent=concurrency)
    # Ray loads only when a search runs
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=h.seed, max_concurrent=concurrency)


def _require_optuna():
    try:
        # optuna is optional (the [optuna] extra): probed only for search: optuna
        import optuna  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as e:
        raise ValueError(
            f"hparams.search: optuna needs the optional optuna package ({e}); "
            "pip install 'scaling-orchestrator[optuna]', or use random or grid"
        ) from None
    return OptunaSearch


def _scheduler(h, base: TrialSpec):
    # Ray loads only when a search runs
    from ray.tune.schedulers import FIFOScheduler

    if h.scheduler == "fifo":
        return FIFOScheduler()
    # Rungs at grace * rf^k tokens: grace 2048, rf 2, 8192-token trials -> 2048, 4096, (8192 = the end)
    return recording_asha(
        time_attr=TIME_ATTR,
        max_t=base.train.total_tokens,
        grace_period=h.grace_period_tokens,
        reduction_factor=h.reduction_factor,
    )


def _settle(store: Store, spec: TrialSpec, error: str | None) -> None:
    """After the Tuner: finish what a stopped trial's process did not, fail what did not end."""
    tid = spec.trial_id
    meta, rows = store.read_meta(tid), store.read_trial(tid)
    done = is_done(rows)
    if meta.get("stopped_early") and rows and not done:
        finalize_stopped(store, spec)
    elif done:
        if meta.get("status") != rows[-1]["status"]:  # e.g. "running": Tune ended the process
            store.update_meta(tid, status=rows[-1]["status"], error=None)
        store.drop_checkpoint(tid)
    else:  # the trial's own one-line reason (run_loop) first: Tune's carries a whole traceback
        store.mark_failed(spec)
        store.update_meta(tid, status="failed", error=meta.get("error") or error or NO_REASON)


def _size_result(store: Store, base: TrialSpec, specs: dict, done_before: set, h) -> SizeResult:
    outcome: dict[str, list[str]] = {"completed": [], "stopped_early": [], "diverged": [], "failed": []}
    flops, full = 0.0, []
    for tid in sorted(specs):
        rows, meta = store.read_trial(tid), store.read_meta(tid)
        last = rows[-1] if rows else {"status": "failed", "flops": 0.0, "val_loss": float("nan")}
        flops += last["flops"]
        if last["status"] == "ok":
            key = "stopped_early" if meta.get("stopped_early") else "completed"
        else:
            key = last["status"] if last["status"] in outcome else "failed"
        outcome[key].append(tid)
        if key == "completed":
            full.append((last["val_loss"], tid))
    best = {}
    if full:
        loss, tid = min(full)
        best = {
            "trial_id": tid,
            "val_loss": loss,
            **{d.name: getattr(specs[tid].train, d.name) for d in h.space},
        }
    return SizeResult(
        label=base.size_label,
        params=base.shape.param_counts()["total"],
        full_tokens=base.train.total_tokens,
        **{k: tuple(v) for k, v in outcome.items()},
        skipped=tuple(sorted(set(specs) & done_before)),
        failures=tuple(failure_of(store, tid) for tid in outcome["failed"]),
        flops=flops,
        flops_upper_bound=h.trials_per_size * base.flops,
        best=best,
    )


def _experiment_name(sweep, base: TrialSpec) -> str:
    """<sweep>-hparams-<size>-<hash of the search>: the same search reuses its Tune folder."""
    h = sweep.hparams
    blob = json.dumps(
        [
            base.trial_id,
            [dataclasses.astuple(d) for d in h.space],
            h.search,
            h.num_samples,
            h.scheduler,
            h.grace_period_tokens,
            h.reduction_factor,
            h.seed,
        ]
    ).encode()
    return f"{sweep.name}-hparams-{base.size_label}-{hashlib.sha256(blob).hexdigest()[:8]}"


def _progress(label: str, n_trials: int, stream=None):
    """A Tune callback: one line per finished trial of this size."""
    # Ray loads only when a search runs
    from ray import tune

    class SearchProgress(tune.Callback):
        def __init__(self):
            self.ended = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, "failed")

        def _line(self, trial, state):
            self.ended += 1
            r = trial.last_result or {}
            what = (
                "replayed"
                if r.get("replayed")
                else "failed"
                if r.get("status") == "failed"
                else state
                if r.get("final") or state == "failed"
                else "stopped early"
            )
            print(
                f"[search {label}] {self.ended}/{n_trials} {resolve(trial.config)[1].trial_id} {what} at "
                f"{si(r.get(TIME_ATTR, 0))} tokens, val_loss {r.get(METRIC, float('nan')):.4f}",
                file=stream or sys.stderr,
                flush=True,
            )

    return SearchProgress()
