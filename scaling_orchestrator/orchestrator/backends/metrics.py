"""The metrics contract: what a trainer of the user's own reports, turned into our measurements.

One JSON object per evaluation, a line of the JSONL file at $SCALING_METRICS (a command) or the
keywords of ctx.report (a function):

    {"tokens": 40960, "val_loss": 4.87}                                   required
    {"step": 20, "train_loss": 4.9, "lr": 0.003, "params": 160512,
     "flops_per_token": 1.1e6, "val_bpb": 1.9}                            optional, their columns
    {"grad_norm": 0.4, "mfu": 0.41}                                       any other number: the
                                                                          row's `metrics` (JSON)

A line with train_loss and no val_loss is a point of the trial's training curve, not an
evaluation (no row, no Tune report):

    {"tokens": 20480, "step": 10, "train_loss": 5.1, "lr": 0.003,
     "grad_norm": 0.4, "tokens_per_second": 5.2e4, "mfu": 0.38}         the last three optional

Curve points (and the train_loss of evaluations) go to `_curves/<trial_id>.parquet` when the
next evaluation is recorded, as the built-in loop's do.

`step` defaults to tokens // batch_tokens (rows are upserted by step, so a resumed trainer that
repeats lines rewrites the same rows). `lr` is the learning rate at that step (the row's `lr`
column stays the trial's peak LR; the curve keeps the reported one). `params` and
`flops_per_token` replace the planned counts in the row, and `flops` is tokens x that
flops_per_token. A line at or past the trial's tokens is final. A non-finite val_loss is a
diverged run. Keys that are neither numbers nor listed are ignored.

Anything else is a ContractError naming the line: the trainer breaks the contract the same way
on a retry, so the trial fails once, with that reason, and is not retried.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from scaling_orchestrator.models.training.config import Measurement

REQUIRED = ("tokens", "val_loss")  # an evaluation; a curve line has train_loss instead of val_loss
OPTIONAL = ("step", "train_loss", "lr", "params", "flops_per_token", "val_bpb")
INTEGERS = ("tokens", "step", "params")
PARAMS_TOLERANCE = 0.02  # a reported params this far from the plan's is a warning


class ContractError(ValueError):
    """The trainer broke the metrics contract (or exited 0 short of its tokens): not retried."""


class TrainerCrashed(RuntimeError):
    """The trainer exited with an error: retried, with the same checkpoint directory."""


@dataclass(frozen=True)
class Reported(Measurement):
    """A Measurement with the row columns the trainer reported itself (params, flops_per_token,
    metrics); store/results.measurement_row lays them over the planned ones."""

    overrides: dict = field(default_factory=dict)


def parse_line(text: str, where: str) -> dict:
    """One line of the JSONL file as a checked record; `where` names it ("metrics.jsonl line 3")."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ContractError(f"{where}: not JSON ({e.msg}): {text.strip()[:120]!r}") from None
    return check_record(record, where)


def check_record(record, where: str) -> dict:
    """The record's contract keys, typed; other numeric keys under "metrics"."""
    if not isinstance(record, dict):
        raise ContractError(f"{where}: a JSON object is required, got {type(record).__name__}")
    missing = [k for k in REQUIRED if k not in record and not (k == "val_loss" and "train_loss" in record)]
    if missing:
        raise ContractError(f"{where}: missing required key {', '.join(missing)} (each evaluation "
                            f"reports tokens and val_loss, each curve line tokens and train_loss)")
    out, extra = {}, {}
    for key, value in record.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in REQUIRED or key in OPTIONAL:
            if not number or (key in INTEGERS and (not float(value).is_integer() or value < 0)):
                kind = "a whole number >= 0" if key in INTEGERS else "a number"
                raise ContractError(f"{where}: {key}={value!r} must be {kind}")
            out[key] = int(value) if key in INTEGERS else float(value)
        elif number:
            extra[key] = value
    if out["tokens"] <= 0:
        raise ContractError(f"{where}: tokens={out['tokens']} must be > 0")
    out["metrics"] = extra
    return out


def is_evaluation(record: dict) -> bool:
    """An evaluation (a row), as opposed to a point of the training curve only."""
    return "val_loss" in record


CURVE_EXTRAS = ("grad_norm", "tokens_per_second", "mfu")  # read from a line's other numbers


