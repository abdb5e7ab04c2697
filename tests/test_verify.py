"""verify and identify (issue 32): every scheme's plans against the tensors initialize drew, on models initlab did not
write; the known initialization bugs, each reproduced and named; the exact checks; refusals; the command line on
.pt and .safetensors checkpoints. Statistical checks run at verify's alpha (1e-3 per call, Bonferroni over its tests);
every model is seeded, so each outcome here is fixed. The rates over 1,000 models live in bench/verify_rates.py."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn
from typer.testing import CliRunner

import initlab as il
import zoo_models as zoo
from initlab.cli.main import app

SCHEMES = [s.name for s in il.schemes() if not s.needs_data]
runner = CliRunner()


def _quiet(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(32, 128), nn.Tanh(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def _lstm() -> nn.Module:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 32, padding_idx=0)
            self.rnn = nn.LSTM(32, 64, num_layers=2, bidirectional=True, batch_first=True)
            self.head = nn.Linear(128, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(self.embed(x))[0])

    return Tagger()


MODELS = {"gpt2": zoo.gpt2, "llama": zoo.llama, "transformer_lm": lambda: il.TransformerLM(100, 16, 64, 3, tied=True),
          "mlp": _mlp, "lstm": _lstm, "unet": zoo.UNet}  # fmt: skip
EXAMPLES = {"lstm": torch.randint(1, 50, (2, 7)), "unet": torch.randn(2, 3, 16, 16), "mlp": torch.randn(4, 32),
            "transformer_lm": torch.randint(0, 100, (2, 16))}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_verify_passes_on_every_scheme_initialize_draws(kind: str) -> None:
    checked = 0
    for i, scheme in enumerate(SCHEMES):
        model, example = MODELS[kind](), EXAMPLES.get(kind)
        try:
            _quiet(il.initialize, model, scheme, seed=i, example=example)
        except il.InitlabError:  # a scheme the model cannot take (identity on a non-square weight, ...)
            continue
        report = _quiet(il.verify, model, scheme, example=example)
        assert report.ok, (scheme, [(r.name, r.why) for r in report.mismatches])
        checked += 1
        if checked == 1:  # and not by accident: the same model against a scheme of another std differs
            assert not _quiet(il.verify, model, "small_random", example=example).ok, scheme
    assert checked >= 20, checked


def test_gpt2_c_proj_left_at_0_02_is_named_as_the_residual_scaling_not_applied() -> None:
    model = zoo.gpt2()  # 4 blocks: 8 residual branches, c_proj planned at 0.02/√8
    _quiet(il.initialize, model, "gpt2", seed=0)
    assert _quiet(il.verify, model, "gpt2").ok
    with torch.no_grad():  # what transformers#47458 shipped: c_proj re-drawn at the plain 0.02
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                p.normal_(0.0, 0.02)
    report = _quiet(il.verify, model, "gpt2")
    assert not report.ok
    assert sorted(r.name for r in report.mismatches) == sorted(
        f"transformer.h.{i}.{part}.c_proj.weight" for i in range(4) for part in ("attn", "mlp")
    )
    for row in report.mismatches:
        assert "plan 0.007071 = 0.02 ×1/√8: the ×1/√8 rule was not applied" in row.why, row.why


def test_trunc_normal_with_absolute_bounds_is_named_under_a_truncated_scheme() -> None:
    scheme = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}  # N(0, 0.02²) cut at ±2σ = ±0.04
    model = zoo.vit()
    _quiet(il.initialize, model, scheme, seed=0)
    assert _quiet(il.verify, model, scheme).ok
    with torch.no_grad():  # pytorch#155588: trunc_normal_'s default bounds are ±2 absolute, so nothing is cut
        for p in model.parameters():
            if p.ndim == 2:
                nn.init.trunc_normal_(p, std=0.02)
    report = _quiet(il.verify, model, scheme)
    named = {r.name for r in report.mismatches}
    assert {n for n, p in model.named_parameters() if p.ndim == 2 and p.numel() >= 4096} <= named
    why = report["layers.0.attention.q_proj.weight"].why
    assert "outside the plan's bounds [-0.04, 0.04]" in why and "pass a=-2σ, b=2σ" in why, why


def test_a_tied_readout_drawn_twice_is_named_with_the_rule_that_drew_it_last() -> None:
    model = zoo.gpt2()  # lm_head.weight is transformer.wte.weight: the embedding's plan owns it
    _quiet(il.initialize, model, "he_normal", seed=0)
    assert _quiet(il.verify, model, "he_normal").ok
    head = model.lm_head  # a second init loop reaches the same tensor as a Linear (fan_in 64)
    il.he_normal_(head.weight, fans=il.fans(head.weight, layer=head))
    report = _quiet(il.verify, model, "he_normal")
    assert [r.name for r in report.mismatches] == ["transformer.wte.weight = lm_head.weight"]
    assert "it is lm_head.weight's plan" in report.mismatches[0].why


def test_identify_tells_re_randomized_layers_from_trained_ones() -> None:
    torch.manual_seed(0)
    model = zoo.gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokens = torch.Generator().manual_seed(0)
    for _ in range(150):  # a learnable task: every odd token is a function of the one before
        x = torch.randint(0, 100, (16, 32), generator=tokens)
        x[:, 1::2] = (x[:, ::2] * 7 + 3) % 100
        loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loaded = zoo.gpt2()
    loaded.load_state_dict(model.state_dict())
    with torch.no_grad():  # two layers re-randomized after loading (transformers#46620's symptom)
        loaded.transformer.h[1].mlp.c_fc.weight.normal_(0.0, 0.02)
        loaded.transformer.h[2].attn.c_attn.weight.normal_(0.0, 0.02)
    verdicts = _quiet(il.identify, loaded).verdicts()
    fresh = {"transformer.h.1.mlp.c_fc.weight", "transformer.h.2.attn.c_attn.weight"}
    assert {n for n, v in verdicts.items() if v == "fresh init"} == fresh
    assert all(v == "looks trained" for n, v in verdicts.items() if n not in fresh), verdicts
    assert "N(0, 0.02²)" in _quiet(il.identify, loaded)["transformer.h.1.mlp.c_fc.weight"].matches


def test_identify_names_torchs_defaults_on_a_model_as_built() -> None:
    torch.manual_seed(0)
    report = _quiet(il.identify, nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128)))
    assert [r.verdict for r in report] == ["fresh init", "fresh init"]
    assert all(r.matches == "torch_default (torch's nn.Linear/Conv default)" for r in report), report


def test_exact_checks_name_fixed_entries_orthogonality_and_leave_frozen_alone() -> None:
    model = _lstm()
    example = EXAMPLES["lstm"]
    _quiet(il.initialize, model, "he_normal", seed=0, example=example)
    with torch.no_grad():
        model.rnn.bias_ih_l0.zero_()  # the forget gate's 1s lost
        model.rnn.weight_hh_l1_reverse.mul_(1.01)  # no longer orthogonal
        model.embed.weight[0] = 0.5  # the padding row
    model.head.weight.requires_grad_(False)
    with torch.no_grad():
        model.head.weight.mul_(3.0)  # frozen: not checked unless asked
    report = _quiet(il.verify, model, "he_normal", example=example)
    why = {r.name: r.why for r in report.mismatches}
    assert set(why) == {"rnn.bias_ih_l0", "embed.weight", "rnn.weight_hh_l1_reverse[0]", "rnn.weight_hh_l1_reverse[1]",
                        "rnn.weight_hh_l1_reverse[2]", "rnn.weight_hh_l1_reverse[3]"}, why  # fmt: skip
    assert why["rnn.bias_ih_l0"] == "64 of 256 entries differ from the plan's fixed values"
    assert why["embed.weight"] == "32 of 32 entries differ from the plan's fixed values"
    assert why["rnn.weight_hh_l1_reverse[0]"].startswith("not orthogonal: max |W Wᵀ/g² − I| = 0.0201")
    assert report["head.weight"].status == "not checked"
    assert _quiet(il.verify, model, "he_normal", example=example, frozen=True)["head.weight"].status == "differs"


def test_verify_refuses_what_has_no_plan_or_no_values() -> None:
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(il.InitlabError, match="lsuv scales each layer by what it measures on a batch"):
        il.verify(model, "lsuv")
    with torch.device("meta"):
        meta = _mlp()
    with pytest.raises(il.InitlabError, match="the model is on the meta device: it has no values to verify"):
        il.verify(meta, "he_normal")
    with pytest.raises(il.InitlabError, match="unknown"):
        il.verify(model, "he_nromal")
    with pytest.raises(il.InitlabError, match="unknown residual rule 'zero_lats'"):
        il.verify(model, "he_normal", residual="zero_lats")
    with pytest.raises(il.InitlabError, match="alpha is the chance"):
        il.verify(model, "he_normal", alpha=5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_verify_names_a_parameter_no_plan_covers() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.temperature = nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * self.temperature

    model = Scaled()
    _quiet(il.initialize, model, "he_normal", seed=0, example=torch.randn(2, 8))
    with pytest.warns(UserWarning, match="1 parameter"):
        report = il.verify(model, "he_normal", example=torch.randn(2, 8))
    assert report.notes[0] == "1 parameter(s) no plan covers, not checked: temperature"


FACTORY = """
from torch import nn


