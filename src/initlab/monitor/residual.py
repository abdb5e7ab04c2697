"""The residual stream and attention, watched per block (issue 26, item 5).

For every module that performs residual additions (found once, by the structure layer's forward pass: the module
whose ``forward`` holds ``x + f(x)``), on recorded steps:

* ``stream_in`` / ``stream_out``: the std of the stream entering and leaving the block;
* ``branch_ratio`` (at each branch's last layer): the branch output's std relative to the stream entering its
  block, i.e. how much one branch adds;

and for every attention module that exposes its logits and probabilities as identity submodules ``logits`` and
``probs`` (initlab's :class:`~initlab.compare.transformer.CausalSelfAttention`):

* ``logit_std``: the std of the attention logits over the positions each query sees;
* ``entropy``: the mean entropy of each query's attention distribution as a fraction of its maximum log(t+1)
  (1: uniform, 0: collapsed onto one token), over the queries that see more than one position;
* ``entropy_1/d``: the same, predicted from the logits for µP's 1/d attention (logits ×1/√d_head), so that a
  remedy for collapsed attention is predicted before it is named.

Each hook reduces the first ``sample_rows`` examples of its tensor (8 when the monitor records every step, else
all: ``"auto"``) at once, on recorded steps only (the hooks are
attached when the monitor arms a step and removed after), and keeps a 0-d tensor; the record copies them to the
host together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from initlab.init._keras_model import is_keras_model
from initlab.init._walk import structure_of
from initlab.init.structure import Structure
from initlab.monitor._layers import inner_module
from initlab.monitor.probes import Host, Probe, SampleRows, resolve_rows, sample_rows_checked

__all__ = ["ResidualStream", "attention_entropy", "stream_layout"]


def stream_layout(model: nn.Module, any_model: bool = True,
                  structure: Structure | None = None) -> tuple[dict[str, list[str]], list[str]]:  # fmt: skip
    """``({block: [the last layer of each of its branches]}, [attention modules])`` in forward order: the blocks
    are the modules whose forward holds a residual addition (the structure layer's residuals), the attention
    modules those with ``logits`` and ``probs`` identities. Empty where the model has neither. With
    ``any_model=False`` only a model with such attention is watched; ``structure``: the model's, if known (else
    one forward pass on an example input finds it)."""
    attention = [name for name, m in model.named_modules()
                 if isinstance(getattr(m, "logits", None), nn.Identity) and isinstance(getattr(m, "probs", None),
                                                                                       nn.Identity)]  # fmt: skip
    if not (attention or any_model) or is_keras_model(model):
        return {}, attention
    structure = structure or structure_of(model)
    blocks: dict[str, list[str]] = {}
    for residual in structure.residuals:
        if residual.module:  # an addition in the model's own forward has no block to hook
            blocks.setdefault(residual.module, []).append(structure.owner(residual.last))
    return blocks, attention


def attention_entropy(probs: Tensor) -> Tensor:
    """Mean normalized entropy of causal attention rows ``(..., T, T)``: row t's entropy / log(t+1), over t ≥ 1."""
    t = probs.shape[-1]
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)  # (..., T)
    maximum = torch.arange(1, t + 1, device=probs.device, dtype=probs.dtype).log()
    return (entropy[..., 1:] / maximum[1:]).mean()


def _std(x: Tensor) -> Tensor:
    return x.detach().float().std()


class ResidualStream(Probe):
    """The residual stream's std per block, each branch's share, attention logit scale and entropy (module docs).

    The monitor's default probes include one: it watches the residual blocks of any model the structure layer
    sees, and attention of initlab's kind; ``any_model=False`` watches only models with such attention."""

    def __init__(self, sample_rows: SampleRows = "auto", any_model: bool = True) -> None:
        self.sample_rows, self.any_model = sample_rows_checked(sample_rows), any_model
        self._rows: int | None = 8
        self.blocks: dict[str, list[str]] = {}
        self.attention: list[str] = []
        self._values: dict[tuple[str, str], Tensor] = {}
        self._inputs: dict[str, Tensor] = {}  # the stream entering each block, this step
        self._handles: list[RemovableHandle] = []

    @property
    def active(self) -> bool:
        return bool(self.blocks or self.attention)

    def attach(self, monitor: Host) -> None:
        super().attach(monitor)
        self._rows = resolve_rows(self.sample_rows, 8, monitor)
        self.model = inner_module(monitor.model)
        self.blocks, self.attention = stream_layout(self.model, self.any_model, monitor.structure)

    def arm(self, on: bool) -> None:
        """Attach the hooks for a recorded step (``on``), or remove them."""
        if not on:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            return
        if self._handles:  # armed already
            return
        for block, branches in self.blocks.items():
            module = self.model.get_submodule(block)
            self._handles.append(module.register_forward_pre_hook(self._stream_in(block)))
            self._handles.append(module.register_forward_hook(self._stream_out(block)))
            for layer in branches:
                self._handles.append(self.model.get_submodule(layer).register_forward_hook(self._branch(block, layer)))
        for name in self.attention:
            module = self.model.get_submodule(name)
            scale = 1 / math.sqrt(getattr(module, "head_dim", 1))
            logits, probs = self.model.get_submodule(f"{name}.logits"), self.model.get_submodule(f"{name}.probs")
            self._handles.append(logits.register_forward_hook(self._logits(name, scale)))
            self._handles.append(probs.register_forward_hook(self._probs(name)))

    def _sample(self, x: Any) -> Tensor | None:
        if isinstance(x, tuple):
            x = x[0] if x else None
        if not isinstance(x, Tensor) or not torch.is_grad_enabled() or x.ndim == 0:
            return None
        return x.detach()[: self._rows].float()

    def _stream_in(self, block: str) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            x = self._sample(args)
            if x is not None:
                self._inputs[block] = s = _std(x)
                self._values[(block, "stream_in")] = s

        return hook

    def _stream_out(self, block: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            x = self._sample(output)
            if x is not None:
                self._values[(block, "stream_out")] = _std(x)

        return hook

    def _branch(self, block: str, layer: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            x = self._sample(output)
            stream = self._inputs.get(block)
            if x is not None and stream is not None:
                self._values[(layer, "branch_ratio")] = _std(x) / stream.clamp_min(1e-30)

        return hook

    def _logits(self, name: str, scale: float) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            x = self._sample(output)
            if x is None:
                return
            t = x.shape[-1]
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            self._values[(name, "logit_std")] = x[..., ~future].std()
            one_over_d = (x * scale).masked_fill(future, -math.inf).softmax(-1)
            self._values[(name, "entropy_1/d")] = attention_entropy(one_over_d)

        return hook

    def _probs(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            x = self._sample(output)
            if x is not None:
                self._values[(name, "entropy")] = attention_entropy(x)

        return hook

    def names(self) -> list[tuple[str, str]]:
        return list(self._values)

    def compute(self, step: int) -> list[float]:
        values = torch.stack(list(self._values.values())).tolist() if self._values else []
        self.discard()
        return values

    def discard(self) -> None:
        self._values.clear()
        self._inputs.clear()

    def detach(self) -> None:
        self.arm(False)
        self.discard()
