"""The notebook runner on small generated notebooks: parameters checked, failures collected, reports built;
and the rules every committed notebook must follow."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from nsfw_lab.config import NOTEBOOKS_DIR
from nsfw_lab.course.hygiene import SETUP_SOURCE, problems, setup_problem
from nsfw_lab.course.runner import run_study

PARAMS = """PROFILE: str = "cpu"  # run profile: smoke, cpu or gpu
DATA_DIR: "Optional[str]" = None  # curated data; None: the proxy (quoted: papermill reads the type)
DEVICE: str = "auto"  # auto, cpu or cuda
REPORT_DIR: "Optional[str]" = None  # where metrics and figures go
"""


def _notebook(path: Path, params: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "nsfw-lab", "display_name": "nsfw-lab", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), nbformat.v4.new_code_cell(params)]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


RECORD = """from nsfw_lab.course import Report
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rep = Report("00_ok", PROFILE, REPORT_DIR)
rep.record("answer", 6 * 7)
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
rep.figure(fig, "line")
"""


def test_runner_collects_failures_and_builds_the_report(tmp_path: Path) -> None:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_ok.ipynb", PARAMS, RECORD)
    _notebook(nbs / "01_fails.ipynb", PARAMS, "x = 1", "raise ValueError('broken on purpose')", "y = 2")
    _notebook(nbs / "02_typo.ipynb", PARAMS.replace("DEVICE", "DEVISE"), "pass")
    _notebook(nbs / "03_after.ipynb", PARAMS, "assert PROFILE == 'smoke' and DEVICE == 'cpu'")
    out = tmp_path / "report"
    results = run_study("smoke", out=out, folder=nbs, echo=False)
    by = {r.notebook: r for r in results}
    assert [r.notebook for r in results] == ["00_ok", "01_fails", "02_typo", "03_after"]
    assert by["00_ok"].ok and by["03_after"].ok  # the run carried on past the failures
    assert (
        not by["01_fails"].ok and by["01_fails"].cell == 3 and "ValueError: broken on purpose" in by["01_fails"].error
    )
    assert not by["02_typo"].ok and "no parameter DEVICE" in by["02_typo"].error
    metrics = json.loads((out / "metrics" / "00_ok.json").read_text())
    assert metrics["answer"] == 42 and metrics["figures"] == ["figures/00_ok_line.png"]
    assert (out / "figures" / "00_ok_line.png").stat().st_size > 1000
    assert (out / "html" / "00_ok.html").is_file() and (out / "html" / "01_fails.html").is_file()
    executed = nbformat.read(out / "executed" / "00_ok.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and str(out.resolve()) in injected[0].source
    assert "url=site/index.html" in (out / "index.html").read_text()  # the report opens the site (test_site.py)
    summary = json.loads((out / "study.json").read_text())
    assert [n["ok"] for n in summary["notebooks"]] == [True, False, False, True]


def test_only_selects_by_number_or_name_and_rejects_unknown(tmp_path: Path) -> None:
    from nsfw_lab.course.runner import notebooks
    from nsfw_lab.errors import NsfwLabError

    for name in ("00_a", "01_b", "02_c"):
        _notebook(tmp_path / f"{name}.ipynb", PARAMS, "pass")
    assert [p.stem for p in notebooks(tmp_path, ["01", "02_c"])] == ["01_b", "02_c"]
    with pytest.raises(NsfwLabError, match="no notebook named 09"):
        notebooks(tmp_path, ["09"])


def test_hygiene_rules_catch_each_problem(tmp_path: Path) -> None:
    good = _notebook(tmp_path / "good.ipynb", PARAMS, "x = 1")
    assert problems(good) == []
    nb = nbformat.read(good, as_version=4)
    nb.cells[2].execution_count = 3
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nbformat.write(nb, tmp_path / "outputs.ipynb")
    assert problems(tmp_path / "outputs.ipynb") == ["cell 2 has outputs or an execution count"]
    bad_params = PARAMS.replace('DEVICE: str = "auto"  # auto, cpu or cuda', 'device = "auto"') + "EPOCHS: int = 1\n"
    found = problems(_notebook(tmp_path / "params.ipynb", bad_params))
    assert "parameters line 3: not an annotated assignment (NAME: type = value)" in found
    assert "parameter EPOCHS has no comment" in found and "parameter DEVICE is missing" in found
    two = _notebook(tmp_path / "two.ipynb", PARAMS, "x = 1")
    nb = nbformat.read(two, as_version=4)
    nb.cells[2].metadata["tags"] = ["parameters"]
    nbformat.write(nb, two)
    assert problems(two) == ["2 cells tagged parameters (need exactly 1)"]
    switch = _notebook(tmp_path / "switch.ipynb", PARAMS, 'SIZE = {"cpu": 64}.get(PROFILE, 112)')
    assert problems(switch) == ["cell 2 picks a value by profile name: give the profile that knob (nsfw_lab.config)"]
    assert problems(_notebook(tmp_path / "switch2.ipynb", PARAMS, 'x = 3 if PROFILE == "smoke" else 30')) != []
    eq = PARAMS + "SIZE: int = 64  # input px; None = the profile's\n"  # a second '=' hides SIZE from papermill
    assert problems(_notebook(tmp_path / "eq.ipynb", eq)) == [
        "parameter SIZE: papermill cannot read this line (one '=' per line, none in the comment)"
    ]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_are_clean(path: Path) -> None:
    assert problems(path) == []


def test_only_keeps_the_other_notebooks_in_the_index(tmp_path: Path) -> None:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("00_a", "01_b"):
        _notebook(nbs / f"{name}.ipynb", PARAMS, "pass")
    out = tmp_path / "report"
    run_study("smoke", out=out, folder=nbs, echo=False)
    run_study("smoke", out=out, folder=nbs, only=["01"], echo=False)
    summary = json.loads((out / "study.json").read_text())
    assert [n["notebook"] for n in summary["notebooks"]] == ["00_a", "01_b"]
    assert (out / "site" / "00_a.html").is_file() and (out / "site" / "01_b.html").is_file()


def test_a_site_that_cannot_be_built_leaves_the_table_index_and_fails_the_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nsfw_lab.course import site
    from nsfw_lab.errors import NsfwLabError

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_ok.ipynb", PARAMS, RECORD)
    _notebook(nbs / "01_fails.ipynb", PARAMS, "x = 1", "raise ValueError('broken on purpose')")

    def broken(src: Path, out: Path, log: Path) -> None:
        raise NsfwLabError(f"{log}: sphinx-build failed (a broken theme)")

    monkeypatch.setattr(site, "sphinx", broken)
    out = tmp_path / "report"
    with pytest.raises(NsfwLabError, match="a broken theme"):
        run_study("smoke", out=out, folder=nbs, echo=False)
    index = (out / "index.html").read_text()
    assert "The site was not built" in index and "a broken theme" in index and "FAILED (cell 3)" in index
    assert 'href="html/00_ok.html"' in index and "00_ok_line.png" in index and not (out / "site").exists()
    assert [n["ok"] for n in json.loads((out / "study.json").read_text())["notebooks"]] == [True, False]


def test_progress_bars_are_widgets_in_the_kernel(tmp_path: Path) -> None:
    """What `make lab` shows: the package's bars (tqdm.auto) render as ipywidgets in the notebooks' kernel, and
    JupyterLab has the widgets extension that draws them."""
    import os
    import sys

    from nbclient import NotebookClient

    from nsfw_lab.course.runner import kernel_name

    nb = nbformat.v4.new_notebook()
    bars = "from nsfw_lab.utils.progress import tqdm\nfor _ in tqdm(range(3)):\n    pass"
    nb.cells = [nbformat.v4.new_code_cell(bars)]
    NotebookClient(nb, kernel_name=kernel_name(), timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute(
        env={**os.environ, "NSFW_LAB_PROGRESS": "1"}
    )  # fmt: skip
    kinds = {k for o in nb.cells[0].outputs for k in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in kinds, nb.cells[0].outputs
    labextensions = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter-widgets" / "jupyterlab-manager"
    assert (labextensions / "package.json").is_file()


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_notebook_has_the_setup_cell_after_its_parameters(path: Path) -> None:
    assert setup_problem(path) is None


def test_the_setup_cell_installs_from_the_clone_only_where_nsfw_lab_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import subprocess
    import sys

    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.chdir(NOTEBOOKS_DIR)
    exec(SETUP_SOURCE, {})  # installed (this environment): nothing happens
    assert calls == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nsfw_lab" else real(name, *a))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(SETUP_SOURCE, {})  # a fresh runtime in a clone: the existing-PyTorch install, then importable at once
    root = NOTEBOOKS_DIR.parent
    assert calls == [[sys.executable, str(root / "scripts" / "install_existing_torch.py"), "--extras", ""]]
    assert sys.path[0] == str(root)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="not in a clone of its repository: clone it"):
        exec(SETUP_SOURCE, {})


def test_notebooks_run_on_this_pythons_kernel_where_nsfw_lab_is_not_registered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    from nsfw_lab.course.runner import kernel_name

    specs = KernelSpecManager().find_kernel_specs()
    assert "python3" in specs  # ipykernel's own kernel: this Python, always there
    monkeypatch.setattr(KernelSpecManager, "find_kernel_specs", lambda self: {"python3": specs["python3"]})
    assert kernel_name.__wrapped__() == "python3"
    assert capsys.readouterr().err == (
        f"note: no nsfw-lab Jupyter kernel is registered here; the notebooks run on python3 ({sys.executable})\n"
    )
    monkeypatch.setattr(KernelSpecManager, "find_kernel_specs", lambda self: {**specs, "nsfw-lab": "/k"})
    assert kernel_name.__wrapped__() == "nsfw-lab" and capsys.readouterr().err == ""
