"""Progress of a study in words: the live line's counts (Tally, fed by execution/progress.py's
Tune callback while a study runs) and `scaling status`'s report from the store. No Ray.

The live view counts trials and weighs progress by FLOPs, since trials of one IsoFLOP budget
differ 10x in size: ETA = remaining FLOPs / FLOPs per second so far in this run (e.g. 3e12 of
8e12 done in 60 s -> 5e12 / 5e10/s = 100 s left).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from scaling_orchestrator.analysis.data.curves import last_points
from scaling_orchestrator.orchestrator.fmt import duration
from scaling_orchestrator.orchestrator.spec.paths import ADAPTIVE_FILE
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store
from scaling_orchestrator.orchestrator.store.study import adaptive_study
from scaling_orchestrator.orchestrator.store.weights import weights_lines

NO_REASON = "stopped before its last step"


@dataclass(frozen=True)
class Failure:
    """A trial that failed for good in a run: why (one line) and where its log is."""

    trial_id: str
    reason: str
    log: str

    def __str__(self) -> str:
        return f"failed: {self.trial_id}: {self.reason} (log: {self.log})"


def failure_of(store: Store, trial_id: str) -> Failure:
    """What the store says about a failed trial: its metadata's one-line error, its log file."""
    return Failure(trial_id, store.read_meta(trial_id).get("error") or NO_REASON,
                   store.log_file(trial_id))


def progress_line(*, done: int, running: int, pending: int, failed: int, flops_done: float,
                  flops_total: float, elapsed_seconds: float, flops_this_run: float) -> str:
    pct = 100.0 * flops_done / flops_total if flops_total else 100.0
    line = (f"[scaling] {done} done, {running} running, {pending} pending, {failed} failed | "
            f"{flops_done:.2e}/{flops_total:.2e} FLOPs ({pct:.0f}%) | "
            f"{duration(elapsed_seconds)} elapsed")
    if flops_this_run > 0 and flops_done < flops_total:
        rate = flops_this_run / max(elapsed_seconds, 1e-9)
        line += f", ETA {duration((flops_total - flops_done) / rate)}"
    return line


class Tally:
    """What the live line counts, fed trial by trial: state per trial id and the FLOPs its
    last result reported (a finished trial counts its planned FLOPs). A branch counts only its
    cooldown (TrialSpec.own_flops): its trunk's share is the trunk's. Trials a design adds as
    it goes (an adaptive study's later rounds) join through add(), so the counts and the FLOPs
    cover every trial run or queued. No Ray needed."""

    def __init__(self, trials, done_before: set[str], start: float | None = None):
        self.planned: dict[str, float] = {}
        self.inherited: dict[str, float] = {}  # a branch's trunk share
        self.done_ids = set(done_before)
        self.add(trials)
        self.flops_now: dict[str, float] = {}
        self.state: dict[str, str] = {}
        self.start = time.time() if start is None else start

    def add(self, trials) -> None:
        """Trials the study now runs or has queued (known ones are left as they are)."""
        for t in trials:
            if t.trial_id not in self.planned:
                self.planned[t.trial_id] = t.own_flops
                self.inherited[t.trial_id] = t.flops - t.own_flops

    @property
    def done_before(self) -> set[str]:
        return self.done_ids & set(self.planned)

    def started(self, tid: str) -> None:
        self.state[tid] = "running"

    def reported(self, tid: str, flops: float) -> None:
        self.flops_now[tid] = max(0.0, float(flops) - self.inherited.get(tid, 0.0))

    def finished(self, tid: str) -> None:
        self.state[tid] = "done"
        self.flops_now[tid] = self.planned.get(tid, 0.0)

    def failed(self, tid: str) -> None:
        self.state[tid] = "failed"

    def line(self, now: float | None = None) -> str:
        states = list(self.state.values())
        done = len(self.done_before) + states.count("done")
        running, failed = states.count("running"), states.count("failed")
        this_run = sum(self.flops_now.values())
        return progress_line(
            done=done, running=running, failed=failed,
            pending=len(self.planned) - done - running - failed,
            flops_done=sum(self.planned[t] for t in self.done_before) + this_run,
            flops_total=sum(self.planned.values()),
            elapsed_seconds=(time.time() if now is None else now) - self.start,
            flops_this_run=this_run)


def status_text(results_dir: str, trials=None) -> str:
    """`scaling status DIR`: what the store says, no Ray needed. trials defaults to _plan.json;
    every trial with rows and every trial an adaptive study has queued (_adaptive.json) counts
    too, and an adaptive study adds its target, rounds and stop."""
    if "://" not in results_dir and not os.path.isdir(results_dir):
        raise FileNotFoundError(f"results folder {results_dir!r}: not found (nothing has run there)")
    store = Store(results_dir)
    trials = list(trials) if trials is not None else store.read_plan()
    queued = (store.read_json(store.path(ADAPTIVE_FILE)) or {}).get("trials", [])
    trials += [TrialSpec.from_dict(d) for d in queued]
    table = store.read_table()
    last: dict[str, dict] = {}
    for row in table.to_pylist():  # rows of one trial are sorted by step within its file
        if row["trial_id"] not in last or row["step"] >= last[row["trial_id"]]["step"]:
            last[row["trial_id"]] = row
    planned = {t.trial_id: t for t in trials}
    ids = list(planned) + sorted(set(last) - set(planned))
    live = last_points(results_dir) if store.local else {}  # each trial's latest curve point
    lines, counts = [], {"done": 0, "diverged": 0, "failed": 0, "running": 0, "pending": 0}
    flops_done = flops_total = 0.0
    for tid in ids:
        row, spec = last.get(tid), planned.get(tid)
        state = trial_state(row)
        counts[state if state in counts else "failed"] += 1
        inherited = spec.flops - spec.own_flops if spec else 0.0  # a branch's trunk share is the trunk's
        flops_done += max(0.0, row["flops"] - inherited) if row else 0.0
        flops_total += spec.own_flops if spec else max(row["flops"], row["budget_flops"])
        lines.append(trial_line(tid, state, row) + (live_text(live.get(tid)) if state == "running" else ""))
    sweep = trials[0].sweep if trials else (next(iter(last.values()))["sweep"] if last else "?")
    head = (f"study {sweep} at {store.uri}: {len(ids)} trials | "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + (f" | {flops_done:.2e}/{flops_total:.2e} FLOPs" if flops_total else ""))
    study = adaptive_study(results_dir, {t: r["round"] for t, r in last.items()}) if store.local else None
    failed = [t for t in ids if t in last and last[t]["status"] == "failed" and last[t]["final"]]
    tail = [str(failure_of(store, t)) for t in failed]
    return "\n".join([head, *(study.lines() if study else []), *lines, *tail, *weights_lines(store)])


def trial_state(row: dict | None) -> str:
    if row is None:
        return "pending"
    if row["final"]:
        return {"ok": "done"}.get(row["status"], row["status"])
    return "running"  # or stopped mid-way by a crash: `scaling run` resumes it


def live_text(point: dict | None) -> str:
    """A running trial's latest curve point: ' | step 420 loss 3.2104 12,345 tok/s'."""
    if point is None:
        return ""
    return (f" | step {point['step']} loss {point['train_loss']:.4f} "
            f"{point['tokens_per_second'] or 0:,.0f} tok/s")


def trial_line(tid: str, state: str, row: dict | None) -> str:
    if row is None:
        return f"  {tid}  {state:8s}"
    return (f"  {tid}  {state:8s} {row['n_layer']}x{row['d_model']} params {row['params']:,} "
            f"tokens {row['tokens']:,} val_loss {row['val_loss']:.4f}")
