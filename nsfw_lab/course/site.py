"""``nsfw-lab site``: the study as a static site in ``reports/<profile>/site/`` (run at the end of ``study``).

Sphinx + MyST-NB with execution off: Python only (Jupyter Book 2 needs Node), it renders the outputs the
runner stored, its search index is a script file, so search works from ``file://`` too, and a cell tag
(``hide-input``) makes code collapsible. The pages: the findings up front (:mod:`nsfw_lab.course.site_pages`),
then every executed notebook in course order with a sidebar, prev/next and the run's profile, data, machine
and versions on every page. A notebook that failed still gets its page, saying which cell failed and why,
and the notebooks that read its results say so. Source and build live in a temporary folder; the finished
site is swapped in whole (:func:`nsfw_lab.utils.fsutil.staged_dir`), so nothing else lands in the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from nsfw_lab.course import site_pages
from nsfw_lab.course.report import STUDY_RECORD, read_metrics
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import read_json, staged_dir

SITE = "site"  # reports/<profile>/site/
MARKER = ".nsfw-lab-site"  # a site folder this project wrote (staged_dir replaces only such a folder)

CSS = """
.nsfw-findings { font-size: 0.9em; border-collapse: collapse; width: 100%; }
.nsfw-findings th, .nsfw-findings td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; }
.nsfw-findings td.num { white-space: nowrap; text-align: right; }
.nsfw-findings tr.nsfw-notebook th { background: #f3f4f6; text-align: left; }
.nsfw-findings td:first-child { width: 28%; }
.nsfw-findings td:nth-child(2) { width: 34%; }
.nsfw-findings td:nth-child(5) { min-width: 11em; }
.bd-page-width, .bd-main .bd-content .bd-article-container { max-width: 100%; }
.nsfw-thumbs { display: flex; flex-wrap: wrap; gap: 12px; }
.nsfw-thumbs figure { width: 240px; margin: 0; }
.nsfw-thumbs img { width: 240px; height: 165px; object-fit: contain; border: 1px solid #ddd; background: #fff; }
.nsfw-thumbs figcaption { font-size: 0.8em; }
.nsfw-cell { scroll-margin-top: 5em; }
"""


def _conf(profile: str, banner: str) -> str:
    """Sphinx's ``conf.py`` for the staged source (every value a literal)."""
    options = {
        "announcement": banner,  # on every page: the run's profile, data, machine and versions
        "home_page_in_toc": True,
        "show_navbar_depth": 1,
        "use_download_button": True,  # the page's notebook (outputs as run)
        "use_fullscreen_button": False,
    }
    return "\n".join([
        f"project = {f'nsfw_lab study ({profile})'!r}",
        "author = 'nsfw_lab'",
        f"html_title = {f'nsfw_lab study · {profile}'!r}",
        "extensions = ['myst_nb']",
        "nb_execution_mode = 'off'  # the runner executed them; the site only renders",
        "nb_merge_streams = True",
        "myst_enable_extensions = ['colon_fence']",
        "html_theme = 'sphinx_book_theme'",
        f"html_theme_options = {options!r}",
        "html_context = {'default_mode': 'light'}  # an unset mode logs a console error on first load",
        "html_show_search_summary = False  # summaries are fetched, which file:// refuses",
        "html_static_path = ['_static']",
        "html_css_files = ['site.css']",
        "html_show_sphinx = False",
        "html_show_copyright = False",
        "suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'misc.highlighting_failure']",
        "",
    ])  # fmt: skip


def _study(root: Path) -> dict[str, Any]:
    study = read_json(root / STUDY_RECORD)
    if study is None:
        raise NsfwLabError(f"{root / STUDY_RECORD}: missing; run the notebooks first (nsfw-lab study)")
    return study


def stage(root: Path, src: Path, study: dict[str, Any]) -> list[str]:
    """Write the site's source for the report folder ``root`` into ``src``; returns the pages in order."""
    import nbformat

    (src / "_static").mkdir(parents=True, exist_ok=True)
    (src / "_static" / "site.css").write_text(CSS)
    failed = {r["notebook"]: r for r in study["notebooks"] if not r["ok"]}
    pages: dict[str, Any] = {}  # notebook -> its executed copy (None when there is none)
    for r in study["notebooks"]:
        name = r["notebook"]
        upstream = [f for f in (read_metrics(root, name) or {}).get("reads", []) if f in failed]
        executed = root / "executed" / f"{name}.ipynb"
        try:
            nb = nbformat.read(executed, as_version=4) if executed.is_file() else None
        except Exception as exc:  # an unreadable copy is shown as such, not a broken build
            nb, r = None, {**r, "ok": False, "error": f"{executed.name} unreadable: {type(exc).__name__}: {exc}"}
        if nb is not None:
            nbformat.write(site_pages.notebook_page(nb, r, upstream), src / f"{name}.ipynb")
        else:
            (src / f"{name}.md").write_text(site_pages.missing_page(r, upstream))
        pages[name] = nb
    (src / "index.md").write_text(site_pages.findings_page(root, study, pages, src / "_static"))
    (src / "conf.py").write_text(_conf(study["profile"], site_pages.banner(study)))
    return list(pages)


def sphinx(src: Path, out: Path, log: Path) -> None:
    """``sphinx-build -b html`` in a child process (Sphinx keeps global state); its output goes to ``log``.
    MyST-NB writes a ``jupyter_execute`` folder beside ``out``: keep ``out`` inside a temporary folder."""
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "auto", "-d", str(out.parent / "doctrees"),
           str(src), str(out)]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
        raise NsfwLabError(f"{log}: sphinx-build failed ({lines[-1][:200] if lines else 'no output'})")


def build_site(root: str | Path) -> Path:
    """Build ``root/site/`` from a report folder (``reports/<profile>``); returns its ``index.html``."""
    root = Path(root).resolve()
    study = _study(root)
    with tempfile.TemporaryDirectory() as tmp:
        stage(root, Path(tmp) / "src", study)
        sphinx(Path(tmp) / "src", Path(tmp) / "build" / "html", root / "logs" / "site.log")
        with staged_dir(root / SITE, overwrite=True, owned_marker=MARKER) as out:
            shutil.copytree(Path(tmp) / "build" / "html", out, dirs_exist_ok=True)
            (out / MARKER).touch()
            os.chmod(out, 0o755)  # a temporary folder is private; a site is for reading
    return root / SITE / "index.html"
