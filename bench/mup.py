"""Does the best learning rate stay put across widths? An lr sweep at several widths under the
standard parametrization and under μP (Yang et al. 2022, Tensor Programs V, Fig. 1 and Sec. 6).

Per width (2 layers, heads of 8, d_model 16 .. 128: 8x) and parametrization, one run per lr
of a 2x grid, on the real corpus (sotu, 1,024-token BPE, as examples/demo.yaml); μP's base is
the narrowest width, where the two parametrizations are the same model. The best lr of a width
is the vertex of the window parabola in log lr (scaling_orchestrator.analysis.methods.hparam_search.vertex,
the estimator of
`scaling fit`'s lr*(N)). Under the standard parametrization it moves with width (Adam's update
changes W x by ~ lr x fan-in); under μP it should not (goal: within 2x).
Then Yang et al.'s coordinate check (scaling_orchestrator.models.coord_check) on the same widths, drawn to a
PNG.
Plain scaling_orchestrator.models.training.loop, no Ray; runs go two at a time, one torch thread each.

    python bench/mup.py [--widths 16 32 64 128] [--steps 600] [--workers 2] [--out bench-mup] [--block llama]

Prints one loss row per (parametrization, width), the best lr per width, and the headlines
`SP lr shift: Ax` and `muP lr shift: Bx`: the largest best lr over the smallest, across widths.
Measured with the defaults: 64 runs, 23 CPU-minutes (about 12 minutes on two free cores);
SP lr shift 6.96x (best lr 1.15e-2 at width 16 down to 1.65e-3 at 128), muP lr shift 1.10x
(1.04e-2 .. 1.15e-2). At this horizon the standard model at its own best lr still ends lower at
width 128 (4.11 against muP's 4.57 nats); under muP wider is better (4.77 at 16, 4.57 at 128).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from scaling_orchestrator.analysis.errors import NotFittable  # noqa: E402
from scaling_orchestrator.analysis.methods.hparam_search import vertex  # noqa: E402
from scaling_orchestrator.models.coord_check import coord_check, width_slopes  # noqa: E402
from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape  # noqa: E402
from scaling_orchestrator.models.training.loop import TrainConfig, batch_at, train  # noqa: E402

DATA = DataSpec(corpus="sotu", tokenizer="bpe", vocab_size=1024, val_fraction=0.05)
SEQ_LEN, ROWS, N_LAYER, HEAD_DIM = 64, 8, 2, 8  # 512 tokens a step; width 16 has 2 heads
# The demo's recipe, weight decay off: AdamW decays by lr x wd, which would tie a second knob to lr.
RECIPE = TrainConfig(
    total_tokens=512,
    batch_tokens=SEQ_LEN * ROWS,
    lr=1e-3,
    min_lr_ratio=0.1,
    warmup_fraction=0.05,
    schedule="cosine",
    weight_decay=0.0,
    grad_clip=1.0,
    eval_tokens=16384,
    threads=1,
    device="cpu",
)
LRS = tuple(2.0**k for k in range(-11, -3))  # 4.9e-4 .. 0.0625, 2x apart
WINDOW = 5


def shape_of(width: int, parametrization: str, base: int, block: str = "gpt2") -> ModelShape:
    extra = {"parametrization": "mup", "base_d_model": base} if parametrization == "mup" else {}
    return ModelShape(n_layer=N_LAYER, d_model=width, n_head=width // HEAD_DIM, vocab_size=1024,
                      seq_len=SEQ_LEN, block=block, **extra)


def final_loss(job: tuple) -> tuple:
    """(parametrization, width, lr) -> the same and the final val loss (inf when it diverged)."""
    parametrization, width, base, lr, steps, block = job
    config = dataclasses.replace(RECIPE, total_tokens=steps * RECIPE.batch_tokens, lr=lr)
    m = train(shape_of(width, parametrization, base, block), config, prepare_data(DATA))
    return parametrization, width, lr, m.val_loss if m.status == "ok" else math.inf


def best_lr(losses: dict[float, float]) -> tuple[float, bool]:
    """The vertex of the window parabola in log10 lr through the 5 lrs nearest the best (the
    estimator `scaling fit` uses for lr*(N), scaling_orchestrator.analysis.methods.hparam_search.vertex;
    diverged runs bound the
    bowl but are not fitted), and whether the best lr tried is the grid's edge."""
    lrs = np.array(sorted(losses))
    fit, edge = vertex(lrs, np.array([losses[lr] for lr in lrs]), WINDOW)
    return float(10.0**fit.x_opt), edge


