"""The course's commands: ``study`` (every notebook through papermill into ``reports/<profile>/``, then the
site) and ``site`` (the site again, from what the notebooks left)."""

from __future__ import annotations

import argparse

from nsfw_lab import config
from nsfw_lab.course.report import report_dir
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.cli import Subparsers


def _study(a: argparse.Namespace) -> None:
    from nsfw_lab.course.runner import run_study

    results = run_study(a.profile, a.data, a.only, a.out, a.device)
    failed = [r for r in results if not r.ok]
    print(
        f"{len(results) - len(failed)} of {len(results)} notebooks ran; open "
        f"{report_dir(a.profile, a.out) / 'index.html'}"
    )
    if failed:
        raise NsfwLabError("failed: " + "; ".join(f"{r.notebook} (cell {r.cell}): {r.error}" for r in failed))


def _site(a: argparse.Namespace) -> None:
    from nsfw_lab.course.site import build_site

    print(f"site: {build_site(report_dir(a.profile, a.out))}")


def _report_folder(p: argparse.ArgumentParser) -> None:
    """The report folder both commands work in: ``--profile`` and ``--out``."""
    p.add_argument("--profile", default=config.DEFAULT_PROFILE, choices=sorted(config.PROFILES))
    p.add_argument("--out", help="report folder (default: reports/<profile>)")


def add_parser(sub: Subparsers) -> None:
    """Register ``study`` and ``site``."""
    st = sub.add_parser(
        "study",
        help="run the course notebooks through papermill into reports/<profile>/",
        description="Runs the notebooks in order (kernel nsfw-lab, parameters checked against each notebook's "
        "parameters cell, a per-cell timeout), keeps going after a failure, then reports it (notebook, cell, error) "
        "with exit status 2. Writes executed/, html/, metrics/, figures/, logs/, runs/, study.json, the site (site/, "
        "as `nsfw-lab site` builds it) and index.html, which opens the site (reports/README.md).",
    )
    _report_folder(st)
    st.add_argument("--data", help="a curated folder, or an ImageFolder to curate (default: the proxy)")
    st.add_argument("--only", nargs="+", help="notebooks by number or name (00 or 00_data)")
    st.add_argument("--device", help="auto, cpu or cuda (default: the profile's)")
    st.set_defaults(func=_study)

    si = sub.add_parser(
        "site",
        help="build reports/<profile>/site/ from the executed notebooks (nsfw-lab study does it at its end)",
        description="Builds the study's static site with Sphinx + MyST-NB (execution off): the findings page "
        "computed from the notebooks' metrics, then every executed notebook in course order with a sidebar, "
        "prev/next, collapsible code, search, and the run's profile, data, machine and versions on every page; "
        "failed notebooks and those that read them say so. Opens from file:// (docs/site.md).",
    )
    _report_folder(si)
    si.set_defaults(func=_site)
