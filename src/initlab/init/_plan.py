"""Plan, then draw (issue 30). ``initialize`` first says how every parameter will be drawn: one :class:`Plan` per
parameter, or per row block of one (an LSTM's gates, a packed q/k/v), holding the fill, the stream's key and the
report's row. The residual and role rules then change plans (a multiplier, a zeroed layer), and only when every
rule has run and every check has passed is each tensor drawn, once, in plan order (:func:`draw`). The report is
read off the plans' rows."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from initlab.init import _formulas as f
from initlab.init._meta import is_sharded
from initlab.init._report import LayerInit
from initlab.init._torch_draw import draw_

__all__ = ["Fill", "Plan", "Stream", "draw"]

# draws in place from a generator: a torch tensor from a torch.Generator, or (a Keras model's plan) a NumPy array
# from a NumPy Generator
Fill = Callable[[Any, Any], Any]
Stream = Callable[[str, Tensor], torch.Generator | None]  # the generator a plan's key draws from

# Keyed mode draws a tensor of independent entries in runs of CHUNK entries (in row-major order), each run from a
# stream of its own (the plan's key and the run's index), so that any slice of the tensor (a rank's shard) can be
# drawn without the rest, and the values do not depend on how the tensor is sharded.
CHUNK = 1 << 20
ELEMENTWISE = (f.Constant, f.Uniform, f.Normal, f.TruncatedNormal)


@dataclasses.dataclass
class Plan:
    """How one parameter (or one row block of it) is drawn, and what the report says of it. The same plans serve
    Keras models: ``module`` is then the Keras layer (or its recurrent cell), ``pname`` its variable's attribute."""

    module: nn.Module
    pname: str
    fill: Fill
    key: str  # its name, from which keyed mode derives its stream
    row: LayerInit | None  # None: a later block of a parameter whose first block's row reports it
    block: tuple[int, int] | None = None  # (index, blocks): this row block of the parameter
    scale: float = 1.0  # the product of the multipliers rules set
    zero: bool = False  # a rule zeroed it
    fixed: list[Callable[[Any], Any]] = dataclasses.field(default_factory=list)  # set after drawing (forget gate)
    dist: f.Dist | None = None  # what ``fill`` draws, where it is one distribution of independent entries
    rules: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # (label, factor) of each rule: 0 zeroes

    @property
    def parameter(self) -> Tensor | None:
        """The parameter itself (None where a parametrization computes it: there is no one tensor to name)."""
        return None if parametrize.is_parametrized(self.module, self.pname) else getattr(self.module, self.pname)

    def multiply(self, factor: float, label: str) -> None:
        self.scale *= factor
        self.rules.append((label, factor))
        if self.row is not None:
            self.row.scheme = f"{self.row.scheme} {label}"
            self.row.std = None if self.row.std is None else self.row.std * factor

    def zeroed(self, label: str) -> None:
        self.zero = True
        self.rules.append((f"zero{label}", 0.0))
        if self.row is not None:
            self.row.scheme, self.row.std = f"{self.row.scheme} → zero{label}", 0.0

    def view(self, tensor: Tensor) -> Tensor:
        return tensor if self.block is None else tensor.chunk(self.block[1])[self.block[0]]


def draw(plans: list[Plan], stream: Stream, keyed: bool = False) -> None:
    """Draw every planned tensor once, in plan order: its fill (or zeros), its multiplier, its fixed entries. A
    parameter a parametrization computes (weight or spectral norm) is drawn as the weight it computes and written
    back through the parametrization; zeroing a weight-normed layer zeroes its magnitude g and keeps the direction v
    (w = 0 would make v = 0 and w = 0/0). Such a row reports the std of the weight the parametrization computes.

    A sharded parameter (a DTensor: FSDP2's ``fully_shard``, tensor parallelism) is filled with what it holds in one
    process: in keyed mode a rank draws only the runs of entries its shard holds, otherwise the whole parameter, one
    at a time (:func:`_draw_sharded`), so the weights do not depend on the number of ranks or the sharding, and a
    rank never holds more than its shards and the largest single parameter."""
    with torch.no_grad():
        for _, same in itertools.groupby(plans, key=lambda plan: (id(plan.module), plan.pname)):
            group = list(same)
            module, pname = group[0].module, group[0].pname
            if parametrize.is_parametrized(module, pname):
                for plan in group:
                    _draw_parametrized(plan, stream, keyed)
                continue
            param = getattr(module, pname)
            if is_sharded(param):
                _draw_sharded(group, param, stream, keyed)
                continue
            for plan in group:
                _draw_into(plan, param, stream, keyed)


def _draw_parametrized(plan: Plan, stream: Stream, keyed: bool) -> None:
    g = magnitude(plan.module, plan.pname) if plan.zero else None
    value = getattr(plan.module, plan.pname).detach().clone()
    _draw_into(plan, value, stream, keyed, keep_direction=g is not None)
    setattr(plan.module, plan.pname, value)
    if g is not None:
        g.zero_()
    _report_computed(plan)


