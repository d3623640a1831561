"""The package's shape, read from its source: the import graph has no circle and follows the pipeline's layers
(nothing below or beside ``train/`` imports it), and every run-folder file name is spelled in one module."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nsfw_lab"
NOTEBOOKS = PACKAGE.parent / "notebooks"

# Lower layers never import higher ones. The stages on one layer never import each other (training and
# evaluation both sit on models and data and meet only through the run folder, ``nsfw_lab.rundir``); the
# foundation (layer 0) and the entry points (the top layer) are each one group.
LAYERS: dict[str, int] = {
    "nsfw_lab": 0,  # the package's own __init__ (lazy names only)
    "nsfw_lab.config": 0,
    "nsfw_lab.errors": 0,
    "nsfw_lab.utils": 0,
    "nsfw_lab.rundir": 0,
    "nsfw_lab.data": 1,
    "nsfw_lab.models": 2,
    "nsfw_lab.train": 3,
    "nsfw_lab.evaluate": 3,
    "nsfw_lab.explain": 4,
    "nsfw_lab.bench": 5,
    "nsfw_lab.cards": 6,
    "nsfw_lab.course": 7,
    "nsfw_lab.cli": 8,
    "nsfw_lab.__main__": 8,
}
ONE_GROUP = {0, 8}
RUN_FILE = re.compile(
    r"(?<![\w.])(config\.json|metrics\.jsonl|last\.pt|best\.pt|summary\.json|calibration\.json|policy\.json|clip_policy\.json"
    r"|model\.onnx|model\.torchscript\.pt|eval_(\{\}|train|val|test)\.json|predictions_(\{\}|train|val|test)\.csv"
    r"|robustness_(\{\}|train|val|test)\.(json|png))"
    r"(?!\w)"
)


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The nsfw_lab modules ``name`` imports, at any depth of its code (lazy imports inside functions too)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # ``import nsfw_lab.x.y`` of a name, not a module: its module
                t = t.rpartition(".")[0]
            if t.startswith("nsfw_lab") and t != name:
                found.add(t)
    return found


def _group(module: str) -> str:
    return max((g for g in LAYERS if module == g or module.startswith(g + ".")), key=len)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in _modules() if not any(m == g or m.startswith(g + ".") for g in LAYERS)]
    assert not unplaced, f"give these a layer in LAYERS (and in docs/architecture.md): {unplaced}"


def test_imports_follow_the_pipeline_layers() -> None:
    bad = []
    for module, targets in _graph().items():
        mine = _group(module)
        for t in targets:
            theirs = _group(t)
            same = theirs == mine or LAYERS[theirs] == LAYERS[mine] in ONE_GROUP
            if not same and LAYERS[theirs] >= LAYERS[mine]:
                bad.append(f"{module} imports {t}")
    assert not bad, bad


def test_nothing_below_or_beside_train_imports_it() -> None:
    allowed = ("nsfw_lab.train", "nsfw_lab.bench", "nsfw_lab.course", "nsfw_lab.cli")
    users = sorted(m for m, ts in _graph().items() if any(_group(t) == "nsfw_lab.train" for t in ts))
    assert users and all(m.startswith(allowed) for m in users), users
    evaluation = [m for m in users if m.startswith(("nsfw_lab.evaluate", "nsfw_lab.explain", "nsfw_lab.cards"))]
    assert not evaluation


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycle = [*path[path.index(t) :], t] if t in path else [m, t]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_graph_reader_sees_a_planted_circle(tmp_path: Path) -> None:
    """The checks above would fail on a circle or a layer breach (the reader is not blind)."""
    pkg = tmp_path / "nsfw_lab"
    (pkg / "evaluate").mkdir(parents=True)
    (pkg / "evaluate" / "__init__.py").write_text("")
    (pkg / "evaluate" / "a.py").write_text("def f():\n    from nsfw_lab.train.engine import fit\n")
    (pkg / "train").mkdir()
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "train" / "engine.py").write_text("from nsfw_lab.evaluate import a\n")
    modules = {"nsfw_lab.evaluate": 0, "nsfw_lab.evaluate.a": 0, "nsfw_lab.train": 0, "nsfw_lab.train.engine": 0}
    a = _imports("nsfw_lab.evaluate.a", pkg / "evaluate" / "a.py", modules)  # type: ignore[arg-type]
    e = _imports("nsfw_lab.train.engine", pkg / "train" / "engine.py", modules)  # type: ignore[arg-type]
    assert a == {"nsfw_lab.train.engine"} and e == {"nsfw_lab.evaluate.a"}


def _strings(tree: ast.AST) -> list[str]:
    """String literals of a module, docstrings left out; f-strings with ``{}`` for each replacement field."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
            docs.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.append(node.value)
    return out


def test_every_run_file_name_is_spelled_in_one_module() -> None:
    where: dict[str, set[str]] = {}
    for name, path in _modules().items():
        for s in _strings(ast.parse(path.read_text())):
            for m in RUN_FILE.finditer(s):
                where.setdefault(re.sub(r"_(train|val|test)\.", "_{}.", m.group(1)), set()).add(name)
    assert set(where) >= {
        "config.json",
        "best.pt",
        "eval_{}.json",
        "predictions_{}.csv",
        "model.onnx",
        "robustness_{}.json",
    }
    assert {k: v for k, v in where.items() if v != {"nsfw_lab.rundir"}} == {}
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert not RUN_FILE.search(code), f"{nb.name} spells a run file name: use nsfw_lab.rundir.RunDir"


def test_the_literal_reader_sees_names_in_code_not_in_docstrings() -> None:
    src = 'def f(run, s):\n    """Writes config.json."""\n    return run / f"eval_{s}.json", "synth_config.json"\n'
    found = [m.group(1) for s in _strings(ast.parse(src)) for m in RUN_FILE.finditer(s)]
    assert found == ["eval_{}.json"]
