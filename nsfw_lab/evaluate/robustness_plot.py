"""The figure of ``nsfw-lab robustness``: one panel per corruption, macro-F1 and block recall against severity."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from nsfw_lab.utils.fsutil import atomic_open


def robustness_figure(result: dict[str, Any]) -> Figure:
    """Small multiples of a ``robustness`` record: each corruption's macro-F1 (blue) and block recall (red) with
    their 95% intervals against severity (FGSM: against ε), the clean values dashed."""
    names = list(dict.fromkeys(r["corruption"] for r in result["conditions"]))
    cols = min(5, max(1, len(names)))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(max(7.0, 2.6 * cols), 2.3 * rows + 0.6))
    clean = result["clean"]
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        rs = [r for r in result["conditions"] if r["corruption"] == name]
        x = [r.get("eps", r["severity"]) for r in rs]
        for key, colour in (("macro_f1", "#4c72b0"), ("block_recall", "#c44e52")):
            if clean[key] is None:
                continue
            ys = [r[key] for r in rs]
            ci = [r[f"{key}_ci95"] for r in rs]
            err = None
            if all(c[0] is not None for c in ci):  # error bars: they show for a single severity too
                err = [[max(0.0, y - c[0]) for y, c in zip(ys, ci, strict=True)],
                       [max(0.0, c[1] - y) for y, c in zip(ys, ci, strict=True)]]  # fmt: skip
            ax.errorbar(x, ys, yerr=err, fmt="o-", color=colour, ms=3, capsize=2, lw=1, label=key.replace("_", " "))
            ax.axhline(clean[key], color=colour, ls="--", lw=0.8)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        if len(x) == 1:
            ax.set_xlim(x[0] - 1, x[0] + 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("ε (grey levels)" if name == "fgsm" else "severity", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"{result['model']} at {result['input_px']} px, {result['split']} split ({result['n']} images): "
        "corrupted (solid, 95% CI) vs clean (dashed)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_robustness(result: dict[str, Any], path: Path) -> Path:
    """Write :func:`robustness_figure` of ``result`` to ``path`` (PNG, atomically)."""
    fig = robustness_figure(result)
    with atomic_open(Path(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    return path