def build(width=64):
    return nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
"""


def test_cli_verifies_pt_and_safetensors_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    (tmp_path / "verify_models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    _quiet(il.initialize, model, "he_uniform", seed=0)
    torch.save(model.state_dict(), tmp_path / "good.pt")
    save_file(model.state_dict(), str(tmp_path / "good.safetensors"))
    for path in ("good.pt", "good.safetensors"):
        result = runner.invoke(app, ["verify", str(tmp_path / path), "--scheme", "he_uniform", "--format", "json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["ok"] is True
    with torch.no_grad():
        model[2].weight.mul_(2.0)
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "bad.pt")  # as Lightning saves
    args = ["verify", str(tmp_path / "bad.pt"), "--scheme", "he_uniform", "--model", "verify_models:build"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "initlab.verify" in result.stdout and "differs" in result.stdout  # the table, for people
    data = json.loads(runner.invoke(app, [*args, "--format", "json"]).stdout)
    assert data["ok"] is False
    assert [(r["name"], r["why"].split(";")[0]) for r in data["rows"] if r["status"] == "differs"] == [
        ("2.weight", "std 0.3555, plan 0.1768 (×2.01)")]  # fmt: skip
    wrong = runner.invoke(app, [*args, "--model-arg", "width=32"])  # a model of other shapes
    assert wrong.exit_code == 2 and wrong.stderr.startswith("Error: the checkpoint does not fit the --model: "), (
        wrong.output
    )
    identified = runner.invoke(app, ["verify", str(tmp_path / "good.pt"), "--format", "json"])
    assert identified.exit_code == 0, identified.output
    rows = json.loads(identified.stdout)["rows"]
    assert [(r["name"], r["verdict"], r["matches"]) for r in rows[:2]] == [
        ("0.weight", "fresh init", "he_uniform"), ("2.weight", "fresh init", "he_uniform")]  # fmt: skip
    assert "he_uniform" in rows[2]["matches"].split("; ")  # 4 × 64 entries: normal laws of a near std fit as well


def test_cli_refuses_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    cases = {
        "notes.pt": "is not a torch checkpoint",
        "list.pt": "holds no state dict. Accepted: a dict of parameter names to tensors",
        "missing.pt": "cannot use",
    }
    for name, message in cases.items():
        result = runner.invoke(app, ["verify", str(tmp_path / name), "--scheme", "he_normal"])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "small.pt")
    result = runner.invoke(app, ["verify", str(tmp_path / "small.pt"), "--model", "mlp"])
    assert result.exit_code == 2 and "--model names your model" in result.stderr, result.stderr


def test_hf_checkpoint_without_its_model_says_how_its_structure_was_read(tmp_path: Path) -> None:
    transformers.logging.set_verbosity_error()
    model = zoo.llama()
    _quiet(il.initialize, model, "kaiming_normal", seed=0)
    torch.save(model.state_dict(), tmp_path / "llama.pt")
    result = runner.invoke(app, ["verify", str(tmp_path / "llama.pt"), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert any("without --model the structure is read off the names and shapes" in n for n in data["notes"])
    verdicts = {r["name"]: (r["verdict"], r["matches"]) for r in data["rows"]}
    assert verdicts["model.layers.0.mlp.down_proj.weight"] == ("fresh init", "kaiming_normal")


def test_the_monitor_and_a_runs_report_say_whether_the_layers_carry_the_scheme(tmp_path: Path) -> None:
    from initlab.compare.report.html import build_report
    from initlab.compare.train import TrainConfig, train

    model = _mlp()
    _quiet(il.initialize, model, "he_normal", seed=0, example=EXAMPLES["mlp"])
    assert not il.Monitor(model, scheme="he_normal").findings
    il.kaiming_uniform_(model[2].weight)  # a second init loop reaches one layer
    findings = il.Monitor(model, scheme="he_normal").findings
    assert [(f.step, f.layer, f.kind) for f in findings] == [(0, "2.weight", "init_mismatch")]
    assert findings[0].message.startswith(
        "2.weight does not carry the plan of initialize(model, 'he_normal'): not truncated normal-shaped"
    )  # the same std: only the shape tells
    assert findings[0].message.endswith("consistent with he_uniform")
    config = TrainConfig(depth=3, width=32, epochs=1, max_steps=3, scheme="he_normal")
    result = train(config)
    assert result.measures["init_mismatches"] == 0.0
    with il.Store(tmp_path / "runs.db") as store:
        store.add(result.run_id, config.to_dict())
        store.write(result)
    html = build_report(tmp_path / "runs.db", tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<th>init (verify)</th>" in html and ">as planned<" in html
