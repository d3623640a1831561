"""Rules for committed notebooks: no outputs or execution counts, the ``nsfw-lab`` kernel, exactly one
``parameters`` cell of annotated, commented UPPER_CASE names including the runner's common ones, and no value
picked by profile name in code (sizes and epochs belong to the profile, :mod:`nsfw_lab.config`); and right after
the parameters, the one setup cell (:data:`SETUP_SOURCE`) that lets a fresh hosted runtime run the notebook."""

from __future__ import annotations

import ast
import re
from pathlib import Path

COMMON = ("PROFILE", "DATA_DIR", "DEVICE", "REPORT_DIR")
SETUP_SOURCE = """\
# Setup: does nothing where nsfw_lab is installed (make study, make lab). In a fresh hosted runtime (Colab, Kaggle,
# a cluster image) opened in a clone of the repository, it installs nsfw_lab next to the runtime's own PyTorch and
# leaves that alone (scripts/install_existing_torch.py, docs/install.md); it registers no kernel.
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("nsfw_lab") is None:
    here = [Path.cwd(), *Path.cwd().parents]
    root = next((p for p in here if (p / "scripts" / "install_existing_torch.py").is_file()), None)
    if root is None:
        raise SystemExit("nsfw_lab is not installed and this folder is not in a clone of its repository: "
                         "clone it and open this notebook from its notebooks/ folder")
    subprocess.run([sys.executable, str(root / "scripts" / "install_existing_torch.py"), "--extras", ""], check=True)
    sys.path.insert(0, str(root))  # the editable install applies from the next start; this kernel imports it now
    importlib.invalidate_caches()"""


def parameters_source(nb: dict) -> list[str]:
    """Sources of the cells tagged ``parameters``."""
    return ["".join(c["source"]) for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]


def declared_parameters(path: Path) -> list[str]:
    """Names assigned in the notebook's ``parameters`` cell(s), parsed with ``ast`` (papermill's own
    inspection cannot read annotations such as ``str | None``)."""
    import nbformat

    names = []
    for src in parameters_source(nbformat.read(path, as_version=4)):
        for node in ast.parse(src).body:
            target = node.target if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [None])[0]
            if isinstance(target, ast.Name):
                names.append(target.id)
    return names


def setup_problem(path: Path) -> str | None:
    """Why the notebook's first code cell after its parameters is not :data:`SETUP_SOURCE` (None: it is)."""
    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    after = [c for c in cells[tagged[0] + 1 :] if c.cell_type == "code"] if tagged else []
    if not after or after[0].source != SETUP_SOURCE:
        return "the first code cell after the parameters is not the setup cell (nsfw_lab.course.hygiene.SETUP_SOURCE)"
    return None


PROFILE_SWITCH = re.compile(r"PROFILE\s*[!=]=|\.get\(\s*PROFILE\b|\bPROFILE\s+in\b|\[\s*PROFILE\s*\]")


def problems(path: Path) -> list[str]:
    """Everything wrong with a committed notebook (empty = clean)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    out: list[str] = []
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            out.append(f"cell {i} has outputs or an execution count")
    if nb.metadata.get("kernelspec", {}).get("name") != "nsfw-lab":
        out.append("kernelspec is not nsfw-lab")
    if "widgets" in nb.metadata:
        out.append("widget state in the metadata")
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and PROFILE_SWITCH.search(c.source):
            out.append(f"cell {i} picks a value by profile name: give the profile that knob (nsfw_lab.config)")
    params = parameters_source(nb)
    if len(params) != 1:
        return [*out, f"{len(params)} cells tagged parameters (need exactly 1)"]
    lines = params[0].splitlines()
    names = []
    for node in ast.parse(params[0]).body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            out.append(f"parameters line {node.lineno}: not an annotated assignment (NAME: type = value)")
            continue
        name = node.target.id
        names.append(name)
        if name != name.upper():
            out.append(f"parameter {name} is not UPPER_CASE")
        if "#" not in lines[node.lineno - 1]:
            out.append(f"parameter {name} has no comment")
    out += [f"parameter {n} is missing" for n in COMMON if n not in names]
    out += [f"parameter {n}: papermill cannot read this line (one '=' per line, none in the comment)"
            for n in sorted(set(names) - papermill_names(nb))]  # fmt: skip
    return out


def papermill_names(nb: object) -> set[str]:
    """The parameter names papermill's own inspector reads from the parameters cell (it skips lines it
    cannot parse, e.g. with a second ``=`` in the comment, and then warns "unknown parameter" on every run)."""
    import logging

    from papermill.translators import PythonTranslator

    logging.getLogger("papermill.translators").disabled = True
    try:
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))  # type: ignore[attr-defined]
        return {p.name for p in PythonTranslator.inspect(cell)}
    finally:
        logging.getLogger("papermill.translators").disabled = False
