"""The two Ray functions at the edge: one Tune trial per TrialSpec, one loop per Train worker.

`trainable(config)` is a public Tune function trainable: `run_plan` uses it, and users drop it
into their own `tune.Tuner`. Its config is JSON-plain:

    {"trial": TrialSpec.to_dict(),        # required
     "results_dir": "results/lr-search",   # or /abs/path, s3://...; default ~/scaling-results/<sweep>
     "lr": 1e-3, "batch_tokens": 4096,     # optional: any TrainConfig field overrides the trial's
     "fail_at_step": 3,                    # optional fault injection: raise once at that eval
     "torch_backend": "gloo"}              # optional: "gloo" | "nccl" (default: see below)

An override changes what is trained, so it changes the trial id (the content hash): a user's
search over "lr" writes one row file per lr, e.g.
    tune.Tuner(with_trial_resources(spec), param_space={"trial": spec.to_dict(),
               "results_dir": dir, "lr": tune.loguniform(1e-4, 1e-2)},
               tune_config=tune.TuneConfig(scheduler=asha_for(spec), metric="val_loss", mode="min"))
A relative results_dir is read from the driver's working directory, never from the trial folder
Tune moves each trial into (tuner.spec_of and tuner.results_dir_for read a config: its trial and
its folder).

How a trial ends: its last row is final with status ok or diverged. Stopped by Tune at a
report, see scaling_orchestrator.orchestrator.execution.stops. An error a retry would repeat (REPEATING_ERRORS
before the
first evaluation: a corpus the loader rejects, a config the loop refuses) is recorded once
(meta "error", a final "failed" row, one report with status "failed") and the trial returns,
so Tune does not retry it. Any other error is raised, and retried up to max_failures.

num_workers == 0 trains inside the Tune trial process (about 1.5 s of Ray overhead per trial
on 2 cores against about 20 s for a TorchTrainer worker group) and keeps its resume checkpoint
in the store. Train V2's ScalingConfig(num_workers=0) "local mode" would run the loop here too,
but its ray.train.report goes to a local stub, not to Tune, and its get_checkpoint knows no
earlier attempt, so the loop is called directly. num_workers >= 1 launches a TorchTrainer
(Ray Train V2) whose RunConfig name is the trial id: a re-run with the same name and storage
restores Train's checkpoint snapshot, so the trial resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
import traceback

from scaling_orchestrator.analysis.data.schema import TRUNK
from scaling_orchestrator.models.data.tokens import load_prepared
from scaling_orchestrator.orchestrator.execution import launch, tuner
from scaling_orchestrator.orchestrator.execution.stops import stopped
from scaling_orchestrator.orchestrator.execution.tuner import CONFIG_KEYS, results_dir_for, spec_of
from scaling_orchestrator.orchestrator.plan.resources import worker_bundle
from scaling_orchestrator.orchestrator.spec.paths import check_on_worker
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.curves import CurveWriter
from scaling_orchestrator.orchestrator.store.results import Store, is_done, measurement_row
from scaling_orchestrator.orchestrator.store.weights import keep_final_weights

# Raised before a trial's first evaluation, these come from its data or its config (the corpus
# loader, TrainConfig and the loop's input checks), which a retry feeds in unchanged: a bad
# corpus under 9 trials x 3 attempts was 27 tracebacks and no result. Crashes, lost nodes and
# injected faults raise other types, and after the first evaluation every error is retried.
REPEATING_ERRORS = (ValueError, TypeError)


class InjectedFailure(RuntimeError):
    """Raised once per trial by the fail_at_step fault-injection hook (tests, drills)."""


class TrialCannotRun(Exception):
    """run_loop recorded an error a retry would repeat; the trial ends without raising to Tune."""


def default_torch_backend(spec: TrialSpec) -> str:
    """nccl for GPU workers when torch has CUDA; gloo otherwise (CPU workers, or fake GPUs
    declared on a CPU-only build, as in the multi-node test)."""
    # torch loads where a trial's worker group is built, not where this module is imported
    import torch

    return "nccl" if spec.resources.gpus_per_worker > 0 and torch.version.cuda else "gloo"


def with_trial_resources(spec: TrialSpec, cluster: dict | None = None):
    """`trainable` wrapped with what a trial like `spec` reserves (resources.driver_resources),
    for a user's own tune.Tuner (the wrapper run_plan's Tuner uses,
    scaling_orchestrator.orchestrator.execution.tuner). A
    relative results_dir in a config is read from the working directory of this call."""
    return tuner.with_trial_resources(trainable, cluster or {}, spec.resources, cwd=os.getcwd())


def trainable(config: dict) -> None:
    """Tune function trainable: run one trial to its end, writing a row per evaluation."""
    # Ray loads in a trial's process, not where the driver imports this module
    from ray import tune

    spec = spec_of(config)
    store = Store(results_dir_for(spec, config))
    loop_config = {
        **{k: v for k, v in config.items() if k in CONFIG_KEYS},
        "trial": spec.to_dict(),
        "results_dir": store.uri,
    }
    rows = store.read_trial(spec.trial_id)
    if is_done(rows):
        # Finished already: a Tune retry after its last row was written (node lost before
        # Tune heard of it), or a finished config in a user's Tuner. Training again would
        # only rewrite the same rows.
        tune.report({k: rows[-1][k] for k in METRIC_KEYS})
        return
    try:
        if spec.resources.num_workers == 0:
            _run_in_process(spec, loop_config, store)
        else:
            _run_worker_group(spec, loop_config, store)
    except SystemExit:  # Tune stopping the trial at a report (ray.train's session exits with 0)
        stopped(store, spec)
        raise
    except TrialCannotRun:
        pass
    rows = store.read_trial(spec.trial_id)
    if rows and rows[-1]["final"] and rows[-1]["status"] == "failed":  # recorded by run_loop
        tune.report(
            {**{k: rows[-1][k] for k in METRIC_KEYS}, "error": store.read_meta(spec.trial_id).get("error")}
        )


def _run_in_process(spec: TrialSpec, config: dict, store: Store) -> None:
    # Ray loads in a trial's process, not where the driver imports this module
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="scaling-") as scratch:
        resume = store.load_checkpoint(spec.trial_id, os.path.join(scratch, "resume"))

        def publish(m, ckpt_dir):
            store.write_row(measurement_row(spec, m))
            _maybe_fail(spec, config, store, m)
            keep_for_branches(spec, store, m, ckpt_dir)
            if m.final:
                keep_final_weights(spec, store, ckpt_dir)
            if ckpt_dir and not m.final:  # promoted only once its row is durable
                store.save_checkpoint(spec.trial_id, ckpt_dir, m.step)
            tune.report(tune_metrics(spec, m))

        run_loop(spec, config, store, rank=0, scratch=scratch, resume_from=resume, publish=publish)
    store.drop_checkpoint(spec.trial_id)


def _run_worker_group(spec: TrialSpec, config: dict, store: Store) -> None:
    # Ray loads in a trial's process, not where the driver imports this module
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    res = spec.resources
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=res.num_workers,
            use_gpu=res.gpus_per_worker > 0,
            resources_per_worker=worker_bundle(res),
        ),
        run_config=RunConfig(
            name=spec.trial_id,
            storage_path=store.path("_ray", "train") if store.local else f"{store.uri}/_ray/train",
            failure_config=FailureConfig(max_failures=int(config.get("max_failures", 2))),
            callbacks=[TuneReportCallback()],
        ),
        torch_config=TorchConfig(backend=config.get("torch_backend") or default_torch_backend(spec)),
    )
    trainer.fit()


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker: resume from Train's checkpoint, train, rank 0 writes the rows."""
    # Ray loads in a trial's process, not where the driver imports this module
    import ray.train
    from ray.train import Checkpoint

    spec = TrialSpec.from_dict(config["trial"])
    store = Store(config["results_dir"])
    rank = ray.train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory(prefix="scaling-") as scratch:
        resume = None
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            resume = checkpoint.to_directory(os.path.join(scratch, "resume"))

        def publish(m, ckpt_dir):
            if rank == 0:
                store.write_row(measurement_row(spec, m))
                _maybe_fail(spec, config, store, m)
                keep_for_branches(spec, store, m, ckpt_dir)
                if m.final:
                    keep_final_weights(spec, store, ckpt_dir)
            keep = ckpt_dir if rank == 0 and not m.final else None  # report is a barrier:
            ray.train.report(
                tune_metrics(spec, m),  # every rank calls it at every eval
                checkpoint=Checkpoint.from_directory(keep) if keep else None,
            )

        try:
            run_loop(spec, config, store, rank=rank, scratch=scratch, resume_from=resume, publish=publish)
        except TrialCannotRun:
            # Every rank reads the same data and config, so every rank stops here; returning
            # (rather than raising) keeps Train's FailureConfig from retrying the group.
            return


