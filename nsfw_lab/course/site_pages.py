"""The pages of the study's site (:mod:`nsfw_lab.course.site`), as MyST source: each executed notebook made
ready to render, a page for a notebook that left no executed copy, the findings page and the banner.

Everything on the findings page is read from what the run wrote (``study.json``, the metrics JSON, the
figures, the bench): nothing is typed in by hand.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

from nsfw_lab.course.findings import key_figure, study_findings
from nsfw_lab.utils.fsutil import read_json

INJECTED = "injected-parameters"  # papermill's tag on the cell it adds after the parameters cell
PAPERMILL_ERROR = "papermill-error-cell-tag"  # its red header on a failed notebook (the site's own note replaces it)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _blank(value: Any) -> str:
    return "" if value is None else _e(value)


def cell_anchor(index: int) -> str:
    """The id of cell ``index`` on a notebook's page (the committed notebook's numbering, as the runner says)."""
    return f"cell-{index}"


def cell_numbers(nb: Any) -> dict[int, int]:
    """``{execution count: cell index}`` of an executed notebook, the index counted as in the committed
    notebook (papermill's injected cell and its error notes are not counted)."""
    out, index = {}, 0
    for cell in nb.cells:
        if {INJECTED, PAPERMILL_ERROR} & set(cell.metadata.get("tags", [])):
            continue
        if cell.cell_type == "code" and cell.get("execution_count"):
            out[cell.execution_count] = index
        index += 1
    return out


def _failure_note(result: dict[str, Any]) -> str:
    cell = result.get("cell")
    where = f'<a href="#{cell_anchor(cell)}">cell {cell}</a>' if cell is not None else "its start"
    error = result.get("error") or "no error recorded"
    return (
        f":::{{admonition}} This notebook failed\n:class: danger\nIt stopped at {where}: `{error}`.\n"
        "Outputs after that cell are missing, and what it recorded may be incomplete. "
        "See the log in `logs/` of the report folder.\n:::"
    )


def _upstream_note(upstream: list[str]) -> str:
    names = ", ".join(f"{{doc}}`{u}`" for u in upstream)
    return (
        f":::{{admonition}} Depends on a failed notebook\n:class: warning\nThis notebook read results of {names}, "
        "which failed in this run: the numbers it took from there are missing or left from an earlier run.\n:::"
    )


def stage_notebook(executed: Path, dest: Path, result: dict[str, Any], upstream: list[str]) -> None:
    """Copy an executed notebook for the site: code cells collapsible (``hide-input``), an anchor before each
    cell (``#cell-N``), and after the title a note when it failed or read a notebook that failed."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    cells, index = [], 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if PAPERMILL_ERROR in tags:
            continue
        if INJECTED not in tags:
            cells.append(nbformat.v4.new_markdown_cell(f'<div id="{cell_anchor(index)}" class="nsfw-cell"></div>'))
            index += 1
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
        cells.append(cell)
    notes = ([_failure_note(result)] if not result["ok"] else []) + ([_upstream_note(upstream)] if upstream else [])
    first_markdown = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and "nsfw-cell" not in c.source))
    for note in reversed(notes):
        cells.insert(first_markdown + 1, nbformat.v4.new_markdown_cell(note))
    nb.cells = cells
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)


def missing_page(result: dict[str, Any], upstream: list[str]) -> str:
    """The page of a notebook that left no executed copy (it failed before its first cell ran)."""
    notes = [_failure_note(result)] + ([_upstream_note(upstream)] if upstream else [])
    return f"# {result['notebook']}\n\n" + "\n\n".join(notes) + "\n"


def banner(study: dict[str, Any]) -> str:
    """One line for the top of every page: profile, data, machine and versions of the run."""
    env = study.get("environment") or {}
    m, v = env.get("machine") or {}, env.get("versions") or {}
    gpu = m.get("gpu")
    machine = (f"{m.get('cpu', '?')}, {m.get('cores', '?')} CPUs, " + (f"GPU {gpu['name']}" if gpu else "no GPU")
               if m else "machine not recorded")  # fmt: skip
    versions = " · ".join(f"{k} {v[k]}" for k in ("python", "torch", "torchvision", "nsfw_lab") if k in v)
    commit = f" ({env['commit']})" if env.get("commit") else ""
    return _e(
        f"profile {study['profile']} · data: {study.get('data') or 'the synthetic proxy'} · {machine} · "
        f"{versions}{commit} · run {env.get('finished', '?')}"
    )


def _warnings(root: Path, study: dict[str, Any]) -> str:
    """Why these numbers must not be quoted, in plain words, and which notebooks failed (from the study's own
    records), as MyST admonitions."""
    out = []
    if study["profile"] == "smoke":
        out.append("This is the **smoke** profile: every model trains for a few steps on tiny images so that each "
                   "code path runs. Its numbers are near chance by design and mean nothing.")  # fmt: skip
    if not study.get("data"):
        out.append("The images are the **synthetic proxy**: abstract shapes and textures, no photographs. The numbers "
                   "show whether the methods work; they say nothing about how a model does on real images "
                   "(docs/proxy_data_card.md).")  # fmt: skip
    rows = (read_json(root / "metrics" / "08_comparison.json") or {}).get("comparison") or []
    random = [r["model"] for r in rows if r.get("weights") not in (None, "imagenet")]
    if random:
        out.append(f"Trained from **random weights** (no ImageNet weights on this machine): {', '.join(random)}. "
                   "Their scores show a short training from scratch, not what the architecture can do.")  # fmt: skip
    notes = ""
    if out:
        items = "\n".join(f"- {w}" for w in out)
        notes = f":::{{admonition}} Not numbers to quote\n:class: warning\n{items}\n:::\n"
    failed = [r for r in study["notebooks"] if not r["ok"]]
    if failed:
        names = ", ".join(f"{{doc}}`{r['notebook']}`" for r in failed)
        why = "their rows below are missing or left from an earlier run, and so are the rows of those that read them"
        notes += f"\n:::{{admonition}} Failed in this run\n:class: danger\n{names}: {why}.\n:::\n"
    return notes


def _title(executed: Path, nb: str) -> str:
    """The notebook's title (its first ``# `` heading), else its name."""
    import nbformat

    if executed.is_file():
        for cell in nbformat.read(executed, as_version=4).cells:
            if cell.cell_type == "markdown" and cell.source.startswith("# "):
                return cell.source.splitlines()[0][2:].strip()
    return nb


def _findings_table(root: Path, pages: list[str]) -> str:
    """The findings as an HTML table, grouped by notebook; each row links the cell that recorded it."""
    import nbformat

    numbers, titles = {}, {}
    for nb in pages:
        executed = root / "executed" / f"{nb}.ipynb"
        numbers[nb] = cell_numbers(nbformat.read(executed, as_version=4)) if executed.is_file() else {}
        titles[nb] = _title(executed, nb)
    head = "".join(f"<th>{h}</th>" for h in ("question", "answer", "number", "95% interval", "verdict", "computed in"))
    rows, current = [], None
    for f in study_findings(root):
        nb = f["notebook"]
        if nb != current:
            current = nb
            name = f'<a href="{nb}.html">{_e(titles[nb])}</a>' if nb in pages else f"{_e(nb)} (not in this run)"
            rows.append(f'<tr class="nsfw-notebook"><th colspan="6">{name}</th></tr>')
        index = numbers.get(nb, {}).get(f["cell"]) if f.get("cell") else None
        where = f'<a href="{nb}.html#{cell_anchor(index)}">cell {index}</a>' if index is not None else ""
        rows.append(
            f'<tr class="nsfw-finding"><td>{_e(f["question"])}</td><td>{_e(f["answer"])}</td>'
            f'<td class="num">{_blank(f["number"])}</td><td class="num">{_blank(f["interval"])}</td>'
            f"<td>{_blank(f['verdict'])}</td><td>{where}</td></tr>"
        )
    return f'<table class="nsfw-findings"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _thumbnails(root: Path, pages: list[str], static: Path) -> str:
    figs = []
    for nb in pages:
        recorded = (read_json(root / "metrics" / f"{nb}.json") or {}).get("figures") or []
        chosen = key_figure(nb, recorded)
        if chosen is None or not (root / chosen).is_file():
            continue
        (static / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / chosen, static / "figures" / Path(chosen).name)
        name = Path(chosen).name
        caption = f"{nb}: {Path(chosen).stem.removeprefix(nb + '_')}"
        figs.append(f'<figure><a href="{nb}.html"><img src="_static/figures/{_e(name)}" alt="{_e(name)}"></a>'
                    f"<figcaption>{_e(caption)}</figcaption></figure>")  # fmt: skip
    return f'<div class="nsfw-thumbs">{"".join(figs)}</div>' if figs else "No figures were recorded."


def _leakage(root: Path) -> str:
    m = read_json(root / "metrics" / "00_data.json") or {}
    check, groups = m.get("leakage_check"), m.get("group_leakage")
    if not check:
        return "Notebook 00 has not recorded its leakage check."
    lines = [f"- The curated split {'**passed**' if check.get('passed') else '**FAILED**'} the leakage check: "
             f"{check.get('cross_split_sha256')} identical files and {check.get('cross_split_near_duplicates')} "
             f"near-duplicates (pHash distance ≤ {check.get('phash_threshold')}) across splits, "
             f"{check.get('groups_straddling_splits')} groups straddling splits."]  # fmt: skip
    for name, g in (groups or {}).items():
        share = g["test_share_with_group_in_train"]
        lines.append(f"- {name}: {g['test_images_with_group_in_train']} of {g['test_images']} test images have "
                     f"their group (gallery or repost family) in train ({share:.0%}).")  # fmt: skip
    return "\n".join(lines)


def _serving(root: Path) -> str:
    from nsfw_lab.bench.report import load, summary_line
    from nsfw_lab.course.compare import bench_latency

    bench = load(root.parent / "benchmarks")
    if bench is None:
        return "No bench output yet: `make bench` (or `nsfw-lab bench --quick`) measures serving costs."
    rows = bench_latency(bench, [r["model"] for r in bench.get("inference", [])])
    if not rows:
        return f"{_e(summary_line(bench))}: no inference rows."
    cols = list(rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_blank(r[c])}</td>" for c in cols) + "</tr>"
                   for r in rows)  # fmt: skip
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    return (f"{_e(summary_line(bench))}\n\n<table class=\"nsfw-findings\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")  # fmt: skip


