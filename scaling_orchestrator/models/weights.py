"""A trained model as files: `model.safetensors` (fp32 tensors by parameter name) and
`config.json` (the shape, the block, the vocabulary and where the tokenizer comes from).

safetensors holds tensors only, so a folder from shared storage cannot run code when loaded
(unlike a pickle). A tied output head is the token table: its tensor is stored once, under
`token_embedding.weight`, and tied again on load. `load_model(folder)` rebuilds the module
through build_model, so a kept gpt2 or llama model reloads without the run that trained it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from scaling_orchestrator.models.build import build_model
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.checkpoint import CHECKPOINT_FILE

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "scaling-orchestrator-weights/1"
TIED_NAME = "lm_head.weight"  # the token table's second name when embeddings are tied


def checkpoint_state(checkpoint_dir: str) -> dict[str, torch.Tensor]:
    """The model's tensors from a training checkpoint folder (models/training/checkpoint.py)."""
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def weights_config(shape: ModelShape, **extra) -> dict:
    """config.json: the format, block, shape (every ModelShape field), vocab, counts, and extra
    (the trial id, the tokenizer reference: DataSpec's corpus, tokenizer and vocab_size)."""
    return {
        "format": FORMAT,
        "block": shape.block,
        "shape": dataclasses.asdict(shape),
        "vocab_size": shape.vocab_size,
        "params": shape.param_counts()["total"],
        "dtype": "float32",
        **extra,
    }


def write_weights(folder: str | Path, state: dict[str, torch.Tensor], shape: ModelShape, **extra) -> int:
    """model.safetensors and config.json into folder (created); returns the weight file's bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: t.detach().to("cpu", torch.float32).contiguous()
        for name, t in state.items()
        if not (shape.tied_embeddings and name == TIED_NAME)
    }
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    (folder / CONFIG_FILE).write_text(json.dumps(weights_config(shape, **extra), indent=1, sort_keys=True))
    return (folder / WEIGHTS_FILE).stat().st_size


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: no {CONFIG_FILE}; a kept model's folder holds {WEIGHTS_FILE} and it")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path}: format {config.get('format')!r}, expected {FORMAT!r}")
    return config


def load_model(folder: str | Path) -> tuple[torch.nn.Module, dict]:
    """(the module with its kept weights, in eval mode; config.json)."""
    config = read_config(folder)
    shape = ModelShape(**config["shape"])
    with torch.device("meta"):  # no init draws: every tensor is replaced by the file's
        model = build_model(shape)
    state = load_file(str(Path(folder) / WEIGHTS_FILE))
    if shape.tied_embeddings:
        state[TIED_NAME] = state["token_embedding.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if shape.tied_embeddings:
        model.lm_head.weight = model.token_embedding.weight
    return model.eval(), config


__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "checkpoint_state", "load_model", "read_config", "write_weights"]
