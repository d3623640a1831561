"""``nsfw-lab study``: run the course notebooks in order through papermill and build the report folder.

For each ``notebooks/NN_*.ipynb``: check that it declares every parameter we pass (papermill only warns
about unknown names), execute it with the ``nsfw-lab`` kernel in ``notebooks/`` with a per-cell
timeout, keep going after a failure, and convert the executed copy to HTML. ``REPORT/`` then holds
``executed/*.ipynb``, ``html/*.html``, ``logs/``, ``metrics/*.json`` and ``figures/`` (written by the
notebooks through :class:`nsfw_lab.course.Report`), ``study.json`` (with the data, machine and versions),
the study's site (``site/``, :mod:`nsfw_lab.course.site`) and an ``index.html`` that opens it.
"""

from __future__ import annotations

import functools
import html
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nsfw_lab import config
from nsfw_lab.course.report import STUDY_RECORD, report_dir
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_write_json, atomic_write_text, read_json

KERNEL = "nsfw-lab"

CELL_TIMEOUT = {"smoke": 600, "cpu": 3600, "gpu": 4 * 3600}


@dataclass
class NotebookResult:
    """How one notebook went."""

    notebook: str
    ok: bool
    seconds: float
    cell: int | None = None  # index of the failing cell
    error: str | None = None  # "<ExceptionName>: <message>" (first line)


def notebooks(folder: Path | None = None, only: Sequence[str] | None = None) -> list[Path]:
    """``NN_*.ipynb`` in order; ``only`` keeps names given by stem or number prefix (``00``, ``00_data``)."""
    found = sorted((folder or config.NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return found
    keep = [nb for nb in found if any(nb.stem == o or nb.stem.split("_")[0] == o for o in only)]
    unknown = [o for o in only if not any(nb.stem == o or nb.stem.split("_")[0] == o for nb in found)]
    if unknown:
        raise NsfwLabError(f"no notebook named {', '.join(unknown)}; have {', '.join(nb.stem for nb in found)}")
    return keep


def check_parameters(nb: Path, passed: dict[str, Any]) -> None:
    """Fail loudly when ``nb`` does not declare a parameter we pass (a typo would otherwise be ignored)."""
    from nsfw_lab.course.hygiene import declared_parameters

    declared = declared_parameters(nb)
    missing = sorted(set(passed) - set(declared))
    if missing:
        raise NsfwLabError(f"{nb.name}: no parameter {', '.join(missing)} in its parameters cell")


def _parameters_index(nb: Path) -> int:
    import nbformat

    cells = nbformat.read(nb, as_version=4).cells
    return next((i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])), -1)


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


@functools.cache
def kernel_name() -> str:
    """``nsfw-lab`` where that kernel is registered (``make env`` does it), else ``python3``, ipykernel's kernel
    for this Python (an install next to an existing PyTorch registers none); the fallback is said once."""
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL in KernelSpecManager().find_kernel_specs():
        return KERNEL
    print(f"note: no {KERNEL} Jupyter kernel is registered here; the notebooks run on python3 ({sys.executable})",
          file=sys.stderr)  # fmt: skip
    return "python3"


def run_notebook(nb: Path, out: Path, parameters: dict[str, Any], timeout: int) -> NotebookResult:
    """Execute one notebook into ``out/executed`` and ``out/html``; never raises for notebook errors."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    t0 = time.perf_counter()
    executed = out / "executed" / nb.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    executed.unlink(missing_ok=True)  # an earlier run's copy must not pass for this run's (the site shows it)
    (out / "html" / f"{nb.stem}.html").unlink(missing_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    result = NotebookResult(nb.stem, True, 0.0)
    try:
        check_parameters(nb, parameters)
        with (out / "logs" / f"{nb.stem}.log").open("w") as log:
            pm.execute_notebook(
                str(nb), str(executed), parameters=parameters, kernel_name=kernel_name(), cwd=str(nb.parent),
                execution_timeout=timeout, start_timeout=180, progress_bar=False, log_output=True,
                stdout_file=log, stderr_file=log,
            )  # fmt: skip
    except PapermillExecutionError as exc:  # cell_index counts the injected cell: report the notebook's own
        cell = exc.cell_index - 1 if exc.cell_index > _parameters_index(nb) else exc.cell_index
        result = NotebookResult(nb.stem, False, 0.0, cell, f"{exc.ename}: {_first_line(exc.evalue)}")
    except NsfwLabError as exc:
        result = NotebookResult(nb.stem, False, 0.0, None, str(exc))
    except Exception as exc:  # dead kernel, timeout, missing kernel: recorded, the next notebook still runs
        result = NotebookResult(nb.stem, False, 0.0, None, f"{type(exc).__name__}: {_first_line(str(exc))}")
    result.seconds = round(time.perf_counter() - t0, 1)
    if executed.is_file():
        to_html(executed, out / "html" / f"{nb.stem}.html")
    return result


def to_html(executed: Path, dest: Path) -> None:
    """nbconvert's HTML export of an executed notebook (written atomically)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest, body)


