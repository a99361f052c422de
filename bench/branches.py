"""A cooldown branch from a constant-LR trunk against a from-scratch cosine run to the same tokens.

Hagele et al. 2024 (arXiv 2405.18392, Sec. 3-4) find that warmup, a constant LR, then a short
cooldown (about 20% of the steps, 1-sqrt shape) matches a cosine schedule of the same length;
the branching design (`design: branches`) rests on that. Here, per size of the demo's dial: one
trunk at constant LR, checkpointed at each branch point s = T - round(0.2 T) (in whole steps),
one branch per token count T decaying from there, and one cosine run from scratch to T (the
grid's recipe). Same seed, data order, init and batch: only the schedule differs. Plain
scaling_orchestrator.models.training.loop, no Ray; runs go two at a time, one torch thread each.

    python bench/branches.py [--depths 2 3 4] [--budgets 8e11 1.4e12] [--cooldown 0.2]
                             [--shape 1-sqrt] [--min-lr-ratio 0.1] [--lr 3e-3] [--workers 2]

Prints one line per (size, T) and the headline `branch vs scratch: X%`, the mean relative
difference (branch - scratch) / scratch of the final validation loss (goal <= 1%).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data  # noqa: E402
from scaling_orchestrator.models.shape import ModelShape  # noqa: E402
from scaling_orchestrator.models.training.loop import TrainConfig, train  # noqa: E402

# The demo's recipe (examples/demo.yaml): sotu, 1,024-token BPE, 16 x 128-token rows per step.
DATA = DataSpec(corpus="sotu", tokenizer="bpe", vocab_size=1024, val_fraction=0.05)
RECIPE = TrainConfig(total_tokens=2048, batch_tokens=2048, lr=3e-3, min_lr_ratio=0.1, warmup_fraction=0.05,
                     schedule="cosine", weight_decay=0.1, grad_clip=1.0, eval_tokens=32768, threads=1,
                     device="cpu")


def shape_of(depth: int) -> ModelShape:
    return ModelShape.from_depth(depth, vocab_size=1024, seq_len=128, aspect_ratio=16, head_dim=16)


def branch_points(shape: ModelShape, budgets: list[float], cooldown: float) -> list[tuple[int, int]]:
    """(steps T, branch start s) per budget: T = round(C / (flops_per_token x batch)), as the
    planner's whole-step rule; s = T - round(cooldown x T). 1.4e12 FLOPs at depth 3
    (1.32e6 FLOPs/token, 2,048 tokens/step): T = 518, s = 518 - 104 = 414."""
    out = []
    for budget in budgets:
        steps = round(budget / (shape.flops_per_token() * RECIPE.batch_tokens))
        out.append((steps, steps - round(cooldown * steps)))
    return sorted(out)


def scratch_loss(recipe: TrainConfig, depth: int, steps: int) -> float:
    """The grid's trial: cosine from step 0 to T."""
    config = dataclasses.replace(recipe, total_tokens=steps * recipe.batch_tokens,
                                 eval_every_tokens=steps * recipe.batch_tokens)
    return train(shape_of(depth), config, prepare_data(DATA)).val_loss


def branched_losses(recipe: TrainConfig, depth: int, budgets: list[float], cooldown: float, shape_name: str,
                    min_lr_ratio: float) -> dict[int, float]:
    """One trunk, one branch per T: {T: the branch's final val_loss}."""
    shape, data, batch = shape_of(depth), prepare_data(DATA), recipe.batch_tokens
    points = branch_points(shape, budgets, cooldown)
    last_start = points[-1][1]
    # One warmup in tokens for the trunk and all its branches: 5% of the trunk's steps.
    warmup_tokens = int(recipe.warmup_fraction * last_start) * batch
    trunk = dataclasses.replace(recipe, total_tokens=last_start * batch, schedule="constant",
                                warmup_tokens=warmup_tokens, eval_every_tokens=last_start * batch,
                                eval_at_tokens=tuple(s * batch for _, s in points))
    with tempfile.TemporaryDirectory(prefix="branches-bench-") as scratch:
        kept = {}

        def keep(m, ckpt):  # the checkpoint folder is rewritten at every evaluation: copy it
            if ckpt and m.tokens in trunk.eval_at_tokens:
                kept[m.step] = shutil.copytree(ckpt, Path(scratch, f"step-{m.step}"))

        train(shape, trunk, data, checkpoint_dir=str(Path(scratch, "trunk")), on_eval=keep)
        losses = {}
        for steps, start in points:
            branch = dataclasses.replace(trunk, total_tokens=steps * batch, schedule="wsd",
                                         decay_fraction=cooldown, decay_shape=shape_name,
                                         min_lr_ratio=min_lr_ratio, eval_every_tokens=steps * batch,
                                         eval_at_tokens=())
            losses[steps] = train(shape, branch, data, start_from=str(kept[start])).val_loss
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--budgets", type=float, nargs="+", default=[8e11, 1.4e12])
    parser.add_argument("--cooldown", type=float, default=0.2)
    parser.add_argument("--shape", choices=("1-sqrt", "linear"), default="1-sqrt")
    parser.add_argument("--min-lr-ratio", type=float, default=RECIPE.min_lr_ratio)
    parser.add_argument("--lr", type=float, default=RECIPE.lr, help="peak lr of every run (the demo's: 3e-3)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    recipe = dataclasses.replace(RECIPE, lr=args.lr)
    prepare_data(DATA)  # the token cache, once, before the workers read it
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        trunks = {d: pool.submit(branched_losses, recipe, d, args.budgets, args.cooldown, args.shape,
                                 args.min_lr_ratio) for d in args.depths}
        scratch = {(d, steps): pool.submit(scratch_loss, recipe, d, steps) for d in args.depths
                   for steps, _ in branch_points(shape_of(d), args.budgets, args.cooldown)}
        branched = {d: f.result() for d, f in trunks.items()}
        diffs = []
        for (depth, steps), future in scratch.items():
            cosine, branch = future.result(), branched[depth][steps]
            diffs.append((branch - cosine) / cosine)
            params = shape_of(depth).param_counts()["total"]
            print(
                f"depth {depth} ({params} params), {steps} steps ({steps * RECIPE.batch_tokens / params:.1f} "
                f"tokens/param): branch {branch:.4f}, cosine from scratch {cosine:.4f}, {diffs[-1]:+.2%}"
            )
    print(
        f"{len(diffs)} pairs, lr {args.lr:g}, {args.cooldown:.0%} "
        f"{args.shape} cooldown to {args.min_lr_ratio:g} x peak, "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(
        f"worst pair: {max(diffs, key=abs):+.2%}; mean |difference|: {statistics.mean(map(abs, diffs)):.2%}"
    )
    print(f"branch vs scratch: {statistics.mean(diffs):+.2%}")


if __name__ == "__main__":
    main()
