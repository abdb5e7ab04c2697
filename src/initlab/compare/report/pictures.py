"""The README's pictures, drawn from a demo run by the report's own figure code, each stamped with what made it.

``python docs/pictures.py`` (``make docs``) runs the full demo (or reads ``--store``) and writes every picture the
README shows. Each PNG carries, in its text chunks, the command that made it and a fingerprint of what its
content depends on: the full demo's configuration (every run it makes) and the schemes' semantics (the
(σ_w², σ_b²) each scheme draws for every activation the demo uses, which sets the predicted depths drawn).
``tests/test_readme.py`` fails when a picture's fingerprint is not the code's: a picture made before names kept
their published meaning (issue 35: Glorot shown at a predicted depth of 73 for tanh) can no longer stay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image, PngImagePlugin

from initlab.compare.demo import demo_spec
from initlab.compare.report.html import claim_figure, read_runs, trainability_figures
from initlab.compare.report.plots import phase_plot, save
from initlab.compare.store import Store

__all__ = ["PICTURES", "fingerprint", "stamp_of", "write_pictures"]

PHASE = ("tanh", 1.5, 0.05, 50)  # the README's `initlab predict --activation tanh --weight-var 1.5 ...`
PICTURES = {  # file under docs/ -> what it shows (the README names the same)
    "report-remedies.png": "the report's figure of the demo's remedies claim (initlab demo; initlab report)",
    "report-trainability.png": "the report's trainability grid for tanh (initlab demo; initlab report)",
    "phase.png": "initlab predict --activation tanh --weight-var 1.5 --bias-var 0.05 --depth 50 --plot phase.png",
}
FINGERPRINT_KEY, COMMAND_KEY = "initlab-fingerprint", "initlab-command"


def fingerprint() -> str:
    """A hash of the full demo's runs and of every scheme's (σ_w², σ_b²) per activation the demo uses."""
    from initlab.theory.schemes import scheme_point

    runs = sorted(json.dumps(p.to_dict(), sort_keys=True) for p in demo_spec(quick=False).points)
    plain = [json.loads(r) for r in runs if json.loads(r)["model"] == "mlp"]
    pairs = sorted({(c["scheme"], c["activation"]) for c in plain})
    points = [(s, a, *scheme_point(s, a)) for s, a in pairs]
    payload = json.dumps({"demo": runs, "schemes": points}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _figures(store_path: Path) -> dict[str, Callable[[], Figure | None]]:
    with Store(store_path, create=False) as store:
        runs, comparisons = read_runs(store), {c["claim"]: c for c in store.comparisons()}
    by_id = {r.id: r for r in runs}
    return {
        "report-remedies.png": lambda: claim_figure(comparisons["remedies"], by_id) if "remedies" in comparisons
        else None,
        "report-trainability.png": lambda: next((f for act, f, _ in trainability_figures(runs) if act == "tanh"),
                                                None),
        "phase.png": lambda: phase_plot(*PHASE),
    }  # fmt: skip


def write_pictures(store_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw every README picture from the demo store into ``out_dir``, stamped; returns the files written."""
    out, stamp = Path(out_dir), fingerprint()
    written = []
    for name, draw in _figures(Path(store_path)).items():
        figure = draw()
        if figure is None:
            raise SystemExit(f"{store_path} has no runs for {name} ({PICTURES[name]}): run the full demo first")
        path = save(figure, out / name)
        info = PngImagePlugin.PngInfo()
        info.add_text(COMMAND_KEY, PICTURES[name])
        info.add_text(FINGERPRINT_KEY, stamp)
        with Image.open(path) as image:
            image.load()
            image.save(path, pnginfo=info)
        written.append(path)
    return written


def stamp_of(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG (empty for a picture nobody stamped)."""
    with Image.open(path) as image:
        return dict(getattr(image, "text", {}))