def environment() -> dict[str, Any]:
    """The machine, the versions, the project's commit and the time, as the study's record keeps them."""
    from nsfw_lab.bench.measure import machine, versions

    commit = None
    try:
        done = subprocess.run(["git", "-C", str(config.PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
        commit = done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"machine": machine(), "versions": versions(), "commit": commit,
            "finished": time.strftime("%Y-%m-%d %H:%M %Z")}  # fmt: skip


def write_record(out: Path, profile: str, results: list[NotebookResult], data: str | None) -> list[NotebookResult]:
    """``study.json``: the notebooks run (those not run this time, ``--only``, keep their previous entry), the
    data, the machine and the versions; returns every notebook's result."""
    previous = out / STUDY_RECORD
    if previous.is_file():
        ran = {r.notebook for r in results}
        kept = [NotebookResult(**n) for n in read_json(previous)["notebooks"] if n["notebook"] not in ran]
        results = sorted(kept + results, key=lambda r: r.notebook)
    record = {"profile": profile, "data": data, "environment": environment(),
              "notebooks": [asdict(r) for r in results]}  # fmt: skip
    atomic_write_json(out / STUDY_RECORD, record)
    return results


def write_index(out: Path, profile: str, results: list[NotebookResult], site_error: str | None = None) -> None:
    """``index.html``: a redirect to the site, or, when the site could not be built, a table linking every
    notebook's HTML, executed copy and metrics, with the reason."""
    if site_error is None:
        page = ("<!doctype html><meta charset='utf-8'><meta http-equiv='refresh' content='0; url=site/index.html'>"
                f"<title>nsfw_lab study ({profile})</title><a href='site/index.html'>the study's site</a>")  # fmt: skip
        atomic_write_text(out / "index.html", page)
        return
    rows = []
    for r in results:
        links = [f'<a href="html/{r.notebook}.html">html</a>', f'<a href="executed/{r.notebook}.ipynb">ipynb</a>']
        if (out / "metrics" / f"{r.notebook}.json").is_file():
            links.append(f'<a href="metrics/{r.notebook}.json">metrics</a>')
        status = "ok" if r.ok else f"FAILED (cell {r.cell}): {html.escape(r.error or '')}"
        rows.append(
            f"<tr><td>{r.notebook}</td><td>{status}</td><td>{r.seconds:.0f} s</td><td>{' · '.join(links)}</td></tr>"
        )
    figures = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    figs = "".join(f'<li><a href="figures/{f.name}">{f.name}</a></li>' for f in figures)
    page = (
        f"<!doctype html><meta charset='utf-8'><title>nsfw_lab study ({profile})</title>"
        f"<h1>nsfw_lab study — profile {profile}</h1><p>The site was not built: {html.escape(site_error)}</p>"
        "<table border=1 cellpadding=4><tr><th>notebook</th><th>status</th><th>time</th><th>outputs</th></tr>"
        + "".join(rows) + f"</table><h2>Figures</h2><ul>{figs}</ul>"
    )  # fmt: skip
    atomic_write_text(out / "index.html", page)


def run_study(
    profile: str = config.DEFAULT_PROFILE,
    data: str | Path | None = None,
    only: Sequence[str] | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    folder: Path | None = None,
    echo: bool = True,
) -> list[NotebookResult]:
    """Run the notebooks (all, or ``only``) with the profile's common parameters, then build the site; see the
    module docstring. A site that cannot be built is an error after the notebooks have run and been recorded."""
    p = config.get_profile(profile)
    dest = report_dir(p.name, out).resolve()
    params = {
        "PROFILE": p.name,
        "DATA_DIR": str(Path(data).resolve()) if data else None,
        "DEVICE": device or p.device,
        "REPORT_DIR": str(dest),
    }
    selected = notebooks(folder, only)
    if not selected:
        raise NsfwLabError(f"no notebooks in {folder or config.NOTEBOOKS_DIR}")
    before = os.environ.get("NSFW_LAB_PROGRESS")
    os.environ["NSFW_LAB_PROGRESS"] = "0"  # the kernels inherit it: no bar updates in logs or outputs
    results = []
    try:
        for nb in selected:
            if echo:
                print(f"running {nb.name} ...", flush=True)
            r = run_notebook(nb, dest, params, CELL_TIMEOUT[p.name])
            results.append(r)
            if echo:
                tail = "" if r.ok else f": {r.error}"
                print(f"  {'ok' if r.ok else 'FAILED'} in {r.seconds:.0f} s{tail}", flush=True)
    finally:
        if before is None:
            os.environ.pop("NSFW_LAB_PROGRESS", None)
        else:
            os.environ["NSFW_LAB_PROGRESS"] = before
        everything = write_record(dest, p.name, results, params["DATA_DIR"])
    from nsfw_lab.course.site import build_site

    try:
        site = build_site(dest)
    except Exception as exc:  # the index must not keep opening an earlier site as if it were this run's
        write_index(dest, p.name, everything, f"{type(exc).__name__}: {exc}")
        raise
    write_index(dest, p.name, everything)
    if echo:
        print(f"site: {site}", flush=True)
    return results
