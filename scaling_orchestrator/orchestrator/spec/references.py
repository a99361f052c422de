"""What a spec names outside itself, read in one explicit step before planning.

Three keys point at files the spec does not hold:

  prior.from_fit: PATH           N* = k C^a from a `scaling fit --json` file
  train.lr: {from_fit: PATH}     lr*(N) = c N^p, that file's lr_law (analysis hparam_laws)
  train.lr: {from_search: DIR}   the best lr of a search at the base width (mup)

Parsing keeps them as written (Prior.from_fit, Recipe.lr_source) and reads nothing; resolve(sweep)
reads them and returns the sweep with the prior's constants and the lr law filled in, and
notes(sweep) says what was read: make_plan runs both, so the plan reports it first among its
notes. A file that cannot serve is a SpecError naming the field, after the spec's source, as a
parse error is.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from scaling_orchestrator.analysis.data.load import load_table
from scaling_orchestrator.analysis.laws.registry import law_form
from scaling_orchestrator.analysis.methods.hparam_laws import LrLaw, load_lr_law
from scaling_orchestrator.analysis.methods.hparam_search import fit_hparams, split_kinds
from scaling_orchestrator.orchestrator.fmt import si
from scaling_orchestrator.orchestrator.spec.sections.model import ModelSpec
from scaling_orchestrator.orchestrator.spec.sweep import Prior, Recipe, Sweep
from scaling_orchestrator.orchestrator.spec.validate import SpecError, fail


@dataclass(frozen=True)
class SearchLr(LrLaw):
    """The best lr of a search at the base width, for every width: mup transfers it (Yang et al.
    2022, Sec. 3), so lr(N) is flat (exponent 0) over every size (n_range 0..inf)."""

    label: str = ""  # the searched size it was found at
    d_model: int = 0


def resolve(sweep: Sweep) -> Sweep:
    """The sweep with what its spec points to read in; a sweep with nothing to read (or read
    already) comes back as it is."""
    try:
        return dataclasses.replace(sweep, prior=_prior(sweep.prior), train=_recipe(sweep.train, sweep.model))
    except SpecError as e:
        raise SpecError(f"{sweep.source}: {e}") from None


def notes(sweep: Sweep) -> list[str]:
    """The plan's lines on what resolve read (none for a spec that names no file)."""
    out = []
    if sweep.prior.from_fit:
        out.append(f"prior.from_fit: {sweep.prior.source}")
    law, source = sweep.train.lr_law, sweep.train.lr_source
    if isinstance(law, SearchLr):
        out.append(lr_note(sweep.train))
    elif law is not None and source is not None:
        lo, hi = law.n_range
        out.append(
            f"train.lr.from_fit: lr = {law.coefficient:.3g} N^{law.exponent:.3g} ({sweep.train.lr_params} "
            f"params), the lr law in {source.path}, fitted on {si(lo)}..{si(hi)} params"
        )
    return out


def lr_note(recipe: Recipe) -> str:
    """The plan's line for train.lr: {from_search} ("" for any other lr): where the lr comes from."""
    law = recipe.lr_law
    if not isinstance(law, SearchLr):
        return ""
    return (
        f"lr: {law.coefficient:.3g} at every size, the best lr of the search in {law.source} at "
        f"{law.label} (d_model {law.d_model} = model.base_d_model): mup carries it across widths"
    )


def _prior(prior: Prior) -> Prior:
    if not prior.from_fit or prior.coefficient:
        return prior
    k, a, method = fit_prior(prior.from_fit)
    return dataclasses.replace(
        prior, coefficient=k, exponent=a, source=f"{method} fit in {prior.from_fit}: N* = {k:.3g} C^{a:.3g}"
    )


def _recipe(recipe: Recipe, model: ModelSpec) -> Recipe:
    source = recipe.lr_source
    if source is None or recipe.lr_law is not None:
        return recipe
    if source.kind == "from_search":
        return dataclasses.replace(recipe, lr_law=lr_from_search(source.path, model))
    try:
        law = load_lr_law(source.path)
    except (OSError, ValueError) as e:
        fail("train.lr.from_fit", source.path, f"a `scaling fit --json` file with a fitted lr_law ({e})")
    return dataclasses.replace(recipe, lr_law=law)


def fit_prior(path: str) -> tuple[float, float, str]:
    """N* = k C^a from `scaling fit --json`: the IsoFLOP law if fitted, else the parametric one."""
    try:
        fit = json.loads(Path(path).read_text())
        iso, par = fit.get("isoflop") or {}, fit.get("parametric") or {}
    except (OSError, ValueError, AttributeError) as e:
        return fail("prior.from_fit", path, f"a readable `scaling fit --json` file ({e})")
    if all(isinstance(iso.get(k), (int, float)) for k in ("a", "k_params")):
        return float(iso["k_params"]), float(iso["a"]), "isoflop"
    if all(isinstance(par.get(k), (int, float)) for k in ("A", "B", "alpha", "beta")):
        # Chinchilla Eq. 4 under C = 6ND, the analysis law's own: N*(C) = G (C/6)^a with
        # a = beta/(alpha+beta), so k = N*(1 FLOP); Epoch's refit (alpha .347, beta .367,
        # A 478, B 2143) gives a = 0.514.
        chinchilla = law_form("chinchilla")
        constants = {k: float(par[k]) for k in ("A", "B", "alpha", "beta")}
        a = float(chinchilla.exponent_rows(constants)[0])
        k = float(chinchilla.optimum_6nd(constants, 1.0)[0])
        return k, a, "parametric"
    return fail("prior.from_fit", path, "a fit with isoflop (a, k_params) or parametric (A, B, alpha, beta)")


def lr_from_search(path: str, model: ModelSpec) -> SearchLr:
    """`train.lr: {from_search: RESULTS_DIR}`: the window-parabola best lr (analysis hparam_search)
    of the search's smallest size, which must be the base width of the mup model section."""
    try:
        table = load_table(path)
        optima = fit_hparams(table, n_bootstrap=0).lr.optima
    except (OSError, ValueError) as e:
        return fail("train.lr.from_search", path, f"a readable results folder ({e})")
    if not optima:
        fail("train.lr.from_search", path, "a results folder with hparam rows (kind 'hparam')")
    best = optima[0]  # sizes ascend in params: the narrowest
    if not best.fittable or best.edge:
        fail(
            "train.lr.from_search",
            path,
            f"a search whose best lr at {best.label} lies inside its lr grid "
            f"({best.reason or 'the best lr tried is the smallest or largest'})",
        )
    widths = set(_size_column(table, best.label, "d_model"))
    if widths != {model.base_d_model}:
        fail(
            "train.lr.from_search",
            path,
            f"a search at the base width: its smallest size {best.label} is "
            f"{sorted(widths)} wide, model.base_d_model is {model.base_d_model}",
        )
    return SearchLr(best.value_opt, 0.0, (0.0, math.inf), path, best.label, model.base_d_model)


def _size_column(table, label: str, column: str) -> list:
    """`column` of the hparam rows of one size_label."""
    rows = split_kinds(table)[1]
    keep = pc.equal(pc.cast(rows.column("size_label"), pa.string()), label)
    return rows.filter(keep).column(column).to_pylist()
