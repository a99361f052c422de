"""The python backend: a trial is a call of the user's `train(ctx)`.

    backend: {kind: python, function: "my_lab.trainer:train"}

    def train(ctx):
        model = build(ctx.trial["shape"])                 # the trial JSON of backends/contract.py
        if ctx.resume_dir: load(model, ctx.resume_dir)    # None on a first attempt
        elif ctx.start_from: load(model, ctx.start_from)  # a branch: its trunk's kept save
        for tokens in ...:
            save(model, ctx.checkpoint_dir)               # save, then report
            ctx.report(tokens=tokens, val_loss=loss, train_loss=..., lr=...)

ctx.report takes the metrics contract's keys (backends/metrics.py) and returns once the row is
written, the checkpoint kept and Tune told. With resources.num_workers >= 1 the function is
each worker's body under a Ray Train TorchTrainer (torch.distributed is set up: ctx.rank,
ctx.world_size); every rank calls ctx.report at the same evaluations (it is a barrier) and
rank 0's reports and checkpoint are recorded. It ends as a command does: returning at the trial's
tokens is the final row; returning short of them, or a bad report, fails the trial once
(ContractError); raising anything else is retried from the last checkpoint.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from scaling_orchestrator.orchestrator.backends import metrics
from scaling_orchestrator.orchestrator.backends.contract import trial_json
from scaling_orchestrator.orchestrator.spec.user_code import load_function


@dataclass
class TrainContext:
    """What `train(ctx)` is given (module doc)."""

    trial: dict
    checkpoint_dir: str
    resume_dir: str | None = None
    start_from: str | None = None
    rank: int = 0
    world_size: int = 1
    reported: list = field(default_factory=list, repr=False)
    _report: object = field(default=None, repr=False)

    def report(self, **values) -> None:
        """One evaluation (tokens and val_loss) or one point of the training curve (tokens and
        train_loss, no val_loss), and any of the contract's optional keys (backends/metrics.py)."""
        self._report(values)


def run_function(spec, *, checkpoint_dir: str, on_eval, resume_from: str | None = None,
                 start_from: str | None = None, rank: int = 0, world_size: int = 1, log=lambda line: None,
                 on_curve=None):
    """Call the trial's function to its end (module doc); returns the final Measurement.
    on_curve: the sink of its curve points (metrics.CurveBuffer), None to drop them."""
    fn = load_function(spec.trainer["function"], spec.trainer.get("spec_dir", ""))
    os.makedirs(checkpoint_dir, exist_ok=True)
    began = time.perf_counter()
    ctx = TrainContext(trial_json(spec), checkpoint_dir, resume_from, start_from, rank, world_size)
    curve = metrics.CurveBuffer(spec, on_curve)

    def report(values: dict) -> None:
        record = metrics.check_record(values, f"report {len(ctx.reported) + 1}")
        curve.add(record)
        if not metrics.is_evaluation(record):
            return
        curve.flush()
        warning = metrics.params_warning(spec, record)
        if warning and not ctx.reported and rank == 0:
            log(f"warning: {warning}")
        previous = ctx.reported[-1] if ctx.reported else None
        m = metrics.to_measurement(spec, record, previous=previous, wall_seconds=time.perf_counter() - began)
        ctx.reported.append(m)
        on_eval(m, checkpoint_dir if os.listdir(checkpoint_dir) else None)

    ctx._report = report
    fn(ctx)
    curve.flush()
    last = ctx.reported[-1] if ctx.reported else None
    if last is None:
        raise metrics.ContractError(
            f"trial {spec.trial_id}: {spec.trainer['function']} returned without a report")
    if last.status == "diverged":
        return metrics.finished(last)  # run_trainer writes its row final
    if not last.final:
        raise metrics.ContractError(
            f"trial {spec.trial_id}: {spec.trainer['function']} returned at {last.tokens:,} tokens, "
            f"short of the trial's {spec.train.total_tokens:,}")
    return last
