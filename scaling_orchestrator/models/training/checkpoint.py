"""Training checkpoints: one file per directory, replaced atomically at every evaluation.

A checkpoint holds everything the loop needs to continue bit-for-bit: model and optimizer
state, the step (which is also the data position, since batches are a function of
(seed, step)), the RNG states and the train-loss accumulator. It also records the shape, the
recipe and the data fingerprint, and resuming with a different one is refused: the losses
would no longer continue the same run.

Loading uses torch.load(weights_only=True): a checkpoint folder may come from shared storage,
and a full unpickle of a file someone else wrote runs their code. So everything saved is a
tensor, a number, a string or a container of those; numpy's RNG state (a uint32 array inside a
tuple, which the weights-only unpickler refuses) is stored as a tensor plus plain numbers.
"""

from __future__ import annotations

import dataclasses
import os
import random
import uuid
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"
# Fields that change speed, not results; a resume may change them.
RUNTIME_FIELDS = ("threads", "device", "compile", "keep_weights", "log_every_tokens")
# What a branch may change from its trunk's checkpoint: where it ends and how it decays there,
# and when it evaluates. The rest (lr, warmup, batch, optimizer, seed: the path up to the branch
# point) must match, or the branch would not continue the trunk's run.
BRANCH_FIELDS = RUNTIME_FIELDS + ("total_tokens", "schedule", "decay_fraction", "decay_shape", "min_lr_ratio",
                                  "eval_every_tokens", "eval_at_tokens")


def save_checkpoint(directory: str, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    loop_state: dict, shape, config, fingerprint: str) -> str:
    """Write directory/checkpoint.pt via a temporary file and os.replace; returns the directory."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "loop": dict(loop_state),
        "shape": dataclasses.asdict(shape),
        "config": dataclasses.asdict(config),
        "fingerprint": fingerprint,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "python": random.getstate(),
        },
    }
    tmp = folder / f"{CHECKPOINT_FILE}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)
    return str(folder)


def load_checkpoint(directory: str, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    shape, config, fingerprint: str, branch: bool = False) -> dict:
    """Restore model, optimizer and RNG states in place; returns the saved loop state.

    branch=False: resume the same run (only RUNTIME_FIELDS may differ). branch=True: start a
    branch from its trunk's checkpoint (BRANCH_FIELDS may differ; the argument is start_from)."""
    argument = "start_from" if branch else "resume_from"
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise ValueError(f"{argument}={directory!r}: no {CHECKPOINT_FILE} there; "
                         f"pass a directory written as checkpoint_dir")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    _check_same_run(payload, shape, config, fingerprint, directory,
                    BRANCH_FIELDS if branch else RUNTIME_FIELDS, argument)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    rng = payload["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(_numpy_state_from_plain(rng["numpy"]))
    random.setstate(rng["python"])
    return payload["loop"]


def _numpy_state_to_plain(state: tuple) -> dict:
    """np.random.get_state() = ('MT19937', 624 uint32 keys, pos, has_gauss, cached_gaussian);
    the keys go in an int64 tensor (uint32 values fit exactly)."""
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_plain(state: dict) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])


def _check_same_run(payload: dict, shape, config, fingerprint: str, directory: str,
                    may_differ: tuple[str, ...], argument: str) -> None:
    # A checkpoint written before a ModelShape field existed (block, n_kv_heads, ...) had its default.
    defaults = {f.name: f.default for f in dataclasses.fields(shape)}
    if {**defaults, **payload["shape"]} != dataclasses.asdict(shape):
        raise ValueError(f"{argument}={directory!r}: checkpoint shape {payload['shape']} differs from "
                         f"{dataclasses.asdict(shape)}; continue only the same model")
    saved, now = payload["config"], dataclasses.asdict(config)
    # A checkpoint written before a field existed ran with that field's default.
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name, value in now.items():
        was = saved.get(name, defaults[name])
        if name not in may_differ and _plain(was) != _plain(value):
            raise ValueError(f"{argument}={directory!r}: TrainConfig.{name}={value!r} but the checkpoint "
                             f"has {was!r}; only {may_differ} may differ")
    if payload["fingerprint"] != fingerprint:
        raise ValueError(f"{argument}={directory!r}: data fingerprint {fingerprint} differs from the "
                         f"checkpoint's {payload['fingerprint']}; continue with the same data")


def _plain(value):
    """Tuples and lists compare alike (a config may have come through JSON)."""
    return list(value) if isinstance(value, (list, tuple)) else value
