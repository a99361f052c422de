"""fit.json (the `scaling fit --json` structure, FitResult.to_dict) back to a FitResult's
typed pieces: FitResult.from_dict and FitResult.load are built on `fields_from_dict`.

Each section is read by its own type's from_dict (IsoflopFit, Backtest, HparamLaw, ...); a
section the file lacks (an older or partial fit.json) is an Unfit saying so. What the file does
not keep is rebuilt from what it does, or left out:
- the parametric law from its constants, its intervals from the bootstrap rows ("samples");
- the table's FLOPs per token, which compute_optimal(C) needs for D*, from the parametric
  rows (D* = C / fpt(N*) at each recommendation): the same D* to rounding;
- the IsoFLOP and envelope loss frontiers, refitted on the minima the file lists;
- not kept: the points (`points` is None) and the IsoFLOP resamples, so compute_optimal(C)
  away from the recorded targets gives IsoFLOP's N* and D* without an interval.
"""

from __future__ import annotations

from scaling_orchestrator.analysis.errors import read_section
from scaling_orchestrator.analysis.judge.backtest import Backtest
from scaling_orchestrator.analysis.judge.headline import Headline
from scaling_orchestrator.analysis.judge.recommend import (
    METHODS,
    Recommendation,
    flops_per_token_of_rows,
    loss_frontier,
)
from scaling_orchestrator.analysis.laws.choice import Candidate, LawChoice
from scaling_orchestrator.analysis.laws.registry import (
    ParametricResult,
)
from scaling_orchestrator.analysis.methods.curve import CurveMethod
from scaling_orchestrator.analysis.methods.envelope import EnvelopeFit
from scaling_orchestrator.analysis.methods.hparam_laws import HparamFit
from scaling_orchestrator.analysis.methods.isoflop import IsoflopFit
from scaling_orchestrator.analysis.methods.single_variable import KaplanFit

SECTIONS = ("data", *METHODS, "kaplan", "backtest", "compute_optimal", "lr_law", "batch_law")


def fields_from_dict(plain) -> dict:
    """FitResult's fields but `data` and `disagreement` (result.py reads those), from a
    to_dict() structure; ValueError naming the section and key that cannot be read."""
    if not isinstance(plain, dict) or not set(SECTIONS) & set(plain):
        raise ValueError(f"not a `scaling fit --json` structure: none of {', '.join(SECTIONS)} in "
                         f"{type(plain).__name__} {str(plain)[:60]!r}")
    sections = {
        "parametric": _read(plain, "parametric", lambda d: read_section(d, parametric_from_dict)),
        "isoflop": _read(plain, "isoflop", lambda d: read_section(d, IsoflopFit.from_dict)),
        "envelope": _read(plain, "envelope", lambda d: read_section(d, EnvelopeFit.from_dict)),
        "curve": _read(plain, "curve", lambda d: read_section(d, CurveMethod.from_dict)),
    }
    rows = _read(plain, "compute_optimal", lambda d: tuple(map(Recommendation.from_dict, d or ())))
    grid = _read(plain, "frontier_grid", lambda d: {m: tuple(map(Recommendation.from_dict, r))
                                                    for m, r in (d or {}).items()})
    parametric = [r for r in (*rows, *grid.get("parametric", ())) if r.method == "parametric"]
    return dict(
        **sections,
        kaplan=_read(plain, "kaplan", lambda d: KaplanFit.from_dict(d or {})),
        backtest=_read(plain, "backtest", lambda d: read_section(d, Backtest.from_dict)),
        hparams=_read(plain, "lr_law", lambda _: HparamFit.from_dict(plain, _hparam_trials(plain))),
        recommendations=rows,
        frontier_grid=grid,
        target_flops=tuple(dict.fromkeys(r.flops for r in rows)),
        flops_per_token=flops_per_token_of_rows(parametric),
        loss_frontiers={m: loss_frontier(m, sections[m]) for m in ("isoflop", "envelope")},
        n_bootstrap=_n_samples(sections["parametric"]),
        headline=_read(plain, "headline", lambda d: tuple(map(Headline.from_dict, d or ()))),
        warnings=tuple(plain.get("warnings") or ()),
        law=_read(plain, "law", law_choice_from_dict),
    )


def parametric_from_dict(d: dict) -> ParametricResult:
    """The parametric section back (ParametricResult.from_dict)."""
    return ParametricResult.from_dict(d)


def law_choice_from_dict(d: dict | None) -> LawChoice | None:
    if d is None:
        return None
    candidates = (Candidate(c["name"], c.get("held_out_rel_error"), c.get("r2"), c.get("skipped"))
                  for c in d.get("candidates") or ())
    return LawChoice(d["name"], d["chosen_by"], tuple(candidates), tuple(d.get("rejected") or ()))


def _n_samples(parametric) -> int:
    """The bootstrap rows the file kept (its finite resamples): the intervals' basis."""
    samples = getattr(parametric, "samples", None)
    return 0 if samples is None else len(samples)


def _hparam_trials(plain: dict) -> int:
    data = plain.get("data")
    return int(data.get("n_hparam_trials", 0)) if isinstance(data, dict) else 0


def _read(plain: dict, key: str, read):
    """read(plain[key]) (None when absent), its failure a ValueError naming the section."""
    try:
        return read(plain.get(key))
    except KeyError as err:
        raise ValueError(f"{key}: missing key {err}") from None
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise ValueError(str(err) if str(err).startswith(f"{key}.") else f"{key}: {err}") from None
