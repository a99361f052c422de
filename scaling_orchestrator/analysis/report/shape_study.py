"""A shape study's reading (design: shape): final loss against aspect ratio and against context
at fixed non-embedding N, and the measured spread.

Kaplan et al. 2020 (Sec. 3.1, Fig. 5): at fixed N the loss changes by only a few percent over a
wide range of shapes (50M params: aspect ratios d_model / n_layer from ~6 to ~200 within 3%).
The spread here is max / min - 1 of the final val loss over a sweep at one N (seed means first):
losses 4.10 .. 4.30 nats -> 4.9%. Each sweep is read from the rows as planned: the aspect sweep
is the shapes at the context most of them share, the context sweep the contexts of the shape
trained at most contexts. One study per budget_flops (its own N), smallest N first.

No torch and no Ray: pyarrow and numpy, with matplotlib for the figure only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scaling_orchestrator.analysis.data.load import load_table
from scaling_orchestrator.analysis.numerics import write_json
from scaling_orchestrator.analysis.report.render import to_html, to_markdown

KIND = "shape"
COLUMNS = ("n_layer", "d_model", "seq_len", "non_embedding_params", "val_loss", "budget_flops", "tokens")


@dataclass(frozen=True)
class ShapePoint:
    """One (shape, context) of a study: its seed-mean final val loss."""

    n_layer: int
    d_model: int
    seq_len: int
    non_embedding_params: int
    tokens: float
    loss: float  # nats per token, mean over seeds
    n_seeds: int

    @property
    def aspect_ratio(self) -> float:
        return self.d_model / self.n_layer

    @property
    def label(self) -> str:
        return f"L{self.n_layer}xD{self.d_model}xT{self.seq_len}"


@dataclass(frozen=True)
class ShapeStudy:
    budget_flops: float
    aspect: tuple[ShapePoint, ...]  # at the reference context, ascending aspect ratio
    context: tuple[ShapePoint, ...]  # of the reference shape, ascending context

    @property
    def params(self) -> float:
        """The study's N: the median non-embedding count over its aspect sweep."""
        return float(np.median([p.non_embedding_params for p in self.aspect]))

    @property
    def aspect_spread(self) -> float:
        """max / min - 1 of final loss across aspect ratios at fixed N (NaN under two points)."""
        return _spread(self.aspect)

    @property
    def context_spread(self) -> float:
        return _spread(self.context)

    def to_dict(self) -> dict:
        row = lambda p: {"n_layer": p.n_layer, "d_model": p.d_model, "seq_len": p.seq_len,  # noqa: E731
                         "aspect_ratio": p.aspect_ratio, "non_embedding_params": p.non_embedding_params,
                         "tokens": p.tokens, "loss": p.loss, "n_seeds": p.n_seeds}
        return {"budget_flops": self.budget_flops, "params": self.params,
                "aspect": [row(p) for p in self.aspect], "context": [row(p) for p in self.context],
                "aspect_spread": _finite(self.aspect_spread), "context_spread": _finite(self.context_spread)}

    def summary(self) -> str:
        """`N 200k: loss 4.10..4.30 over aspect ratios 4..128 (32x): spread 4.9%; ...`"""
        parts = [f"N {self.params:.3g}"]
        for name, points, spread, key in (("aspect ratios", self.aspect, self.aspect_spread, "aspect_ratio"),
                                          ("contexts", self.context, self.context_spread, "seq_len")):
            if len(points) >= 2:
                xs, ls = [getattr(p, key) for p in points], [p.loss for p in points]
                parts.append(f"loss {min(ls):.3f}..{max(ls):.3f} over {name} {min(xs):.3g}..{max(xs):.3g} "
                             f"({max(xs) / min(xs):.3g}x): spread {spread:.1%}")
        return "; ".join(parts)


def _finite(x: float) -> float | None:
    """None for NaN (a sweep of under two points), so the JSON stays strict."""
    return None if np.isnan(x) else x