def _draw_sharded(group: list[Plan], param: Any, stream: Stream, keyed: bool) -> None:
    """Fill a DTensor parameter's local shard with what the whole parameter holds in one process; no communication.
    In keyed mode a tensor of independent entries sharded by rows (FSDP2's Shard(0)) is a run of its flat entries:
    only the runs of :data:`CHUNK` entries that meet the shard are drawn. Otherwise the whole parameter is drawn on
    every rank (every rank the same values) and the local block copied out of it (by DTensor's own shape and offset
    arithmetic, the one distributed checkpoints use; else sliced by ``distribute_tensor(src_data_rank=None)``)."""
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = param.to_local()
    shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    plan = group[0]
    rows = tuple(shape[1:]) == tuple(param.shape[1:]) and all(o == 0 for o in offset[1:])
    if keyed and len(group) == 1 and plan.block is None and not plan.fixed and rows and local.is_contiguous():
        if plan.zero:
            local.zero_()
            return
        if isinstance(plan.dist, ELEMENTWISE):
            width = math.prod(param.shape[1:])
            _entries(plan, local.view(-1), offset[0] * width if param.ndim else 0, param.numel(), stream)
            return
    whole = torch.empty(param.shape, dtype=param.dtype, device=local.device)
    for each in group:
        _draw_into(each, whole, stream, keyed)
    block = whole[tuple(slice(start, start + size) for start, size in zip(offset, shape, strict=True))]
    if tuple(block.shape) == tuple(local.shape):
        local.copy_(block)
    else:  # a placement that is not one block per rank
        local.copy_(distribute_tensor(whole, param.device_mesh, param.placements, src_data_rank=None).to_local())


def _entries(plan: Plan, out: Tensor, begin: int, total: int, stream: Stream) -> None:
    """Entries ``begin .. begin + len(out)`` of the plan's tensor (``total`` entries, row-major) into ``out``, drawn
    run by run as keyed mode draws the whole tensor, times the plan's multiplier."""
    assert plan.dist is not None
    end = begin + out.numel()
    if end <= begin:
        return
    for run in range(begin // CHUNK, (end - 1) // CHUNK + 1):
        lo, hi = run * CHUNK, min((run + 1) * CHUNK, total)
        generator = stream(f"{plan.key}#{run}", out)
        if lo >= begin and hi <= end:
            draw_(out[lo - begin : hi - begin], plan.dist, generator)
        else:  # a run the slice only partly covers: drawn whole, the overlap kept
            values = draw_(torch.empty(hi - lo, dtype=out.dtype, device=out.device), plan.dist, generator)
            start, stop = max(lo, begin), min(hi, end)
            out[start - begin : stop - begin] = values[start - lo : stop - lo]
    if plan.scale != 1.0:
        out.mul_(plan.scale)


def _report_computed(plan: Plan) -> None:
    """The std of the weight a parametrization computes from what was drawn (spectral norm divides by the largest
    singular value, orthogonal keeps only the directions): the weight the layer really uses. Spectral norm's
    singular vectors are brought to the new weight first, as torch does when the parametrization is registered
    (left stale, the weight a layer used would drift over its first forward passes)."""
    parametrization = getattr(plan.module, "parametrizations")[plan.pname]  # noqa: B009  (a ModuleDict)
    for step in parametrization:
        if hasattr(step, "_power_method"):  # spectral norm: its u, v were the old weight's; torch runs 15 at setup
            step._power_method(step._reshape_weight_to_matrix(parametrization.original), 15)
    if plan.row is not None and plan.block is None:
        used = getattr(plan.module, plan.pname)
        plan.row.std = float(used.std()) if used.numel() > 1 else plan.row.std
        plan.row.source = f"{plan.row.source}, through its parametrization (std of the weight it computes)"


def _draw_into(plan: Plan, tensor: Tensor, stream: Stream, keyed: bool, keep_direction: bool = False) -> None:
    target = plan.view(tensor)
    if plan.zero and not keep_direction:
        target.zero_()
    elif keyed and isinstance(plan.dist, ELEMENTWISE) and target.is_contiguous():
        _entries(dataclasses.replace(plan, zero=False), target.view(-1), 0, target.numel(), stream)
    else:
        plan.fill(target, stream(plan.key, target))
        if plan.scale != 1.0:
            target.mul_(plan.scale)
    for fix in plan.fixed:
        fix(target)


def magnitude(module: nn.Module, pname: str) -> Tensor | None:
    """Weight norm's magnitude g (``parametrizations.<pname>.original0``), where the parameter has one."""
    found = getattr(getattr(getattr(module, "parametrizations", None), pname, None), "original0", None)
    return found if parametrize.is_parametrized(module, pname) and isinstance(found, Tensor) else None
