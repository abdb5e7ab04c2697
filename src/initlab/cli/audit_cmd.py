"""``initlab audit``: build a model, initialize it, and compare theory with one real batch."""

from __future__ import annotations

import typer

from initlab._errors import fail
from initlab.cli._common import Format, FormatOption, emit, stdout, user_errors


@user_errors
def audit_command(
    model: str = typer.Option("mlp", help="Model kind: mlp or cnn."),
    depth: int = typer.Option(20, help="Hidden layers."),
    width: int = typer.Option(256, help="Hidden units (channels for cnn)."),
    activation: str = typer.Option("tanh", help="Activation of the hidden layers."),
    scheme: str = typer.Option("glorot_uniform", help="Initialization scheme (see `initlab schemes`)."),
    gain_from: str = typer.Option(
        "published",
        "--gain-from",
        help="published: each scheme's own gain (its name's meaning); activation: "
        "the gain of the activation after each layer.",
    ),
    norm: str = typer.Option("none", help="none, batch or layer."),
    data: str = typer.Option("digits", help="Data set for the batch."),
    batch_size: int = typer.Option(256, "--batch-size", help="Examples in the measured batch."),
    seed: int = typer.Option(0, help="Seed of initialization and batch."),
    fmt: Format = FormatOption,
) -> None:
    """Measure one forward/backward pass beside the mean-field prediction, per layer, and say what it means."""
    import torch

    from initlab.compare.data import load
    from initlab.compare.models import ModelSpec, build
    from initlab.init.model import initialize
    from initlab.theory.audit import audit

    if batch_size < 2:  # a negative size sliced the data from the end: a batch nobody asked for
        raise fail("audit needs at least 2 examples to measure a variance", accepted="a batch of 2 or more",
                   received=batch_size, fix="Pass a larger batch (256 is a good size).")  # fmt: skip
    dataset = load(data)
    net = build(ModelSpec(model, depth, width, activation, norm=norm), dataset.in_shape, dataset.classes)
    idx = torch.randperm(dataset.train_x.shape[0], generator=torch.Generator().manual_seed(seed))[:batch_size]
    batch = (dataset.train_x[idx], dataset.train_y[idx])
    initialize(
        net, scheme, generator=torch.Generator().manual_seed(seed), gain_from=gain_from, data=batch
    )  # lsuv's batch
    report = audit(net, batch)
    if fmt is Format.json:
        emit(report, fmt)
        return
    emit(report, fmt)
    stdout.print(f"first/last layer weight-gradient norm: {report.grad_norm_ratio:.3g}")
    for finding in report.findings:
        stdout.print(f"• {finding}")
