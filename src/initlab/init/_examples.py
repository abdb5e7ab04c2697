"""An input a model takes, read off the model (for the structure layer's one forward pass)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["example_input"]


def example_input(model: nn.Module, batch: int = 2, length: int = 8) -> Any:
    """An input the model takes, read off the model where it says enough: a Hugging Face model's
    ``dummy_inputs``; token ids for a model whose first weight layer is an embedding; ``(batch, in_features)``
    for a Linear; ``(batch, channels, 16, ...)`` for a conv; ``(batch, length, features)`` for an RNN. None where
    nothing says. Drawn from a generator of its own: torch's global random state is not touched."""
    hf = _hugging_face_example(model, batch)
    if hf is not None:
        return hf
    first = next((m for m in model.modules() if isinstance(m, _FIRST)), None)
    if first is None:
        return None
    device = next(first.parameters()).device
    g = torch.Generator().manual_seed(0)
    if isinstance(first, nn.Embedding):
        return torch.randint(0, first.num_embeddings, (batch, length), generator=g).to(device)
    if isinstance(first, nn.Linear):
        shape: tuple[int, ...] = (batch, first.in_features)
    elif isinstance(first, nn.modules.conv._ConvNd):
        shape = (batch, first.in_channels, *([16] * len(first.kernel_size)))
    else:
        assert isinstance(first, nn.RNNBase)
        shape = (batch, length, first.input_size) if first.batch_first else (length, batch, first.input_size)
    return torch.randn(shape, generator=g).to(device)


_FIRST = (nn.Embedding, nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase)


def _hugging_face_example(model: nn.Module, batch: int) -> dict[str, Tensor] | None:
    """A Hugging Face model's input, by its ``main_input_name``: its ``dummy_inputs`` for token ids, images of the
    config's size (32 where it has none) for ``pixel_values``."""
    main, config = getattr(model, "main_input_name", None), getattr(model, "config", None)
    if main is None or config is None:
        return None
    device = next(model.parameters()).device
    if main == "pixel_values":
        size = getattr(config, "image_size", 32)
        size = size if isinstance(size, int) else 32
        g = torch.Generator().manual_seed(0)
        pixels = torch.randn(batch, getattr(config, "num_channels", 3), size, size, generator=g)
        return {"pixel_values": pixels.to(device)}
    dummy = getattr(model, "dummy_inputs", None)
    if main == "input_ids" and isinstance(dummy, Mapping) and dummy:  # 2 × 4 tokens: the pass costs little
        return {k: v[:batch, :4].to(device) if v.ndim == 2 else v.to(device) for k, v in dummy.items()}
    return None
