"""Adaptive selection over a pool of runs that already exist (`scaling select`).

The protocol of "Spend Less, Fit Better" (arXiv 2604.22753): a run's loss is revealed only
once it is chosen, each run costs its FLOPs (6ND unless the table records them), and the
selection may spend a fraction of the pool's FLOPs. Round 1 is a seed (the 3 smallest
budgets with 3 or more sizes, 3 sizes each, between the quartiles of that budget's sizes, so
a minimum at an edge still has sizes beyond it); every later round is
scaling_orchestrator.analysis.design.select's
proposal over the runs not yet chosen, `batch` or more at a time (GROWTH), until the budget is
spent or no run is left (with stop_at_tolerance, also once N*(C_target)'s interval is within
x/÷ tolerance at two fits in a row). Each round plans with a law form; "auto" picks it anew
each round (design/law_pick.py), and the chosen runs' final fit uses the last round's form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from scaling_orchestrator.analysis.data.load import load_table, snap_budgets
from scaling_orchestrator.analysis.design.law_pick import pick_law
from scaling_orchestrator.analysis.design.select import TRUST_SPAN, Candidate, Runs, flops_label, propose
from scaling_orchestrator.analysis.laws.choice import AUTO
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM

SEED_BUDGETS = 3
SEED_SIZES = 3
SEED_QUANTILES = (0.25, 0.5, 0.75)
BATCH = 4
# A round adds at least BATCH runs and at least a quarter of those chosen so far: one run more
# moves a 40-run fit little, and each round is a refit with its bootstrap (about 3 s on 2
# cores), so 90 runs take 11 rounds instead of 22.
GROWTH = 4
# The ranking `scaling select` uses by default, set by bench/design.py on the Epoch and OLMo
# pools (held-out loss error against random selections of the same cost): the loss term
# taken V-optimally over sizes N*/4 .. 4 N* at the target compute and weighted 4x N*'s (close
# to arXiv 2604.22753's MSPE, which scores the loss forecast alone), and no cost discount
# (exponent 0): the budget bounds what is spent, and within it the most informative run is
# taken. Gain / cost^0.4 (that paper's code) lost to random draws on both pools (Epoch 1.54%
# vs 1.42%, OLMo 3.5% vs 2.2%), gain per FLOP on OLMo (2.9%).
COST_EXPONENT = 0.0
LOSS_WEIGHT = 4.0
LOSS_SPAN = 4.0


@dataclass(frozen=True)
class Pool:
    """The pool's runs: N params, D tokens, cost FLOPs, L loss, snapped IsoFLOP budget."""

    params: np.ndarray
    tokens: np.ndarray
    cost_flops: np.ndarray
    loss: np.ndarray
    budget_flops: np.ndarray

    @classmethod
    def of(cls, params, tokens, cost_flops, loss) -> Pool:
        arrays = [np.asarray(x, float).ravel() for x in (params, tokens, cost_flops, loss)]
        if len({len(x) for x in arrays}) != 1:
            raise ValueError(f"pool: column lengths differ: {[len(x) for x in arrays]}")
        return cls(*arrays, snap_budgets(arrays[2]))

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def total_flops(self) -> float:
        return float(self.cost_flops.sum())

    def candidate(self, i: int) -> Candidate:
        return Candidate(
            float(self.params[i]),
            float(self.tokens[i]),
            float(self.cost_flops[i]),
            float(self.budget_flops[i]),
            key=int(i),
        )

    def runs(self, rows) -> Runs:
        rows = np.asarray(rows, int)
        return Runs.of(self.params[rows], self.tokens[rows], self.loss[rows], self.budget_flops[rows], rows)


@dataclass(frozen=True)
class Selection:
    """The rows chosen (pool indices, in the order chosen), each with its round and reason."""

    rows: tuple[int, ...]
    rounds: tuple[int, ...]
    reasons: tuple[str, ...]
    spent_flops: float
    budget_flops: float
    stop: str
    message: str
    history: tuple[dict, ...] = ()
    law: str = DEFAULT_FORM      # the form the last round planned with: the final fit's

    def to_dict(self) -> dict:
        return {
            "budget_flops": self.budget_flops,
            "spent_flops": self.spent_flops,
            "stop": self.stop,
            "law": self.law,
            "message": self.message,
            "rounds": list(self.history),
            "rows": [
                {"row": r, "round": k, "reason": why}
                for r, k, why in zip(self.rows, self.rounds, self.reasons)
            ],
        }


