"""The zoo of models initlab did not write (issue 30), shared by tests/test_zoo.py and docs/predict_zoo.py: Hugging
Face models built from toy configs (never a download), torch's own modules, and models written with functional
ops; with the batch each is measured on and the names of its blocks."""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
import transformers
from torch import nn

__all__ = ["BLOCK", "ZOO", "Functional", "UNet", "batch_of", "bert", "encoder", "gpt2", "llama", "resnet", "vit"]

# the modules each library names as its blocks (the reference for "block outputs", independent of initlab)
BLOCK = re.compile(r"^(transformer\.h|model\.layers|encoder\.layer|encoder\.stages\.\d+\.layers|layers)\.\d+$")


def gpt2(n_layer: int = 4) -> nn.Module:
    config = transformers.GPT2Config(n_layer=n_layer, n_embd=64, n_head=4, vocab_size=100, n_positions=64)
    return transformers.GPT2LMHeadModel(config)


def llama() -> nn.Module:
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=4,
        vocab_size=100, max_position_embeddings=64))  # fmt: skip


def bert() -> nn.Module:
    return transformers.BertModel(transformers.BertConfig(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=4, vocab_size=100,
        max_position_embeddings=64))  # fmt: skip


def vit() -> nn.Module:
    return transformers.ViTModel(transformers.ViTConfig(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=4, image_size=32,
        patch_size=8))  # fmt: skip


def resnet() -> nn.Module:
    config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])
    return transformers.ResNetModel(config)


def encoder(norm_first: bool) -> nn.Module:
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)


class UNet(nn.Module):
    """Down, up, and a skip concatenated along the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 16, 3, padding=1)
        self.inner = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.out = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.down(x))
        return self.out(torch.cat([skip, F.relu(self.up(F.relu(self.inner(skip))))], dim=1))


class Functional(nn.Module):
    """Weights as bare parameters, applied with F.linear, an einsum and a leaky ReLU of slope 0.9."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(128, 64))
        self.w2 = nn.Parameter(torch.empty(128, 64))  # used as "bi,ih->bh": fan_in is its first dimension
        self.w3 = nn.Parameter(torch.empty(10, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(F.linear(x, self.w1), 0.9)
        h = torch.tanh(torch.einsum("bi,ih->bh", h, self.w2))
        return F.linear(h, self.w3)


ZOO: dict[str, tuple[Callable[[], nn.Module], object]] = {
    "gpt2": (gpt2, None),
    "llama": (llama, None),
    "bert": (bert, None),
    "vit": (vit, None),
    "resnet": (resnet, None),
    "encoder_post_ln": (lambda: encoder(False), torch.randn(2, 6, 64)),
    "encoder_pre_ln": (lambda: encoder(True), torch.randn(2, 6, 64)),
    "lstm": (lambda: nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True), None),
    "unet": (UNet, torch.randn(2, 3, 16, 16)),
    "functional": (Functional, torch.randn(4, 64)),
}


def batch_of(which: str, model: nn.Module) -> object:
    """A measured batch of 64: token ids uniform over the vocabulary, images or features N(0, 1)."""
    g = torch.Generator().manual_seed(1)
    example = ZOO[which][1]
    if example is not None:
        return torch.randn(64, *example.shape[1:], generator=g)
    if which in ("gpt2", "llama", "bert"):
        return {"input_ids": torch.randint(0, 100, (64, 16), generator=g)}
    if which in ("vit", "resnet"):
        return {"pixel_values": torch.randn(64, 3, 32, 32, generator=g)}
    return torch.randn(64, 8, 16, generator=g)  # the LSTM: (batch, time, features)