def _spread(points) -> float:
    losses = [p.loss for p in points]
    return max(losses) / min(losses) - 1 if len(losses) >= 2 else float("nan")


def shape_studies(source) -> list[ShapeStudy]:
    """The shape studies in a results folder, table or file
    (scaling_orchestrator.analysis.data.load.load_table)."""
    table = _final_ok(load_table(source))
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"shape study rows: columns {missing} not found; columns are {table.column_names}")
    cols = {c: pc.cast(table.column(c), pa.float64()).to_numpy(zero_copy_only=False) for c in COLUMNS}
    studies = []
    for budget in np.unique(cols["budget_flops"]):
        keep = cols["budget_flops"] == budget
        points = _points({c: v[keep] for c, v in cols.items()})
        studies.append(_study(float(budget), points))
    if not studies:
        raise ValueError("shape study rows: no finished trial with a finite val_loss")
    return sorted(studies, key=lambda s: s.params)


def _final_ok(table: pa.Table) -> pa.Table:
    """Final rows of healthy trials, kind "shape" when the table has any."""
    if "kind" in table.column_names:
        kind = pc.fill_null(pc.cast(table.column("kind"), pa.string()), "")
        if pc.any(pc.equal(kind, KIND)).as_py():
            table = table.filter(pc.equal(kind, KIND))
    if "final" in table.column_names:
        table = table.filter(pc.fill_null(table.column("final"), False))
    if "status" in table.column_names:
        table = table.filter(pc.equal(pc.fill_null(pc.cast(table.column("status"), pa.string()), "ok"), "ok"))
    loss = pc.cast(table.column("val_loss"), pa.float64()) if "val_loss" in table.column_names else None
    return table if loss is None else table.filter(pc.is_finite(pc.fill_null(loss, float("nan"))))


