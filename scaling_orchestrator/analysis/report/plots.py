"""PNG figures for the report (matplotlib, Agg backend: no display, no server).

Every figure reads a fit's to_dict() (the numbers in fit.json) plus its points; none refits
anything, so the plots show exactly the numbers in the JSON.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from scaling_orchestrator.analysis.data.points import final_rows  # noqa: E402
from scaling_orchestrator.analysis.judge.forecast import tier_word  # noqa: E402
from scaling_orchestrator.analysis.laws.registry import DEFAULT_FORM, law_form, law_from_dict  # noqa: E402

METHOD_COLORS = {"parametric": "tab:blue", "isoflop": "tab:orange", "envelope": "tab:green",
                 "curve": "tab:red"}


def _arrays(points):
    rows = final_rows(points)
    return tuple(np.asarray(getattr(points, k), float)[rows]
                 for k in ("params", "tokens", "loss", "budget"))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _held_out_flops(result: dict) -> set[float]:
    bt = result.get("backtest", {})
    return {b["held_out_flops"] for b in bt.get("budgets", [])} if bt.get("fittable") else set()


def plot_isoflop(result: dict, points, path: Path) -> Path:
    """Loss against N per budget, the window parabola and its vertex; held-out budgets drawn
    as squares, a vertex at the grid's edge as a hollow star."""
    iso = result.get("isoflop", {})
    N, D, L, C = _arrays(points)
    on_params = iso.get("axis", "params") == "params"
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    budgets, held = np.unique(C), _held_out_flops(result)
    cmap = plt.get_cmap("viridis", max(len(budgets), 2))
    by_budget = {b["flops"]: b for b in iso.get("budgets", [])}
    edges = False
    for i, b in enumerate(budgets):
        g = C == b
        out = float(b) in held
        ax.scatter(N[g] if on_params else D[g], L[g], s=26 if out else 14, color=cmap(i),
                   marker="s" if out else "o", label=f"{b:.2g}" + (" (held out)" if out else ""))
        opt = by_budget.get(float(b))
        if opt and opt.get("fittable") and "parabola" in opt:
            p = opt["parabola"]
            lx = np.linspace(p["log10_x_lo"], p["log10_x_hi"], 50)
            ax.plot(10 ** lx, p["c2"] * lx ** 2 + p["c1"] * lx + p["c0"], color=cmap(i), lw=1)
            ax.scatter([opt["params_opt"] if on_params else opt["tokens_opt"]], [opt["loss_opt"]],
                       marker="*", s=140, edgecolor="k",
                       facecolor="none" if opt["edge"] else cmap(i), zorder=3)
            edges |= bool(opt["edge"])
    ax.scatter([], [], marker="*", s=140, edgecolor="k", facecolor="grey", label="vertex")
    if edges:
        ax.scatter([], [], marker="*", s=140, edgecolor="k", facecolor="none",
                   label="vertex at the grid's edge (not in N*(C))")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters N" if on_params else "tokens D")
    ax.set_ylabel("final loss (nats/token)")
    ax.set_title("IsoFLOP profiles: window parabolas and their vertices")
    ax.legend(title="budget FLOPs", fontsize=7, ncol=2)
    return _save(fig, path)


