"""The Monitor as a callback of the trainers people use (issue 33): Hugging Face's Trainer and Lightning's, driven
for real on CPU, compared with il.Monitor in a hand-written loop on the same model; their TensorBoard events read by
TensorBoard, their run-store rows rendered by `initlab report`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from typer.testing import CliRunner

import initlab as il
from initlab._errors import InitlabError
from initlab.cli.main import app
from initlab.compare.store import Store

transformers = pytest.importorskip("transformers")
pl = pytest.importorskip("lightning.pytorch")

from initlab.integrations.lightning import Monitor as LightningMonitor  # noqa: E402
from initlab.integrations.transformers import Monitor as TrainerMonitor  # noqa: E402

STEPS = 24


def _saturating_gpt2() -> nn.Module:
    """A deliberately bad GPT-2: tanh MLPs and weights drawn with std 1.0 (HF's default is 0.02), whose MLP units
    saturate and whose first gradients explode."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=100, n_positions=64,
                                     initializer_range=1.0, activation_function="tanh", bos_token_id=0,
                                     eos_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _tokens(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (n, 32), generator=generator)
    return [{"input_ids": row, "labels": row} for row in ids]


def _deep_tanh(depth: int = 12, width: int = 64) -> nn.Sequential:
    """A plain tanh MLP with weights too small for its depth (σ_w = 0.4, so χ1 < 0.16) and biases of std 0.5: the
    signal holds at the biases' fixed point while the gradient shrinks layer by layer, so the first layer's
    gradient vanishes (ordered phase)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    net = nn.Sequential(*layers, nn.Linear(width, 10))
    for module in net:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.4 / math.sqrt(width))
            nn.init.normal_(module.bias, std=0.5)
    return net


def _reference_findings(model: nn.Module, batches: list, loss_of, lr: float = 5e-5) -> set[tuple[str, str]]:
    """What il.Monitor finds on the same model in a hand-written loop (AdamW, as both trainers here use)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    with il.Monitor(model, every=1) as mon:
        for batch in batches:
            loss_of(model, batch).backward()
            optimizer.step()
            optimizer.zero_grad()
    return {(f.kind, f.layer) for f in mon.findings}


def _hf_args(out: Path, **extra) -> object:
    settings = dict(output_dir=str(out), per_device_train_batch_size=8, max_steps=STEPS, logging_steps=4,
                    save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, report_to=[])  # fmt: skip
    return transformers.TrainingArguments(**{**settings, **extra})


def _events(directory: Path) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def _text(events: EventAccumulator, tag: str) -> str:
    """The text TensorBoard shows under a tag (a text summary is a string tensor)."""
    (event,) = events.Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode()


def _report_renders(db: Path, out: Path) -> str:
    result = CliRunner().invoke(app, ["report", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text()


@pytest.mark.slow
def test_trainer_callback_flags_what_the_monitor_flags_and_reaches_tensorboard_and_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "trainer_tb"))
    db = tmp_path / "runs.db"
    callback = TrainerMonitor(every=1, log_dir=tmp_path / "initlab_tb", store=db)
    args = _hf_args(tmp_path / "out", report_to=["tensorboard"])
    trainer = transformers.Trainer(model=_saturating_gpt2(), args=args, train_dataset=_tokens(STEPS * 8),
                                   callbacks=[callback])  # fmt: skip
    trainer.train()

    assert callback.history.steps == list(range(1, STEPS + 1))  # every optimizer step (every=1), numbered alike
    found = {(f.kind, f.layer) for f in callback.findings}
    reference = _reference_findings(_saturating_gpt2(), [_batch(_tokens(8, seed=i)) for i in range(6)],
                                    lambda m, b: m(**b).loss)  # fmt: skip
    assert ("saturation", "transformer.h.0.mlp.act") in found
    assert found == reference  # the same findings as il.Monitor gives on the same model

    # through the Trainer's own logging: the TensorBoard callback wrote the findings (count and text)
    trainer_events = _events(tmp_path / "trainer_tb")
    assert "train/initlab/findings" in trainer_events.Tags()["scalars"]  # the Trainer adds "train/"
    assert "saturated units" in _text(trainer_events, "train/initlab/saturation/transformer.h.0.mlp.act")
    assert trainer_events.Scalars("train/initlab/findings")[-1].value == len(callback.findings)
    # the per-layer statistics, in TensorBoard files TensorBoard reads
    own = _events(tmp_path / "initlab_tb")
    assert "initlab/grad_norm/transformer.h.0.attn.c_attn.weight" in own.Tags()["scalars"]
    assert len(own.Scalars("initlab/saturated/transformer.h.0.mlp.act")) == STEPS

    with Store(db) as store:
        (run,) = store.runs("done")
        config = run["config"]
        assert (config["framework"], config["model_type"], config["activation"]) == ("transformers", "gpt2", "tanh")
        assert config["model_config"]["initializer_range"] == 1.0 and config["training_args"]["max_steps"] == STEPS
        assert config["depth"] == 16 and config["width"] == 64  # the block layers (the readout is the tied table)
        assert {(f["kind"], f["layer"]) for f in store.findings(run["id"])} == found
        assert [m["epoch"] for m in store.metrics(run["id"])] == [1]
    html = _report_renders(db, tmp_path / "report.html")
    assert "hf trainer" in html and "transformer.h.0.mlp.act" in html


def _batch(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}


class _Regression(nn.Module):
    """A plain module under the HF Trainer: its forward returns the loss, as the Trainer expects."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.cross_entropy(self.net(x), labels)}


def _digits(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 64, generator=generator), torch.randint(0, 10, (n,), generator=generator)
    return [{"x": a, "labels": b} for a, b in zip(x, y, strict=True)]


def test_trainer_callback_flags_vanishing_gradients_and_stops_on_request(tmp_path: Path) -> None:
    callback = TrainerMonitor(every=1, stop_on=("vanishing",))
    model = _Regression(_deep_tanh())
    trainer = transformers.Trainer(model=model, args=_hf_args(tmp_path), train_dataset=_digits(STEPS * 8),
                                   callbacks=[callback])  # fmt: skip
    trainer.train()
    first = callback.findings[0]
    assert (first.kind, first.layer) == ("vanishing", "net.0.weight")
    assert trainer.state.global_step == first.step < STEPS  # stopped right after the step that found it
    reference = _reference_findings(_Regression(_deep_tanh()), [_batch(_digits(8, seed=i)) for i in range(3)],
                                    lambda m, b: m(**b)["loss"])  # fmt: skip
    assert ("vanishing", "net.0.weight") in reference


def test_trainer_callback_records_the_last_micro_batch_of_logging_steps(tmp_path: Path) -> None:
    callback = TrainerMonitor()  # the Trainer's logging steps (4 here)
    args = _hf_args(tmp_path, gradient_accumulation_steps=2, max_steps=12, per_device_train_batch_size=4)
    transformers.Trainer(model=_Regression(_deep_tanh(depth=2)), args=args, train_dataset=_digits(12 * 8),
                         callbacks=[callback]).train()  # fmt: skip
    assert callback.history.steps == [2, 8, 16, 24]  # backward passes: optimizer steps 1, 4, 8, 12
    with pytest.raises(InitlabError, match="every must be a positive number of optimizer steps"):
        TrainerMonitor(every=0)


def _cross_entropy(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.cross_entropy(net(batch[0]), batch[1])


class _LitTanh(pl.LightningModule):
    """A LightningModule whose training_step calls its network (never the module's own forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _deep_tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # for the reference loop: Lightning never calls it here
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        loss = _cross_entropy(self.net, batch)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=5e-5)


def _loader(n: int = STEPS * 8) -> torch.utils.data.DataLoader:
    data = _batch(_digits(n))
    dataset = torch.utils.data.TensorDataset(data["x"], data["labels"])
    return torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=0)