METRIC_KEYS = (
    "trial_id",
    "step",
    "tokens",
    "flops",
    "train_loss",
    "val_loss",
    "val_bpb",
    "wall_seconds",
    "final",
    "status",
)


def tune_metrics(spec: TrialSpec, m) -> dict:
    return {
        "trial_id": spec.trial_id,
        "step": m.step,
        "tokens": m.tokens,
        "flops": m.flops,
        "train_loss": m.train_loss,
        "val_loss": m.val_loss,
        "val_bpb": m.val_bpb,
        "wall_seconds": m.wall_seconds,
        "final": m.final,
        "status": m.status,
    }


def _maybe_fail(spec: TrialSpec, config: dict, store: Store, m) -> None:
    """Fault injection between a row write and its checkpoint's promotion: the retry resumes
    from the previous checkpoint and re-evaluates this step, which must not duplicate a row.
    A marker file makes it fire once per trial, across retries and re-runs."""
    at = config.get("fail_at_step")
    if at is None or m.step < int(at):
        return
    marker = store.path("_trials", f"{spec.trial_id}.injected")
    if store.read_bytes(marker) is not None:
        return
    store.write_bytes(marker, str(m.step).encode())
    raise InjectedFailure(f"trial {spec.trial_id}: injected failure at step {m.step}")


