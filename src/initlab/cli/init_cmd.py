"""``initlab init``: build a model, initialize it with a scheme and print the InitReport."""

from __future__ import annotations

import typer

from initlab.cli._common import Format, FormatOption, emit, user_errors


@user_errors
def init_command(
    model: str = typer.Option("mlp", help="Model kind: mlp, cnn or rnn."),
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
    fmt: Format = FormatOption,
) -> None:
    """Initialize a model and show, per layer, its fans, scheme, std, gain and the activation it feeds."""
    import torch

    from initlab.compare.models import ModelSpec, build
    from initlab.init.model import initialize
    from initlab.init.registry import get

    spec = ModelSpec(model, depth, width, activation, residual=residual != "none")
    in_shape = (in_features,) if model == "mlp" else (1, 8, 8) if model == "cnn" else (8, in_features)
    net = build(spec, in_shape, classes)
    needs_data = get(scheme).scheme.needs_data  # lsuv: this command has no data set, so standard-normal inputs
    inputs = torch.randn(512, *in_shape, generator=torch.Generator().manual_seed(seed)) if needs_data else None
    report = initialize(
        net,
        scheme,
        generator=torch.Generator().manual_seed(seed),
        residual=None if residual == "none" else residual,
        gain_from=gain_from,
        data=inputs,
    )
    if needs_data:
        report.notes.append(f"{scheme} was calibrated on 512 standard-normal inputs (initlab init has no data); "
                            f"initlab run and sweeps calibrate it on the training data.")  # fmt: skip
    emit(report, fmt)
