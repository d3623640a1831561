"""The study's site (``nsfw-lab site``, built at the end of ``nsfw-lab study``): a failed notebook and its readers
say so, the findings link the cell that recorded them, and the smoke study's site works in a real browser."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nsfw_lab.course.findings import FINDINGS, KEY_FIGURES, study_findings
from nsfw_lab.course.runner import run_study
from nsfw_lab.course.site_pages import cell_indexes, numbered

PARAMS = """PROFILE: str = "cpu"  # run profile
DATA_DIR: "Optional[str]" = None  # curated data
DEVICE: str = "auto"  # auto, cpu or cuda
REPORT_DIR: "Optional[str]" = None  # where metrics and figures go
"""
REPORT = 'from nsfw_lab.course import Report\nrep = Report("{nb}", PROFILE, REPORT_DIR)'
PLOT = """import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
rep.figure(fig, "line")"""


def _notebook(path: Path, *cells: str, params: str = PARAMS) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "nsfw-lab", "display_name": "nsfw-lab", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem} · a test notebook\n\nIts lesson."),
                nbformat.v4.new_code_cell(params)]  # fmt: skip
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def failed_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four notebooks: one fine, one failing at cell 4 after recording, one that cannot start (a parameter it
    lacks is passed) and one that reads the failed one; run by the runner, which builds the site."""
    nbs = tmp_path_factory.mktemp("nbs")
    _notebook(nbs / "00_ok.ipynb", REPORT.format(nb="00_ok"), 'rep.record("answer", 6 * 7)', PLOT)
    _notebook(nbs / "01_fails.ipynb", REPORT.format(nb="01_fails"), 'rep.record("half", 1)',
              "raise ValueError('broken on purpose')", "rep.record('never', 2)")  # fmt: skip
    _notebook(nbs / "02_cannot_start.ipynb", "pass", params=PARAMS.replace("DEVICE", "DEVISE"))
    _notebook(nbs / "03_reads.ipynb", REPORT.format(nb="03_reads"), 'rep.record("from_01", rep.read("01_fails"))')
    out = tmp_path_factory.mktemp("report") / "smoke"
    results = run_study("smoke", out=out, folder=nbs, echo=False)
    assert [r.ok for r in results] == [True, False, False, True]
    return out


def _text(path: Path | str) -> str:
    """A page's text: tags dropped, entities decoded, whitespace collapsed."""
    import html
    import re

    page = path.read_text() if isinstance(path, Path) else path
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page.replace("><", "> <"))))


def test_a_failed_notebook_and_its_readers_say_so(failed_study: Path) -> None:
    site = failed_study / "site"
    assert "url=site/index.html" in (failed_study / "index.html").read_text()  # the report opens the site
    failed = _text(site / "01_fails.html")
    assert "This notebook failed" in failed and "cell 4" in failed and "ValueError: broken on purpose" in failed
    page = (site / "01_fails.html").read_text()
    assert 'href="#cell-4"' in page and 'id="cell-4"' in page  # the note links the failed cell, which has that id
    cannot = _text(site / "02_cannot_start.html")  # no executed copy: a page of its own
    assert "This notebook failed" in cannot and "no parameter DEVICE" in cannot
    reader = _text(site / "03_reads.html")
    assert "Depends on a failed notebook" in reader and "01_fails" in reader
    assert "Depends on a failed notebook" not in _text(site / "00_ok.html")
    front = _text(site / "index.html")
    assert "Failed in this run" in front and "01_fails" in front and "02_cannot_start" in front
    assert "synthetic proxy" in front and "smoke" in front  # the plain-words warnings
    study = json.loads((failed_study / "study.json").read_text())
    banner = _text(site / "00_ok.html")
    for shown in (study["environment"]["versions"]["torch"], study["environment"]["machine"]["cpu"], "profile smoke"):
        assert shown in banner  # the run's profile, machine and versions on every page
    assert json.loads((failed_study / "metrics" / "03_reads.json").read_text())["reads"] == ["01_fails"]


