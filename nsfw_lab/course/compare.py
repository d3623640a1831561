"""The study's models side by side, read from the runs the model notebooks wrote (never retrained here).

A model notebook *offers* its headline runs (:func:`offer`: a name and a run folder, stored in its metrics
JSON). Later notebooks collect them (:func:`candidates`), pick the best on validation (:func:`best_on_val`:
the test split never chooses a model) and tabulate them (:func:`comparison_row`): test accuracy and
macro-F1 with their bootstrap intervals from the run's ``eval_test.json``, parameters, input size, training
speed and CPU latency at batch 1 measured here on the same machine for every model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nsfw_lab.course.report import Report
from nsfw_lab.errors import NsfwLabError

KEY = "candidates"


def offer(report: Report, name: str, run_dir: Path) -> None:
    """Record ``run_dir`` (inside the report folder) as one of the study's models under ``name``
    (a list of ``[name, path]`` pairs: the order offered is the order compared)."""
    rel = Path(run_dir).resolve().relative_to(report.root.resolve()).as_posix()
    offered = [pair for pair in report.values.get(KEY, []) if pair[0] != name]
    report.record(KEY, [*offered, [name, rel]])


def candidates(report: Report, notebooks: Sequence[str]) -> dict[str, Path]:
    """``{name: run folder}`` offered by ``notebooks``, in their order; one-line errors when a notebook has not
    run or a run is unfinished (no ``summary.json`` or ``eval_test.json``)."""
    found: dict[str, Path] = {}
    for nb in notebooks:
        offered = report.read(nb).get(KEY)
        if not offered:
            raise NsfwLabError(f"notebook {nb} offered no runs; rerun it (nsfw-lab study --only {nb})")
        for name, rel in offered:
            run = report.root / rel
            for needed in ("summary.json", "eval_test.json"):
                if not (run / needed).is_file():
                    raise NsfwLabError(f"{run / needed}: missing; rerun notebook {nb} (nsfw-lab study --only {nb})")
            found[name] = run
    return found


def val_score(run: Path) -> float:
    """The best validation score of a finished run (its selection metric, from ``summary.json``)."""
    return float(json.loads((run / "summary.json").read_text())["best"]["score"])


def best_on_val(found: dict[str, Path]) -> str:
    """The name whose run has the highest validation score (ties: the first offered)."""
    if not found:
        raise NsfwLabError("no runs to choose from")
    return max(found, key=lambda n: val_score(found[n]))


def paired_difference(a: Path, b: Path, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Test macro-F1 of run ``a`` minus run ``b`` on the same test images, with a *paired* bootstrap 95%
    interval (each resample draws images, both models are scored on them). Overlapping per-model intervals
    are not a test of a difference; this is."""
    import numpy as np

    from nsfw_lab.evaluate import bootstrap_ci, macro_f1
    from nsfw_lab.fsutil import read_csv

    pa, pb = (read_csv(r / "predictions_test.csv") for r in (a, b))
    if [r["path"] for r in pa] != [r["path"] for r in pb]:
        raise NsfwLabError(f"{a.name} and {b.name} were not tested on the same images; rerun their evaluation")
    classes = sorted({r["label"] for r in pa} | {r["prediction"] for r in pa + pb})
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[r["label"]] for r in pa])
    both = np.stack([[code[r["prediction"]] for r in pa], [code[r["prediction"]] for r in pb]], axis=1)
    labels = list(range(len(classes)))

    def delta(yy: np.ndarray, pp: np.ndarray) -> float:
        return macro_f1(yy, pp[:, 0], labels) - macro_f1(yy, pp[:, 1], labels)

    return {"delta": delta(y, both), "ci95": bootstrap_ci(y, both, delta, n_boot, seed), "n": len(y)}


def paired_verdict(ci95: list[float]) -> str:
    """``differs`` when the paired interval excludes 0, else ``no evidence of a difference``."""
    return "differs" if ci95[0] > 0 or ci95[1] < 0 else "no evidence of a difference"


def cpu_latency_ms(run: Path, repeats: int = 30) -> tuple[float, int]:
    """Median milliseconds of one batch-1 forward pass on the CPU at the model's input size, and its parameters."""
    import torch

    from nsfw_lab.evaluate import batch1_latency_ms
    from nsfw_lab.models import count_parameters
    from nsfw_lab.runs import load_run

    loaded = load_run(run, device="cpu")
    x = torch.zeros(3, loaded.image_size, loaded.image_size, dtype=torch.uint8)
    return batch1_latency_ms(loaded, x, repeats), count_parameters(loaded.model)


def comparison_row(name: str, run: Path) -> dict[str, Any]:
    """One row: test scores with 95% CIs, val score, parameters, input px, training images/s, CPU latency."""
    cfg = json.loads((run / "config.json").read_text())
    test = json.loads((run / "eval_test.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    speeds = [h["images_per_s"] for h in history if h.get("images_per_s")]
    latency, params = cpu_latency_ms(run)
    return {
        "model": name,
        "run": run.name,
        "architecture": cfg["model"]["name"],
        "weights": cfg["model"]["weights"],
        "input px": cfg["model"]["input_size"],
        "parameters (M)": round(params / 1e6, 2),
        "val macro-F1": round(val_score(run), 4),
        "test accuracy": round(test["accuracy"], 4),
        "accuracy 95% CI": [round(v, 3) for v in test["accuracy_ci95"]],
        "test macro-F1": round(test["macro_f1"], 4),
        "macro-F1 95% CI": [round(v, 3) for v in test["macro_f1_ci95"]],
        "train images/s": round(sum(speeds) / len(speeds), 1) if speeds else None,
        "CPU latency ms (batch 1)": round(latency, 2),
    }


def bench_latency(bench: dict[str, Any] | None, architectures: list[str]) -> list[dict[str, Any]]:
    """The ``nsfw-lab bench`` inference rows of these architectures, as display rows (empty without a bench)."""
    from nsfw_lab.bench.report import VARIANT_NAMES, latency_rows

    out = []
    for arch in dict.fromkeys(architectures):
        for r in latency_rows(bench, arch):
            out.append({
                "architecture": arch,
                "variant": VARIANT_NAMES[r["variant"]],
                "bench px": r["input_px"],
                "batch-1 ms": r.get("batch1_ms") if r["kept"] else None,
                "batch-32 img/s": r.get("batch32_images_per_s") if r["kept"] else None,
                "peak MiB": r.get("peak_mib") if r["kept"] else None,
                "top-1 agreement": r["agreement"],
                "kept": r["kept"],
            })  # fmt: skip
    return out
