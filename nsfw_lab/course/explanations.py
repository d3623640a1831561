"""Notebook 06's measurements, one call per model: where CAM mass falls, the pointing game and faithfulness
against baselines, and the shortcut experiment (a model trained on badged data against a clean one); and the
tables the notebook shows of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nsfw_lab.data.dataset import read_curated
from nsfw_lab.evaluate.loading import LoadedRun
from nsfw_lab.explain.cam import GradCam, cam_layer, is_flat, map_sizes
from nsfw_lab.explain.gallery import load_images
from nsfw_lab.explain.measure import (
    energy_in_box,
    faithfulness,
    input_boxes,
    pointing_game,
    pointing_hits,
    random_cams,
    region_mass,
)
from nsfw_lab.explain.shortcut import (
    SHORTCUT_GRID,
    counterfactual_images,
    detect_shortcut,
    predict_classes,
    shortcut_effect,
    watermark_box,
)

if TYPE_CHECKING:
    import pandas as pd

POINTING_TARGET = 0.8  # the bar for a model that learned the proxy well


def cams_for(
    run: LoadedRun, images: torch.Tensor, classes: Sequence[int], layer: str, target: str = "logit"
) -> np.ndarray:
    """CAMs of ``classes`` (flat maps allowed: a class the model saw no evidence for)."""
    with GradCam(run.model, layer, target=target) as cam:
        return cam(images, list(classes), allow_flat=True)


def interleave(rows: Sequence[dict[str, str]], key: str = "label") -> list[dict[str, str]]:
    """``rows`` reordered round-robin over ``key`` (first of each class, then second ...), so that any prefix
    is spread over the classes (prediction files are sorted by class)."""
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    out: list[dict[str, str]] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out += [g[i] for g in groups.values() if i < len(g)]
    return out


def where_mass_falls(run: LoadedRun, predictions: list[dict[str, str]], layer: str, limit: int = 400) -> dict[str, Any]:
    """Per predicted class over (at most ``limit``) test images: the mean CAM of the predicted class (for a
    figure) and :func:`region_mass` (centre, border, each corner)."""
    rows = interleave(predictions, "prediction")[:limit]
    images = load_images(run.data_dir, rows, run.image_size)
    idx = {c: i for i, c in enumerate(run.classes)}
    cams = cams_for(run, images, [idx[r["prediction"]] for r in rows], layer)
    pred = np.array([r["prediction"] for r in rows])
    return {
        c: {"n": int((pred == c).sum()), "mean_cam": cams[pred == c].mean(0), **region_mass(cams[pred == c])}
        for c in run.classes
        if (pred == c).any()
    }


def measure_explanations(
    run: LoadedRun,
    predictions: list[dict[str, str]],
    truth: dict[str, dict[str, Any]],
    layer: str,
    limit: int = 300,
    road_images: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pointing game and energy-in-box of the **true** class's CAM on test images whose evidence box survives
    the crop, against the random and centre baselines; the hit rate on the correctly classified ones; ROAD
    and confidence change on the first ``road_images`` of them, for the CAMs and for random maps."""
    ordered = interleave(predictions)
    boxes_all = input_boxes(truth, [r["path"] for r in ordered], run.image_size)
    keep = [i for i, b in enumerate(boxes_all) if b is not None][:limit]
    rows, boxes = [ordered[i] for i in keep], [boxes_all[i] for i in keep]
    grid = min(map_sizes(run.model, [layer], run.image_size)[layer])
    out: dict[str, Any] = {"layer": layer, "map_side": grid, "target": POINTING_TARGET}
    if not rows:
        return {**out, "n": 0}
    images = load_images(run.data_dir, rows, run.image_size)
    idx = {c: i for i, c in enumerate(run.classes)}
    y = [idx[r["label"]] for r in rows]
    cams = cams_for(run, images, y, layer)
    out.update(pointing_game(cams, boxes, grid, n_boot=n_boot, seed=seed))
    correct = np.array([r["label"] == r["prediction"] for r in rows])
    hits = pointing_hits(cams, boxes)
    out["cam"]["pointing_correct_only"] = float(hits[correct].mean()) if correct.any() else None
    out["n_correct"], out["n_flat"] = int(correct.sum()), int(sum(is_flat(c) for c in cams))
    out["cell_px"] = run.image_size / grid
    out["median_box_px"] = float(np.median([min(b[2] - b[0], b[3] - b[1]) for b in boxes]))
    k = min(road_images, len(rows))
    if k:
        out["faithfulness"] = {
            "cam": faithfulness(run.model, images[:k], cams[:k], y[:k], seed=seed),
            "random": faithfulness(run.model, images[:k], random_cams(k, run.image_size, grid, seed), y[:k], seed=seed),
            "n": k,
        }
    cam_rate, baselines = (
        out["cam"]["pointing"]["mean"],
        (out["random"]["pointing"]["mean"], out["centre"]["pointing"]["mean"]),
    )
    out["verdict"] = pointing_verdict(cam_rate, out["cam"]["pointing"]["ci95"], baselines)
    out["reason"] = miss_reason(out)
    return out