def _lightning(tmp_path: Path, max_steps: int, callback: LightningMonitor, **extra) -> object:
    logger = pl.loggers.TensorBoardLogger(str(tmp_path), name="lit", version=0)
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=logger, callbacks=[callback],
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      log_every_n_steps=1, **extra)  # fmt: skip


_LIGHTNING_NOISE = [
    "ignore:.*does not have many workers:UserWarning",  # a DataLoader with num_workers=0, on purpose
    "ignore:.*isn't the same as the total number of steps:UserWarning",
    "ignore:.*LeafSpec.* is deprecated:FutureWarning",  # Lightning 2.6 on torch 2.13's pytree
]


@pytest.mark.slow
@pytest.mark.filterwarnings(*_LIGHTNING_NOISE)
def test_lightning_callback_flags_what_the_monitor_flags_and_writes_logs_and_store(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    callback = LightningMonitor(every=1, store=db)
    module = _LitTanh()
    _lightning(tmp_path, STEPS, callback).fit(module, _loader())

    assert callback.history.steps == list(range(1, STEPS + 1))
    found = {(f.kind, f.layer) for f in callback.findings}
    reference = _reference_findings(_LitTanh(), list(_loader(24)), _cross_entropy)  # through forward
    assert ("vanishing", "net.0.weight") in found
    assert found == reference
    events = _events(tmp_path / "lit" / "version_0")
    assert "initlab/grad_norm/net.0.weight" in events.Tags()["scalars"]
    assert len(events.Scalars("initlab/std/net.1")) == STEPS  # the tanh after the first layer, at every step
    assert "gradients vanish" in _text(events, "initlab/vanishing/net.0.weight")  # the finding's text
    with Store(db) as store:
        (run,) = store.runs("done")
        assert (run["config"]["framework"], run["config"]["activation"], run["config"]["depth"]) == (
            "lightning",
            "tanh",
            13,
        )
        assert any(f["kind"] == "vanishing" for f in store.findings(run["id"]))
        assert math.isfinite(store.metrics(run["id"])[0]["train_loss"])
    assert "lightning fit" in _report_renders(db, tmp_path / "report.html")


@pytest.mark.filterwarnings(*_LIGHTNING_NOISE)
def test_lightning_resumed_run_continues_the_monitors_history(tmp_path: Path) -> None:
    first = LightningMonitor(every=2)
    trainer = _lightning(tmp_path, 10, first)
    trainer.fit(_LitTanh(), _loader(10 * 8))  # one epoch of 10 steps: the checkpoint is at its end
    checkpoint = tmp_path / "step10.ckpt"
    trainer.save_checkpoint(checkpoint)
    before = first.history.state_dict()

    resumed = LightningMonitor(every=2)
    _lightning(tmp_path, 20, resumed).fit(_LitTanh(), _loader(10 * 8), ckpt_path=str(checkpoint))
    assert resumed.history.steps[: len(before["steps"])] == before["steps"] == [1, 2, 4, 6, 8, 10]
    assert resumed.history.steps == [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]  # continued, nothing twice
    assert resumed.history.state_dict()["records"][:6] == before["records"]
    assert [(f.kind, f.step) for f in resumed.findings][: len(first.findings)] == [
        (f.kind, f.step) for f in first.findings
    ]
    assert len({(f.kind, f.layer) for f in resumed.findings}) == len(resumed.findings)  # each reported once
