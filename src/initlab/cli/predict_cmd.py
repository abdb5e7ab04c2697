"""``initlab predict``: mean-field theory for one activation and (σ_w², σ_b²), with the phase diagram; or, with
``--model``, the per-value prediction through the user's own model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from initlab.cli._common import ExampleOption, Format, FormatOption, ModelArgOption, emit, stderr, user_errors

if TYPE_CHECKING:
    from initlab.init.activations import Activation
    from initlab.theory.meanfield import LayerTheory


@user_errors
def predict_command(
    activation: str = typer.Option("tanh", help="Activation: relu, tanh, gelu, selu, sigmoid, … (any name)."),
    weight_var: float = typer.Option(1.0, "--weight-var", help="σ_w²: weight variance × fan_in."),
    bias_var: float = typer.Option(0.0, "--bias-var", help="σ_b²: bias variance."),
    depth: int = typer.Option(20, help="Layers for the per-layer profile."),
    input_var: float = typer.Option(1.0, "--input-var", help="Variance of the inputs."),
    plot: Path | None = typer.Option(None, help="Write the phase diagram to this image file (.png, .svg)."),
    model: str | None = typer.Option(
        None,
        help="Your model: package.module:factory, or hf:CONFIG.json (then the prediction runs through it, per value).",
    ),
    model_arg: list[str] = ModelArgOption,
    example: str | None = ExampleOption,
    fmt: Format = FormatOption,
) -> None:
    """Predict, before training, how signal and gradients propagate, and where the net sits on the phase
    diagram (ordered: vanishing; chaotic: exploding; critical: trainable deep). With --model, through your
    model, value by value, from its current weights."""
    from initlab.init.activations import activation as resolve
    from initlab.theory import meanfield as mf

    if model is not None:
        _through(model, model_arg, example, input_var, fmt)
        return

    act = resolve(activation)
    q_star = mf.fixed_point(act, weight_var, bias_var)
    chi = mf.chi1(act, weight_var, bias_var)
    scales = mf.depth_scales(act, weight_var, bias_var)
    profile = mf.layer_profile(act, weight_var, bias_var, depth, input_var)
    result = {
        "activation": act.name, "weight_var": weight_var, "bias_var": bias_var, "q_star": q_star, "chi1": chi,
        "phase": mf.phase(chi), "xi_q": scales.xi_q, "xi_c": scales.xi_c,
        "trainable_depth": scales.trainable_depth, "critical_weight_var": _critical(act, bias_var),
        "layers": [vars(r) for r in profile],
    }  # fmt: skip
    if plot is not None:
        _plot(act.name, weight_var, bias_var, depth, plot)
    if fmt is Format.json:
        emit({k: _json_float(v) for k, v in result.items()}, fmt)
    else:
        emit(_table(result, profile), fmt)


def _through(spec: str, pairs: list[str], example: str | None, input_var: float, fmt: Format) -> None:
    from initlab.cli._user_model import example_shape, load_example, load_model, model_args
    from initlab.theory.propagate import predict

    net = load_model(spec, model_args(pairs))
    if example is not None and not example.endswith(".pt"):  # a shape: the Gaussian input predict assumes
        emit(predict(net, example_shape(example), input_var), fmt)
        return
    emit(predict(net, load_example(example, net, 2, 0), input_var), fmt)


def _critical(act: Activation, bias_var: float) -> float | None:
    from initlab.theory.critical import critical_weight_var

    try:
        return critical_weight_var(act, bias_var)
    except ValueError:
        return None


def _json_float(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else "inf"
    return v


def _plot(name: str, weight_var: float, bias_var: float, depth: int, path: Path) -> None:
    from initlab.compare.report.plots import phase_plot, save

    save(phase_plot(name, weight_var, bias_var, depth), path)
    stderr.print(f"phase diagram written to {path}")


def _table(result: dict[str, object], profile: list[LayerTheory]) -> object:
    from rich.console import Group
    from rich.table import Table

    from initlab._tables import fmt

    head = Table(title=f"mean-field theory: {result['activation']}, σ_w² = {result['weight_var']}, "
                       f"σ_b² = {result['bias_var']}", show_header=False)  # fmt: skip
    for key in ("q_star", "chi1", "phase", "xi_q", "xi_c", "trainable_depth", "critical_weight_var"):
        head.add_row(key, fmt(result[key]))
    layers = Table(title="per layer (gradient variance relative to the last layer)")
    for col in ("layer", "q", "chi", "grad_var"):
        layers.add_column(col)
    for r in profile:
        layers.add_row(str(r.layer), fmt(r.q), fmt(r.chi), fmt(r.grad_var))
    return Group(head, layers)
