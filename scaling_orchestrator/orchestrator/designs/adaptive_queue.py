"""The adaptive design's TrialQueue: refit as results land, propose while others still run.

Tune asks the queue for a trial whenever a slot frees (execution/searcher.py). The queue
hands out what it has already chosen; when nothing is chosen and a trial has landed since the
last fit, it refits (scaling_orchestrator.analysis.design.select.propose: run bootstrap, the trials still
running count
as observed for the ensemble) and chooses up to `batch` more, each with its round and reason.
So slots do not idle until a round's slowest trial ends. It declares the study FINISHED only
when a fit with nothing running says stop: N*(target)'s interval within x/÷ tolerance at two
fits in a row, or no candidate fits in the budget left (a stop while trials run waits for them
and refits).

Everything it decided is in <results>/_adaptive.json (each fit's answer, what it chose, the
stop and why); a re-run reads it back, so the trials it chose and had not finished run again.
"""

from __future__ import annotations

import dataclasses

from scaling_orchestrator.analysis.design.select import Candidate, Runs, per_token_model, propose
from scaling_orchestrator.analysis.laws.registry import law_form
from scaling_orchestrator.orchestrator.designs.queue import FINISHED, TrialQueue
from scaling_orchestrator.orchestrator.spec.paths import ADAPTIVE_FILE
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec

STATE_FILE = ADAPTIVE_FILE
STOP_KEYS = ("target_flops", "study_budget_flops", "tolerance", "law")  # a stop holds while these do
DEFAULT_SLOTS = 4  # trials proposed at once when neither design.batch nor the spec says


def candidate(spec: TrialSpec) -> Candidate:
    return Candidate(
        float(spec.shape.param_counts()["total"]),
        float(spec.train.total_tokens),
        spec.flops,
        float(spec.budget_flops),
        key=spec.trial_id,
    )


