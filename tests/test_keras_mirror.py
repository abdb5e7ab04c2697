"""initlab.keras.initializers and il.get(...) inside Keras (issue 24): Keras' names are Keras' classes, configs
round-trip between initlab and Keras with the same distribution (KS, p > 1e-3, seeded), initlab's extras work as
kernel_initializer, by name and config, and survive keras.saving; the JAX backend is run in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import initlab as il

keras = pytest.importorskip("keras")
from initlab.keras import initializers as mirror  # noqa: E402  (after the importorskip)

SHAPE = (200, 300)  # a Dense kernel (in, out): 60,000 values per draw


def _np(x: object) -> np.ndarray:
    """A Keras tensor as a flat float64 array (on the torch backend a torch tensor, possibly a Variable)."""
    value = getattr(x, "value", x)
    return value.detach().cpu().numpy().astype(np.float64).ravel()


def test_every_keras_name_is_keras_own_class() -> None:
    names = [
        n for n in dir(keras.initializers) if not n.startswith("_") and n not in ("get", "serialize", "deserialize")
    ]
    assert names and set(names) <= set(mirror.__all__)
    for name in names:
        assert getattr(mirror, name) is getattr(keras.initializers, name), name


def test_il_get_is_a_kernel_initializer() -> None:
    # issue 24: Dense(kernel_initializer=il.get("he_uniform")) raised TypeError (unexpected keyword 'dtype')
    layer = keras.layers.Dense(300, kernel_initializer=il.get("he_uniform", seed=0))
    layer.build((None, 200))
    theirs = keras.initializers.HeUniform(seed=1)(SHAPE)
    assert tuple(layer.kernel.shape) == SHAPE
    assert stats.ks_2samp(_np(layer.kernel), _np(theirs)).pvalue > 1e-3


KERAS_READABLE = ["zeros", "ones", "constant", "normal", "random_normal", "small_random", "uniform", "random_uniform",
                  "truncated_normal", "variance_scaling", "glorot_uniform", "glorot_normal", "xavier_normal",
                  "he_uniform", "he_normal", "kaiming_normal", "lecun_uniform", "lecun_normal", "torch_default",
                  "orthogonal", "identity"]  # fmt: skip


@pytest.mark.parametrize("name", KERAS_READABLE)
def test_initlab_configs_load_in_keras_as_the_same_distribution(name: str) -> None:
    ours = il.get(name, seed=0)
    config = ours.get_config()
    theirs = keras.initializers.deserialize(config)  # issue 24: extra keys (HeUniform) and gain None (Orthogonal)
    values = _np(theirs(SHAPE))
    reference = ours.numpy(SHAPE, layout="keras").ravel()
    if np.ptp(reference) == 0 or name == "identity":
        np.testing.assert_allclose(values, reference)
    else:
        assert stats.ks_2samp(values, reference).pvalue > 1e-3, config
    assert il.get(config).get_config() == config  # and back


@pytest.mark.parametrize(("config", "truncated"), [
    ({"class_name": "VarianceScaling", "config": {"scale": 2.0, "distribution": "normal"}}, True),  # Keras' legacy
    ({"class_name": "VarianceScaling", "config": {"scale": 2.0, "distribution": "untruncated_normal"}}, False),
    ({"class_name": "VarianceScaling", "config": {"scale": 2.0, "distribution": "truncated_normal"}}, True),
])  # fmt: skip
def test_keras_configs_load_in_initlab_as_the_same_distribution(config: dict, truncated: bool) -> None:
    # issue 24: the legacy "normal" means truncated in Keras and meant untruncated in initlab (KS p = 6e-18)
    ours = il.get(config).numpy(SHAPE, np.random.default_rng(0), layout="keras").ravel()
    theirs = _np(keras.initializers.deserialize({**config, "config": {**config["config"], "seed": 1}})(SHAPE))
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    bound = 2 * np.sqrt(2.0 / SHAPE[0]) / 0.87962566103423978
    assert bool(np.abs(ours).max() <= bound + 1e-6) == truncated


def test_keras_objects_are_accepted_by_il_get() -> None:
    init = il.get(keras.initializers.VarianceScaling(scale=3.0, mode="fan_out", distribution="uniform"))
    assert init.name == "variance_scaling" and init.params == {
        "scale": 3.0,
        "mode": "fan_out",
        "distribution": "uniform",
    }
    assert il.get(keras.initializers.HeNormal(seed=4)).seed == 4


# -- initlab's extras -----------------------------------------------------------------------------------------
def test_delta_orthogonal_is_an_isometry_at_the_center_tap() -> None:
    kernel = _np(mirror.DeltaOrthogonal(gain=2.0, seed=3)((3, 3, 16, 32))).reshape(3, 3, 16, 32)
    center = kernel[1, 1]
    np.testing.assert_allclose(center @ center.T, 4.0 * np.eye(16), atol=1e-5)
    assert np.count_nonzero(np.delete(kernel.reshape(9, 16, 32), 4, axis=0)) == 0
    with pytest.raises(il.InitlabError, match=r"DeltaOrthogonal needs a conv kernel \(k..., in, out\) of rank 3 to 5"):
        mirror.DeltaOrthogonal()((4, 4))


def test_seed_semantics_are_keras() -> None:
    fixed = mirror.DeltaOrthogonal(seed=5)
    assert np.array_equal(_np(fixed((3, 8, 8))), _np(fixed((3, 8, 8))))  # an int seed: the same values each call
    advancing = mirror.Critical("tanh", seed=keras.random.SeedGenerator(5))
    assert not np.array_equal(_np(advancing(SHAPE)), _np(advancing(SHAPE)))  # a SeedGenerator advances


def test_critical_and_activation_gain_scales() -> None:
    critical = mirror.get({"class_name": "Critical", "config": {"activation": "tanh", "bias_var": 0.05}})
    assert critical.scale == pytest.approx(il.theory.critical_weight_var("tanh", 0.05))
    values = _np(critical(SHAPE))  # 60,000 normal values: the variance within 2% (≈ 3.5 standard errors)
    assert values.var() == pytest.approx(critical.scale / SHAPE[0], rel=0.02)
    tanh_he = mirror.ActivationGain("he_normal", "tanh")
    assert (tanh_he.scale, tanh_he.mode, tanh_he.distribution) == (pytest.approx(25 / 9), "fan_in", "truncated_normal")
    with pytest.raises(il.InitlabError, match="ActivationGain rescales a variance-scaling initializer"):
        mirror.ActivationGain("orthogonal", "tanh")
    with pytest.raises(il.InitlabError, match=r"unknown Keras initializer 'he_unifrom'.*Did you mean 'he_uniform'"):
        mirror.get("he_unifrom")


# Keras' own saving calls np.array(torch_tensor, copy=False), which numpy 2 deprecates: Keras' warning, not ours
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_extras_are_saved_and_loaded_with_the_model(tmp_path: Path) -> None:
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.Conv2D(4, 3, kernel_initializer="initlab>DeltaOrthogonal"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="tanh", kernel_initializer=mirror.Critical("tanh", seed=1)),
        keras.layers.Dense(3, kernel_initializer=mirror.ActivationGain("glorot_uniform", "tanh", seed=2)),
    ])  # fmt: skip
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    kinds = [type(layer.kernel_initializer).__name__ for layer in loaded.layers if hasattr(layer, "kernel_initializer")]
    assert kinds == ["DeltaOrthogonal", "Critical", "ActivationGain"]
    assert all(np.array_equal(_np(a), _np(b)) for a, b in zip(model.weights, loaded.weights, strict=True))
    assert mirror.serialize(loaded.layers[2].kernel_initializer)["config"]["activation"] == "tanh"


JAX_SCRIPT = """
import keras, numpy as np, initlab as il
from initlab.keras import initializers as mirror
assert keras.backend.backend() == "jax"
k = np.asarray(mirror.DeltaOrthogonal(seed=1)((3, 3, 8, 8)))
assert np.allclose(k[1, 1] @ k[1, 1].T, np.eye(8), atol=1e-5)
layer = keras.layers.Dense(64, kernel_initializer=il.get("he_uniform", seed=0)); layer.build((None, 128))
assert abs(np.asarray(layer.kernel).std() - np.sqrt(2 / 128)) < 0.01
c = np.asarray(mirror.Critical("tanh", 0.05, seed=2)((400, 300)))
assert abs(c.var() * 400 / il.theory.critical_weight_var("tanh", 0.05) - 1) < 0.03
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
report = il.initialize(model, "he_normal", generator=None)
assert len(report.rows) == 4 and abs(np.asarray(model.layers[0].kernel).std() * 2 - np.sqrt(2)) < 0.5
model.compile("sgd", "mse")
from initlab.keras import Monitor
try:
    model.fit(np.zeros((8, 4)), np.zeros((8, 2)), verbose=0, callbacks=[Monitor()])
