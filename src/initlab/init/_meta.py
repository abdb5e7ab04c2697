"""Models built on the meta device (issue 31): ``initialize(model, scheme, device="cpu")`` gives each parameter and
buffer memory on ``device`` once every plan has been made and checked, parameter by parameter, so the host never
holds a second copy of the model, and tied weights stay tied (``Module.to_empty`` unties them: Hugging Face's
embedding and readout become two tensors). Buffers have values computed at construction, which the meta device
did not keep: a norm layer's running statistics are reset, a Hugging Face model's buffers (rotary frequencies) are
recomputed by its own ``_init_weights``; any other buffer is named in a note and a warning."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import torch
from torch import nn

from initlab._errors import fail

__all__ = ["check_meta", "is_sharded", "materialize", "meta_ghost", "sharded", "to_meta"]


def check_meta(model: nn.Module, device: Any) -> bool:
    """Whether the model has tensors on the meta device; refused without ``device=`` (issue 31: initialize reported
    stds for weights that did not exist and left every one on meta)."""
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if meta and device is None:
        raise fail(f"{len(meta)} parameter(s) of the model are on the meta device ({meta[0]}, ...): there is no "
                   "memory to draw the weights into", accepted="a model whose parameters hold memory, or device=",
                   fix="Pass device='cpu' (or 'cuda') to materialize it here, tied weights kept tied: "
                   "initlab.initialize(model, scheme, device='cpu').")  # fmt: skip
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise fail("device= must name a torch device", accepted="'cpu', 'cuda', 'cuda:1', a torch.device",
                       received=device, fix="Pass device='cpu'.") from error  # fmt: skip
    return bool(meta)


def materialize(model: nn.Module, device: Any) -> list[str]:
    """Give every meta parameter and buffer memory on ``device`` (contents undefined until drawn), keeping shared
    parameters shared; returns the notes. A sharded model (FSDP2's DTensors) is materialized by its own
    ``to_empty``, which keeps each rank to its shards."""
    if sharded(model):
        fresh = [(m, n) for m in model.modules() for n, b in m._buffers.items() if b is not None and b.is_meta]
        model.to_empty(device=device)
        return _fill_buffers(model, fresh)
    made: dict[int, nn.Parameter] = {}
    fresh = []
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and param.is_meta:
                if id(param) not in made:
                    made[id(param)] = nn.Parameter(torch.empty_like(param, device=device),
                                                   requires_grad=param.requires_grad)  # fmt: skip
                module._parameters[name] = made[id(param)]
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.is_meta:
                module._buffers[name] = torch.empty_like(buffer, device=device)
                fresh.append((module, name))
    return _fill_buffers(model, fresh)


def _fill_buffers(model: nn.Module, fresh: list[tuple[nn.Module, str]]) -> list[str]:
    """Give the buffers that were on meta their values: reset a norm's running statistics, or let a Hugging Face
    model compute its own (its ``_init_weights`` sets them; the parameters it also sets are drawn again after)."""
    left = []
    own_init = getattr(model, "_init_weights", None)
    done: set[int] = set()
    for module, name in fresh:
        if id(module) in done:
            continue
        done.add(id(module))
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_running_stats()
        elif callable(own_init):
            with torch.no_grad():
                own_init(module)
        else:
            left.append(name)
    if not left:
        return []
    message = (f"{len(left)} buffer(s) were on the meta device and have no rule to compute them ({left[0]}, ...): "
               "they hold no defined values; set them yourself before training.")  # fmt: skip
    warnings.warn(f"initlab.initialize: {message}", UserWarning, stacklevel=4)
    return [message]


def meta_ghost(model: nn.Module) -> nn.Module:
    """A stand-in for a sharded model (FSDP2) to read its structure from: the same modules and names, each
    parameter a meta tensor of its whole shape (tied ones still shared), buffers on meta, and no hooks (FSDP2's
    gather the shards: running the model itself would move every parameter across the ranks, ~10 s for 1.6 GB over
    gloo, and hold gathered copies in memory). FSDP2's classes are traded for the modules' own."""
    made: dict[int, nn.Parameter] = {}

    def ghost(module: nn.Module) -> nn.Module:
        copy: nn.Module = object.__new__(_own_class(type(module)))
        copy.__dict__.update(module.__dict__)
        copy._parameters = {
            name: None if p is None else _meta_parameter(p, made) for name, p in module._parameters.items()
        }
        copy._buffers = {name: None if b is None else torch.empty(b.shape, dtype=b.dtype, device="meta")
                         for name, b in module._buffers.items()}  # fmt: skip
        copy._modules = {name: None if m is None else ghost(m) for name, m in module._modules.items()}
        for hooks in ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks"):
            setattr(copy, hooks, type(getattr(module, hooks))())
        copy._forward_pre_hooks_with_kwargs, copy._forward_hooks_with_kwargs = {}, {}
        copy._forward_hooks_always_called = {}
        return copy

    return ghost(model)


def _meta_parameter(param: torch.Tensor, made: dict[int, nn.Parameter]) -> nn.Parameter:
    if id(param) not in made:
        made[id(param)] = nn.Parameter(torch.empty(param.shape, dtype=param.dtype, device="meta"),
                                       requires_grad=param.requires_grad)  # fmt: skip
    return made[id(param)]


def _own_class(cls: type) -> type:
    """The module's own class under FSDP2's (``fully_shard`` swaps in a subclass of FSDPModule and it)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    sharded = getattr(fsdp, "FSDPModule", None)
    if sharded is None or not issubclass(cls, sharded):
        return cls
    return next(c for c in cls.__mro__ if issubclass(c, nn.Module) and not issubclass(c, sharded))


def to_meta(example: Any) -> Any:
    """An example's tensors on the meta device, where a model built there (or a stand-in) runs: no memory, and no
    values are needed to read a structure."""
    return torch.utils._pytree.tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, example)


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether a tensor is a DTensor (FSDP2, tensor parallelism). Looked up only where torch.distributed.tensor was
    imported: none can exist otherwise, and importing it costs start-up time."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def sharded(model: nn.Module) -> bool:
    """Whether any of the model's parameters is sharded (FSDP2's ``fully_shard``)."""
    return any(is_sharded(p) for p in model.parameters())
