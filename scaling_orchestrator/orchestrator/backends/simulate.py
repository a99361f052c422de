"""The simulate backend: a trial whose losses are drawn from a known law, in milliseconds.

For rehearsing a design (how many FLOPs an adaptive study spends to pin N* down, whether a
1,000-trial plan runs through the cluster, store and fits) before any GPU is spent. Its rows
say backend "simulate" and the report says SIMULATED in its title: nothing it produces is a
measurement of training.

The spec section `simulate: {law: chinchilla, params: {E, A, B, alpha, beta}, noise: 0.01,
seed: 0}` (checked by spec/sections/simulate.py) names a law form of the analysis registry and its
constants. A trial of N total parameters trained on D tokens then reports, at each evaluation
the real loop would make (the same cadence: eval_every_steps, eval_at_tokens, the last step):

    L(T) = min(ln V, L_law(N, T) + ANNEAL_GAP (lr(T) - lr_end) / lr_peak (L_law(N, T) - floor))
           x exp(noise z),   z ~ N(0, 1) drawn once per run from (seed, trial id)

(A curve law, `simulate: {law: multi_power, params: {E, A_N, alpha_N, A, alpha, B, C, beta,
gamma}}`, draws L(T) from the law itself under the trial's own schedule, the recipe's lr_at
arithmetic: a trunk's constant LR, a branch's cooldown, a grid run's cosine; see
analysis/laws/curves.)
so the final loss is exactly the law's L(N, D) times the run's log-normal factor, and the
curve above it is shaped by the schedule: a constant LR leaves no gap, a cosine closes it as
the LR anneals, a WSD run drops in its decay (Hagele et al. 2024 Fig. 3). Worked number:
Chinchilla's law at N = 1e8, T = 1e9 gives 3.06; mid-cosine (lr = 0.55 peak, end 0.1 peak)
adds 0.1 x 0.45 x (3.06 - 1.82) = 0.056.

Checkpoints are a tiny JSON state (step, wall clock, the last Measurement, the run's noise
draw) written atomically, so resume_from and start_from (a branch from its trunk) behave as
the real loop's: a run resumed at step k reports the same losses from k on, and a branch
continues its trunk's count and its trunk's noise draw. No torch is imported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import uuid
from pathlib import Path

import numpy as np

from scaling_orchestrator.analysis.laws.curves.fit import CURVE_LAWS, curve_law_loss
from scaling_orchestrator.analysis.laws.curves.schedule import recipe_lr
from scaling_orchestrator.analysis.laws.registry import law_form
from scaling_orchestrator.models.training.config import Measurement, TrainConfig, eval_steps, lr_at

STATE_FILE = "simulate_state.json"
ANNEAL_GAP = 0.1          # reducible loss 10% above the annealed law at peak LR


def law_loss(simulate: dict, params: float, tokens) -> np.ndarray:
    """The law's loss (nats/token) at N params and D tokens, noise-free."""
    form = law_form(simulate["law"])
    with np.errstate(all="ignore"):
        return np.asarray(form.predict_values(simulate["params"], float(params),
                                              np.asarray(tokens, float)), float)


def loss_floor(simulate: dict) -> float:
    """The law's irreducible loss (E for Chinchilla), 0 for a form without one."""
    name = law_form(simulate["law"]).loss_floor
    return float(simulate["params"][name]) if name else 0.0


def run_noise(simulate: dict, trial_id: str) -> float:
    """The run's log-loss offset: noise x z, z drawn from (simulate seed, trial id)."""
    rng = np.random.default_rng([int(simulate.get("seed", 0)), int(trial_id, 16)])
    return float(simulate.get("noise", 0.0)) * float(rng.standard_normal())


def curve_loss(simulate: dict, params: float, config: TrainConfig, step: int,
               vocab_size: int, log_noise: float) -> float:
    """L(T) of the module doc at optimizer step `step` (T = step x batch_tokens); a curve law
    (lr_annealing, multi_power) draws it under the trial's own schedule instead."""
    if simulate["law"] in CURVE_LAWS:
        eta = recipe_lr(config.total_steps, config.lr, config.schedule, warmup_steps=config.warmup_steps,
                        min_lr_ratio=config.min_lr_ratio, decay_fraction=config.decay_fraction,
                        decay_shape=config.decay_shape)
        loss = float(curve_law_loss(simulate["law"], simulate["params"], params, eta, [max(step, 1)])[0])
        return min(loss, math.log(vocab_size)) * math.exp(log_noise)
    tokens = max(step, 1) * config.batch_tokens
    law = float(law_loss(simulate, params, tokens))
    peak = config.lr
    end = lr_at(config.total_steps - 1, config)
    gap = ANNEAL_GAP * max(lr_at(max(step - 1, 0), config) - end, 0.0) / peak
    loss = law + gap * max(law - loss_floor(simulate), 0.0)
    return min(loss, math.log(vocab_size)) * math.exp(log_noise)