except il.InitlabError as error:
    assert "Keras runs on 'jax' here" in str(error), error
else:
    raise AssertionError("the Monitor recorded nothing on jax without saying so")
print("ok")
"""


def test_jax_backend() -> None:
    pytest.importorskip("jax")
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "jax"})  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_torch_backend_is_in_process() -> None:
    assert keras.backend.backend() == "torch" and isinstance(keras.layers.Dense(2), torch.nn.Module)


# -- Keras models as first-class models -----------------------------------------------------------------------
def _keras_net() -> object:
    return keras.Sequential([
        keras.Input((8, 8, 6)),
        keras.layers.Conv2D(12, 3, groups=3, activation="relu"),
        keras.layers.DepthwiseConv2D(3),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="tanh"),
        keras.layers.Dense(4),
    ])  # fmt: skip


def test_initialize_assigns_every_variable_with_keras_fans() -> None:
    # issue 24: il.initialize(keras_model, ...) changed no weight and said nothing
    model = _keras_net()
    before = [_np(v).copy() for v in model.weights]
    report = il.initialize(model, "he_normal", generator=torch.Generator().manual_seed(0))
    rows = {r.name: r for r in report}
    assert set(rows) == {v.path for v in model.weights if v.trainable}  # every trainable variable, by its path
    layers = model.layers
    conv, depthwise = rows[layers[0].kernel.path], rows[layers[1].kernel.path]
    assert (conv.fan_in, conv.fan_out) == (3 * 3 * 2, 3 * 3 * 4)  # 6 channels in 3 groups, 12 out
    assert (depthwise.fan_in, depthwise.fan_out) == (9, 9)  # each output sees one input channel
    assert (rows[layers[4].kernel.path].activation, rows[layers[5].kernel.path].activation) == ("tanh", "linear")
    dense = _np(layers[4].kernel)  # 192 × 256 = 49,152 values: the sample std within 2% (≈ 6 SE)
    assert dense.std() == pytest.approx(rows[layers[4].kernel.path].std, rel=0.02)
    changed = [not np.array_equal(b, _np(v)) for b, v in zip(before, model.weights, strict=True) if v.trainable]
    assert all(changed[i] for i in (0, 2, 6))  # kernels redrawn (zero biases may stay zero)
    assert not _np(model.layers[0].bias).any() and (_np(model.layers[2].gamma) == 1).all()


def test_initialize_keras_reads_activations_from_the_layer_or_the_next() -> None:
    # a Dense followed by an Activation layer takes that activation; a softmax output is an output, not a hidden
    # activation (it raised "unknown activation 'softmax'")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Activation("tanh"),
                              keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    report = il.initialize(model, "glorot_normal", gain_from="activation")
    rows = {r.name: r for r in report}
    hidden, output = rows[model.layers[0].kernel.path], rows[model.layers[2].kernel.path]
    assert (hidden.activation, hidden.source) == ("tanh", "activation (next layer)")
    assert hidden.gain == pytest.approx(5 / 3) and (output.activation, output.gain) == ("linear", 1.0)


def test_critical_on_a_keras_model_draws_the_schemes_bias_as_torch_does() -> None:
    # regression (issue 30): the Keras walker lost the scheme's bias rule, so initialize(keras_model, "critical")
    # drew σ_w² for σ_b² = 0.05 with zero biases and left tanh at χ1 = 1.07. χ1 here is computed from the drawn
    # weights and biases (σ_w² = fan_in·Var[W], σ_b² = E[b²]) with scipy's quadrature, independently of initlab.
    from scipy import integrate

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((512,)), *[keras.layers.Dense(512, activation="tanh") for _ in range(4)],
                              keras.layers.Dense(10)])  # fmt: skip
    report = il.initialize(model, "critical", generator=torch.Generator().manual_seed(0))
    torch_report = il.initialize(torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.Tanh()), "critical")
    hidden_biases = {layer.bias.path for layer in model.layers[:-1]}
    assert {r.scheme for r in report if r.name in hidden_biases} == {torch_report[1].scheme} == {"critical bias"}
    for layer in model.layers[:-1]:
        kernel, bias = _np(layer.kernel), _np(layer.bias)
        weight_var, bias_var = 512 * kernel.var(), float((bias**2).mean())

        def expect(f: object, q: float) -> float:  # E[f(√q z)], z ~ N(0, 1)
            return integrate.quad(lambda z: f(np.sqrt(q) * z) * stats.norm.pdf(z), -12, 12)[0]  # type: ignore[operator]

        q = 1.0
        for _ in range(200):  # the fixed point q* of q ← σ_w² E[tanh(√q z)²] + σ_b²
            q = weight_var * expect(lambda h: np.tanh(h) ** 2, q) + bias_var
        chi1 = weight_var * expect(lambda h: np.cosh(h) ** -4, q)
        assert bias_var > 0.03 and chi1 == pytest.approx(1.0, abs=0.02)  # 512² draws: Var[W] within ~0.3%


def test_small_embedding_on_a_keras_table_is_the_torch_rule() -> None:
    # regression (issue 30): the Keras walker drew every table with the scheme at gain 1, not the scheme's own
    # embedding rule (small_embedding: a table far smaller than its layers)
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(500, 64),
                              keras.layers.Dense(8)])  # fmt: skip
    row = next(r for r in il.initialize(model, "small_embedding") if r.name.endswith("embeddings"))
    torch_row = il.initialize(torch.nn.Embedding(500, 64), "small_embedding")["weight"]
    assert (row.scheme, row.std) == (torch_row.scheme, pytest.approx(torch_row.std))
    table = _np(model.layers[0].embeddings)
    assert table.std() == pytest.approx(torch_row.std, rel=0.02)  # 32,000 draws: the std within ~0.4%


def test_initialize_keras_recurrent_and_embedding() -> None:
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(50, 8), keras.layers.LSTM(6),
                              keras.layers.Dense(2)])  # fmt: skip
    report = il.initialize(model, "glorot_uniform", gain_from="activation", generator=torch.Generator().manual_seed(1))
    rows = {r.name.split("/", 1)[1]: r for r in report}
    assert rows["lstm/lstm_cell/kernel"].gain == pytest.approx(5 / 3)  # tanh's gain, read from the cell
    bias = _np(model.layers[1].cell.bias)
    assert (bias[6:12] == 1).all() and not np.delete(bias, range(6, 12)).any()  # forget gate 1 (Keras: i, f, c, o)
    recurrent = _np(model.layers[1].cell.recurrent_kernel).reshape(6, 24)
    for gate in range(4):
        block = recurrent[:, gate * 6 : (gate + 1) * 6]
        np.testing.assert_allclose(block @ block.T, np.eye(6), atol=1e-5)  # orthogonal per gate


def test_initialize_keras_says_what_it_left_and_refuses_what_it_cannot() -> None:
    inputs = keras.Input((4, 8))
    outputs = keras.layers.Dense(3)(keras.layers.MultiHeadAttention(2, 4)(inputs, inputs))
    report = il.initialize(keras.Model(inputs, outputs), "lecun_normal")
    assert any("MultiHeadAttention) keeps Keras' initialization" in n for n in report.notes)
    with pytest.raises(il.InitlabError, match="the Keras model has no weights yet"):
        il.initialize(keras.Sequential([keras.layers.Dense(3)]), "he_normal")
    with pytest.raises(il.InitlabError, match="a Keras model is not supported yet"):
        il.predict(_keras_net(), (8, 8, 6))


# -- the Monitor callback -------------------------------------------------------------------------------------
def _vanishing_fit(callbacks: list, epochs: int = 2, validation: bool = False) -> object:
    """A 10-layer tanh net at N(0, 0.01²), the textbook vanishing case (Glorot & Bengio 2010), on random data."""
    keras.utils.set_random_seed(0)
    small = [keras.initializers.RandomNormal(stddev=0.01, seed=i) for i in range(10)]
    hidden = [keras.layers.Dense(64, activation="tanh", kernel_initializer=init) for init in small]
    model = keras.Sequential([keras.Input((32,)), *hidden, keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])  # fmt: skip
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((512, 32)).astype("float32"), rng.integers(0, 10, 512)
    held_out = (x[:64], y[:64]) if validation else None
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=False, callbacks=callbacks,
              validation_data=held_out)  # fmt: skip
    return model


class _TrueGradients(keras.callbacks.Callback):
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if batch == 0 and not hasattr(self, "norms"):
            self.norms = {v.path: float(v.value.grad.norm()) for v in self.model.trainable_weights}


def test_monitor_callback_finds_vanishing_gradients_in_fit(tmp_path: Path) -> None:
    # issue 24: the Monitor saw a Keras model's gradients but no activations; now the same statistics and findings
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from initlab.keras import Monitor

    mon, truth = Monitor(every=5, log_dir=tmp_path, verbose=0), _TrueGradients()
    model = _vanishing_fit([mon, truth])
    first = model.layers[0]
    record = mon.history.records[0]  # step 1: the oracle read the same gradients after the same backward pass
    for path, norm in truth.norms.items():
        assert record[(path, "grad_norm")] == pytest.approx(norm, rel=1e-5)
    assert record[(first.name, "std")] > 10 * record[(model.layers[5].name, "std")] > 0  # activations recorded
    vanishing = [f for f in mon.findings if f.kind == "vanishing"]
    assert vanishing and vanishing[0].layer == first.kernel.path
    assert "initlab.initialize(model, 'critical') gives χ1 = 1.00 per layer for tanh" in vanishing[0].remedies[0]
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert f"initlab/grad_norm/{first.kernel.path}" in events.Tags()["scalars"]
    assert f"initlab/saturated/{first.name}" in events.Tags()["scalars"]
    assert f"initlab/dead/{first.name}" not in events.Tags()["scalars"]  # tanh has no dead units


def test_monitor_callback_stops_training_on_request() -> None:
    from initlab.keras import Monitor

    mon = Monitor(every=1, stop_on=("vanishing",), verbose=0)
    _vanishing_fit([mon], epochs=20)
    assert mon.findings[0].kind == "vanishing" and mon.history.steps[-1] < 20 * 16  # stopped before 20 epochs


def test_monitor_callback_writes_the_run_store_and_the_report_shows_it(tmp_path: Path) -> None:
    # issue 24: the callback writes to the same store as initlab run; `initlab report` reads it
    from initlab.compare.store import Store
    from initlab.keras import Monitor

    db = tmp_path / "runs.db"
    mon = Monitor(every=5, store=db, verbose=0)
    model = _vanishing_fit([mon], epochs=2, validation=True)
    with Store(db) as store:
        (run,) = store.runs("done")
        assert run["config"]["framework"] == "keras" and run["config"]["depth"] == 11
        assert (run["config"]["activation"], run["config"]["scheme"]) == ("tanh", "random_normal")
        metrics = store.metrics(run["id"])
        assert [m["epoch"] for m in metrics] == [1, 2] and all(0 <= m["test_accuracy"] <= 1 for m in metrics)
        assert any(f["kind"] == "vanishing" for f in store.findings(run["id"]))
        assert store.layer_stats(run["id"], "grad_norm")
    assert run["config"]["model"] == model.name
    proc = subprocess.run([sys.executable, "-m", "initlab.cli.main", "report", str(db), "-o", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "r.html").read_text()
    assert "keras fit" in html and "gradients vanish" in html


def test_a_refused_keras_initialize_leaves_the_model_as_it_was() -> None:
    # issue 30 (plan, then draw): sparse cannot fill the Conv1D's kernel; the Dense before it was assigned before
    # the refusal, now every value is drawn and checked before the first is assigned
    inputs = keras.Input((8,))
    hidden = keras.layers.Reshape((4, 4))(keras.layers.Dense(16)(inputs))
    model = keras.Model(inputs, keras.layers.Conv1D(2, 3)(hidden))
    before = [_np(v).copy() for v in model.weights]
    with pytest.raises(il.InitlabError, match="needs a 2-D"):
        il.initialize(model, "sparse", generator=torch.Generator().manual_seed(0))
    assert all(np.array_equal(b, _np(v)) for b, v in zip(before, model.weights, strict=True))


def test_keras_initialize_runs_the_role_rules_on_the_same_plans_as_torch() -> None:
    """µP's readout zero on a Keras model (it was drawn like any layer), its hidden layers as torch's plans give;
    a scheme's residual rule, which needs a torch forward pass, is named as not applied."""

    def layers() -> list:
        return [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)]

    model = keras.Sequential([keras.Input((32,)), *layers()])
    report = il.initialize(model, "mup", generator=torch.Generator().manual_seed(0))
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    torch_report = il.initialize(net, "mup", generator=torch.Generator().manual_seed(0))
    assert [(r.scheme, r.std) for r in report] == [(r.scheme, r.std) for r in torch_report]
    assert [r.scheme for r in report][-2:] == ["mup → zero", "zeros → zero"]
    assert not _np(model.layers[-1].kernel).any() and _np(model.layers[0].kernel).std() > 0
    gpt2 = il.initialize(keras.Sequential([keras.Input((32,)), *layers()]), "gpt2")
    assert "gpt2's residual rule (scaled) was not applied" in gpt2.notes[-1]


