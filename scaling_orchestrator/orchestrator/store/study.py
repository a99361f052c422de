"""What a results folder says of its adaptive study: the target, the rounds, why it stopped.

Three files may speak, read as plain JSON (no Ray, no planner):
  _plan.json      the spec as written (design: {kind: adaptive, target_flops, ...})
  _adaptive.json  a study run by the adaptive queue: every fit, the stop and its message
  _next.json      the last answer of `scaling next` on the folder (a study run round by round)
and the rows' `round` column says how many trials each round ran. `scaling status` prints
the lines; `scaling fit` and `scaling report` also take target_flops as their default target.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

from scaling_orchestrator.analysis.data.parquet import read_files
from scaling_orchestrator.analysis.data.schema import SCHEMA
from scaling_orchestrator.orchestrator.spec.paths import ADAPTIVE_FILE, NEXT_FILE, PLAN_FILE


@dataclass(frozen=True)
class AdaptiveStudy:
    """target_flops: the budget whose N* the study pins down; trials_by_round: round -> trials
    with rows; stop: "" while it goes on, else the stop rule that ended it, in `message`."""

    target_flops: float
    trials_by_round: dict = field(default_factory=dict)
    stop: str = ""
    message: str = ""
    source: str = ""  # the file that says so

    def lines(self) -> list[str]:
        rounds = sorted(self.trials_by_round)
        counts = " + ".join(str(self.trials_by_round[r]) for r in rounds)
        head = (f"adaptive study: N* at {self.target_flops:.3g} FLOPs; {len(rounds)} round"
                f"{'s' if len(rounds) != 1 else ''}" + (f" ({counts} trials)" if rounds else ""))
        if self.stop:
            return [head, f"  stopped ({self.stop}): {self.message}"]
        tail = f"; last fit: {self.message}" if self.message else ""
        return [head, f"  not stopped yet{tail}"]


def read_json(folder: str, name: str):
    try:
        with open(os.path.join(folder, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def adaptive_study(folder: str, rounds=None) -> AdaptiveStudy | None:
    """The folder's adaptive study, None when it holds none (or is not a local folder).
    rounds: the `round` of each trial with rows, {trial_id: round} (read from the rows when
    None)."""
    if not os.path.isdir(folder):
        return None
    state = read_json(folder, ADAPTIVE_FILE) or {}
    plan = read_json(folder, PLAN_FILE)
    spec = plan.get("spec") if isinstance(plan, dict) else None
    design = (spec or {}).get("design") if isinstance(spec, dict) else None
    nxt = read_json(folder, NEXT_FILE) or {}
    if isinstance(design, dict) and design.get("kind") == "adaptive":
        target, source = design.get("target_flops"), PLAN_FILE
    else:
        target, source = state.get("target_flops") or nxt.get("target_flops"), ADAPTIVE_FILE
    if not target:
        return None
    rounds = trial_rounds(folder) if rounds is None else rounds
    by_round = dict(sorted(Counter(r for r in rounds.values() if r).items()))
    # the queue's stop holds unless rounds ran after it (a study continued by `scaling next`)
    queue_rounds = max([1] + [int(t.get("round", 0)) for t in state.get("trials", [])])
    later = max(by_round, default=0) > queue_rounds
    if state.get("finished") and not later:
        stop, message = state.get("stop", ""), state.get("message", "")
    elif nxt.get("target_flops") == target and nxt.get("n_trials") == len(rounds):
        stop, message = nxt.get("stop", ""), nxt.get("message", "")  # asked of these very rows
    else:
        last = (state.get("rounds") or [{}])[-1]
        stop, message = "", (nxt.get("message", "") if later else "") or last.get("message", "")
    return AdaptiveStudy(float(target), by_round, stop, message, source)


def trial_rounds(folder: str) -> dict:
    """{trial_id: round} of every trial with rows (pyarrow reads only those two columns)."""
    files = [os.path.join(folder, f) for f in os.listdir(folder)
             if f.endswith(".parquet") and not f.startswith((".", "_"))]
    if not files:
        return {}
    # one schema for every file: one written before rows had a round reads it as null
    table = read_files(files, schema=SCHEMA, columns=["trial_id", "round"])
    return dict(zip(table["trial_id"].to_pylist(), (int(r or 0) for r in table["round"].to_pylist())))