def _status(study: dict[str, Any]) -> str:
    lines = ["| notebook | status | time |", "|---|---|---|"]
    for r in study["notebooks"]:
        status = "ok" if r["ok"] else f"**failed** at cell {r.get('cell')}: `{r.get('error')}`"
        lines.append(f"| {{doc}}`{r['notebook']}` | {status} | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def findings_page(root: Path, study: dict[str, Any], pages: list[str], static: Path) -> str:
    """The site's front page (MyST): warnings, the findings table, key figures, the leakage check, the serving
    costs, the notebooks' status, and the hidden table of contents that makes the sidebar."""
    warnings = _warnings(root, study)
    toc = "\n".join(pages)
    return f"""---
html_theme.sidebar_secondary.remove: true
---

# The study's findings · profile {study["profile"]}

{warnings}
Each row is computed from what a notebook recorded (the same table notebook 08 ends with); the last column
links to the cell that computed it. A verdict of "no detectable difference" comes with the size the comparison
could have detected: a smaller real difference may exist.

{_findings_table(root, pages)}

## Key figures

{_thumbnails(root, pages, static)}

## The leakage check

{_leakage(root)}

## Serving costs (`nsfw-lab bench`)

{_serving(root)}

## The notebooks in this run

{_status(study)}

```{{toctree}}
:hidden:
:maxdepth: 1

{toc}
```
"""
