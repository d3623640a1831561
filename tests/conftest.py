"""Shared fixtures: small generated proxies (session-scoped: generated once per test run)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nsfw_lab.data.synth import SynthConfig, generate

SLOW_FIXTURES = {"smoke_report", "quick_bench"}  # the smoke study's notebooks (minutes), the quick bench


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that read the smoke study or the quick bench are ``slow`` (not in the fast subset); tests marked
    ``cuda`` skip without a CUDA device (``make gpu-check`` runs them on one), and ``torchcodec`` ones where it
    does not load (an existing-PyTorch install without a matching build)."""
    import torch

    from nsfw_lab.data.decode import torchcodec_problem

    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    problem = torchcodec_problem()
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if skip is not None and "cuda" in item.keywords:
            item.add_marker(skip)
        if problem and "torchcodec" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"needs TorchCodec, which is {problem}"))


@pytest.fixture(scope="session")
def small_proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 x 60 images at 64 px with the default structure (galleries, near-duplicates, conflicts, broken files)."""
    out = tmp_path_factory.mktemp("proxy") / "px"
    generate(out, SynthConfig(per_class=60, size=64, seed=3, corrupt_rate=0.04, conflict_rate=0.04), progress=False)
    return out


@pytest.fixture(scope="session")
def shortcut_proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 x 80 images at 64 px with the watermark shortcut on porn."""
    out = tmp_path_factory.mktemp("proxy") / "sc"
    generate(out, SynthConfig(per_class=80, size=64, seed=5, shortcut=True), progress=False)
    return out


