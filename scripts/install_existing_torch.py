#!/usr/bin/env python3
"""Install nsfw_lab into a Python that already has PyTorch, leaving torch and torchvision as they are.

For hosted notebooks (Colab, Kaggle), cluster images and GPU boxes with a vendor build: pip gets the
installed ``torch==X`` / ``torchvision==Y`` as constraints, so it installs only what is missing and
never replaces them. Standard library only (it runs before anything else is installed).

    python scripts/install_existing_torch.py                  # the package + the test tools (dev extra)
    python scripts/install_existing_torch.py --extras ""      # the package only
    python scripts/install_existing_torch.py --wheels DIR     # offline: only the wheels in DIR
    python scripts/install_existing_torch.py --check          # say what would happen, install nothing
    python scripts/install_existing_torch.py --venv DIR       # into a new venv DIR that sees this Python's
                                                              # packages (torch included); `make gpu-check`

It registers no Jupyter kernel (a hosted runtime already runs one); ``make env`` builds the locked set
instead. Exit status 2 with one line on stderr when the environment cannot take the package.
"""

from __future__ import annotations

import argparse
import re
import site
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINNED_BY_ENV = ("torch", "torchvision")


class Refused(Exception):
    """The environment cannot take the package; the message is one line."""


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version (``2.11.0+cu130`` -> ``(2, 11, 0)``)."""
    m = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def floors(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, tuple[int, ...]]:
    """``name -> lowest supported release`` for Python, torch and torchvision, read from pyproject.toml."""
    proj = tomllib.loads(pyproject.read_text())["project"]
    out = {"python": release(proj["requires-python"].split(">=", 1)[1])}
    ceiling = re.search(r"<\s*([\d.]+)", proj["requires-python"])
    out["python<"] = release(ceiling.group(1)) if ceiling else (99,)
    for dep in proj["dependencies"]:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([\d.]+)", dep)
        if m and m.group(1) in PINNED_BY_ENV:
            out[m.group(1)] = release(m.group(2))
    missing = [n for n in PINNED_BY_ENV if n not in out]
    if missing:
        raise Refused(f"{pyproject}: no '>=' floor for {', '.join(missing)} in [project] dependencies")
    return out


def installed_torch(need: dict[str, tuple[int, ...]], python: tuple[int, ...]) -> dict[str, str]:
    """The installed torch/torchvision versions, checked against the floors (else :class:`Refused`)."""
    fmt = lambda v: ".".join(map(str, v))  # noqa: E731
    if not need["python"] <= python < need["python<"]:
        raise Refused(f"nsfw_lab supports Python {fmt(need['python'])} up to (not including) "
                      f"{fmt(need['python<'])}; {sys.executable} is {fmt(python)}")  # fmt: skip
    found = {}
    for name in PINNED_BY_ENV:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise Refused(
                f"{name} is not installed in {sys.executable}: install your PyTorch build first "
                "(https://pytorch.org/get-started/locally/), or run `make env` for the locked set"
            ) from None
        if release(found[name]) < need[name]:
            raise Refused(f"{name} {found[name]} is installed in {sys.executable}; nsfw_lab needs "
                          f"{name}>={fmt(need[name])}")  # fmt: skip
    return found


def pip_command(constraints: Path, extras: str, wheels: Path | None) -> list[str]:
    """The pip call: the repository editable, the installed torch pair as constraints."""
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    cmd = [sys.executable, "-m", "pip", "install", "--constraint", str(constraints), "--editable", target]
    if wheels is not None:
        cmd += ["--no-index", "--find-links", str(wheels)]
    return cmd


def make_venv(path: Path) -> Path:
    """A venv at ``path`` whose ``sys.path`` also holds this Python's site folders (so it sees the installed
    torch, whether this Python is the system's, a venv's or a conda env's); returns its interpreter."""
    import venv

    python = path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if not python.is_file():
        venv.create(path, with_pip=True)
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(
        subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    )
    mine = [p for p in dict.fromkeys([*site.getsitepackages(), site.getusersitepackages()]) if Path(p).is_dir()]
    (purelib / "_existing_torch.pth").write_text("".join(f"{p}\n" for p in mine))
    return python


def torchcodec_line() -> str:
    """How the installed package will decode images (asked in a fresh interpreter)."""
    probe = "from nsfw_lab.data.decode import torchcodec_problem as p; print(p() or 'loads')"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        return f"but `import nsfw_lab` fails: {last}"
    said = out.stdout.strip()
    return "TorchCodec loads" if said == "loads" else f"TorchCodec {said}: images decode with Pillow"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extras", default="dev", help="comma-separated extras (dev, decode); '' for none")
    ap.add_argument("--wheels", type=Path, help="install offline from the wheels in this folder only")
    ap.add_argument("--check", action="store_true", help="check the environment and print the pip call")
    ap.add_argument("--venv", type=Path, help="install into this venv (created when missing), which sees this "
                    "Python's packages")  # fmt: skip
    a = ap.parse_args(argv)
    if a.venv is not None:
        try:
            installed_torch(floors(), sys.version_info[:3])  # refuse before creating anything
        except Refused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        rest = ["--extras", a.extras, *(["--wheels", str(a.wheels.resolve())] if a.wheels else []),
                *(["--check"] if a.check else [])]  # fmt: skip
        return subprocess.run([str(make_venv(a.venv.resolve())), __file__, *rest]).returncode
    try:
        found = installed_torch(floors(), sys.version_info[:3])
        if a.wheels is not None and not a.wheels.is_dir():
            raise Refused(f"{a.wheels}: --wheels must name a folder of wheels")
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "existing-torch.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in found.items()))
        cmd = pip_command(constraints, a.extras, a.wheels)
        print(f"keeping {', '.join(f'{n} {v}' for n, v in found.items())}; running: {' '.join(cmd)}")
        if a.check:
            return 0
        if subprocess.run(cmd).returncode != 0:
            print("error: pip could not install nsfw_lab next to this PyTorch (its message is above)", file=sys.stderr)
            return 2
    after = {n: metadata.version(n) for n in PINNED_BY_ENV}
    if after != found:
        print(f"error: pip changed {found} to {after}; reinstall your PyTorch build", file=sys.stderr)
        return 2
    print(f"nsfw_lab installed into {sys.prefix}; torch and torchvision untouched; {torchcodec_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
