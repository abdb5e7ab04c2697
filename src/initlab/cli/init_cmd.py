"""``initlab init``: build a model, initialize it with a scheme and print the InitReport."""

from __future__ import annotations

from pathlib import Path

import typer

from initlab.cli._common import ExampleOption, Format, FormatOption, ModelArgOption, emit, user_errors
from initlab.cli._user_model import is_user_model, load_example, load_model, model_args
from initlab.cli.verify_cmd import write_state_dict


@user_errors
def init_command(
    model: str = typer.Option(
        "mlp", help="Model kind: mlp, cnn or rnn; or your model: package.module:factory, or hf:CONFIG.json."
    ),
    model_arg: list[str] = ModelArgOption,
    example: str | None = ExampleOption,
    depth: int = typer.Option(20, help="Hidden layers."),
    width: int = typer.Option(256, help="Hidden units (channels for cnn)."),
    activation: str = typer.Option("relu", help="Activation of the hidden layers."),
    scheme: str = typer.Option("he_normal", help="Initialization scheme (see `initlab schemes`)."),
    gain_from: str = typer.Option(
        "published",
        "--gain-from",
        help="published: each scheme's own gain (its name's meaning); activation: "
        "the gain of the activation after each layer.",
    ),
    in_features: int = typer.Option(64, help="Input features (8×8 digits: 64)."),
    classes: int = typer.Option(10, help="Output classes."),
    residual: str = typer.Option(
        "none", help="Residual rule: none, zero_last, fixup, scaled (×1/√branches, GPT-2) or deepnorm."
    ),
    seed: int = typer.Option(0, help="Seed of the generator."),
    save: Path | None = typer.Option(
        None,
        help="Write the initialized weights there: a state dict (.pt, or .safetensors), which `initlab verify` reads.",
    ),
    fmt: Format = FormatOption,
) -> None:
    """Initialize a model (a built-in kind, or yours with --model) and show, per layer, its fans, scheme, std, gain
    and the activation it feeds."""
    import torch

    from initlab.compare.models import ModelSpec, build
    from initlab.init.model import initialize
    from initlab.init.registry import get

    needs_data = get(scheme).scheme.needs_data  # lsuv: this command has no data set, so standard-normal inputs
    if is_user_model(model):  # its structure is read from a pass on --example (or an input read off the model)
        net = load_model(model, model_args(model_arg))
        inputs = load_example(example, net, 512 if needs_data else 2, seed)
    else:
        spec = ModelSpec(model, depth, width, activation, residual=residual != "none")
        in_shape = (in_features,) if model == "mlp" else (1, 8, 8) if model == "cnn" else (8, in_features)
        net = build(spec, in_shape, classes)
        inputs = torch.randn(512, *in_shape, generator=torch.Generator().manual_seed(seed)) if needs_data else None
    report = initialize(
        net,
        scheme,
        generator=torch.Generator().manual_seed(seed),
        residual=None if residual == "none" else residual,
        gain_from=gain_from,
        data=inputs if needs_data else None,
        example=inputs if is_user_model(model) and not needs_data else None,
    )
    if needs_data:
        report.notes.append(f"{scheme} was calibrated on 512 standard-normal inputs (initlab init has no data); "
                            f"initlab run and sweeps calibrate it on the training data.")  # fmt: skip
    if save is not None:
        write_state_dict(net, save)
    emit(report, fmt)