def plot_optimal(result: dict, path: Path) -> Path:
    """N*(C) and D*(C) per method with 95% bands where bootstrapped; IsoFLOP vertices dotted."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax, label in (("params", axes[0], "N* (parameters)"), ("tokens", axes[1], "D* (tokens)")):
        for method, rows in result.get("frontier_grid", {}).items():
            if not rows:
                continue
            C = np.array([r["flops"] for r in rows])
            ax.plot(C, [r[key] for r in rows], color=METHOD_COLORS[method], label=method)
            ci = [r["ci95"][key] for r in rows]
            if all(c is not None for c in ci):  # None inside: a degenerate band point, a gap
                lo, hi = np.array(ci, dtype=float).T
                ax.fill_between(C, lo, hi, color=METHOD_COLORS[method], alpha=0.2)
        budgets = [b for b in result.get("isoflop", {}).get("budgets", []) if b.get("fittable")]
        if budgets:
            ax.scatter([b["flops"] for b in budgets], [b[key + "_opt"] for b in budgets],
                       c=["none" if b["edge"] else METHOD_COLORS["isoflop"] for b in budgets],
                       edgecolors=METHOD_COLORS["isoflop"], s=25, zorder=3, label="IsoFLOP vertices")
        targets = sorted({r["flops"] for r in result.get("compute_optimal", [])})
        for i, t in enumerate(targets):
            ax.axvline(t, color="grey", ls=":", lw=0.8, label="target budgets" if i == 0 else None)
        head = result.get("headline", [])
        if head:
            ax.scatter([h["flops"] for h in head], [h[key] for h in head], marker="*", s=130,
                       color="k", zorder=4, label=f"headline ({head[0]['method']})")
        ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel=label)
        ax.legend(fontsize=8)
    edge = any(b.get("edge") for b in result.get("isoflop", {}).get("budgets", []))
    fig.suptitle("Compute-optimal allocation by method (bands: bootstrap 95%"
                 + ("; hollow circles: IsoFLOP vertices at the grid's edge)" if edge else ")"))
    return _save(fig, path)


def _law(p: dict):
    """The fitted law a JSON section describes (its "law" names the form), as L(N, D[, U]);
    a constant written as null (not finite) predicts NaN."""
    law = law_from_dict(p)
    return lambda n, d, u=None: np.asarray(law.predict(n, d, u), float)


def _unique(points):
    return None if points.unique is None else np.asarray(points.unique, float)[final_rows(points)]


def plot_parametric(result: dict, points, path: Path) -> Path | None:
    """Observed against predicted loss (left) and relative residuals against N and D."""
    par = result.get("parametric", {})
    if not par.get("fittable"):
        return None
    N, D, L, C = _arrays(points)
    pred = _law(par)(N, D, _unique(points))
    resid = (L - pred) / pred
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    sc = axes[0].scatter(pred, L, c=np.log10(C), s=12, cmap="viridis")
    lim = [min(pred.min(), L.min()), max(pred.max(), L.max())]
    axes[0].plot(lim, lim, "k--", lw=0.8)
    axes[0].set(xlabel="predicted loss", ylabel="observed loss", title="parametric fit vs data")
    fig.colorbar(sc, ax=axes[0], label="log10 budget FLOPs")
    for ax, x, name in ((axes[1], N, "parameters N"), (axes[2], D, "tokens D")):
        ax.scatter(x, 100 * resid, c=np.log10(C), s=12, cmap="viridis")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel=name, ylabel="residual (obs - pred) / pred, %",
               title=f"residuals vs {name.split()[-1]}")
        ax.xaxis.set_minor_formatter(NullFormatter())   # 2x10^4 3x10^4 ... overlapped
    return _save(fig, path)


def plot_backtest(result: dict, points, path: Path) -> Path | None:
    """One panel per held-out budget (the largest three): its runs, the parametric law fitted
    without them, the measured N* and every method's N* and loss forecasts."""
    bt = result.get("backtest", {})
    if not bt.get("fittable"):
        return None
    budgets = bt["budgets"][-3:]
    fig, axes = plt.subplots(1, len(budgets), figsize=(7.5 * len(budgets), 5.6), squeeze=False)
    for ax, b in zip(axes[0], budgets):
        _backtest_panel(ax, b, _arrays(points), bt.get("parametric_fit") or {})
    verdict = tier_word(bt["methods"][bt["method"]]) if bt.get("methods") else "not judged"
    fig.suptitle(f"Back-test of the headline method ({bt.get('method')}): {verdict}; thresholds "
                 f"loss {100 * bt['threshold']:.0f}%, N* {100 * bt['params_threshold']:.0f}%")
    return _save(fig, path)


def _needs_unique(p: dict) -> bool:
    """A law of unique tokens too: no curve along a budget's N grid, which has no U."""
    return bool(law_form(p.get("law") or DEFAULT_FORM).required_columns)


def _backtest_panel(ax, b: dict, arrays, law_constants: dict) -> None:
    N, D, L, C = arrays
    g = C == b["held_out_flops"]
    order = np.argsort(N[g])
    n, d, loss = N[g][order], D[g][order], L[g][order]
    ax.scatter(n, loss, color="k", s=22, zorder=3, label="held-out runs (measured)")
    if law_constants and len(n) > 1 and not _needs_unique(law_constants):
        grid = np.logspace(np.log10(n[0]), np.log10(n[-1]), 60)
        d_grid = np.exp(np.interp(np.log(grid), np.log(n), np.log(d)))   # along the budget
        ax.plot(grid, _law(law_constants)(grid, d_grid), color=METHOD_COLORS["parametric"],
                label="parametric law fitted without them")
    ax.axhline(b["observed_loss"], color="k", ls=":", lw=0.8, label="lowest measured loss")
    if b.get("observed_params") is not None:
        ax.axvline(b["observed_params"], color="k", ls="--", lw=1,
                   label=f"measured N* {b['observed_params']:.3g}")
    for method, check in b.get("methods", {}).items():
        color = METHOD_COLORS[method]
        p, lo = check["params"], check["loss"]
        if p["predicted"] is not None:
            miss = "" if p["error"] is None else f" ({100 * p['error']:+.0f}%)"
            ax.axvline(p["predicted"], color=color, ls=":", lw=1.4,
                       label=f"{method} N* forecast{miss}")
        if lo["predicted"] is not None and method != "parametric":
            ax.axhline(lo["predicted"], color=color, ls="-.", lw=1,
                       label=f"{method} loss forecast ({100 * lo['error']:+.1f}%)")
    ax.set(xscale="log", xlabel="parameters N", ylabel="final loss (nats/token)",
           title=f"held out: {b['held_out_flops']:.3g} FLOPs")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)