def curve_point(spec, record: dict) -> dict | None:
    """The record as a point of the trial's curve (models/training/curves.CURVE_FIELDS), or None
    when it has no train_loss."""
    if "train_loss" not in record:
        return None
    extra = record["metrics"]
    return {"step": record.get("step", record["tokens"] // spec.train.batch_tokens),
            "tokens": record["tokens"], "train_loss": record["train_loss"], "lr": record.get("lr"),
            **{k: float(extra[k]) for k in CURVE_EXTRAS if k in extra}}


class CurveBuffer:
    """A trainer's curve points, handed to the trial's curve sink (on_curve) in one batch just
    before each evaluation is recorded, and at the end."""

    def __init__(self, spec, on_curve):
        self.spec, self.on_curve, self.points = spec, on_curve, []

    def add(self, record: dict) -> None:
        """A record's point; one at the step of the point before it is dropped (a curve line and
        the evaluation at its step: the curve line's per-step loss stays)."""
        point = curve_point(self.spec, record)
        if point is None or self.on_curve is None:
            return
        if not self.points or self.points[-1]["step"] != point["step"]:
            self.points.append(point)

    def flush(self) -> None:
        if self.points:
            self.on_curve(self.points)
            self.points = []


def to_measurement(spec, record: dict, *, previous: Measurement | None, wall_seconds: float) -> Reported:
    """The record as the loop's Measurement for `spec` (a TrialSpec), with its row overrides."""
    config, tokens = spec.train, record["tokens"]
    per_token = record.get("flops_per_token", float(spec.shape.flops_per_token()))
    non_embedding = spec.shape.param_counts()["non_embedding"]
    overrides = {k: record[k] for k in ("params", "flops_per_token") if k in record}
    if record["metrics"]:
        overrides["metrics"] = json.dumps(record["metrics"], sort_keys=True)
    before_tokens = previous.tokens if previous else 0
    before_wall = previous.wall_seconds if previous else 0.0
    return Reported(
        step=record.get("step", tokens // config.batch_tokens),
        tokens=tokens,
        flops=tokens * per_token,
        flops_6n=6.0 * non_embedding * tokens,
        train_loss=record.get("train_loss", math.nan),
        val_loss=record["val_loss"],
        val_bpb=record.get("val_bpb", math.nan),
        lr_now=record.get("lr", math.nan),
        wall_seconds=wall_seconds,
        tokens_per_second=max(tokens - before_tokens, 0) / max(wall_seconds - before_wall, 1e-9),
        final=tokens >= config.total_tokens,
        status="ok" if math.isfinite(record["val_loss"]) else "diverged",
        overrides=overrides,
    )


def finished(m: Reported) -> Reported:
    """The last measurement of a trainer that stopped on its own (a diverged run) made final."""
    return dataclasses.replace(m, final=True)


def params_warning(spec, record: dict) -> str:
    """A sentence when the reported params differ from the plan's by more than 2%, else ''."""
    if "params" not in record:
        return ""
    planned = spec.shape.param_counts()["total"]
    gap = record["params"] / planned - 1
    if abs(gap) <= PARAMS_TOLERANCE:
        return ""
    return (f"trial {spec.trial_id}: the trainer reports params={record['params']:,}, "
            f"{gap:+.1%} from the plan's {planned:,}: the plan's FLOPs and sizes are off by as much "
            "(declare model.counts for a model of your own)")


class MetricsReader:
    """Reads a JSONL file as it grows: complete lines only (a half-written last line waits for
    its newline), each parsed once, numbered from 1 in the file."""

    def __init__(self, path: str):
        self.path, self.offset, self.line = path, 0, 0
        self.name = os.path.basename(path)

    def read(self, *, at_end: bool = False) -> list[dict]:
        """The records of the lines completed since the last call. at_end: the writer has
        exited, so a last line without its newline counts too."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        cut = len(chunk) if at_end else chunk.rfind(b"\n") + 1
        records = []
        for raw in chunk[:cut].splitlines():
            self.line += 1
            text = raw.decode("utf-8", errors="replace")
            if text.strip():
                records.append(parse_line(text, f"{self.name} line {self.line}"))
        self.offset += cut
        return records