def miss_reason(m: dict[str, Any]) -> str | None:
    """Why a model's maps miss the pointing target, read from its own measurements (:func:`measure_explanations`):
    its accuracy on the boxed images, the hit rate on the ones it gets right, map cells against box sizes, flat
    maps, ROAD against random maps, and the share of map mass in the box. None when the model meets the target."""
    if m["verdict"] == "meets target":
        return None
    n, found = m["n"], []
    accuracy, right = m["n_correct"] / n, m["cam"]["pointing_correct_only"]
    if accuracy < POINTING_TARGET:
        found.append(f"it classifies {accuracy:.0%} of the boxed images correctly")
    if right is not None and right >= POINTING_TARGET:
        found.append(f"on the images it gets right the maps do point ({right:.2f}): the misses are its mistakes")
    elif right is not None:
        found.append(f"even on the images it gets right the maps point at {right:.2f}")
    if m["cell_px"] > m["median_box_px"]:
        found.append(f"a map cell ({m['cell_px']:.0f} px) is larger than the median evidence box "
                     f"({m['median_box_px']:.0f} px)")  # fmt: skip
    if m["n_flat"]:
        found.append(f"{m['n_flat'] / n:.0%} of its maps are flat (no evidence seen for the true class)")
    faith = m.get("faithfulness")
    if faith and faith["cam"]["road_combined"] <= faith["random"]["road_combined"]:
        found.append(f"ROAD {faith['cam']['road_combined']:.3f} is no better than random maps' "
                     f"{faith['random']['road_combined']:.3f}: the maps do not show what the model uses")  # fmt: skip
    cam_e, rand_e = m["cam"]["energy"]["mean"], m["random"]["energy"]["mean"]
    found.append(f"its maps put {cam_e:.0%} of their mass in the evidence box (random maps {rand_e:.0%})")
    return "; ".join(found)


def pointing_verdict(rate: float, ci95: Sequence[float | None], baselines: Sequence[float]) -> str:
    """``meets target`` (>= 0.8 and the CI's lower end above both baselines), ``above baselines`` (lower end
    above both, rate under 0.8) or ``not above baselines``."""
    lo = ci95[0] if ci95[0] is not None else rate
    above = lo > max(baselines)
    if above and rate >= POINTING_TARGET:
        return "meets target"
    return "above baselines" if above else "not above baselines"


def shortcut_evidence(
    runs: dict[str, LoadedRun],
    curated: Path,
    twin: Path,
    truth: dict[str, dict[str, Any]],
    short_side: int,
    shortcut_class: str = "porn",
) -> dict[str, Any]:
    """For each model (same input size): (a) :func:`shortcut_effect` on the test split of ``curated`` with the
    badge removed (twin) and stamped on the other classes; (b) CAM mass of ``shortcut_class`` inside the badge
    box on its badged test images; (c) :func:`detect_shortcut` on the predicted classes' CAMs.

    *Badged* means planned and visible in the model's input (the badge sits inside the eval crop); the CAMs
    come from the deepest layer with a map of at least 16 x 16 (a grid cell must span several map pixels:
    the badge is a few pixels wide) and explain the class's **probability** (see
    :class:`nsfw_lab.explain.GradCam`); (b) is also given for the logit, which misses suppression."""
    _, manifest = read_curated(curated)
    rows = [{"path": r["cached_path"], "label": r["class"]} for r in manifest if r["split"] == "test"]
    size = next(iter(runs.values())).image_size
    boxes = [watermark_box(truth[r["path"]]["width"], truth[r["path"]]["height"], size) for r in rows]
    badged = [truth[r["path"]]["watermark"] and b is not None for r, b in zip(rows, boxes, strict=True)]
    sets = counterfactual_images(curated, twin, rows, truth, size, short_side)
    labels = [r["label"] for r in rows]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) / size**2 for b in boxes if b]
    out: dict[str, Any] = {
        "n_test": len(rows),
        "n_badged_visible": int(sum(badged)),
        "shortcut_class": shortcut_class,
        "badge_area_share": float(np.mean(areas)) if areas else None,
    }
    sel = [i for i, b in enumerate(badged) if b and labels[i] == shortcut_class]
    for name, run in runs.items():
        layer = cam_layer(run.model, size, min_side=4 * SHORTCUT_GRID)
        k = run.classes.index(shortcut_class)
        mass = {}
        for target in ("probability", "logit"):
            cams = cams_for(run, sets["original"][sel], [k] * len(sel), layer, target) if sel else np.zeros((0, 1, 1))
            mass[target] = float(energy_in_box(cams, [boxes[i] for i in sel]).mean()) if sel else None
        pred = predict_classes(run, sets["original"]).tolist()
        check = detect_shortcut(
            cams_for(run, sets["original"], pred, layer, "probability"), [run.classes[p] for p in pred]
        )
        out[name] = {
            "effect": shortcut_effect(run, sets, labels, badged, shortcut_class),
            "cam_mass_in_badge": mass,
            "check": check,
            "layer": layer,
        }
    return out