def seed_rows(pool: Pool) -> list[int]:
    """Round 1 (module doc); the cheapest 3 x 3 rows when fewer than 3 budgets have 3 sizes."""
    rows = []
    for budget in np.unique(pool.budget_flops):
        at = np.flatnonzero(pool.budget_flops == budget)
        _, first = np.unique(pool.params[at], return_index=True)
        at = at[first]  # one row per size, sorted by N
        if len(at) < SEED_SIZES:
            continue
        picks = np.unique(np.round(np.array(SEED_QUANTILES) * (len(at) - 1)).astype(int))
        if len(picks) < SEED_SIZES:
            picks = np.round(np.linspace(0, len(at) - 1, SEED_SIZES)).astype(int)
        rows += [int(i) for i in at[picks]]
        if len(rows) == SEED_BUDGETS * SEED_SIZES:
            return rows
    return [int(i) for i in np.argsort(pool.cost_flops, kind="stable")[: SEED_BUDGETS * SEED_SIZES]]


def check_request(pool: Pool, *, target_flops: float, budget_flops: float, seed: list[int]) -> None:
    """The bad requests `scaling select` refuses, each in one line."""
    largest = float(pool.cost_flops.max())
    if not target_flops > largest:
        raise ValueError(
            f"--target-flops {flops_label(target_flops)}: must exceed the largest "
            f"run in the pool ({flops_label(largest)} FLOPs); the design "
            "extrapolates"
        )
    seed_cost = float(pool.cost_flops[seed].sum())
    if budget_flops < seed_cost:
        raise ValueError(
            f"--budget-fraction: {flops_label(budget_flops)} FLOPs is less than "
            f"the seed round's {flops_label(seed_cost)} ({len(seed)} runs: "
            f"{SEED_BUDGETS} smallest budgets x {SEED_SIZES} sizes)"
        )


