"""The rules that change plans (:mod:`initlab.init._plan`) after every parameter has one: the residual rules
(``zero_last``, ``fixup``, ``scaled``, ``deepnorm``) and the roles a scheme zeroes (µP's readout and queries). They
multiply or zero plans and say so in the plans' rows; nothing is drawn until all of them have run.

* ``zero_last``: the last parametric layer of each residual branch is zeroed (its norm's γ if it ends in a norm:
  Goyal et al. 2017; its weight otherwise), so every block starts as the identity. ``fixup`` also scales the
  branch's other layers by ``L^(-1/(2m-2))`` (Zhang et al. 2019).
* ``scaled``: GPT-2's rule (Radford et al. 2019): the last layer of each of the L branches ×1/√L.
* ``deepnorm``: DeepNet's β on the value, output and MLP projections (Wang et al. 2022).
"""

from __future__ import annotations

from torch import nn

from initlab.init._plan import Plan
from initlab.init._walk import NORM_LAYERS
from initlab.init.structure import Structure

__all__ = ["deepnorm_constants", "residual_rule", "zero_roles"]


def residual_rule(model: nn.Module, structure: Structure, branches: list[list[str]], rule: str,
                  plans: list[Plan]) -> str | None:  # fmt: skip
    """Apply a residual rule to the plans; returns a note where it had nothing to act on."""
    if not branches:  # a plain MLP or CNN: the rule has nothing to act on (it raised ZeroDivisionError: issue 30)
        return f"residual rule {rule!r}: the model has no residual addition, so it changed nothing"
    if rule == "scaled":
        _scale_last(model, branches, plans)
    elif rule == "deepnorm":
        _deepnorm(model, branches, set().union(*structure.queries_and_keys()), plans)
    else:
        for branch in branches:
            _zero(plans, branch[-1], f" ({rule})")
            inner = [b for b in branch[:-1] if not isinstance(model.get_submodule(b), NORM_LAYERS)]
            if rule == "fixup" and inner:
                # Fixup: m layers per branch, L branches -> scale the inner layers by L^(-1/(2m-2)).
                scale = len(branches) ** (-1.0 / (2 * (len(inner) + 1) - 2))
                for name in inner:
                    _multiply(plans, f"{name}.weight", scale, f"×{scale:.3g} (fixup)")
    return None


def zero_roles(roles: tuple[str, ...], structure: Structure, plans: list[Plan]) -> None:
    """Zero the scheme's ``zero`` layers: ``"readout"`` (the layer that produces the output, unless its weight is an
    embedding's: a tied readout) and ``"query"`` projections."""
    names = sorted(structure.queries_and_keys()[0]) if "query" in roles else []
    if "readout" in roles:
        readout = _readout(structure)
        if readout is not None:
            names.append(readout)
    for name in names:
        _zero(plans, name, "")


def _readout(structure: Structure) -> str | None:
    """The module of the readout weight, None where it is an embedding table (tied)."""
    layer = structure.layers.get(structure.output) if structure.output else None
    if layer is None or layer.use.op == "embedding":
        return None
    return structure.owner(layer.name)


def _zero(plans: list[Plan], module: str, label: str) -> None:
    """Zero a module's own weight and bias (every row block of them)."""
    for plan in plans:
        if plan.key.split("[")[0] in (f"{module}.weight", f"{module}.bias"):
            plan.zeroed(label)


def _multiply(plans: list[Plan], key: str, factor: float, label: str) -> None:
    """Multiply the plan of one parameter (``key``: its name, or one row block ``name[i]``)."""
    for plan in plans:
        if plan.key == key:
            plan.multiply(factor, label)


def _scale_last(model: nn.Module, branches: list[list[str]], plans: list[Plan]) -> None:
    """GPT-2's rule: the last layer of each of the L residual branches (attention's and the MLP's output
    projections: L = 2N for N blocks) scaled by 1/√L, so the stream's variance grows by O(1) over the depth instead
    of by L."""
    factor = len(branches) ** -0.5
    for branch in branches:
        last = branch[-1]
        pname = "out_proj.weight" if isinstance(model.get_submodule(last), nn.MultiheadAttention) else "weight"
        _multiply(plans, f"{last}.{pname}", factor, f"×1/√{len(branches)}")


def deepnorm_constants(blocks: int) -> tuple[float, float]:
    """DeepNet's (α, β) for a decoder-only stack of ``blocks`` blocks (Wang et al. 2022): the residual
    x ← LN(α·x + f(x)) with α = (2N)^¼, and the value, output and MLP projections initialized ×β = (8N)^-¼.

    >>> deepnorm_constants(6)
    (1.8612097182041991, 0.37991784282579627)
    """
    return (2 * blocks) ** 0.25, (8 * blocks) ** -0.25


def _deepnorm(model: nn.Module, branches: list[list[str]], query_key: set[str], plans: list[Plan]) -> None:
    """β-scale every residual branch's value/output projections (attention) and weights (MLP), leaving query and
    key projections (``query_key``: found by the structure layer, where their outputs meet) as they are; N = the
    number of attention branches (the blocks), or half the branches in a net without attention (two per block)."""

    def is_attention(name: str) -> bool:
        return isinstance(model.get_submodule(name), nn.MultiheadAttention)

    attention = [b for b in branches if any(is_attention(n) or n in query_key for n in b)]
    _, beta = deepnorm_constants(max(1, len(attention) or len(branches) // 2))
    label = f"×β={beta:.3g}"
    for branch in branches:
        for name in branch:
            module = model.get_submodule(name)
            if isinstance(module, nn.MultiheadAttention):  # the value projection: a packed weight's last third
                _multiply(plans, f"{name}.v_proj_weight", beta, label)
                _multiply(plans, f"{name}.out_proj.weight", beta, label)
                for plan in plans:
                    if plan.key == f"{name}.in_proj_weight[2]":
                        plan.multiply(beta, label)
                    elif plan.key == f"{name}.in_proj_weight[0]" and plan.row is not None:
                        plan.row.scheme = f"{plan.row.scheme} {label} on v"
            elif isinstance(module, nn.Linear | nn.modules.conv._ConvNd) and name not in query_key and not any(
                    is_attention(n) for n in branch):  # fmt: skip
                _multiply(plans, f"{name}.weight", beta, label)