@pytest.fixture(scope="session")
def default_curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default proxy (5 x 200, all defaults but a 96 px size), curated with the default settings."""
    from nsfw_lab.data.curate import CurateConfig, curate

    root = tmp_path_factory.mktemp("default")
    generate(root / "raw", SynthConfig(per_class=200, size=96, seed=0), progress=False)
    curate(root / "raw", root / "curated", CurateConfig(short_side=96), progress=False)
    return root / "curated"


@pytest.fixture(scope="session")
def small_curated(small_proxy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_proxy`` curated at 64 px (about 220 train, 30 val, 30 test images)."""
    from nsfw_lab.data.curate import CurateConfig, curate

    out = tmp_path_factory.mktemp("small") / "curated"
    curate(small_proxy, out, CurateConfig(short_side=64), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_config():  # type: ignore[no-untyped-def]
    """Factory of quick training configs: a small baseline CNN at 32 px, no workers, no progress bars."""
    from nsfw_lab.train import make_config

    def make(data: Path, out: Path, **overrides: object):  # type: ignore[no-untyped-def]
        base = dict(model="baseline", image_size=32, cnn_widths=(8, 16), cnn_hidden=32, batch_size=16, epochs=1,
                    lr=0.05, workers=0, save_every=0, progress=False)  # fmt: skip
        return make_config(data=str(data), out=str(out), **{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_run(small_curated: Path, tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:  # type: ignore[no-untyped-def]
    """A 2-epoch tiny CNN trained on ``small_curated`` (tests that write into a run copy it first)."""
    from nsfw_lab.train import fit

    out = tmp_path_factory.mktemp("eval") / "run"
    fit(tiny_config(small_curated, out, epochs=2))
    return out


@pytest.fixture(scope="session")
def quick_bench(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """``nsfw-lab bench --quick --run TINY_RUN`` run once as a user runs it; returns its output folder
    (bench.json, bench.md)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("bench")
    cmd = [str(Path(sys.executable).parent / "nsfw-lab"), "bench", "--quick", "--out", str(root / "out"),
           "--work", str(root / "work"), "--run", str(tiny_run)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "out"


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory: pytest.TempPathFactory, quick_bench: Path) -> Path:
    """All notebooks run once with the smoke profile, as ``make study PROFILE=smoke`` runs them (the site
    included); data and reports in a temporary folder, with the quick bench's output where `make bench` puts it
    (reports/benchmarks) for the cards, notebook 08 and the site."""
    import shutil

    from nsfw_lab.config import NOTEBOOKS_DIR
    from nsfw_lab.course.runner import run_study

    root = tmp_path_factory.mktemp("study")
    shutil.copytree(quick_bench, root / "reports" / "benchmarks")
    mp = pytest.MonkeyPatch()
    mp.setenv("NSFW_LAB_DATA", str(root / "data"))  # the kernels inherit it: nothing written to the repo
    mp.setenv("NSFW_LAB_REPORTS", str(root / "reports"))
    try:
        results = run_study("smoke", out=root / "reports" / "smoke", echo=False)
    finally:
        mp.undo()
    failed = [f"{r.notebook} (cell {r.cell}): {r.error}" for r in results if not r.ok]
    assert not failed, failed
    assert [r.notebook for r in results] == sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    return root / "reports" / "smoke"


CHROMIUM = os.environ.get("NSFW_LAB_CHROMIUM", "/usr/bin/chromium")  # Debian's package (.ci/run installs it)


def _browser_problem() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (the dev extra has it)"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set NSFW_LAB_CHROMIUM)"
    return None


def browse(index: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Open a built site from ``file://`` in headless Chromium and walk it as a reader would: the front page,
    then every page its sidebar links to. Returns what went wrong (console errors and uncaught page errors,
    failed loads, images that did not load, pages that did not open) and what was seen (the sidebar's pages,
    the findings rows, the thumbnails' files, the banner, each page's title, collapsed code cells and prev/next
    links, the pages a search for "leakage" finds)."""
    from playwright.sync_api import Error, sync_playwright

    seen: dict[str, Any] = {"errors": [], "broken_images": [], "missing_pages": [], "titles": {}, "collapsed": {},
                            "prev_next": {}}  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: seen["errors"].append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen["errors"].append(f"page: {e}"))
        page.on("requestfailed", lambda r: seen["errors"].append(f"request: {r.url} {r.failure}"))

        def visit(url: str) -> bool:
            try:
                page.goto(url, wait_until="load")
            except Error as exc:
                seen["missing_pages"].append(f"{url}: {str(exc).splitlines()[0]}")
                return False
            name = url.split("/")[-1].split("#")[0]
            seen["titles"][name] = page.title()
            seen["collapsed"][name] = len(page.query_selector_all("details.hide.above-input"))
            seen["prev_next"][name] = len(
                page.query_selector_all(".prev-next-area a.left-prev, .prev-next-area a.right-next")
            )
            for src in page.eval_on_selector_all(
                "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)"
            ):
                seen["broken_images"].append(f"{name}: {src}")
            return True

        visit(index.resolve().as_uri())
        seen["findings_rows"] = len(page.query_selector_all("table.nsfw-findings tr.nsfw-finding"))
        seen["thumbnails"] = page.eval_on_selector_all(
            ".nsfw-thumbs img", "els => els.map(e => e.src.split('/').pop())"
        )
        banner = page.query_selector(".bd-header-announcement")
        seen["banner"] = banner.inner_text() if banner else ""
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        links = page.eval_on_selector_all("nav.bd-docs-nav a.reference", "els => els.map(e => e.href)")
        seen["sidebar"] = [u.split("/")[-1].split("#")[0] for u in links]
        for url in links:
            visit(url)
        seen["search_hits"] = 0
        if visit(index.resolve().with_name("search.html").as_uri() + "?q=leakage"):  # Sphinx's own full-text search
            page.wait_for_function("document.querySelector('#search-results')?.innerText.includes('Search finished')")
            seen["search_hits"] = len(page.query_selector_all("#search-results ul.search li"))
        browser.close()
    return seen


@pytest.fixture
def browser() -> Callable[..., dict[str, Any]]:
    """:func:`browse`, or a skip with the reason where Playwright or Chromium is missing (a failure instead
    where ``NSFW_LAB_REQUIRE_BROWSER=1``, as CI sets it: there the browser test must run)."""
    problem = _browser_problem()
    if problem:
        if os.environ.get("NSFW_LAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NSFW_LAB_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    return browse
