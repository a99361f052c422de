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
RUNTIME_FIELDS = ("threads", "device", "compile")


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
                    shape, config, fingerprint: str) -> dict:
    """Restore model, optimizer and RNG states in place; returns the saved loop state."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise ValueError(f"resume_from={directory!r}: no {CHECKPOINT_FILE} there; "
                         f"pass a directory written as checkpoint_dir")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    _check_same_run(payload, shape, config, fingerprint, directory)
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


def _check_same_run(payload: dict, shape, config, fingerprint: str, directory: str) -> None:
    if payload["shape"] != dataclasses.asdict(shape):
        raise ValueError(f"resume_from={directory!r}: checkpoint shape {payload['shape']} differs from "
                         f"{dataclasses.asdict(shape)}; resume only the same run")
    saved, now = payload["config"], dataclasses.asdict(config)
    for name, value in now.items():
        if name not in RUNTIME_FIELDS and saved.get(name) != value:
            raise ValueError(f"resume_from={directory!r}: TrainConfig.{name}={value!r} but the checkpoint "
                             f"has {saved.get(name)!r}; only {RUNTIME_FIELDS} may change on resume")
    if payload["fingerprint"] != fingerprint:
        raise ValueError(f"resume_from={directory!r}: data fingerprint {fingerprint} differs from the "
                         f"checkpoint's {payload['fingerprint']}; resume with the same data")