def select_pool(
    pool: Pool,
    *,
    target_flops: float,
    budget_flops: float,
    tolerance: float = 1.25,
    batch: int = BATCH,
    law: str = AUTO,
    n_bootstrap: int = 200,
    seed: int = 0,
    cost_exponent: float = COST_EXPONENT,
    stop_at_tolerance: bool = False,
    loss_weight: float = LOSS_WEIGHT,
    loss_span: float | None = LOSS_SPAN,
    trust_span: float = TRUST_SPAN,
    on_round=None,
) -> Selection:
    """Choose rows round by round (module doc). cost_exponent: score = gain / cost^exponent
    (1: per FLOP; below 1 leans toward larger runs). law: a form, or "auto" to pick one each
    round (design/law_pick.py). stop_at_tolerance: stop once N*'s interval is within x/÷
    tolerance at two fits in a row; otherwise spend the budget. loss_weight, loss_span,
    trust_span: select.propose's. on_round(round, proposal, law): a hook."""
    chosen = seed_rows(pool)
    check_request(pool, target_flops=target_flops, budget_flops=budget_flops, seed=chosen)
    seed_reason = f"round 1: seed ({SEED_BUDGETS} smallest budgets x {SEED_SIZES} sizes)"
    rounds, reasons = [1] * len(chosen), [seed_reason] * len(chosen)
    history, spent, held = [], float(pool.cost_flops[chosen].sum()), False
    for round_ in range(2, len(pool) + 2):
        taken = set(chosen)
        form, why_law = pick_law(pool.runs(chosen), law)
        proposal = propose(
            pool.runs(chosen), [pool.candidate(i) for i in range(len(pool)) if i not in taken],
            target_flops=target_flops, budget_flops=budget_flops - spent, tolerance=tolerance,
            round=round_, max_choices=max(batch, len(chosen) // GROWTH), law=form,
            n_bootstrap=n_bootstrap, seed=seed, cost_exponent=cost_exponent, held_before=held,
            stop_at_tolerance=stop_at_tolerance, loss_weight=loss_weight, loss_span=loss_span,
            trust_span=trust_span,
        )
        held = proposal.answer.within(tolerance)
        history.append({"round": round_, "n_points": len(chosen), "spent_flops": spent, "law": form,
                        "law_chosen_by": why_law, **proposal.answer.to_dict()})
        if on_round is not None:
            on_round(round_, proposal, form)
        if proposal.stop:
            return Selection(tuple(chosen), tuple(rounds), tuple(reasons), spent, budget_flops,
                             proposal.stop, proposal.message, tuple(history), form)
        for choice in proposal.choices:
            chosen.append(choice.candidate.key)
            rounds.append(round_)
            reasons.append(choice.reason)
            spent += choice.candidate.cost_flops
    raise AssertionError("a round without pending runs chooses a run or stops")


def read_pool(source, *, params: str, tokens: str, loss: str, flops: str | None = None):
    """(Pool, the table's row index of each pool run) from a Parquet / Arrow / CSV table.
    N, D and L come from the named columns; D = C / (6 N) when the tokens column is absent
    and a flops column is named; cost is the flops column when named, else 6ND. Rows whose
    values are not finite and > 0 are left out."""
    name = "table" if isinstance(source, pa.Table) else str(source)
    table = load_table(source)
    have = table.column_names
    for flag, column in (
        ("--params", params),
        ("--loss", loss),
        ("--flops", flops),
        ("--tokens", None if flops else tokens),
    ):
        if column is not None and column not in have:
            raise ValueError(f"{name}: {flag} column {column!r} not found; columns are {have}")
    N, L = (_numbers(table, c) for c in (params, loss))
    C = _numbers(table, flops) if flops else None
    D = _numbers(table, tokens) if tokens in have else C / (6.0 * N)
    cost = C if C is not None else 6.0 * N * D
    keep = np.flatnonzero(np.all([np.isfinite(x) & (x > 0) for x in (N, D, cost, L)], axis=0))
    if len(keep) < SEED_BUDGETS * SEED_SIZES:
        raise ValueError(
            f"{name}: {len(keep)} rows with finite, positive {params}, {loss}, "
            f"tokens and FLOPs; a selection needs at least "
            f"{SEED_BUDGETS * SEED_SIZES}"
        )
    return Pool.of(N[keep], D[keep], cost[keep], L[keep]), keep


def _numbers(table: pa.Table, column: str) -> np.ndarray:
    try:
        return table.column(column).cast(pa.float64()).fill_null(np.nan).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ValueError(f"column {column!r} is not numeric") from None


def chosen_table(pool: Pool, selection: Selection) -> pa.Table:
    """The chosen runs as a table `scaling_orchestrator.analysis.fit` reads (loss column "loss", run id
    "run")."""
    rows = np.asarray(selection.rows, int)
    return pa.table(
        {
            "params": pool.params[rows],
            "tokens": pool.tokens[rows],
            "flops": pool.cost_flops[rows],
            "loss": pool.loss[rows],
            "budget_flops": pool.budget_flops[rows],
            "run": [str(r) for r in rows],
        }
    )


def selection_dict(
    pool: Pool,
    selection: Selection,
    table_rows,
    *,
    source: str,
    target_flops: float,
    tolerance: float,
    budget_fraction: float,
) -> dict:
    """The "selection" section of `scaling select --json`: the request, the stop rule's
    outcome, each round's answer and each chosen row (its row in the source table)."""
    out = selection.to_dict()
    for row in out["rows"]:
        i = row.pop("row")
        row.update(
            row=int(table_rows[i]),
            params=float(pool.params[i]),
            tokens=float(pool.tokens[i]),
            flops=float(pool.cost_flops[i]),
            loss=float(pool.loss[i]),
            budget_flops=float(pool.budget_flops[i]),
        )
    return {
        "source": source,
        "pool_runs": len(pool),
        "pool_flops": pool.total_flops,
        "budget_fraction": budget_fraction,
        "target_flops": target_flops,
        "tolerance": tolerance,
        "stop_rule": "hi/lo of N*'s 95% interval <= tolerance^2",
        "n_chosen": len(selection.rows),
        **out,
    }