def _node_info() -> dict:
    # Ray loads in a trial's process, not where the driver imports this module
    import ray

    ctx = ray.get_runtime_context()
    return {
        "node_id": ctx.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }


def run_loop(
    spec: TrialSpec, config: dict, store: Store, *, rank: int, scratch: str, resume_from: str | None, publish
) -> None:
    """Shared by both paths: metadata, threads, the trial's loop (_train_trial), log lines."""
    tid = spec.trial_id
    if rank == 0:
        meta = store.read_meta(tid)
        store.update_meta(
            tid,
            **_node_info(),
            attempts=meta.get("attempts", 0) + 1,
            status="running",
            started=time.time(),
            log=store.log_file(tid),
            resumed_from_checkpoint=resume_from is not None,
            error=None,
        )
        store.append_log(
            tid,
            f"{time.strftime('%H:%M:%S')} start on {socket.gethostname()} "
            f"resume={resume_from is not None} spec={spec.to_dict()}",
        )
    # torch threads = CPUs reserved per worker (2 trials x 1 thread on 2 cores, not 2 x 2)
    threads = spec.train.threads or max(1, int(spec.resources.cpus_per_worker))
    train_config = dataclasses.replace(spec.train, threads=threads)

    evaluated = []

    def on_eval(m, ckpt_dir):
        evaluated.append(m.step)
        if rank == 0:
            store.append_log(
                tid,
                f"{time.strftime('%H:%M:%S')} step {m.step} tokens {m.tokens}"
                f" val_loss {m.val_loss:.4f} status {m.status}",
            )
        publish(m, ckpt_dir)

    try:
        check_on_worker(spec, store.uri, config.get("driver_host", ""))  # the cluster's paths, here
        curve = CurveWriter(store, tid).extend if rank == 0 else None  # _curves/<trial_id>.parquet
        final = _train_trial(
            spec, train_config, store, scratch=scratch, resume_from=resume_from, on_eval=on_eval,
            on_curve=curve,
        )
    except SystemExit:  # Tune stopping the trial; trainable says how it ended
        raise
    except BaseException as exc:
        repeats = isinstance(exc, launch.REPEATING) or (isinstance(exc, REPEATING_ERRORS) and not evaluated)
        if rank == 0:
            _record_error(store, spec, exc, repeats=repeats)
        if repeats:
            raise TrialCannotRun(tuner.one_line(exc)) from exc
        raise
    if rank == 0:
        store.update_meta(tid, status=final.status, finished=time.time(), error=None)


