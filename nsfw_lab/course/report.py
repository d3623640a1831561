"""What a notebook records: ``reports/<profile>/metrics/<notebook>.json`` and ``figures/<notebook>_*.png``.

Each notebook makes one :class:`Report` and calls :meth:`Report.record` for every number a reader, a
later notebook or a test needs; the JSON is rewritten atomically after each call, so a notebook that
fails half-way still leaves what it had measured. Run in a kernel, the JSON also says which cell recorded
each name (``recorded_cells``: a short hash of the cell's source, by which the site finds and links the cell
in the executed notebook, whatever the execution counts) and which earlier notebooks were read (``reads``: the
site warns a notebook's readers when it failed).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from nsfw_lab import config
from nsfw_lab.utils.fsutil import atomic_open, atomic_write_json, read_json


def report_dir(profile: str, out: str | Path | None = None) -> Path:
    """``out`` or ``reports/<profile>``."""
    return Path(out) if out else config.REPORTS_DIR / profile


def metrics_file(root: Path, notebook: str) -> Path:
    """``<root>/metrics/<notebook>.json``: what a notebook recorded."""
    return Path(root) / "metrics" / f"{notebook}.json"


def read_metrics(root: Path, notebook: str) -> dict[str, Any] | None:
    """What a notebook recorded in the report folder ``root`` (None if it has not run), without recording the
    read (the site and the tests read this way; a notebook uses :meth:`Report.read`)."""
    return read_json(metrics_file(root, notebook))


STUDY_RECORD = "study.json"  # the runner's record of a study: the notebooks run, data, machine, versions


def cell_key(source: str) -> str:
    """A short hash of a cell's source: how a recorded value names the cell that recorded it."""
    return hashlib.sha1(source.strip().encode()).hexdigest()[:12]


def current_cell() -> str | None:
    """:func:`cell_key` of the notebook cell running now (None outside a kernel): IPython's raw input history
    ends with the running cell's source."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    history = getattr(getattr(get_ipython(), "history_manager", None), "input_hist_raw", None)
    return cell_key(history[-1]) if history else None


def _plain(value: Any) -> Any:
    """JSON-friendly copy (NumPy and torch scalars/arrays, tuples, paths)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class Report:
    """Metrics and figures of one notebook run."""

    def __init__(self, notebook: str, profile: str, out: str | Path | None = None) -> None:
        self.notebook, self.profile = notebook, profile
        self.root = report_dir(profile, out)
        self.metrics_path = metrics_file(self.root, notebook)
        self.figures = self.root / "figures"
        self.values: dict[str, Any] = {"notebook": notebook, "profile": profile, "figures": []}

    def record(self, name: str, value: Any) -> Any:
        """Store ``value`` under ``name`` (written at once) and return it unchanged."""
        self.values[name] = _plain(value)
        cell = current_cell()
        if cell is not None:
            self.values.setdefault("recorded_cells", {})[name] = cell
        atomic_write_json(self.metrics_path, self.values)
        return value

    def figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``figures/<notebook>_<name>.png`` and record its path."""
        path = self.figures / f"{self.notebook}_{name}.png"
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
        rel = str(path.relative_to(self.root))
        if rel not in self.values["figures"]:
            self.values["figures"].append(rel)
        atomic_write_json(self.metrics_path, self.values)
        return path

    def read(self, notebook: str) -> dict[str, Any]:
        """What an earlier notebook recorded (one-line error if it has not run)."""
        from nsfw_lab.errors import NsfwLabError

        path = metrics_file(self.root, notebook)
        if notebook != self.notebook and notebook not in self.values.setdefault("reads", []):
            self.values["reads"].append(notebook)  # said before the check: a failure here depends on it too
            atomic_write_json(self.metrics_path, self.values)
        if not path.is_file():
            raise NsfwLabError(f"{path}: missing; run notebook {notebook} first (nsfw-lab study --only {notebook})")
        return read_json(path)
