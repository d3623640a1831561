"""Packaging: pins, lock, conda file, Makefile, CI entry point, kernel, README."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
INSTALLER_TOOLS = {"pip", "setuptools", "wheel", "nsfw-lab"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock() -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] from requirements/lock.txt."""
    pins: dict[str, list[tuple[str, str]]] = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"lock line not an exact pin: {line}"
        pins.setdefault(canonicalize_name(req.name), []).append((spec[0].version, str(req.marker or "")))
    return pins


def _applies(marker: str) -> bool:
    from packaging.markers import Marker

    return not marker or Marker(marker).evaluate()


def test_required_runtime_dependencies_and_supported_ranges() -> None:
    proj = _pyproject()["project"]
    deps = {canonicalize_name(Requirement(d).name): Requirement(d) for d in proj["dependencies"]}
    for name in (
        "torch",
        "torchvision",
        "grad-cam",
        "papermill",
        "jupyterlab",
        "ipykernel",
        "matplotlib",
        "seaborn",
        "scikit-learn",
        "pandas",
        "imagehash",
        "tqdm",
        "pillow",
    ):
        assert name in deps, name
    # ranges, not pins: an environment that brought its own PyTorch keeps it (the lock pins the exact set)
    from packaging.specifiers import SpecifierSet

    for name, floor, newer in (("torch", "2.11.0", "2.14.1"), ("torchvision", "0.26.0", "0.29.1")):
        spec = deps[name].specifier
        assert spec.contains(floor) and spec.contains(newer), (name, str(spec))
        assert not spec.contains(f"{floor.split('.')[0]}.{int(floor.split('.')[1]) - 1}.0"), f"{name}: floor below CI's"
    python = SpecifierSet(proj["requires-python"])
    assert all(python.contains(v) for v in ("3.11.0", "3.12.1", "3.13.0")) and not python.contains("3.10.13")
    assert "torchcodec" not in deps, "TorchCodec is optional (its build matches one torch): the decode extra"
    assert any(Requirement(d).name == "torchcodec" for d in proj["optional-dependencies"]["decode"])
    assert proj["scripts"]["nsfw-lab"] == "nsfw_lab.cli:main"
    dev = {canonicalize_name(Requirement(d).name) for d in proj["optional-dependencies"]["dev"]}
    assert {"pytest", "ruff"} <= dev


def test_lock_satisfies_every_declared_requirement() -> None:
    pins = _lock()
    proj = _pyproject()["project"]
    for d in proj["dependencies"] + proj["optional-dependencies"]["dev"] + proj["optional-dependencies"]["decode"]:
        req = Requirement(d)
        versions = [v for v, m in pins.get(canonicalize_name(req.name), []) if _applies(m)]
        assert versions, f"{req.name} is not pinned in requirements/lock.txt"
        assert all(req.specifier.contains(v, prereleases=True) for v in versions), (d, versions)


@pytest.mark.locked
def test_installed_environment_is_exactly_the_lock() -> None:
    """Every package in this environment is pinned in the lock, at the installed version."""
    pins = _lock()
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        # setuptools' vendored copies join sys.path once setuptools is imported (torch.compile does): not installed
        if name in INSTALLER_TOOLS or "_vendor" in Path(str(dist.locate_file(""))).parts:
            continue
        versions = [v for v, m in pins.get(name, []) if _applies(m)]
        assert versions, f"{name} is installed but not in requirements/lock.txt"
        local = dist.version.split("+")[0]
        assert local in versions, f"{name} {dist.version} installed, lock pins {versions}"


def test_environment_yml_cannot_drift_from_pyproject() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"]  # the Python the lock is compiled for (make lock)
    assert "--python-version 3.11" in (ROOT / "Makefile").read_text()
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    # pip installs the project itself (dependencies come from pyproject.toml) through the same lock file:
    assert pip == ["--constraint requirements/lock.txt", "--editable .[dev,decode]"]
    conda_pkgs = {re.split(r"[=<>]", d)[0] for d in deps if isinstance(d, str)}
    assert conda_pkgs == {"python", "pip"}, "Python packages must come from the lock, not conda"


def test_makefile_targets_and_ci_entry_point() -> None:
    mk = (ROOT / "Makefile").read_text()
    for target in ("study:", "test:", "lab:", "clean:", "env:", "lock:"):
        assert re.search(rf"^{target}", mk, re.M), target
    assert "--constraint $(LOCK)" in mk and "--editable '.[dev,decode]'" in mk
    assert "--extra dev --extra decode" in mk  # the lock covers what `make env` installs
    assert "ipykernel install --sys-prefix --name nsfw-lab" in mk
    assert re.search(r"^\$\(STAMP\): pyproject.toml \$\(LOCK\)", mk, re.M)  # rebuilt only when these change
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test", ci, re.M)


def test_ci_also_runs_the_fast_subset_on_the_floor_installed_the_existing_torch_way() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    deps = {Requirement(d).name: Requirement(d) for d in _pyproject()["project"]["dependencies"]}
    for name, var in (("torch", "FLOOR_TORCH"), ("torchvision", "FLOOR_VISION")):
        version = re.search(rf"^{var}=(\S+)$", ci, re.M).group(1)
        floor = next(sp.version for sp in deps[name].specifier if sp.operator == ">=")
        assert version.startswith(floor + "."), f".ci/run installs {name} {version}, pyproject's floor is {floor}"
    assert "versions/3.13" in ci and "scripts/install_existing_torch.py" in ci
    assert ci.index("make test") < ci.index('-m "not slow and not locked and not cuda"')


@pytest.mark.locked
def test_kernel_nsfw_lab_is_registered_inside_this_environment() -> None:
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "nsfw-lab" / "kernel.json"
    assert spec.is_file(), "run `make env`: the nsfw-lab kernel is not registered in this environment"
    argv = json.loads(spec.read_text())["argv"]
    assert Path(argv[0]).resolve().parent == Path(sys.executable).resolve().parent


def test_readme_gives_the_two_commands_first() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make study" in text and "make test" in text
    first_code = text.index("```")
    assert text.index("make study") > first_code and text.index("make study") < first_code + 200


def test_readme_is_short_and_every_local_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120, "reference material belongs in docs/"
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *(ROOT / d / "README.md" for d in
             ("data", "reports", "notebooks"))]  # fmt: skip
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"


def test_generated_data_is_ignored() -> None:
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "data/*" in ignore and "!data/README.md" in ignore and ".venv/" in ignore
    assert (ROOT / "data" / "README.md").is_file()


def test_progress_bars_can_render_as_widgets_in_jupyterlab() -> None:
    # tqdm.auto picks widget bars in a notebook only when ipywidgets is importable (else text + a warning)
    from tqdm import notebook

    assert notebook.IProgress is not None