def test_verify_reads_a_keras_models_plans() -> None:
    """The same plans verify a Keras model: as built, Keras' defaults where they are initlab's plan and the three
    places they are not; initlab's schemes after initialize; a changed recurrent gate is named."""
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(50, 8),
                              keras.layers.LSTM(16), keras.layers.Dense(32, activation="tanh"),
                              keras.layers.Dense(4)])  # fmt: skip
    built = il.verify(model, "glorot_uniform", bias=0.0)
    assert [re.sub(r"_\d+", "", r.name.split("/", 1)[1]) for r in built.mismatches] == [  # (Keras numbers names)
        "embedding/embeddings",  # where Keras' defaults are not initlab's plan: U(±0.05), not glorot at fans (1, 8)
        "lstm/lstm_cell/kernel",  # glorot_uniform at the whole kernel's fans (8, 64), not one gate's (8, 16)
        "lstm/lstm_cell/recurrent_kernel",  # orthogonal over the whole (16, 64) kernel, not per gate
    ], built
    assert {r.name.rsplit("/", 1)[1]: r.status for r in built}["kernel"] == "ok"  # the Dense layers are Keras'
    for scheme in ("he_normal", "mup", "critical"):
        il.initialize(model, scheme, generator=torch.Generator().manual_seed(0))
        assert il.verify(model, scheme).ok, scheme
    recurrent = model.layers[1].cell.recurrent_kernel
    recurrent.assign(recurrent.value.detach().cpu().numpy() * 1.01)
    (row,) = il.verify(model, "critical").mismatches
    assert row.name.endswith("lstm_cell/recurrent_kernel") and row.why.startswith("not orthogonal")
