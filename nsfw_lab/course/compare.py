"""The study's models side by side, read from the runs the model notebooks wrote (never retrained here).

A model notebook *offers* its headline runs (:func:`offer`: a name and a run folder, stored in its metrics
JSON). Later notebooks collect them (:func:`candidates`), pick the best on validation (:func:`best_on_val`:
the test split never chooses a model) and tabulate them (:func:`run_row`, the one row format of every
notebook): test accuracy and macro-F1 with their bootstrap intervals from the run's test evaluation,
parameters, input size, training speed and CPU latency at batch 1 measured here on the same machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nsfw_lab.course.report import Report
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import read_json

KEY = "candidates"


def offer(report: Report, name: str, run_dir: Path) -> None:
    """Record ``run_dir`` (inside the report folder) as one of the study's models under ``name``
    (a list of ``[name, path]`` pairs: the order offered is the order compared)."""
    rel = Path(run_dir).resolve().relative_to(report.root.resolve()).as_posix()
    offered = [pair for pair in report.values.get(KEY, []) if pair[0] != name]
    report.record(KEY, [*offered, [name, rel]])


def offer_nothing(report: Report, why: str) -> None:
    """Record that the notebook trained no model for the comparison, and why (later notebooks print it)."""
    report.record(KEY, [])
    report.record("not_offered", why)


def candidates(report: Report, notebooks: Sequence[str], say: Callable[[str], None] = print) -> dict[str, Path]:
    """``{name: run folder}`` offered by ``notebooks``, in their order (a notebook that offered nothing on
    purpose is skipped with its reason said); one-line errors when a notebook has not run or a run is
    unfinished (no summary or test evaluation yet)."""
    found: dict[str, Path] = {}
    for nb in notebooks:
        record = report.read(nb)
        offered = record.get(KEY)
        if offered == [] and record.get("not_offered"):
            say(f"{nb} offers no model here: {record['not_offered']}")
            continue
        if not offered:
            raise NsfwLabError(f"notebook {nb} offered no runs; rerun it (nsfw-lab study --only {nb})")
        for name, rel in offered:
            run = RunDir(report.root / rel)
            for needed in (run.summary, run.evaluation("test")):
                if not needed.is_file():
                    raise NsfwLabError(f"{needed}: missing; rerun notebook {nb} (nsfw-lab study --only {nb})")
            found[name] = run.path
    return found


def val_score(run: Path) -> float:
    """The best validation score of a finished run (its selection metric, from its summary)."""
    summary = read_json(RunDir(run).summary)
    if summary is None:
        raise NsfwLabError(f"{RunDir(run).summary}: missing; the run has not finished")
    return float(summary["best"]["score"])


def best_on_val(found: dict[str, Path]) -> str:
    """The name whose run has the highest validation score (ties: the first offered)."""
    if not found:
        raise NsfwLabError("no runs to choose from")
    return max(found, key=lambda n: val_score(found[n]))


def paired_difference(
    a: Path | Sequence[Path], b: Path | Sequence[Path], n_boot: int = 1000, seed: int = 0, split: str = "test"
) -> dict[str, Any]:
    """Macro-F1 of run ``a`` minus run ``b`` on the same ``split`` images, with a *paired* bootstrap 95%
    interval and the smallest difference it could detect (:func:`nsfw_lab.evaluate.metrics.paired_macro_f1_difference`;
    :func:`nsfw_lab.evaluate.metrics.verdict` reads it). Lists of runs pair element-wise (seed *s* with seed
    *s*) and pool: one difference over all of them."""
    import numpy as np

    from nsfw_lab.evaluate.metrics import paired_macro_f1_difference
    from nsfw_lab.utils.fsutil import read_csv

    runs_a, runs_b = ([r] if isinstance(r, (str, Path)) else list(r) for r in (a, b))
    if not runs_a or len(runs_a) != len(runs_b):
        raise NsfwLabError(f"paired runs must come in pairs: {len(runs_a)} against {len(runs_b)}")
    rows = [read_csv(RunDir(r).predictions(split)) for r in [*runs_a, *runs_b]]
    order = [Path(r["path"]).name for r in rows[0]]  # a view points at the same cached files by another path
    aligned = []
    for run, found in zip([*runs_a, *runs_b], rows, strict=True):
        by_name = {Path(r["path"]).name: r for r in found}
        if sorted(by_name) != sorted(order) or len(by_name) != len(found):
            raise NsfwLabError(f"{Path(run).name} and {Path(runs_a[0]).name} were not scored on the same {split} "
                               "images; rerun their evaluation")  # fmt: skip
        aligned.append([by_name[name] for name in order])
    classes = sorted({r["label"] for r in aligned[0]} | {r["prediction"] for rs in aligned for r in rs})
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[r["label"]] for r in aligned[0]])
    preds = np.array([[code[r["prediction"]] for r in rs] for rs in aligned])
    k = len(runs_a)
    return paired_macro_f1_difference(y, preds[:k], preds[k:], list(range(len(classes))), n_boot, seed)


def difference_row(label: str, diff: dict[str, Any], better: str = "helps", worse: str = "hurts") -> dict[str, Any]:
    """One display row of a paired difference: the difference, its interval, the smallest difference the
    comparison could detect and the verdict computed from them."""
    from nsfw_lab.evaluate.metrics import verdict

    lo, hi = diff["ci95"]
    return {
        "comparison": label,
        "macro-F1 difference": round(diff["delta"], 3),
        "paired 95% CI": [round(v, 3) for v in (lo, hi)] if lo is not None else None,
        "detectable": None if diff.get("detectable") is None else round(diff["detectable"], 3),
        "verdict": verdict(diff, better, worse),
    }


def run_row(name: str, run: Path, latency: bool = True) -> dict[str, Any]:
    """One table row of a finished run, read from its folder: architecture, weights, input px, parameters,
    val score, best epoch, test scores with 95% CIs, training images/s and (``latency``) the median CPU
    batch-1 latency measured here with the bench's timer, so that every model is timed on the same machine."""
    import torch

    from nsfw_lab.bench.measure import median_call_ms
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.models import count_parameters

    files = RunDir(run)
    cfg, test, summary = files.read_config(), read_json(files.evaluation("test")), read_json(files.summary)
    for path, content in ((files.evaluation("test"), test), (files.summary, summary)):
        if content is None:
            raise NsfwLabError(f"{path}: missing; the run is not finished and tested")
    speeds = [h["images_per_s"] for h in files.read_history() if h.get("images_per_s")]
    best = summary["best"]
    loaded = load_run(files.path, device="cpu")
    row = {
        "model": name,
        "run": files.path.name,
        "architecture": cfg["model"]["name"],
        "weights": cfg["model"]["weights"],
        "input px": cfg["model"]["input_size"],
        "parameters (M)": round(count_parameters(loaded.model) / 1e6, 2),
        "val macro-F1": round(best["score"], 4),
        "best epoch": f"{best.get('stage', 0)}:{best.get('epoch')}",
        "test accuracy": round(test["accuracy"], 4),
        "accuracy 95% CI": [round(v, 3) for v in test["accuracy_ci95"]],
        "test macro-F1": round(test["macro_f1"], 4),
        "macro-F1 95% CI": [round(v, 3) for v in test["macro_f1_ci95"]],
        "train images/s": round(sum(speeds) / len(speeds), 1) if speeds else None,
    }
    if latency:
        x = torch.zeros(1, 3, loaded.image_size, loaded.image_size, dtype=torch.uint8)
        row["CPU latency ms (batch 1)"] = round(median_call_ms(loaded.model, x, repeats=30), 2)
    return row


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
