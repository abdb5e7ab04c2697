"""How often ``verify`` and ``identify`` are right (issue 32).

Run: .venv/bin/python bench/verify_rates.py [--models 1000]
Three measurements, each over freshly built, seeded models:

1. False alarms: ``--models`` correctly initialized models (an MLP of 2-4 Linear layers with widths drawn from 16 to
   512, or a CNN of 2-3 convolutions, one activation drawn from relu/tanh/gelu; every scheme that needs no data, in
   turn; a seed each), verified against the scheme they were initialized with. A model is a false alarm if
   ``verify(...).ok`` is False. Goal: <= 1% of models (verify's alpha is 1e-3 per call).
2. Power: the same kind of models with one layer of >= 16,384 entries, whose weight is then multiplied by 1.05 (a 5%
   std error; by 0.95 for half of them). Caught: ``verify`` names that parameter. Goal: >= 99%.
3. identify: every weight of >= 4,096 entries of the models of (1) drawn by a scheme identify knows (a distribution
   of independent entries, or orthogonal). Right: identify's matches are one distribution (every scheme of the
   same law is one candidate), and it is the scheme's. Goal: >= 95%.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings

import torch
from torch import nn

import initlab as il
from initlab.init.identify import candidates, identify
from initlab.init.verify import verify

WIDTHS = (16, 32, 64, 128, 256, 512)
ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def build(rng: random.Random, big: bool = False) -> tuple[nn.Module, torch.Tensor, str]:
    """A model, an example input, and the name of its big layer (one of >= 16,384 entries where ``big``)."""
    act = ACTS[rng.choice(list(ACTS))]
    if rng.random() < 0.7:
        widths = [rng.choice(WIDTHS) for _ in range(rng.randint(3, 5))]
        if big:
            widths[1] = widths[2] = 128 if rng.random() < 0.5 else 256
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers += [nn.Linear(widths[i], widths[i + 1]), act()]
        return nn.Sequential(*layers[:-1]), torch.randn(4, widths[0]), "2.weight"
    channels = [3] + [rng.choice((16, 32, 64)) for _ in range(rng.randint(2, 3))]
    if big:
        channels[1], channels[2] = 64, 64  # 64·64·3·3 = 36,864 entries
    layers = []
    for i in range(len(channels) - 1):
        layers += [nn.Conv2d(channels[i], channels[i + 1], 3, padding=1), act()]
    return nn.Sequential(*layers[:-1]), torch.randn(2, 3, 8, 8), "2.weight"


def schemes() -> list[str]:
    return [s.name for s in il.schemes() if not s.needs_data]


def false_alarms(models: int) -> tuple[int, int, list[str]]:
    rng, names, alarms, examples = random.Random(0), schemes(), 0, []
    for i in range(models):
        model, x, _ = build(rng)
        scheme = names[i % len(names)]
        try:
            il.initialize(model, scheme, example=x, seed=i)
        except il.InitlabError:  # a scheme that does not fit this model (identity on a non-square layer...)
            model, x, _ = build(rng)
            scheme = "he_normal"
            il.initialize(model, scheme, example=x, seed=i)
        report = verify(model, scheme, example=x)
        if not report.ok:
            alarms += 1
            examples.append(f"{scheme}: {[(r.name, r.why) for r in report.mismatches]}")
    return alarms, models, examples


def power(trials: int) -> tuple[int, int]:
    rng, caught, trials_made = random.Random(1), 0, 0
    random_schemes = [n for n in schemes() if _random_entries(n)]
    for i in range(trials):
        model, x, name = build(rng, big=True)
        scheme = random_schemes[i % len(random_schemes)]
        try:
            il.initialize(model, scheme, example=x, seed=10_000 + i)
        except il.InitlabError:  # no critical point for this activation: he_normal instead
            scheme = "he_normal"
            il.initialize(model, scheme, example=x, seed=10_000 + i)
        weight = dict(model.named_parameters())[name]
        assert weight.numel() >= 16_384, (name, weight.shape)
        if not weight.any():  # a layer the scheme zeroes (mup's readout): a multiple of it is no error
            continue
        trials_made += 1
        with torch.no_grad():
            weight.mul_(1.05 if i % 2 else 0.95)
        report = verify(model, scheme, example=x)
        caught += any(r.name == name for r in report.mismatches)
    return caught, trials_made


def _random_entries(scheme: str) -> bool:
    """Schemes whose weights are random with a std (not constant, identity, Dirac)."""
    return scheme not in ("zeros", "ones", "constant", "identity", "dirac")


def identified(models: int) -> tuple[int, int, int, dict[str, int]]:
    """(named exactly, named among look-alikes, weights, wrong by scheme). Look-alikes: other schemes whose law at
    these fans is the same family within 2% of the std, which 4,096 entries cannot tell apart (the std of a sample
    std is 1.1% there)."""
    rng, exact, alike, total, wrong = random.Random(2), 0, 0, 0, {}
    for i in range(models):
        model, x, _ = build(rng)
        scheme = schemes()[i % len(schemes())]
        try:
            il.initialize(model, scheme, example=x, seed=20_000 + i)
        except il.InitlabError:
            continue
        for row in identify(model, example=x):
            if torch.Size(row.shape).numel() < 4096:
                continue
            cands = candidates(il.Fans(row.fan_in, row.fan_out), row.shape)
            truth = [c for c in cands if any(n.split(" ")[0] == scheme for n in c.names)]
            if not truth:
                continue  # a scheme identify does not name (constant, identity, dirac, sparse, critical, mup...)
            total += 1
            named = row.matches.split("; ") if row.verdict == "fresh init" else []
            if named == [str(truth[0])]:
                exact += 1
            elif str(truth[0]) in named and all(_alike(c, truth[0]) for c in cands if str(c) in named):
                alike += 1
            else:
                wrong[scheme] = wrong.get(scheme, 0) + 1
    return exact, alike, total, wrong


def _alike(a, b) -> bool:  # type: ignore[no-untyped-def]
    if a.law is None or b.law is None:
        return a.law is b.law
    return a.law.family == b.law.family and abs(a.law.std / b.law.std - 1) <= 0.02


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    start = time.perf_counter()
    alarms, models, examples = false_alarms(args.models)
    print(f"false alarms: {alarms} of {models} correctly initialized models ({100 * alarms / models:.2f}%; goal <= 1%)")
    for line in examples[:5]:
        print("  ", line[:300])
    caught, trials = power(args.models)
    print(f"5% std error on a layer of >= 16,384 entries: caught {caught} of {trials} ({100 * caught / trials:.2f}%; "
          "goal >= 99%)")  # fmt: skip
    exact, alike, total, wrong = identified(args.models)
    print(f"identify, layers of >= 4,096 entries: the right scheme for {exact + alike} of {total} "
          f"({100 * (exact + alike) / total:.2f}%; goal >= 95%): alone for {exact}, with look-alikes within 2% of its "
          f"std for {alike}; wrong by scheme: {wrong}")  # fmt: skip
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