class AdaptiveQueue(TrialQueue):
    def __init__(self, plan, todo, store, pool):
        """pool: every candidate trial (adaptive.candidates of the plan's sweep)."""
        super().__init__(todo)
        self.sweep, self.options, self.store = plan.sweep, plan.sweep.design.options, store
        self.pool = {t.trial_id: t for t in pool}
        self.seed_ids = {t.trial_id for t in plan.trials}
        self.known.update((t.trial_id, t) for t in plan.trials)
        self.history, self.stop, self.message = [], "", ""
        self.round, self.stale, self.finished, self.held = 1, True, False, False
        self._restore(store)
        self.observed = {
            tid: loss for tid in self.known if (loss := self._final_loss(tid, store)) is not None
        }
        costs = [candidate(t) for t in self.pool.values()]
        self.fpt = per_token_model(
            [c.params for c in costs], [c.tokens for c in costs], [c.cost_flops for c in costs]
        )

    # ---- what Tune asks ---------------------------------------------------------------------
    def take(self, store):
        if not self.pending and not self.finished and self.stale and self._seed_landed():
            self._propose(store)
        if self.pending:
            return super().take(store)
        if self.finished and not self.running:
            return FINISHED
        return None

    def has_work(self) -> bool:
        """Chosen trials not final yet, or no stop decided: a re-run refits and goes on."""
        return bool(self.pending) or not self.finished

    def on_complete(self, spec, metrics, store, error: bool) -> None:
        super().on_complete(spec, metrics, store, error)
        loss = None if error else self._final_loss(spec.trial_id, store)
        if loss is not None:
            self.observed[spec.trial_id] = loss
        self.stale = True

    # ---- deciding ---------------------------------------------------------------------------
    def _seed_landed(self) -> bool:
        return not (self.seed_ids & self.running) and not any(
            t.trial_id in self.seed_ids for t in self.pending
        )

    def _propose(self, store) -> None:
        o = self.options
        self.stale = False
        spent = sum(t.flops for t in self.known.values())
        needed = len(law_form(o.law).constants)
        if len(self.observed) < needed:
            if not self.running:
                self._finish(
                    "unfittable",
                    f"{len(self.observed)} trials gave a final loss; the {o.law} law needs at least {needed}",
                )
            return
        left = [candidate(t) for tid, t in self.pool.items() if tid not in self.known]
        running = [candidate(self.known[tid]) for tid in self.running]
        slots = o.batch or max(1, (self.sweep.max_concurrent_trials or DEFAULT_SLOTS) - len(running))
        try:
            proposal = propose(
                self._runs(),
                left,
                target_flops=o.target_flops,
                budget_flops=max(o.study_budget_flops - spent, 0.0),
                tolerance=o.tolerance,
                round=self.round + 1,
                pending=running,
                max_choices=slots,
                law=o.law,
                n_bootstrap=o.bootstrap,
                seed=self.round,
                flops_per_token=self.fpt,
                held_before=self.held,
            )
        except ValueError as exc:  # NotFittable is a ValueError
            if not self.running:
                self._finish("unfittable", f"the fit failed: {exc}")
            return
        self.held = proposal.answer.within(o.tolerance)
        chosen = [
            dataclasses.replace(self.pool[c.candidate.key], round=self.round + 1, reason=c.reason)
            for c in proposal.choices
        ]
        self._record(proposal, chosen, len(running), spent)
        if chosen:
            self.round += 1
            self.add(chosen)
        elif proposal.stop and not self.running:
            self._finish(proposal.stop, proposal.message)
        self._save(store)

    def _record(self, proposal, chosen, n_running: int, spent: float) -> None:
        self.history.append(
            {
                "round": self.round + 1,
                "n_points": len(self.observed),
                "n_running": n_running,
                "spent_flops": spent,
                "answer": proposal.answer.to_dict(),
                "message": proposal.message,
                "chosen": [t.trial_id for t in chosen],
                "notes": list(proposal.notes),
            }
        )

    def _finish(self, stop: str, message: str) -> None:
        self.finished, self.stop, self.message = True, stop, message
        self._save(self.store)
        print(f"scaling: adaptive study stopped ({stop}): {message}", flush=True)

    def _runs(self) -> Runs:
        specs = [self.known[tid] for tid in self.observed]
        return Runs.of(
            [s.shape.param_counts()["total"] for s in specs],
            [s.train.total_tokens for s in specs],
            list(self.observed.values()),
            [s.budget_flops for s in specs],
            [s.trial_id for s in specs],
        )

    @staticmethod
    def _final_loss(trial_id: str, store) -> float | None:
        rows = store.read_trial(trial_id)
        last = rows[-1] if rows else None
        if last and last["final"] and last["status"] == "ok" and last["val_loss"] > 0:
            return float(last["val_loss"])
        return None

    # ---- what it keeps ----------------------------------------------------------------------
    def state(self) -> dict:
        o = self.options
        return {
            "target_flops": o.target_flops,
            "study_budget_flops": o.study_budget_flops,
            "tolerance": o.tolerance,
            "law": o.law,
            "stop_rule": "hi/lo of N*'s 95% interval <= tolerance^2",
            "finished": self.finished,
            "stop": self.stop,
            "message": self.message,
            "spent_flops": sum(t.flops for t in self.known.values()),
            "rounds": self.history,
            "trials": [t.to_dict() for t in self.known.values() if t.round > 1],
        }

    def _save(self, store) -> None:
        store.write_json(store.path(STATE_FILE), self.state())

    def _restore(self, store) -> None:
        """Trials chosen by an earlier run of this study: known again, and queued when they
        have no final row yet; the earlier fits stay in the history."""
        saved = store.read_json(store.path(STATE_FILE)) or {}
        done = store.done_trial_ids()
        chosen = [TrialSpec.from_dict(d) for d in saved.get("trials", [])]
        self.history = list(saved.get("rounds", []))
        self.round = max([1] + [t.round for t in chosen])
        self.add([t for t in chosen if t.trial_id not in done])  # add() makes them known
        self.known.update((t.trial_id, t) for t in chosen)
        same = all(saved.get(k) == v for k, v in self.state().items() if k in STOP_KEYS)
        if saved.get("finished") and same and not self.pending:  # the same question, answered
            self.finished, self.stop, self.message = True, saved.get("stop", ""), saved.get("message", "")
