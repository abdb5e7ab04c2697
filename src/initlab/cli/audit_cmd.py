"""``initlab audit``: build a model (or load yours), initialize it, and compare theory with one real batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from initlab._errors import fail
from initlab.cli._common import ExampleOption, Format, FormatOption, ModelArgOption, emit, stdout, user_errors
from initlab.cli._user_model import is_user_model, load_example, load_model, model_args

if TYPE_CHECKING:
    from initlab.theory.audit import AuditReport


@user_errors
def audit_command(
    model: str = typer.Option(
        "mlp",
        help="Model kind: mlp or cnn; or your model: package.module:factory, or "
        "hf:CONFIG.json (then --example gives its input).",
    ),
    model_arg: list[str] = ModelArgOption,
    example: str | None = ExampleOption,
    depth: int = typer.Option(20, help="Hidden layers."),
    width: int = typer.Option(256, help="Hidden units (channels for cnn)."),
    activation: str = typer.Option("tanh", help="Activation of the hidden layers."),
    scheme: str | None = typer.Option(
        None,
        help="Initialization scheme (see `initlab schemes`); default "
        "glorot_uniform for mlp/cnn, your model's own initialization for yours.",
    ),
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

    scheme_given = scheme is not None
    scheme = scheme or "glorot_uniform"

    if batch_size < 2:  # a negative size sliced the data from the end: a batch nobody asked for
        raise fail("audit needs at least 2 examples to measure a variance", accepted="a batch of 2 or more",
                   received=batch_size, fix="Pass a larger batch (256 is a good size).")  # fmt: skip
    if is_user_model(model):  # as it is built (its own initialization), unless --scheme is given
        net = load_model(model, model_args(model_arg))
        batch = load_example(example, net, batch_size, seed)
        if scheme_given:
            initialize(net, scheme, generator=torch.Generator().manual_seed(seed), gain_from=gain_from, example=batch)
        _show(audit(net, batch), fmt)
        return
    dataset = load(data)
    net = build(ModelSpec(model, depth, width, activation, norm=norm), dataset.in_shape, dataset.classes)
    idx = torch.randperm(dataset.train_x.shape[0], generator=torch.Generator().manual_seed(seed))[:batch_size]
    batch = (dataset.train_x[idx], dataset.train_y[idx])
    initialize(
        net, scheme, generator=torch.Generator().manual_seed(seed), gain_from=gain_from, data=batch
    )  # lsuv's batch
    _show(audit(net, batch), fmt)


def _show(report: AuditReport, fmt: Format) -> None:
    emit(report, fmt)
    if fmt is Format.json:
        return
    stdout.print(f"first/last layer weight-gradient norm: {report.grad_norm_ratio:.3g}")
    for finding in report.findings:
        stdout.print(f"• {finding}")
