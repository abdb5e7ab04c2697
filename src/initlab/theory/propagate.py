"""Predict per-value forward and backward variance through a concrete model, from its actual parameters.

Mean-field propagation at the operator level, through any eager model (Hugging Face models, torch's own
modules, functional code): the model runs once on a one-example input under a ``TorchFunctionMode``, and every
operator that a value derived from the input enters also propagates that value's statistics. A value carries,
per element, the mean and the variance of a Gaussian over inputs (float64 tensors of the value's shape).

* linear maps with constant coefficients (``linear``, GPT-2's ``addmm``, ``matmul``/``einsum`` against a weight,
  ``conv*`` with its padding and stride, scaling by a constant, sums and means): ``mean' = A(mean)``, ``var' =
  A∘A(var)`` (the same map with squared coefficients), exact for independent inputs;
* products of two values (attention scores ``q·kᵀ``, ``attn·v``, gates): independent factors;
* sums (residual additions), data movement (``view``, ``transpose``, ``split``, ``cat``, indexing ...): exact;
* elementwise functions (every activation, functional or module, with its parameters; ``pow``, ``rsqrt`` ...):
  ``E[φ(h)]`` and ``Var φ(h)`` for ``h ~ N(mean, var)`` by quadrature, per distinct (mean, var);
* ``layer_norm``, ``rms_norm``, ``group_norm``, ``batch_norm`` (train: batch statistics; eval: running ones),
  ``dropout``; ``embedding`` of token ids: the table's per-column mean and variance (ids taken as uniform);
* any other operator (softmax, attention kernels, pooling, recurrent kernels ...) is propagated by *sampling*:
  Gaussians at the predicted statistics pushed through the operator itself, and the row says "sampled".

Backward, relative to the output: gradient second moments go back through the same maps (squared coefficients,
``E[φ'(h)²]``, sampled vector-Jacobian products), summing over the uses of a value (the gradient-independence
assumption of Schoenholz et al. 2017). Rows are the outputs of modules, activations, weight uses, residual sums,
norms, products and sampled operators, named by module (``h.0.mlp.c_fc``) or by operator (``h.0.attn.softmax``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from initlab._errors import fail
from initlab._tables import Rows
from initlab.init._keras_model import is_keras_model
from initlab.init.structure import Structure, capture_or_why, restored, unwrap
from initlab.theory._maps import Stat
from initlab.theory._recorder import Source, backward, output_value, record

__all__ = ["LayerPrediction", "Prediction", "predict"]


@dataclasses.dataclass
class LayerPrediction:
    """One value in the model: its predicted forward variance and its gradient second moment."""

    name: str
    kind: str
    shape: tuple[int, ...]
    forward_var: float | None
    backward_var: float | None
    note: str = ""
    weights: tuple[str, ...] = ()  # the weights whose use produced this value
    modules: tuple[str, ...] = ()  # the modules that returned it, innermost first


@dataclasses.dataclass
class Prediction(Rows):
    """Per-value predicted forward variance and backward gradient variance (relative to the output's)."""

    rows: list[LayerPrediction]
    input_var: float = 1.0
    title: ClassVar[str] = "initlab.predict"
    columns: ClassVar[tuple[str, ...]] = ("name", "kind", "shape", "forward_var", "backward_var", "note")


def propagate(model: nn.Module, example: Any, source: Source, structure: Structure | str) -> Prediction:
    """Forward and backward propagation through ``model`` run on ``example``; one row per place."""
    model = unwrap(model)
    params = list(model.parameters())
    if any(p.is_meta for p in params):
        raise fail("predict and audit need the model's weights, and this model's parameters are on the meta device",
                   fix="Materialize it first (model.to_empty(device='cpu') and initialize it), "
                   "then predict.")  # fmt: skip
    with restored(model), torch.no_grad():
        recorder, output = record(model, example, source, True, structure)
    grads = backward(recorder, output_value(recorder, output))
    rows = []
    for n, place in sorted(recorder.places.items()):
        s, g, value = recorder.stats.get(n), grads.get(n), recorder.values[n]
        note = place.note
        rows.append(LayerPrediction(place.name, place.kind, tuple(value.shape[1:]),
                                    s.population_var if s is not None else None, float(g.mean()) if g is not None
                                    else None, note, place.weights, tuple(place.modules)))  # fmt: skip
    return Prediction(rows)


def check_keras(model: Any) -> None:
    if is_keras_model(model):
        raise fail(
            "predict and audit run a torch model; a Keras model is not supported yet",
            received=type(model).__name__,
            fix="Build the same network in torch for predict/audit; for Keras, initlab.initialize(keras_model, ...) "
            "assigns the weights and initlab.keras.Monitor watches model.fit.",
        )


def main_input(model: nn.Module, key: str) -> bool:
    """Whether an integer input named ``key`` is the model's token ids (a lookup's statistics), not a mask."""
    return key in ("0", "input_ids", getattr(model, "main_input_name", "input_ids"))


def first_examples(example: Any, n: int = 1) -> Any:
    """The first ``n`` examples of a batch: tensors sliced along their first dimension (repeated where the batch
    has fewer), other inputs kept."""

    def cut(v: Any) -> Any:
        if not isinstance(v, Tensor) or not v.ndim:
            return v
        return v[:n] if v.shape[0] >= n else v[:1].expand(n, *v.shape[1:])

    if isinstance(example, Mapping):
        return {k: cut(v) for k, v in example.items()}
    if isinstance(example, tuple):
        return tuple(cut(v) for v in example)
    return cut(example)


def predict(model: nn.Module, example: Any, input_var: float = 1.0) -> Prediction:
    """Predict per-value forward variance and backward gradient variance from the model's current parameters.

    Args:
        model: any ``nn.Module`` (Hugging Face models, wrapped or compiled ones); its train/eval mode decides
            BatchNorm and Dropout behaviour.
        example: the model's input: the shape of one example (``784`` or ``(1, 28, 28)``: a Gaussian input), a
            tensor (integer token ids included), a tuple of positional inputs or a dict of keyword inputs. Only
            the first example of a batch is run.
        input_var: the variance of every float input element (taken as independent with mean 0).

    Returns:
        A :class:`Prediction`: per value, ``forward_var`` (variance over inputs and elements) and
        ``backward_var`` (gradient second moment, relative to the output's); ``note`` says "sampled" where an
        operator without a rule was propagated by sampling.

    >>> from initlab import initialize
    >>> net = nn.Sequential(nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 500))
    >>> _ = initialize(net, "kaiming_normal", activation={"2": "relu"}, generator=torch.Generator().manual_seed(0))
    >>> [round(r.forward_var, 1) for r in predict(net, 500)]  # He: 2·input_var; relu: Var = q(1/2 - 1/2π)
    [2.0, 0.7, 1.9]
    """
    check_keras(model)
    if isinstance(input_var, bool) or not isinstance(input_var, int | float) or not 0 < input_var < math.inf:
        raise fail("input_var must be a finite variance > 0", accepted="a number > 0, e.g. 1.0 for standardized "
                   "inputs", received=input_var, fix="Pass the variance of one input element.")  # fmt: skip
    inner = unwrap(model)
    if isinstance(example, int) and not isinstance(example, bool):
        example = (example,)
    if isinstance(example, tuple | list) and all(isinstance(d, int) and not isinstance(d, bool) for d in example):
        if not example or min(example) < 1:
            raise fail("predict needs the shape of one example", accepted="positive sizes, e.g. 784 or (1, 28, 28)",
                       received=example,
                       fix="Pass the shape without the batch dimension, or an example input.")  # fmt: skip
        dtype = next((p.dtype for p in inner.parameters() if p.is_floating_point()), torch.float32)
        example = torch.zeros(1, *example, dtype=dtype)
    elif not isinstance(example, Tensor | tuple | Mapping):
        raise fail("predict takes the model's input", accepted="a shape (784 or (1, 28, 28)), a tensor, a tuple of "
                   "inputs or a dict of keyword inputs", received=type(example).__name__,
                   fix="Pass an example input as the model takes it.")  # fmt: skip

    def source(t: Tensor, key: str) -> tuple[Stat | None, bool]:
        if t.is_floating_point():
            zeros = torch.zeros(t.shape, dtype=torch.float64)
            return Stat(zeros, torch.full(t.shape, float(input_var), dtype=torch.float64)), False
        return None, main_input(inner, key)

    prediction = predict_with(inner, example, source)
    prediction.input_var = float(input_var)
    return prediction


def predict_with(
    model: nn.Module, example: Any, source: Source, structure: Structure | str | None = None
) -> Prediction:
    """Propagate on one example; on two where the model normalizes by batch statistics (a BatchNorm in train mode:
    one example per channel has no variance to normalize by). ``structure``: the model's, if known (else captured
    here on the same examples)."""
    examples = first_examples(example, 2 if batch_statistics(model) else 1)
    structure = capture_or_why(model, examples) if structure is None else structure
    return propagate(model, examples, source, structure)


def batch_statistics(model: nn.Module) -> bool:
    """Whether a forward pass normalizes by the batch's statistics: a BatchNorm module (or SyncBatchNorm) in train
    mode."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())
