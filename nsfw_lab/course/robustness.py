"""Notebook 06's robustness section: every competing model under the same corruptions, read as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from nsfw_lab.config import Profile
from nsfw_lab.evaluate.robustness import robustness_run, worst


def measure_robustness(
    found: dict[str, Path], profile: Profile, device: str = "auto", seed: int = 0, progress: bool = True
) -> dict[str, dict[str, Any]]:
    """``nsfw-lab robustness`` on each run of ``found`` (name -> run folder) at the profile's sizes (the first
    ``course.robustness_per_class`` test images of each class, ``course.robustness_severities``): name -> record.
    Each run folder gets its JSON and figure, which the model cards read."""
    c = profile.course
    return {
        name: robustness_run(
            run,
            "test",
            severities=c.robustness_severities,
            limit=c.robustness_per_class,
            device=device,
            seed=seed,
            progress=progress,
        )
        for name, run in found.items()
    }


def robustness_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per model and corruption at its most severe level measured: macro-F1 with its interval, the paired
    drop from clean with the smallest drop it could detect and its verdict, block recall, the pair that grew most."""
    rows = []
    for name, r in results.items():
        for w in worst(r):
            g = w["grown_pairs"][0] if w["grown_pairs"] else None
            lo, hi = w["macro_f1_ci95"]
            rows.append({
                "model": name,
                "corruption": w["corruption"],
                "level": f"ε {w['eps']:g}/255" if "eps" in w else f"severity {w['severity']}",
                "clean macro-F1": r["clean"]["macro_f1"],
                "macro-F1": w["macro_f1"],
                "95% CI": "" if lo is None else f"[{lo:.3f}, {hi:.3f}]",
                "drop": w["drop"]["delta"],
                "could detect": w["drop"]["detectable"],
                "verdict": w["verdict"],
                "block recall": w["block_recall"],
                "grew most": f"{g['true']} → {g['predicted']}: {g['clean']} → {g['now']}" if g else "none",
            })  # fmt: skip
    return pd.DataFrame(rows)


def robustness_summary(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: how many corruptions (at their worst level) hurt it detectably, the worst one, and the watched
    confusion pairs (porn↔sexy, hentai↔drawings) clean and at their largest under a corruption."""
    out = {}
    for name, r in results.items():
        ws = worst(r)
        hurt = [w for w in ws if w["verdict"] == "hurts"]
        bad = min(ws, key=lambda w: w["drop"]["delta"]) if ws else None
        watched: dict[str, dict[str, Any]] = {}
        for w in ws:  # each watched pair's count on clean images and its largest under a corruption
            for p in w["watched_pairs"]:
                k = f"{p['true']} → {p['predicted']}"
                if k not in watched or p["now"] > watched[k]["most"]:
                    watched[k] = {"clean": p["clean"], "most": p["now"], "under": w["corruption"]}
        out[name] = {
            "n": r["n"],
            "clean_macro_f1": r["clean"]["macro_f1"],
            "hurt": [w["corruption"] for w in hurt],
            "of": len(ws),
            "worst": None
            if bad is None
            else {"corruption": bad["corruption"], "drop": bad["drop"]["delta"], "ci95": bad["drop"].get("ci95")},
            "watched_pairs": watched,
        }
    return out
