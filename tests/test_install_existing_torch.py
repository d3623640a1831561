"""scripts/install_existing_torch.py: the floors it reads, what it refuses, and the pip call that keeps torch.
(CI runs it for real: a Python 3.13 venv with the floor torch/torchvision, then the fast test subset.)"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():  # type: ignore[no-untyped-def]
    path = ROOT / "scripts" / "install_existing_torch.py"
    spec = importlib.util.spec_from_file_location("install_existing_torch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_the_floors_come_from_pyproject(script, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = script.floors()
    assert f["python"] == (3, 11) and f["python<"] == (3, 14)
    assert f["torch"] == (2, 11) and f["torchvision"] == (0, 26)
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nrequires-python = ">=3.11"\ndependencies = ["torch==2.14.1"]\n')
    with pytest.raises(script.Refused, match="no '>=' floor for torch, torchvision"):
        script.floors(bad)
    assert script.release("2.11.0+cu130") == (2, 11, 0) and script.release("0.26.0a0") == (0, 26, 0)


def test_it_refuses_what_the_package_does_not_support(script, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    need = script.floors()
    with pytest.raises(script.Refused, match=r"supports Python 3\.11 up to \(not including\) 3\.14; .* is 3\.10\.13"):
        script.installed_torch(need, (3, 10, 13))
    installed = {"torch": "2.10.0+cu128", "torchvision": "0.26.0"}

    def version(name: str) -> str:
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(script.metadata, "version", version)
    with pytest.raises(script.Refused, match=r"torch 2\.10\.0\+cu128 is installed in .*; nsfw_lab needs torch>=2\.11$"):
        script.installed_torch(need, (3, 12, 1))
    installed.pop("torchvision")
    installed["torch"] = "2.11.0"
    with pytest.raises(script.Refused, match=r"torchvision is not installed in .*install your PyTorch build first"):
        script.installed_torch(need, (3, 13, 0))
    installed["torchvision"] = "0.26.0+cu130"
    assert script.installed_torch(need, (3, 13, 0)) == {"torch": "2.11.0", "torchvision": "0.26.0+cu130"}


def test_check_prints_the_pip_call_that_pins_the_installed_torch(  # type: ignore[no-untyped-def]
    script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main(["--check", "--extras", "dev,decode", "--wheels", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    torch_v, vision_v = metadata.version("torch"), metadata.version("torchvision")
    assert out.startswith(f"keeping torch {torch_v}, torchvision {vision_v}; running: {sys.executable} -m pip install")
    assert f"--editable {ROOT}[dev,decode] --no-index --find-links {tmp_path}" in out and "--constraint" in out
    cmd = script.pip_command(tmp_path / "c.txt", "", None)
    assert cmd[-2:] == ["--editable", str(ROOT)] and "--no-index" not in cmd
    assert script.main(["--check", "--wheels", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'missing'}: --wheels must name a folder of wheels\n"


def test_venv_sees_the_packages_of_the_python_that_made_it(script, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``--venv`` (``make gpu-check``): a venv whose sys.path holds this Python's site folders, torch included,
    even when this Python is itself a venv (where --system-site-packages alone would miss them)."""
    import subprocess

    python = script.make_venv(tmp_path / "v")
    assert python == tmp_path / "v" / "bin" / "python" and python.is_file()
    probe = "import torch, sys; print(torch.__version__); print(sys.prefix)"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    import torch

    assert out == [torch.__version__, str(tmp_path / "v")]
    assert script.make_venv(tmp_path / "v") == python  # again: kept, not recreated
