"""The run folder, as a contract: every file a training run holds, named here and nowhere else, and the
device a run uses. Torch-free (torch is imported only to look for a CUDA device).

``nsfw-lab train`` writes::

    RUN/config.json        every option, the resolved values, the model spec, classes, data hash, versions
    RUN/metrics.jsonl      one line per epoch
    RUN/last.pt, best.pt   checkpoints (the latest; the best validation epoch)
    RUN/summary.json       the best epoch and the totals, once training has finished

and the later stages add::

    RUN/eval_<split>.json, predictions_<split>.csv   nsfw-lab evaluate
    RUN/calibration.json, policy.json                nsfw-lab calibrate
    RUN/clip_policy.json                             nsfw-lab calibrate --clips DIR
    RUN/robustness_<split>.json, robustness_<split>.png   nsfw-lab robustness
    RUN/export/model.onnx (+ .json), model.torchscript.pt (+ .json)   nsfw-lab export
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsfw_lab.config import SPLITS
from nsfw_lab.errors import NsfwLabError

if TYPE_CHECKING:
    import torch

CHECKPOINTS = ("best", "last")
EXPORT_FORMATS = ("onnx", "torchscript")
_EXPORT_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


@dataclass(frozen=True)
class RunDir:
    """The files of one run folder (paths only: nothing is read or created by building one)."""

    path: Path

    def __init__(self, path: Path | str) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        """``config.json``: what rebuilds the run."""
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: one record per epoch."""
        return self.path / "metrics.jsonl"

    @property
    def last(self) -> Path:
        """``last.pt``: the latest checkpoint (resume)."""
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        """``best.pt``: the best validation epoch."""
        return self.path / "best.pt"

    @property
    def summary(self) -> Path:
        """``summary.json``: written when training has finished."""
        return self.path / "summary.json"

    @property
    def calibration(self) -> Path:
        """``calibration.json``: the temperature fitted on val."""
        return self.path / "calibration.json"

    @property
    def policy(self) -> Path:
        """``policy.json``: the moderation thresholds fitted on val."""
        return self.path / "policy.json"

    @property
    def clip_policy(self) -> Path:
        """``clip_policy.json``: the blocked frames that block a clip, chosen on validation clips."""
        return self.path / "clip_policy.json"

    def checkpoint(self, which: str) -> Path:
        """``best.pt`` or ``last.pt``."""
        if which not in CHECKPOINTS:
            raise NsfwLabError(f"--checkpoint must be best or last, not {which!r}")
        return self.best if which == "best" else self.last

    def evaluation(self, split: str) -> Path:
        """``eval_<split>.json``: metrics of ``nsfw-lab evaluate``."""
        return self.path / f"eval_{_split(split)}.json"

    def predictions(self, split: str) -> Path:
        """``predictions_<split>.csv``: path, label, prediction and probabilities per image."""
        return self.path / f"predictions_{_split(split)}.csv"

    def robustness(self, split: str) -> Path:
        """``robustness_<split>.json``: metrics of ``nsfw-lab robustness`` per corruption and severity."""
        return self.path / f"robustness_{_split(split)}.json"

    def robustness_plot(self, split: str) -> Path:
        """``robustness_<split>.png``: its figure (macro-F1 and block recall against severity)."""
        return self.path / f"robustness_{_split(split)}.png"

    def export(self, fmt: str) -> Path:
        """The default file of an export: ``export/model.onnx`` or ``export/model.torchscript.pt``."""
        if fmt not in _EXPORT_FILES:
            raise NsfwLabError(f"unknown export format {fmt!r}; choose {' or '.join(EXPORT_FORMATS)}")
        return self.path / "export" / _EXPORT_FILES[fmt]

    def is_run(self) -> bool:
        """Whether the folder holds a run (its ``config.json``)."""
        return self.config.is_file()

    def read_config(self) -> dict[str, Any]:
        """``config.json``, or a one-line error when the folder holds no run."""
        from nsfw_lab.utils.fsutil import read_json

        cfg = read_json(self.config)
        if cfg is None:
            raise NsfwLabError(f"{self.path}: not a training run (no {self.config.name})")
        return cfg

    def read_history(self) -> list[dict[str, Any]]:
        """The epoch records of ``metrics.jsonl`` (empty before the first epoch)."""
        import json

        if not self.metrics.is_file():
            return []
        with open(self.metrics, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def export_record(path: Path) -> Path:
    """The record written beside an exported file: ``model.onnx`` -> ``model.onnx.json``."""
    return path.with_name(path.name + ".json")


def _split(split: str) -> str:
    if split not in SPLITS:
        raise NsfwLabError(f"unknown split {split!r}; choose {', '.join(SPLITS)}")
    return split


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The device a run uses: ``auto`` = CUDA when available; plain ``cuda`` under torchrun is
    ``cuda:LOCAL_RANK``; one-line error when CUDA is asked for and absent."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NsfwLabError("--device cuda: no CUDA device is available (use --device cpu or auto)")
        return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    return torch.device("cpu")
