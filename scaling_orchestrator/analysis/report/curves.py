"""The report's training curves: loss and learning rate against tokens, one panel per size, and
the trials whose train loss spiked or turned NaN, each with its step.

Read from the results folder's curve table (analysis/data/curves.py), when the fit's source is
a results folder that has one; a fit of a table or a CSV has no curves and gets neither.
A divergence on the curve (data.curves.spike_step: a NaN/inf loss, or one SPIKE_RATIO above the
best so far) is flagged even when the trial went on to finish: a spike the run recovered from
is worth a look at its LR before the next ladder, and the evaluation rows never see it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scaling_orchestrator.analysis.data.curves import CURVES_DIR, SPIKE_RATIO, load_curves, spike_step

CAPTION = ("Training curves per size: train loss against tokens, coloured by budget, with the "
           "learning rate under it; x = the step where a trial's loss spiked or turned NaN, "
           "| = where a trial was stopped early")


def has_curves(source: str) -> bool:
    return bool(source) and (Path(source) / CURVES_DIR).is_dir()


def _stopped(source: str, trial_id: str) -> bool:
    """The store's metadata says a scheduler stopped the trial (orchestrator/execution/stops.py)."""
    try:
        meta = json.loads((Path(source) / "_trials" / f"{trial_id}.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("stopped_early")) or meta.get("status") == "stopped"


def _trials(curves: pa.Table) -> list[tuple[str, dict]]:
    """(trial id, {steps, tokens, loss, lr, size, budget, name}) per trial, ordered by budget."""
    out = []
    for tid in pc.unique(curves.column("trial_id")).to_pylist():
        part = curves.filter(pc.equal(curves.column("trial_id"), tid)).sort_by("step")
        first = part.slice(0, 1).to_pylist()[0]
        size = first.get("size_label") or f"{first.get('n_layer')}x{first.get('d_model')}"
        out.append((tid, {
            "steps": part.column("step").to_pylist(),
            "tokens": np.asarray(part.column("tokens").to_pylist(), float),
            "loss": np.asarray(part.column("train_loss").to_pylist(), float),
            "lr": np.asarray(part.column("lr").to_pylist(), float),
            "size": size, "params": first.get("params") or 0,
            "budget": first.get("budget_flops") or 0.0,
        }))
    return sorted(out, key=lambda item: (item[1]["budget"], item[1]["params"]))


def spikes(source: str) -> list[tuple[str, str, float, int]]:
    """(trial id, size, budget, step) for every curve that spiked or turned NaN."""
    if not has_curves(source):
        return []
    found = []
    for tid, t in _trials(load_curves(source)):
        step = spike_step(t["steps"], t["loss"].tolist())
        if step is not None:
            found.append((tid, t["size"], t["budget"], step))
    return found


def spike_blocks(source: str) -> list:
    """The report's list of train-loss divergences (nothing when every curve is healthy)."""
    found = spikes(source)
    if not found:
        return []
    items = [f"{size} at {budget:.3g} FLOPs (trial {tid}): step {step}" for tid, size, budget, step in found]
    return [("h2", "Training-loss divergences"),
            ("p", f"Curves whose train loss turned NaN/inf or rose {SPIKE_RATIO:g}x above its best so "
                  "far, at the first such step (the evaluation rows may not show it):"),
            ("ul", items)]


def plot_curves(source: str, path: Path) -> Path | None:
    """One panel per size (loss over LR), a line per trial coloured by its budget."""
    if not has_curves(source):
        return None
    trials = _trials(load_curves(source))
    if not trials:
        return None
    # matplotlib loads only for a report (the rest of analysis never draws); the Figure API
    # draws with Agg and leaves pyplot's global backend alone
    from matplotlib import colormaps  # lazy: matplotlib, as above
    from matplotlib.figure import Figure  # lazy: matplotlib, as above
    from matplotlib.lines import Line2D  # lazy: matplotlib, as above

    sizes = sorted({t["size"]: t["params"] for _, t in trials}.items(), key=lambda kv: kv[1])
    budgets = sorted({t["budget"] for _, t in trials})
    cmap = colormaps["viridis"].resampled(max(len(budgets), 2))
    cols = min(4, len(sizes))
    rows = math.ceil(len(sizes) / cols)
    fig = Figure(figsize=(3.4 * cols + 1.2, 3.6 * rows), layout="constrained")
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows)
    for k, (size, _) in enumerate(sizes):
        r, c = divmod(k, cols)
        loss_ax = fig.add_subplot(grid[2 * r, c])
        lr_ax = fig.add_subplot(grid[2 * r + 1, c], sharex=loss_ax)
        for tid, t in trials:
            if t["size"] == size:
                _draw(loss_ax, lr_ax, t, cmap(budgets.index(t["budget"])), _stopped(source, tid))
        loss_ax.set_title(size, fontsize=9)
        loss_ax.set_xscale("log")
        loss_ax.tick_params(labelbottom=False, labelsize=7)
        lr_ax.tick_params(labelsize=7)
        lr_ax.set_xlabel("tokens", fontsize=8)
        if c == 0:
            loss_ax.set_ylabel("train loss (nats)", fontsize=8)
            lr_ax.set_ylabel("lr", fontsize=8)
    handles = [Line2D([], [], color=cmap(i), label=f"{b:.3g}".replace("e+", "e"))
               for i, b in enumerate(budgets)]
    fig.legend(handles=handles, title="budget (FLOPs)", loc="outside right upper", fontsize=7,
               title_fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _draw(loss_ax, lr_ax, t: dict, color, stopped: bool) -> None:
    finite = np.isfinite(t["loss"])
    loss_ax.plot(t["tokens"][finite], t["loss"][finite], color=color, lw=1)
    lr_ax.plot(t["tokens"], t["lr"], color=color, lw=1)
    step = spike_step(t["steps"], t["loss"].tolist())
    if step is not None:
        i = t["steps"].index(step)
        y = t["loss"][i] if finite[i] else (t["loss"][finite][-1] if finite.any() else np.nan)
        loss_ax.scatter([t["tokens"][i]], [y], marker="x", color="red", s=40, zorder=3)
    if stopped and finite.any():
        last = np.flatnonzero(finite)[-1]
        loss_ax.scatter([t["tokens"][last]], [t["loss"][last]], marker="|", color="black", s=80, zorder=3)