def _train_trial(spec: TrialSpec, config, store: Store, *, scratch: str, resume_from: str | None, on_eval,
                 on_curve=None):
    """The one place a trial's loop is chosen: the simulate backend (losses drawn from a law), or
    scaling_orchestrator.models.training.loop on the trial's data. A branch's first attempt (no checkpoint of
    its own yet)
    starts from its trunk's checkpoint kept at branch_tokens."""
    checkpoint_dir = os.path.join(scratch, "ckpt")
    start = {}
    if spec.parent_trial_id and resume_from is None:
        start_from = store.load_kept_checkpoint(
            spec.parent_trial_id, spec.branch_tokens, os.path.join(scratch, "trunk")
        )
        if start_from is None:
            raise ValueError(
                f"trial {spec.trial_id}: its trunk {spec.parent_trial_id} kept no "
                f"checkpoint at {spec.branch_tokens} tokens"
            )
        start = {"start_from": start_from}
    if spec.trainer:  # a command or function of the user's own (launch.py)
        return launch.run_trainer(spec, store, scratch=scratch, resume_from=resume_from, on_eval=on_eval,
                                  on_curve=on_curve, **start)
    if spec.simulate:
        # the simulate backend loads scipy with the law forms (2 s): only its own trials load it;
        # simulate_train is looked up on the module at call time (bench/scale.py paces it)
        import scaling_orchestrator.orchestrator.backends.simulate as simulate

        return simulate.simulate_train(
            spec, config, on_eval=on_eval, checkpoint_dir=checkpoint_dir, resume_from=resume_from,
            on_curve=on_curve, **start,
        )
    # torch loads in a trial's process, and only for the built-in loop (simulate needs none)
    from scaling_orchestrator.models.training.loop import train

    return train(
        spec.shape,
        config,
        load_prepared(spec.data),  # the manifest and memory-mapped shards the driver prepared
        on_eval=on_eval,
        on_curve=on_curve,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
        **start,
    )


def keep_for_branches(spec: TrialSpec, store: Store, m, ckpt_dir: str | None) -> None:
    """A trunk's checkpoint at one of its branch points (train.eval_at_tokens) is kept where its
    branches start from; written after the row, so a branch never precedes its trunk's row."""
    if ckpt_dir and spec.group == TRUNK and m.tokens in getattr(spec.train, "eval_at_tokens", ()):
        store.keep_checkpoint(spec.trial_id, ckpt_dir, m.tokens)


def _record_error(store: Store, spec: TrialSpec, error: BaseException, *, repeats: bool) -> None:
    """The traceback to the trial's log, one line to its metadata. An error that repeats also
    gets its final "failed" row now: no retry follows to make one later."""
    store.append_log(spec.trial_id, traceback.format_exc())
    store.update_meta(spec.trial_id, status="failed" if repeats else "error", error=tuner.one_line(error))
    if repeats:
        store.mark_failed(spec)