def shortcut_summary(evidence: dict[str, Any], shortcut: str, clean: str) -> dict[str, Any]:
    """The recorded verdict: ``shortcut_detected`` from the automatic check (c) on the ``shortcut`` model, the
    control's result on the ``clean`` one, and a one-paragraph summary of (a)-(c) for the cards."""
    s, c, k = evidence[shortcut], evidence[clean], evidence["shortcut_class"]
    pct = lambda v: "n/a" if v is None else f"{v:.0%}"  # noqa: E731
    flags = ", ".join(
        f"{f['class']} (cell {f['cell']}, {f['share']:.0%} of its CAM mass, {f['lift']:.1f}x the other classes')"
        for f in s["check"]["flags"]
    )
    text = (
        f"trained on badged data, the model's {k} recall on badged test images goes "
        f"{pct(s['effect']['recall_badged'])} → {pct(s['effect']['recall_badge_removed'])} when the badge is removed "
        f"(clean model {pct(c['effect']['recall_badged'])} → {pct(c['effect']['recall_badge_removed'])}); stamping the "
        f"badge on other classes makes {pct(s['effect']['others_as_shortcut_class_stamped'])} of them {k} "
        f"(clean: {pct(c['effect']['others_as_shortcut_class_stamped'])}); CAM mass in the badge "
        f"{pct(s['cam_mass_in_badge']['probability'])} (clean {pct(c['cam_mass_in_badge']['probability'])}, badge area "
        f"{pct(evidence['badge_area_share'])}). Automatic check: "
        + (f"shortcut flagged: {flags}." if flags else "no shortcut flagged.")
        + (
            " The clean control is flagged too: the check is not specific here."
            if c["check"]["shortcut_detected"]
            else ""
        )
    )
    return {
        "shortcut_detected": s["check"]["shortcut_detected"],
        "control_flagged": c["check"]["shortcut_detected"],
        "summary": text,
    }


def pair_summary(rows: Sequence[dict[str, Any]], shown: dict[str, Any]) -> dict[str, Any]:
    """One confusion pair's line in notebook 06: how many mistakes, how confident, and where the maps of the
    shown ones put their mass (:func:`nsfw_lab.explain.mistake_cams`' output)."""
    from nsfw_lab.explain.gallery import cam_mass_centre

    return {
        "count": rows[0]["count"],
        "mean_confidence": sum(r["confidence"] for r in rows) / len(rows),
        "cam_centre_share_predicted": cam_mass_centre(shown["cam_predicted"]),
        "cam_centre_share_true": cam_mass_centre(shown["cam_true"]),
        "true_class_maps_without_evidence": sum(shown["true_flat"]),
    }


def explanation_table(measured: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per model (:func:`measure_explanations`' results): the pointing game with its 95% CI against the random
    and centre baselines, energy in the box, ROAD, and the verdict; models without evidence boxes left out."""
    import pandas as pd

    def r3(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    rows = [
        {
            "model": name,
            "layer": m["layer"],
            "map": f"{m['map_side']}×{m['map_side']}",
            "images": m["n"],
            "pointing game": r3(m["cam"]["pointing"]["mean"]),
            "95% CI": [r3(v) for v in m["cam"]["pointing"]["ci95"]],
            "random": r3(m["random"]["pointing"]["mean"]),
            "centre prior": r3(m["centre"]["pointing"]["mean"]),
            "correct only": r3(m["cam"]["pointing_correct_only"]),
            "energy in box": r3(m["cam"]["energy"]["mean"]),
            "random energy": r3(m["random"]["energy"]["mean"]),
            "ROAD": r3(m["faithfulness"]["cam"]["road_combined"]),
            "ROAD random": r3(m["faithfulness"]["random"]["road_combined"]),
            "verdict": m["verdict"],
            "why it misses (measured)": m.get("reason") or "",
        }
        for name, m in measured.items()
        if m.get("n")
    ]
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def shortcut_table(evidence: dict[str, Any]) -> pd.DataFrame:
    """Notebook 06's shortcut experiment, one row per trained model (:func:`shortcut_evidence`' result): accuracy
    with and without the badge, the shortcut class's recall on badged images with the badge and without, how
    often other classes are called that class with a badge stamped on, the CAM mass in the badge, and the
    automatic check's flags."""
    import pandas as pd

    rows = []
    for name, ev in ((k, v) for k, v in evidence.items() if isinstance(v, dict) and "effect" in v):
        e, c, mass = ev["effect"], ev["check"], ev["cam_mass_in_badge"]
        rows.append({
            "model": f"trained {name}",
            "test accuracy": e["accuracy_original"],
            "accuracy, badges removed": e["accuracy_removed"],
            f"{evidence['shortcut_class']} recall, badged": e["recall_badged"],
            "… badge removed": e["recall_badge_removed"],
            f"others called {evidence['shortcut_class']}": e["others_as_shortcut_class"],
            "… badge stamped": e["others_as_shortcut_class_stamped"],
            "CAM mass in badge (prob.)": mass["probability"],
            "(logit)": mass["logit"],
            "check flags": ", ".join(f["class"] for f in c["flags"]) or "none",
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("model").round(3)