def test_findings_link_the_cell_that_recorded_them(failed_study: Path) -> None:
    metrics = json.loads((failed_study / "metrics" / "00_ok.json").read_text())
    executed = nbformat.read(failed_study / "executed" / "00_ok.ipynb", as_version=4)
    index = cell_indexes(executed)[metrics["recorded_cells"]["answer"]]
    assert index == 3  # title, parameters, Report(...), then the cell that recorded "answer"
    assert dict(numbered(executed))[index].source == 'rep.record("answer", 6 * 7)'
    failed = nbformat.read(failed_study / "executed" / "01_fails.ipynb", as_version=4)  # papermill's notes skipped
    assert dict(numbered(failed))[4].source == "raise ValueError('broken on purpose')"
    rows = study_findings(failed_study)  # none of the course's notebooks ran here: one "not run" row each
    assert [r["notebook"] for r in rows] == [nb for nb, *_ in FINDINGS] and {r["answer"] for r in rows} == {"not run"}


def test_the_failed_study_site_in_a_browser(failed_study: Path, browser: Callable[..., dict[str, Any]]) -> None:
    seen = browser(failed_study / "site" / "index.html")
    assert seen["errors"] == [] and seen["broken_images"] == [] and seen["missing_pages"] == []
    assert seen["sidebar"] == ["index.html", "00_ok.html", "01_fails.html", "02_cannot_start.html", "03_reads.html"]
    assert seen["findings_rows"] == len(FINDINGS) and seen["thumbnails"] == ["00_ok_line.png"]  # its one figure


def test_the_smoke_study_site_in_a_browser(
    smoke_report: Path, browser: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    from nsfw_lab.config import NOTEBOOKS_DIR

    shot = tmp_path / "findings.png"
    seen = browser(smoke_report / "site" / "index.html", screenshot=shot)
    assert seen["errors"] == [] and seen["broken_images"] == [] and seen["missing_pages"] == []
    notebooks = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert seen["sidebar"] == ["index.html"] + [f"{nb}.html" for nb in notebooks]  # every page, in course order
    m = {nb: json.loads((smoke_report / "metrics" / f"{nb}.json").read_text()) for nb in notebooks}
    e06 = m["06_gradcam_error_analysis"]
    questions = (2 + 1 + 1 + len(m["03_finetune"]["verdicts"]) + 1 + len(m["04_inception_v3"]["ladder"])
                 + len(m["05_augmentation_ablation"]["verdicts"])
                 + 1 + sum(bool(e["n"]) for e in e06["explanations"].values()) + 1 + 1
                 + len(m["07_calibration_policy"]["calibration"]) + len(m["08_comparison"]["paired"]))  # fmt: skip
    assert seen["findings_rows"] == questions  # a row per question of every notebook
    assert seen["thumbnails"] == [f"{nb}_{KEY_FIGURES[nb]}.png" for nb in notebooks]  # each notebook's key figure
    for part in ("profile smoke", "data: the synthetic proxy", "torch", "torchvision", "CPUs"):
        assert part in seen["banner"], part
    for nb in notebooks:  # collapsible code, and prev/next on every notebook page (the last has no next)
        assert seen["collapsed"][f"{nb}.html"] > 0, nb
        assert seen["prev_next"][f"{nb}.html"] == (1 if nb == notebooks[-1] else 2), nb
    assert seen["search_hits"] >= 2  # the findings page and notebook 00 at least
    assert shot.stat().st_size > 20_000


def test_smoke_findings_link_the_cells_that_recorded_them(smoke_report: Path) -> None:
    import re

    site = smoke_report / "site"
    links = re.findall(r'href="(\d\d_\w+)\.html#cell-(\d+)">cell \d+</a>', (site / "index.html").read_text())
    assert len(links) == len(study_findings(smoke_report))  # every row links its cell
    for nb, index in set(links):  # the anchor is on the page, and the code after it is the recording cell
        page = (site / f"{nb}.html").read_text()
        after = page.split(f'id="cell-{index}" class="nsfw-cell"', 1)[1].split('class="nsfw-cell"', 1)[0]
        assert "record(" in _text(after).replace(" ", ""), (nb, index)


def test_the_browser_check_catches_a_broken_image_and_a_missing_page(
    smoke_report: Path, browser: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    site = tmp_path / "site"
    shutil.copytree(smoke_report / "site", site)
    (site / "03_finetune.html").unlink()
    next((site / "_static" / "figures").glob("*.png")).unlink()
    seen = browser(site / "index.html")
    assert [p for p in seen["missing_pages"] if "03_finetune.html" in p]
    assert [i for i in seen["broken_images"] if i.startswith("index.html:")]


def test_site_without_a_study_is_a_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "nsfw-lab"
    r = subprocess.run([str(cli), "site", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'study.json'}: missing; run the notebooks first "
                                             "(nsfw-lab study)"]  # fmt: skip
    assert not (tmp_path / "site").exists()