def _points(cols: dict) -> list[ShapePoint]:
    """Seed means per (n_layer, d_model, seq_len)."""
    keys = np.stack([cols["n_layer"], cols["d_model"], cols["seq_len"]], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    out = []
    for i, (layers, width, context) in enumerate(uniq):
        g = inv == i
        out.append(
            ShapePoint(
                int(layers),
                int(width),
                int(context),
                int(np.median(cols["non_embedding_params"][g])),
                float(np.mean(cols["tokens"][g])),
                float(np.mean(cols["val_loss"][g])),
                int(g.sum()),
            )
        )
    return out


def _study(budget: float, points: list[ShapePoint]) -> ShapeStudy:
    """The aspect sweep at the most shared context; the context sweep of the shape with most contexts
    (ties: the reference context's shape of middle aspect ratio, as the planner picks it)."""
    contexts = [p.seq_len for p in points]
    ref_context = max(sorted(set(contexts)), key=contexts.count)
    aspect = sorted((p for p in points if p.seq_len == ref_context), key=lambda p: p.aspect_ratio)
    shapes = [(p.n_layer, p.d_model) for p in points]
    middle = (aspect[(len(aspect) - 1) // 2].n_layer, aspect[(len(aspect) - 1) // 2].d_model)
    ref_shape = max(sorted(set(shapes), key=lambda s: s != middle), key=shapes.count)
    context = sorted((p for p in points if (p.n_layer, p.d_model) == ref_shape), key=lambda p: p.seq_len)
    return ShapeStudy(budget, tuple(aspect), tuple(context) if len(context) >= 2 else ())


def plot_shape_study(studies: list[ShapeStudy], path) -> Path:
    """Two panels, one line per N: final loss against aspect ratio (Kaplan et al. 2020 Fig. 5)
    and against context, each labelled with its measured spread."""
    import matplotlib  # loaded only when a figure is drawn: `scaling fit` prints without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for study in studies:
        for ax, points, key, spread in (
            (left, study.aspect, "aspect_ratio", study.aspect_spread),
            (right, study.context, "seq_len", study.context_spread),
        ):
            if points:
                ax.plot(
                    [getattr(p, key) for p in points],
                    [p.loss for p in points],
                    "o-",
                    label=f"N {study.params:.3g}: spread {spread:.1%}",
                )
    for ax, xlabel, title in (
        (left, "aspect ratio d_model / n_layer", "loss against shape at fixed N"),
        (right, "context (tokens)", "loss against context at fixed N"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("final val loss (nats/token)")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def is_shape_study(table: pa.Table) -> bool:
    """True when every row is kind "shape": `scaling fit` and `scaling report` read it as one."""
    if "kind" not in table.column_names or table.num_rows == 0:
        return False
    kind = pc.fill_null(pc.cast(table.column("kind"), pa.string()), "")
    return bool(pc.all(pc.equal(kind, KIND)).as_py())


def _sweep_rows(points, key: str) -> list[list[str]]:
    return [
        [
            p.label,
            f"{getattr(p, key):.3g}",
            f"{p.non_embedding_params:,}",
            f"{p.tokens:.3g}",
            f"{p.loss:.4f}",
            str(p.n_seeds),
        ]
        for p in points
    ]


def shape_blocks(studies: list[ShapeStudy], plot: Path | None) -> list:
    """The report's blocks (scaling_orchestrator.analysis.report.render): each study's spread, its two sweeps,
    the figure."""
    blocks = [
        ("h1", "Shape study: loss against aspect ratio and context at fixed compute"),
        (
            "p",
            "Each trial spends its budget's FLOPs; the spread is max / min - 1 of the final "
            "validation loss (seed means) across a sweep. Kaplan et al. 2020 (Fig. 5) found "
            "it within a few percent over a wide range of aspect ratios at fixed N.",
        ),
        ("ul", [s.summary() for s in studies]),
    ]
    head = ["shape", "", "non-embedding params", "tokens", "final val loss", "seeds"]
    for s in studies:
        for title, points, key in (
            ("aspect ratio", s.aspect, "aspect_ratio"),
            ("context", s.context, "seq_len"),
        ):
            if points:
                blocks += [
                    ("h2", f"Budget {s.budget_flops:.3g} FLOPs: {title}"),
                    ("table", [head[0], title, *head[2:]], _sweep_rows(points, key)),
                ]
    if plot is not None:
        blocks += [("h2", "Figure"), ("img", plot, "final loss against aspect ratio and against context")]
    return blocks


def write_shape_report(studies: list[ShapeStudy], out_dir) -> dict[str, Path]:
    """report.md, report.html (figure embedded), shape.png and shape.json in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_shape_study(studies, out / "shape.png")
    blocks = shape_blocks(studies, plot)
    paths = {"markdown": out / "report.md", "html": out / "report.html", "json": out / "shape.json"}
    paths["markdown"].write_text(to_markdown(blocks), encoding="utf-8")
    paths["html"].write_text(to_html(blocks), encoding="utf-8")
    write_json(paths["json"], [s.to_dict() for s in studies], indent=1)
    return {**paths, "shape": plot}


def main(argv=None) -> None:
    """`python -m scaling_orchestrator.analysis.report.shape_study RESULTS [--plot PNG] [--json OUT]`: each
    study's summary line."""
    ap = argparse.ArgumentParser(description="A shape study's loss spread across aspect ratios and contexts.")
    ap.add_argument("source", help="a results folder or a table file")
    ap.add_argument("--plot", help="write the two-panel figure here (PNG)")
    ap.add_argument("--json", help="write each study's numbers here")
    args = ap.parse_args(argv)
    studies = shape_studies(args.source)
    for study in studies:
        print(study.summary())
    if args.plot:
        print(f"plot: {plot_shape_study(studies, args.plot)}")
    if args.json:
        write_json(args.json, [s.to_dict() for s in studies], indent=1)


__all__ = ["ShapePoint", "ShapeStudy", "main", "plot_shape_study", "shape_studies"]


if __name__ == "__main__":
    main()
