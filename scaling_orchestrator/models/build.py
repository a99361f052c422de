"""The one place a ModelShape becomes a module: its block's class (a registry of two)."""

from __future__ import annotations

import torch

from scaling_orchestrator.models.gpt import GPT
from scaling_orchestrator.models.llama import Llama
from scaling_orchestrator.models.shape import ModelShape

MODELS = {"gpt2": GPT, "llama": Llama}


def build_model(shape: ModelShape) -> torch.nn.Module:
    """GPT(shape) for block gpt2, Llama(shape) for block llama; initialised (under the caller's seed)."""
    return MODELS[shape.block](shape)


__all__ = ["MODELS", "build_model"]