def read_state(directory: str) -> dict:
    path = Path(directory) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a simulate checkpoint ({exc})") from None


def write_state(directory: str, state: dict) -> str:
    """state as directory/simulate_state.json via a temporary file and os.replace."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{STATE_FILE}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, folder / STATE_FILE)
    return str(folder)


def _start(spec, config: TrainConfig, resume_from: str | None, start_from: str | None) -> dict:
    """The state to continue from: this run's checkpoint, else its trunk's, else step 0."""
    fresh = {"step": 0, "wall_seconds": 0.0, "last": None,
             "log_noise": run_noise(spec.simulate, spec.trial_id)}
    source = resume_from or start_from
    if not source:
        return fresh
    state = read_state(source)
    if state.get("shape") != dataclasses.asdict(spec.shape):
        raise ValueError(f"{source}: the checkpoint is of another model shape")
    if resume_from:
        return state
    if state["step"] >= config.total_steps:
        raise ValueError(f"start_from={start_from!r}: the checkpoint is at step {state['step']}, "
                         f"not before this run's last step {config.total_steps}")
    return {**state, "last": None}


def simulate_train(spec, config: TrainConfig, *, on_eval=None, checkpoint_dir: str | None = None,
                   resume_from: str | None = None, start_from: str | None = None,
                   on_curve=None) -> Measurement:
    """scaling_orchestrator.models.training.loop.train's contract, the losses drawn from spec.simulate
    (module doc): on_eval(Measurement, checkpoint dir or None) per evaluation, returns the final
    one; on_curve(points) before each evaluation, the curve of L(T) every log_every_steps."""
    state = _start(spec, config, resume_from, start_from)
    if state["last"] is not None and state["step"] >= config.total_steps:
        last = Measurement(**state["last"])  # resumed at the end: report it again
        if on_eval is not None:
            on_eval(last, resume_from)
        return last
    params = float(spec.shape.param_counts()["total"])
    per_token, per_token_6n = spec.shape.flops_per_token(), spec.shape.flops_per_token_6n()
    began, previous, result = time.perf_counter() - state["wall_seconds"], state["step"], None
    for step in eval_steps(config, state["step"]):
        val = curve_loss(spec.simulate, params, config, step, spec.shape.vocab_size, state["log_noise"])
        middle = (previous + step) // 2 or 1  # the interval's mean, read at its midpoint
        train = curve_loss(spec.simulate, params, config, middle, spec.shape.vocab_size, state["log_noise"])
        wall = time.perf_counter() - began
        tokens = step * config.batch_tokens
        result = Measurement(
            step=step,
            tokens=tokens,
            flops=tokens * per_token,
            flops_6n=tokens * per_token_6n,
            train_loss=train,
            val_loss=val,
            val_bpb=math.nan,
            lr_now=lr_at(step - 1, config),
            wall_seconds=wall,
            tokens_per_second=(step - previous)
            * config.batch_tokens
            / max(wall - state["wall_seconds"], 1e-9),
            final=step == config.total_steps,
            status="ok",
        )
        state = {
            **state,
            "step": step,
            "wall_seconds": wall,
            "last": dataclasses.asdict(result),
            "shape": dataclasses.asdict(spec.shape),
        }
        ckpt = write_state(checkpoint_dir, state) if checkpoint_dir else None
        if on_curve is not None:
            on_curve(curve_points(spec, config, params, state["log_noise"], previous, step,
                                  result.tokens_per_second))
        if on_eval is not None:
            on_eval(result, ckpt)
        previous = step
    return result


def curve_points(spec, config: TrainConfig, params: float, log_noise: float, after: int, upto: int,
                 tokens_per_second: float) -> list[dict]:
    """The curve points (models/training/curves.py) of steps after..upto: L(T) at each multiple
    of log_every_steps, the LR the step ran at; nothing is measured, so no grad norm or MFU."""
    every = config.log_every_steps
    return [{"step": s, "tokens": s * config.batch_tokens, "lr": lr_at(s - 1, config),
             "train_loss": curve_loss(spec.simulate, params, config, s, spec.shape.vocab_size, log_noise),
             "grad_norm": None, "tokens_per_second": tokens_per_second, "mfu": None}
            for s in range((after // every + 1) * every, upto + 1, every)]