def plot(curves: dict, best: dict, coords: dict, path: Path) -> None:
    """Loss against lr per width (both parametrizations) and the coordinate check's mean |x|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, parametrization in enumerate(("standard", "mup")):
        ax = axes[0, col]
        for width, losses in sorted(curves[parametrization].items()):
            lrs = sorted(lr for lr in losses if math.isfinite(losses[lr]))
            (line,) = ax.plot(lrs, [losses[lr] for lr in lrs], "o-", ms=3, label=f"width {width}")
            if math.isfinite(best[parametrization][width][0]):
                ax.axvline(best[parametrization][width][0], color=line.get_color(), ls=":", lw=1)
        ax.set(
            xscale="log",
            xlabel="peak lr",
            ylabel="final val loss (nats/token)",
            title=f"{parametrization}: loss against lr",
        )
        ax.legend(fontsize=8)
        ax = axes[1, col]
        rows = coords[parametrization]
        t = max(r["t"] for r in rows)
        for layer in ("block0.attn", "block0.mlp", "block1", "logits"):
            pts = sorted((r["d_model"], r["mean_abs"]) for r in rows if r["t"] == t and r["layer"] == layer)
            ax.plot(*zip(*pts), "o-", ms=3, label=layer)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="d_model",
            ylabel=f"mean |x| after {t} Adam steps",
            title=f"{parametrization}: coordinate check",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    # 600 steps: these models sit on a unigram plateau (~6 nats) until about step 150-250, and a
    # run that ends near its escape measures when it escaped (seeds 0 and 1 at 200 steps: 5.33 vs
    # 5.62 at one lr); at 600 steps two seeds differ by 0.07-0.09 nats
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench-mup")
    ap.add_argument("--block", choices=("gpt2", "llama"), default="gpt2")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(DATA)  # once, before the workers: they read the cache
    base = min(args.widths)
    start = time.perf_counter()
    jobs = [
        (p, w, base, lr, args.steps, args.block)
        for p in ("standard", "mup")
        for w in sorted(args.widths, reverse=True)
        for lr in LRS
    ]
    curves: dict = {"standard": {}, "mup": {}}
    with ProcessPoolExecutor(args.workers) as pool:
        for parametrization, width, lr, loss in pool.map(final_loss, jobs):
            curves[parametrization].setdefault(width, {})[lr] = loss
    print(
        f"{len(jobs)} runs of {args.steps} steps x {RECIPE.batch_tokens} tokens in "
        f"{time.perf_counter() - start:.0f} s; lr grid {LRS[0]:.3g} .. {LRS[-1]:.3g} (2x steps)"
    )
    best = report(curves)
    tokens = batch_at(data.train, 32, 8, seed=0, step=0)
    coords = {
        p: coord_check(
            [shape_of(w, p, base, args.block).with_context(32) for w in sorted(args.widths)],
            steps=4,
            lr=3e-3,
            tokens=tokens,
        )
        for p in ("standard", "mup")
    }
    for p, rows in coords.items():
        slopes = width_slopes(rows, 4)
        print(
            f"coord check {p}: slope of log mean|x| on log width after 4 steps: "
            + ", ".join(f"{k} {v:+.2f}" for k, v in slopes.items() if k.startswith("block1") or k == "logits")
        )
    plot(curves, best, coords, out / "mup.png")
    print(f"plot: {out / 'mup.png'}")
    for label, parametrization in (("SP", "standard"), ("muP", "mup")):
        lrs = [lr for lr, _ in best[parametrization].values() if math.isfinite(lr)]
        edges = [w for w, (_, edge) in best[parametrization].items() if edge]
        note = f" (best at the grid's edge for width {edges})" if edges else ""
        shift = f"{max(lrs) / min(lrs):.2f}x" if len(lrs) >= 2 else "not measured (under two bowls)"
        print(f"{label} lr shift: {shift}{note}")


def report(curves: dict) -> dict:
    """Prints the loss table and the best lr per width; returns {parametrization: {width: (lr, edge)}}."""
    best = {}
    print("parametrization  width  " + "  ".join(f"{lr:8.2g}" for lr in LRS) + "   best lr")
    for parametrization, by_width in curves.items():
        best[parametrization] = {}
        for width in sorted(by_width):
            losses = by_width[width]
            try:
                lr, edge = best_lr(losses)
            except NotFittable:  # not a bowl: no best lr to compare
                lr, edge = math.nan, False
            best[parametrization][width] = (lr, edge)
            cells = "  ".join(
                f"{losses[x]:8.4f}" if math.isfinite(losses[x]) else f"{'diverged':>8}" for x in LRS
            )
            print(f"{parametrization:>15}  {width:5d}  {cells}   {lr:.3g}{' (edge)' if edge else ''}")
    return best


if __name__ == "__main__":
    main()
