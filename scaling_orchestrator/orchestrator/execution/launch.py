"""One attempt of a command or function trial, from inside Ray: the Ray side of a trainer of the
user's own (backend: command | python; the Ray-free core is scaling_orchestrator.orchestrator.backends:
contract, metrics, command, function).

run_trainer is what worker.py's _train_trial calls for such a trial: inside the Tune trial process
(a command, or a function with num_workers 0) or in each Ray Train worker (a function with
num_workers >= 1: the TorchTrainer's train_loop_per_worker is worker.py's, which resumes from
Train's checkpoint and has rank 0 record the rows).
"""

from __future__ import annotations

import os
import time

from scaling_orchestrator.orchestrator.backends import metrics
from scaling_orchestrator.orchestrator.backends.command import run_command
from scaling_orchestrator.orchestrator.backends.contract import Paths, process_count, write_trial_json
from scaling_orchestrator.orchestrator.backends.function import run_function


def run_trainer(spec, store, *, scratch: str, resume_from: str | None, on_eval,
                start_from: str | None = None, on_curve=None):
    """The trial's trainer to its end: rows, checkpoints and Tune reports through on_eval (the
    worker's), the last Measurement returned final (a diverged run's last row made final here)."""
    in_group = spec.resources.num_workers >= 1 and spec.trainer["kind"] == "python"
    rank, world_size = _rank() if in_group else (0, 1)

    def log(line: str) -> None:
        if rank != 0:
            return
        store.append_log(spec.trial_id, f"{time.strftime('%H:%M:%S')} {line}")
        if line.startswith("warning: "):  # `scaling status` and the trial's meta show it
            store.update_meta(spec.trial_id, warning=line.removeprefix("warning: "))

    checkpoint_dir = os.path.join(scratch, "ckpt")
    if spec.trainer["kind"] == "python":
        last = run_function(spec, checkpoint_dir=checkpoint_dir, on_eval=on_eval, resume_from=resume_from,
                            start_from=start_from, rank=rank, world_size=world_size, log=log,
                            on_curve=on_curve)
    else:
        paths = Paths(trial_json=write_trial_json(spec, os.path.join(scratch, "trial.json")),
                      metrics=os.path.join(scratch, "metrics.jsonl"), checkpoint_dir=checkpoint_dir,
                      start_from=start_from or "", workdir=os.path.join(scratch, "work"))
        gpu_ids = _gpu_ids()
        last = run_command(spec, paths=paths, on_eval=on_eval, resume_from=resume_from, gpu_ids=gpu_ids,
                           nproc=process_count(gpu_ids, spec.resources.gpus_per_trial), log=log,
                           on_curve=on_curve)
    if last.status == "diverged":
        on_eval(last, None)  # the row of its last evaluation, now final
    return last


def _rank() -> tuple[int, int]:
    """(world rank, world size) of this Ray Train worker."""
    # Ray loads in a trial's process, not where the driver imports this module
    import ray.train

    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def _gpu_ids() -> list:
    """The GPUs Ray gave this trial process (a command sees exactly these)."""
    # Ray loads in a trial's process, not where the driver imports this module
    import ray

    try:
        return list(ray.get_gpu_ids())
    except Exception:  # outside a Ray worker (a user's script calling the trainable directly)
        return []


REPEATING = (metrics.ContractError,)  # worker.run_loop: recorded once, never retried
