"""The user's own model on the command line (issue 33): ``--model pkg.module:factory`` (called with the
``--model-arg key=value`` pairs) or ``--model hf:CONFIG.json`` (a Hugging Face config file, built with random
weights, never downloaded), and ``--example`` (the shape of one example, or a ``.pt`` file of inputs)."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initlab._errors import fail

if TYPE_CHECKING:
    from torch import nn

__all__ = ["example_shape", "is_user_model", "load_example", "load_model", "model_args"]

FACTORY = "a factory 'package.module:function' (called with the --model-arg pairs) or 'hf:CONFIG.json'"


def is_user_model(spec: str) -> bool:
    """Whether ``--model`` names the user's model (a factory or a Hugging Face config), not a built-in kind."""
    return ":" in spec


def model_args(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as keyword arguments: values read as Python literals (``64``, ``0.1``, ``True``,
    ``'relu'``), else as strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise fail("--model-arg takes key=value", accepted="a Python name, '=', a value (width=64)",
                       received=pair, fix="Write it as --model-arg width=64.")  # fmt: skip
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def load_model(spec: str, args: dict[str, Any]) -> nn.Module:
    """The module a factory returns, or a Hugging Face model built from a config file (random weights)."""
    from torch import nn

    if spec.startswith("hf:"):
        if args:
            raise fail("--model-arg is for factories; a Hugging Face config file holds every setting",
                       received=sorted(args), fix="Put the settings in the config file.")  # fmt: skip
        return _hugging_face(Path(spec[3:]))
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise fail("--model must name the user's model", accepted=FACTORY, received=spec,
                   fix="Write --model my_pkg.models:build.")  # fmt: skip
    try:
        module = importlib.import_module(where)
    except ImportError as error:
        raise fail(
            f"cannot import {where!r} ({error})",
            accepted=FACTORY,
            received=spec,
            fix="Run from the folder that holds the package, or install it (pip install -e .).",
        ) from error
    factory = getattr(module, name, None)
    if not callable(factory):
        raise fail(f"{where!r} has no function {name!r}", accepted=FACTORY, received=spec,
                   fix=f"Name a function of {where} that returns the model.")  # fmt: skip
    try:
        model = factory(**args)
    except Exception as error:  # the user's factory failed: said with its error, never a traceback of ours
        raise fail(
            f"{spec}({_shown(args)}) raised {type(error).__name__}: {error}",
            fix="Fix the factory or the --model-arg pairs it was called with.",
        ) from error
    if not isinstance(model, nn.Module):
        raise fail(f"{spec} must return a torch.nn.Module", received=type(model).__name__,
                   fix="Return the model from the factory.")  # fmt: skip
    return model


def _shown(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _hugging_face(path: Path) -> nn.Module:
    try:
        import transformers
    except ImportError as error:
        raise fail("--model hf:... needs the transformers package", fix="pip install 'initlab[transformers]'.") \
            from error  # fmt: skip
    try:
        config = transformers.AutoConfig.for_model(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError, KeyError) as error:
        raise fail(f"{path} is not a Hugging Face config ({error})",
                   accepted="a config.json with a model_type (as config.save_pretrained writes it)",
                   fix="Pass the config.json of the model.") from error  # fmt: skip
    architectures = getattr(config, "architectures", None) or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    return cls(config) if cls is not None else transformers.AutoModel.from_config(config)  # type: ignore[no-untyped-call]


def load_example(text: str | None, model: nn.Module, batch: int, seed: int) -> Any:
    """The input a command runs the model on: a ``.pt`` file of inputs (a tensor, a tuple, a dict), or the shape
    of one example (``3,32,32``: a standard-normal batch), or, without one, an input read off the model."""
    import torch

    from initlab.init.structure import example_input

    if text is None:
        found = example_input(model, batch=batch)
        if found is None:
            raise fail("no example input could be read off the model", fix="Pass --example 3,32,32 (the shape of "
                       "one example) or --example inputs.pt (a saved batch).")  # fmt: skip
        return found
    if text.endswith(".pt"):
        return torch.load(text, weights_only=True)
    return torch.randn(batch, *example_shape(text), generator=torch.Generator().manual_seed(seed))


def example_shape(text: str) -> tuple[int, ...]:
    """``--example 3,32,32``: the shape of one example."""
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise fail("--example takes the shape of one example or a .pt file of inputs",
                   accepted="positive sizes separated by commas (784 or 3,32,32), or a path ending in .pt",
                   received=text, fix="Pass --example 3,32,32.")  # fmt: skip
    return shape
