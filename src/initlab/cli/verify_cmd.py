"""``initlab verify CHECKPOINT``: does a saved model carry the initialization it was meant to (``--scheme``), and
which one does each weight carry (without ``--scheme``)? Exit 0 when every parameter matches its plan, 1 when one
does not, 2 on bad input."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from initlab._errors import fail
from initlab.cli._common import ExampleOption, Format, FormatOption, ModelArgOption, emit, user_errors
from initlab.cli._user_model import FACTORY, is_user_model, load_example, load_model, model_args

if TYPE_CHECKING:
    from torch import Tensor, nn

LAYOUT_NOTE = ("without --model the structure is read off the names and shapes: a 2-D weight as a Linear (out, in), "
               "3-D to 5-D as a convolution, a 1-D weight as a norm's scale; pass --model for the model's own "
               "(embeddings, (in, out) layouts, residual branches)")  # fmt: skip


@user_errors
def verify_command(
    checkpoint: Path = typer.Argument(..., help="A state dict: a torch .pt/.pth/.bin file or a .safetensors file."),
    scheme: str | None = typer.Option(
        None, help="The scheme the weights should carry (see `initlab schemes`); without it, identify each weight."
    ),
    model: str | None = typer.Option(None, help=f"The model the checkpoint belongs to: {FACTORY}."),
    model_arg: list[str] = ModelArgOption,
    example: str | None = ExampleOption,
    residual: str = typer.Option("none", help="The residual rule the initialization used (as in `initlab init`)."),
    gain_from: str = typer.Option("published", "--gain-from", help="published or activation (as in `initlab init`)."),
    fmt: Format = FormatOption,
) -> None:
    """Check a checkpoint's parameters against the plan a scheme makes for them (exit 1 where one differs), or
    name, for each weight, the schemes and defaults its values are consistent with, or that it looks trained."""
    from initlab.init.identify import identify
    from initlab.init.verify import verify

    state = read_state_dict(checkpoint)
    if model is not None and not is_user_model(model):
        raise fail("--model names your model", accepted=FACTORY, received=model,
                   fix="Write --model my_pkg.models:build, or leave it out.")  # fmt: skip
    net = load_model(model, model_args(model_arg)) if model else stand_in(state)
    if model:
        _load(net, state)
    inputs = load_example(example, net, 2, 0) if model and example else None
    if scheme is None:
        report: Any = identify(net, example=inputs)
    else:
        report = verify(net, scheme, residual=None if residual == "none" else residual, gain_from=gain_from,
                        example=inputs)  # fmt: skip
    if not model:  # the stand-in cannot run: its structure is its layer types, which the note says
        report.notes = [n for n in report.notes if "structure" not in n] + [LAYOUT_NOTE]
    emit(report, fmt)
    if scheme is not None and not report.ok:
        raise typer.Exit(1)


def write_state_dict(model: nn.Module, path: Path) -> None:
    """Save a model's state dict as ``read_state_dict`` reads it: safetensors for ``.safetensors``, else torch."""
    import torch

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import save_file
        except ImportError as error:
            raise fail("writing .safetensors needs the safetensors package",
                       fix="pip install 'initlab[verify]', or save to a .pt path.") from error  # fmt: skip
        save_file(state, str(path))  # tied weights are one tensor under two names: each name gets a copy
        return
    torch.save(state, path)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint: a ``.safetensors`` file, or a torch file holding a state dict (or a dict with
    one under ``state_dict``/``model``, as Lightning and many training scripts save it)."""
    import torch

    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise fail("reading .safetensors needs the safetensors package",
                       fix="pip install 'initlab[verify]' (or pip install safetensors).") from error  # fmt: skip
        return dict(load_file(str(path)))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise fail(f"{path} is not a torch checkpoint initlab can read ({str(error).splitlines()[0][:100]})",
                   accepted="a file torch.save wrote holding tensors (read with weights_only=True: no code from the "
                   "file is run), or a .safetensors file",
                   fix="Save the weights alone with torch.save(model.state_dict(), path).") from error  # fmt: skip
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)} if isinstance(loaded, dict) else {}
    if not tensors:
        raise fail(f"{path} holds no state dict", accepted="a dict of parameter names to tensors",
                   received=type(loaded).__name__,
                   fix="Save the weights with torch.save(model.state_dict(), path).")  # fmt: skip
    return tensors


def _load(net: nn.Module, state: dict[str, Tensor]) -> None:
    fix = "Pass the factory (and --model-arg) that built the model the checkpoint was saved from."
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that differ
        raise fail(f"the checkpoint does not fit the --model: {str(error).splitlines()[-1].strip()[:200]}",
                   fix=fix) from error  # fmt: skip
    if result.missing_keys or result.unexpected_keys:
        missing, unexpected = result.missing_keys[:5], result.unexpected_keys[:5]
        raise fail("the checkpoint does not fit the --model", received=f"missing {missing}, unexpected {unexpected}",
                   fix=fix)  # fmt: skip


def stand_in(state: dict[str, Tensor]) -> nn.Module:
    """A model read off a state dict's names and shapes (:data:`LAYOUT_NOTE`), holding its tensors."""
    from torch import nn

    root = nn.Module()
    for name, tensor in state.items():
        owner, _, pname = name.rpartition(".")
        if pname == "bias" and f"{owner}.weight" in state:
            continue  # set with its weight
        module = _layer(tensor, state.get(f"{owner}.bias")) if pname == "weight" else None
        parent, leaf = _parent(root, owner if module is not None else name)
        if module is None:
            parent.register_parameter(leaf, nn.Parameter(tensor, requires_grad=tensor.is_floating_point()))
        else:
            parent.add_module(leaf, module)
    return root


def _layer(weight: Tensor, bias: Tensor | None) -> nn.Module | None:
    from torch import nn

    with_bias = bias is not None
    if weight.ndim == 2:
        layer: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=with_bias, device="meta")
    elif 3 <= weight.ndim <= 5:
        conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[weight.ndim]
        kernel: Any = tuple(weight.shape[2:])
        layer = conv(weight.shape[1], weight.shape[0], kernel, bias=with_bias, device="meta")
    elif weight.ndim == 1:
        layer = nn.LayerNorm(weight.shape[0], bias=with_bias, device="meta")
    else:
        return None
    layer.load_state_dict({"weight": weight, **({"bias": bias} if bias is not None else {})}, assign=True)
    return layer


def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module that holds ``name`` (made where missing), and the last part of the name."""
    from torch import nn

    *path, leaf = name.split(".")
    module = root
    for part in path:
        child = module._modules.get(part)
        if child is None:
            child = nn.Module()
            module.add_module(part, child)
        module = child
    return module, leaf