def _profiles(ax, sizes: list[dict], name: str) -> None:
    """Observed profile per size, its window parabola and vertex; diverged values as x on top."""
    cmap = plt.get_cmap("viridis", max(len(sizes), 2))
    top = max((v for s in sizes for v in s["observed"]["loss"] if v is not None), default=1.0)
    for i, s in enumerate(sizes):
        x, loss = np.array(s["observed"][name], float), s["observed"]["loss"]
        ok = np.array([v is not None for v in loss], bool)
        ax.plot(x[ok], [v for v in loss if v is not None], "o", ms=4, color=cmap(i),
                label=s["label"])
        if (~ok).any():
            ax.plot(x[~ok], np.full((~ok).sum(), top), "x", color=cmap(i))
        if "parabola" in s:
            p = s["parabola"]
            lx = np.linspace(p["log10_x_lo"], p["log10_x_hi"], 50)
            ax.plot(10 ** lx, p["c2"] * lx ** 2 + p["c1"] * lx + p["c0"], color=cmap(i), lw=1)
            ax.scatter([s[f"{name}_opt"]], [s["loss_opt"]], marker="*", s=110, edgecolor="k",
                       facecolor="none" if s["edge"] else cmap(i), zorder=3)
    ax.set(xscale="log", xlabel=name, ylabel="final loss (nats/token)",
           title="per size: window parabolas (hollow = edge, x = diverged)")
    ax.legend(fontsize=7, title="size")


def plot_hparam_law(result: dict, key: str, path: Path) -> Path | None:
    """Loss profiles per size (left); the optima and the power law with its band (right)."""
    sec = result.get(key, {})
    sizes = sec.get("sizes", [])
    if not sizes:
        return None
    name, x = ("lr", "params") if key == "lr_law" else ("batch_tokens", "flops")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    _profiles(axes[0], sizes, name)
    ax = axes[1]
    for s in (s for s in sizes if s["fittable"]):
        ci = s[f"{name}_ci95"]
        err = None if ci is None else [[max(s[f"{name}_opt"] - ci[0], 0.0)],
                                       [max(ci[1] - s[f"{name}_opt"], 0.0)]]
        ax.errorbar([s[x]], [s[f"{name}_opt"]], yerr=err, fmt="o", color="tab:blue",
                    mfc="tab:blue" if s.get("used_in_law") else "none", capsize=3)
    if sec.get("fittable"):
        band = sec["band"]
        xs, ys = [b[x] for b in band], [b[name] for b in band]
        ax.plot(xs, ys, color="tab:orange", label=f"{name}* = {sec['coefficient']:.3g} "
                f"{x}^{sec['exponent']:.3f}")
        if all(b["ci95"] is not None for b in band):
            lo, hi = np.array([b["ci95"] for b in band]).T
            ax.fill_between(xs, lo, hi, color="tab:orange", alpha=0.2, label="bootstrap 95%")
        ax.legend(fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel=x, ylabel=f"optimal {name}",
           title=f"{name}*({x}) (hollow = edge, left out of the law)"
                 if sec.get("fittable") else f"not fittable: {sec.get('reason', '')}"[:80])
    return _save(fig, path)


def make_plots(result: dict, points, out_dir: Path) -> dict[str, Path]:
    """name -> PNG path for every figure that applies to this result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    if points is not None and result["data"]["n_final_points"]:   # scaling rows exist
        made = {"isoflop": plot_isoflop(result, points, out_dir / "isoflop.png"),
                "optimal": plot_optimal(result, out_dir / "optimal.png"),
                "parametric": plot_parametric(result, points, out_dir / "parametric.png"),
                "backtest": plot_backtest(result, points, out_dir / "backtest.png")}
    for key in ("lr_law", "batch_law"):
        made[key] = plot_hparam_law(result, key, out_dir / f"{key}.png")
    return {k: v for k, v in made.items() if v is not None}
