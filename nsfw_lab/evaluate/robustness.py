"""``nsfw-lab robustness``: a run's model on one split under graded natural corruptions and small-ε FGSM.

Every image of the split is corrupted (:mod:`nsfw_lab.evaluate.corruptions`, seeded per image) *before* the
model's one eval transform, as an upload would be, at each severity; FGSM perturbs the model's own input
(uint8 pixels as [0, 1] floats) by ``ε / 255`` in the sign of the loss gradient of the true label, kept as
floats (the attack on a model that takes float tensors; ε below 1 would vanish in 8-bit pixels). For every
condition: macro-F1 and block-group recall (the share of the block group's images whose most probable class
is a block class: the classifier's view, before any temperature or threshold of ``calibrate``; the block group
is the run's fitted policy's, else the default) with 95% bootstrap intervals, the paired macro-F1 drop against
the clean images with its verdict and smallest detectable size, and the confusion pairs that grew, with counts.
The run's ``robustness_<split>`` JSON and PNG hold it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from nsfw_lab.data.dataset import CuratedImageDataset, make_loader
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from nsfw_lab.evaluate.loading import LoadedRun, load_run
from nsfw_lab.evaluate.metrics import bootstrap_ci, macro_f1, macro_f1_ci, paired_macro_f1_difference, verdict
from nsfw_lab.evaluate.policy import Policy, load_fitted, load_policy
from nsfw_lab.evaluate.scoring import infer
from nsfw_lab.utils.fsutil import atomic_write_json
from nsfw_lab.utils.progress import tqdm

FGSM_EPS = (0.5, 1.0, 2.0, 4.0, 8.0)  # grey levels: ε / 255 of the [0, 1] input
WATCHED_PAIRS = (("porn", "sexy"), ("sexy", "porn"), ("hentai", "drawings"), ("drawings", "hentai"))


class _Corrupted(Dataset):
    """The split's images under one corruption and severity (``name=None``: clean), as uint8 model input."""

    def __init__(self, paths: list[Path], labels: list[int], size: int, name: str | None, sev: int, seed: int):
        self.paths, self.labels, self.name, self.sev, self.seed = paths, labels, name, sev, seed
        self.tf = eval_transform(size, normalize=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            rgb = im.convert("RGB")
        if self.name is not None:
            rgb = corrupt(rgb, self.name, self.sev, self.seed * 1_000_003 + i)
        return self.tf(rgb), self.labels[i]


def _predict(run: LoadedRun, ds: Dataset, batch_size: int) -> np.ndarray:
    probs, _ = infer(run, make_loader(ds, batch_size, train=False, device=run.device.type), show=False)
    return probs.argmax(1)


def fgsm_predictions(run: LoadedRun, ds: Dataset, eps: Sequence[float], batch_size: int) -> dict[float, np.ndarray]:
    """Predictions under FGSM at each ``ε`` (grey levels), one gradient per batch shared by every ``ε``."""
    preds: dict[float, list[np.ndarray]] = {e: [] for e in eps}
    for x, y in make_loader(ds, batch_size, train=False, device=run.device.type):
        x = (x.to(run.device).float() / 255).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(run.model(x).float(), torch.as_tensor(y, device=run.device))
        (grad,) = torch.autograd.grad(loss, x)
        step = grad.sign()
        with torch.inference_mode():
            for e in eps:
                adv = (x + step * (e / 255)).clamp_(0, 1)
                preds[e].append(run.model(adv).argmax(1).cpu().numpy())
    return {e: np.concatenate(p) if p else np.zeros(0, int) for e, p in preds.items()}


def condition_record(
    y: np.ndarray, pred: np.ndarray, clean: np.ndarray, classes: list[str], block: list[int], n_boot: int, seed: int
) -> dict[str, Any]:
    """Macro-F1 and block recall with 95% intervals, the paired drop against ``clean`` with its verdict, and
    the confusion pairs that grew (largest first; :data:`WATCHED_PAIRS` always, where both classes exist)."""
    k = len(classes)
    labels = list(range(k))
    pos = np.isin(y, block)
    hit = np.isin(pred[pos], block).astype(float)
    drop = paired_macro_f1_difference(y, pred, clean, labels, n_boot, seed)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    cm0 = np.bincount(y * k + clean, minlength=k * k).reshape(k, k)
    pair = lambda t, p: {"true": classes[t], "predicted": classes[p], "clean": int(cm0[t, p]), "now": int(cm[t, p])}  # noqa: E731
    grew = sorted(((t, p) for t in labels for p in labels if t != p and cm[t, p] > cm0[t, p]),
                  key=lambda tp: (cm0[tp] - cm[tp], tp))  # fmt: skip
    return {
        "macro_f1": macro_f1(y, pred, labels),
        "macro_f1_ci95": macro_f1_ci(y, pred, k, n_boot, seed),
        "block_recall": float(hit.mean()) if len(hit) else None,
        "block_recall_ci95": bootstrap_ci(hit, hit, lambda a, _: float(a.mean()), n_boot, seed),
        "drop": drop,
        "verdict": verdict(drop, better="better than clean", worse="hurts"),
        "grown_pairs": [pair(t, p) for t, p in grew[:3]],
        "watched_pairs": [
            pair(classes.index(t), classes.index(p)) for t, p in WATCHED_PAIRS if t in classes and p in classes
        ],
    }


def robustness_run(
    run_dir: Path | str,
    split: str = "test",
    checkpoint: str = "best",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    fgsm_eps: Sequence[float] = FGSM_EPS,
    limit: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``run_dir``'s model on ``split`` (its first ``limit`` images per class, all by default) clean, under
    each corruption at each severity and under FGSM at each ``ε``; write and return the ``robustness`` record."""
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    for n in names:
        if n not in CORRUPTIONS:
            raise NsfwLabError(f"unknown corruption {n!r}; choose {', '.join(CORRUPTIONS)}")
    if bad := [s for s in severities if s not in SEVERITIES]:
        raise NsfwLabError(f"severities must be in 1..5, not {bad}")
    if bad := [e for e in fgsm_eps if not e > 0]:
        raise NsfwLabError(f"FGSM ε must be > 0 (grey levels), not {bad}")
    fgsm_eps = sorted(fgsm_eps)
    if limit is not None and limit < 1:
        raise NsfwLabError(f"--limit must be >= 1, not {limit}")
    run = load_run(run_dir, checkpoint, device)
    ds = CuratedImageDataset(run.data_dir, split)
    keep = _first_per_class(ds.targets, limit)
    paths, y = [ds.paths[i] for i in keep], np.asarray([ds.targets[i] for i in keep], dtype=int)
    if not len(y):
        raise NsfwLabError(f"{run.data_dir}: the {split} split has no images")
    policy = _policy(run)
    block = [run.classes.index(c) for c in policy.block]
    make = lambda name, s: _Corrupted(paths, list(y), run.image_size, name, s, seed)  # noqa: E731
    clean = _predict(run, make(None, 0), batch_size)
    rec = lambda pred: condition_record(y, pred, clean, run.classes, block, n_boot, seed)  # noqa: E731
    rows: list[dict[str, Any]] = []
    jobs = [(n, s) for n in names for s in severities]
    for n, s in tqdm(jobs, desc="robustness", disable=not progress, unit="condition"):
        rows.append({"corruption": n, "severity": s, **rec(_predict(run, make(n, s), batch_size))})
    if fgsm_eps:
        adv = fgsm_predictions(run, make(None, 0), list(fgsm_eps), batch_size)
        rows += [{"corruption": "fgsm", "severity": i + 1, "eps": e, **rec(adv[e])} for i, e in enumerate(fgsm_eps)]
    result = {
        "run": str(run.run_dir),
        "split": split,
        "checkpoint": checkpoint,
        "model": run.model.spec.name,
        "input_px": run.image_size,
        "n": len(y),
        "block_classes": list(policy.block),
        "severities": list(severities),
        "fgsm_eps": list(fgsm_eps),
        "seed": seed,
        "clean": rec(clean),
        "conditions": rows,
    }
    atomic_write_json(run.files.robustness(split), result)
    from nsfw_lab.evaluate.robustness_plot import plot_robustness

    plot_robustness(result, run.files.robustness_plot(split))
    return result


def _first_per_class(targets: list[int], limit: int | None) -> list[int]:
    """Indices of the first ``limit`` images of each class (all with None), in the split's order."""
    seen: dict[int, int] = {}
    keep = []
    for i, t in enumerate(targets):
        seen[t] = seen.get(t, 0) + 1
        if limit is None or seen[t] <= limit:
            keep.append(i)
    return keep


def _policy(run: LoadedRun) -> Policy:
    """The run's fitted policy where ``calibrate`` wrote one, else the packaged default (checked on its classes)."""
    fitted = load_fitted(run.run_dir)
    policy = fitted.policy if fitted else load_policy()
    policy.check(run.classes)
    return policy


def worst(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each corruption's (and FGSM's) most severe condition measured: the rows a summary table shows."""
    last: dict[str, dict[str, Any]] = {}
    for r in result["conditions"]:
        if r["corruption"] not in last or r["severity"] > last[r["corruption"]]["severity"]:
            last[r["corruption"]] = r
    return list(last.values())
