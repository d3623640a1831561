"""The pages of the study's site (:mod:`nsfw_lab.course.site`), as MyST source: each executed notebook made
ready to render, a page for a notebook that left no executed copy, the findings page and the banner.

Everything on the findings page is read from what the run wrote (``study.json``, the metrics JSON, the
figures, the runs, the bench): nothing is typed in by hand.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nsfw_lab.course.compare import KEY as CANDIDATES
from nsfw_lab.course.findings import key_figure, study_findings
from nsfw_lab.course.report import cell_key, read_metrics
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import read_json

INJECTED = "injected-parameters"  # papermill's tag on the cell it adds after the parameters cell
PAPERMILL_ERROR = "papermill-error-cell-tag"  # its notes on a failed notebook (the site's own note replaces them)
MODEL_NOTEBOOKS = ("02_baseline_cnn", "03_finetune", "04_inception_v3")  # where the compared runs come from


def _e(value: Any) -> str:
    """Escaped for HTML, on one line (a blank line would end a raw HTML block in Markdown)."""
    return html.escape(" ".join(str(value).split()), quote=True)


def _blank(value: Any) -> str:
    return "" if value is None else _e(value)


def cell_anchor(index: int) -> str:
    """The id of cell ``index`` on a notebook's page (the committed notebook's numbering, as the runner says)."""
    return f"cell-{index}"


def numbered(nb: Any) -> Iterator[tuple[int | None, Any]]:
    """``(index, cell)`` for the cells of an executed notebook, numbered as in the committed notebook:
    papermill's injected cell has no index, and its error notes are left out."""
    index = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if PAPERMILL_ERROR in tags:
            continue
        if INJECTED in tags:
            yield None, cell
            continue
        yield index, cell
        index += 1


def cell_indexes(nb: Any) -> dict[str, int]:
    """``{cell key: index}`` of the code cells (:func:`nsfw_lab.course.report.cell_key`): how a recorded value
    finds the cell that recorded it."""
    return {cell_key(c.source): i for i, c in numbered(nb) if i is not None and c.cell_type == "code"}


def _failure_note(result: dict[str, Any]) -> str:
    cell, error = result.get("cell"), _e(result.get("error") or "no error recorded")
    where = f'at <a href="#{cell_anchor(cell)}">cell {cell}</a>' if cell is not None else "(no cell named)"
    return (
        f":::{{admonition}} This notebook failed\n:class: danger\nIt stopped {where}: <code>{error}</code>.\n"
        "Outputs after that are missing, and what it recorded may be incomplete; its log is in `logs/` of the "
        "report folder.\n:::"
    )


def _upstream_note(upstream: list[str]) -> str:
    names = ", ".join(f"{{doc}}`{u}`" for u in upstream)
    return (
        f":::{{admonition}} Depends on a failed notebook\n:class: warning\nThis notebook read results of {names}, "
        "which failed in this run: the numbers it took from there are missing or left from an earlier run.\n:::"
    )


def notebook_page(nb: Any, result: dict[str, Any], upstream: list[str]) -> Any:
    """The executed notebook made ready for the site: code cells collapsible (``hide-input``), an anchor before
    each cell (``#cell-N``), and under the title a note when it failed or read a notebook that failed."""
    import nbformat

    cells = []
    for index, cell in numbered(nb):
        if index is not None:
            cells.append(nbformat.v4.new_markdown_cell(f'<div id="{cell_anchor(index)}" class="nsfw-cell"></div>'))
        if cell.cell_type == "code" and "hide-input" not in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), "hide-input"]
        cells.append(cell)
    notes = ([_failure_note(result)] if not result["ok"] else []) + ([_upstream_note(upstream)] if upstream else [])
    title = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("# ")), -1)
    cells[title + 1 : title + 1] = [nbformat.v4.new_markdown_cell(n) for n in notes]
    page = nbformat.v4.new_notebook(metadata=nb.metadata)
    page.cells = cells
    return page


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
        f"{versions}{commit} · last run {env.get('finished', '?')}"
    )


def _random_weights(root: Path) -> list[str]:
    """The offered models that started from random weights although they have ImageNet weights (the
    hand-written baseline has none), read from their runs."""
    names = []
    for nb in MODEL_NOTEBOOKS:
        for name, rel in (read_metrics(root, nb) or {}).get(CANDIDATES) or []:
            model = (read_json(RunDir(root / rel).config) or {}).get("model") or {}
            if model.get("name") != "baseline" and model.get("weights") not in (None, "imagenet"):
                names.append(name)
    return names


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
    random = _random_weights(root)
    if random:
        out.append(f"Trained from **random weights** (their ImageNet weights could not be had here): "
                   f"{', '.join(random)}. Their scores show a short training from scratch, not what the "
                   "architecture can do.")  # fmt: skip
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


def _title(nb: Any, name: str) -> str:
    """The notebook's title (its first ``# `` heading), else its name."""
    for cell in nb.cells if nb is not None else []:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    return name


def _findings_table(root: Path, pages: dict[str, Any]) -> str:
    """The findings as an HTML table, grouped by notebook; each row links the cell that recorded it."""
    indexes = {name: cell_indexes(nb) if nb is not None else {} for name, nb in pages.items()}
    head = "".join(f"<th>{h}</th>" for h in ("question", "answer", "number", "95% interval", "verdict", "computed in"))
    rows, current = [], None
    for f in study_findings(root):
        nb = f["notebook"]
        if nb != current:
            current = nb
            name = (f'<a href="{nb}.html">{_e(_title(pages[nb], nb))}</a>' if nb in pages
                    else f"{_e(nb)} (not in this run)")  # fmt: skip
            rows.append(f'<tr class="nsfw-notebook"><th colspan="6">{name}</th></tr>')
        index = indexes.get(nb, {}).get(f["cell"]) if f.get("cell") else None
        where = f'<a href="{nb}.html#{cell_anchor(index)}">cell {index}</a>' if index is not None else ""
        rows.append(
            f'<tr class="nsfw-finding"><td>{_e(f["question"])}</td><td>{_e(f["answer"])}</td>'
            f'<td class="num">{_blank(f["number"])}</td><td class="num">{_blank(f["interval"])}</td>'
            f"<td>{_blank(f['verdict'])}</td><td>{where}</td></tr>"
        )
    return f'<table class="nsfw-findings"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _thumbnails(root: Path, pages: dict[str, Any], static: Path) -> str:
    figs = []
    for nb in pages:
        chosen = key_figure(nb, (read_metrics(root, nb) or {}).get("figures") or [])
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
    m = read_metrics(root, "00_data") or {}
    check, groups = m.get("leakage_check"), m.get("group_leakage") or {}
    if not check:
        return "Notebook 00 has not recorded its leakage check."
    lines = [f"- The curated split {'**passed**' if check.get('passed') else '**FAILED**'} the leakage check: "
             f"{check.get('cross_split_sha256')} identical files and {check.get('cross_split_near_duplicates')} "
             f"near-duplicates (pHash distance ≤ {check.get('phash_threshold')}) across splits, "
             f"{check.get('groups_straddling_splits')} groups straddling splits."]  # fmt: skip
    for name, g in groups.items():
        lines.append(f"- {name}: {g.get('test_images_with_group_in_train')} of {g.get('test_images')} test images "
                     f"have their group (gallery or repost family) in train.")  # fmt: skip
    return "\n".join(lines)


def _html_table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_blank(r[c])}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<table class="nsfw-findings"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _serving(root: Path) -> str:
    from nsfw_lab.bench.report import load, summary_line
    from nsfw_lab.course.compare import bench_latency

    bench = load(root.parent / "benchmarks")
    if bench is None:
        return "No bench output yet: `make bench` (or `nsfw-lab bench --quick`) measures serving costs."
    rows = bench_latency(bench, [r["model"] for r in bench.get("inference", [])])
    return _e(summary_line(bench)) + ("\n\n" + _html_table(rows) if rows else ": no inference rows.")


def _status(study: dict[str, Any]) -> str:
    rows = []
    for r in study["notebooks"]:
        status = "ok"
        if not r["ok"]:
            where = "" if r.get("cell") is None else f" at cell {r['cell']}"
            status = f"<strong>failed</strong>{where}: <code>{_e(r.get('error') or '')}</code>"
        rows.append(f'<tr><td><a href="{r["notebook"]}.html">{_e(r["notebook"])}</a></td><td>{status}</td>'
                    f"<td>{r['seconds']:.0f} s</td></tr>")  # fmt: skip
    head = "<tr><th>notebook</th><th>status</th><th>time</th></tr>"
    return f'<table class="nsfw-findings"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def findings_page(root: Path, study: dict[str, Any], pages: dict[str, Any], static: Path) -> str:
    """The site's front page (MyST): warnings, the findings table, key figures, the leakage check, the serving
    costs, the notebooks' status, and the hidden table of contents that makes the sidebar. ``pages``: each
    notebook of the study with its executed copy (None where it left none)."""
    toc = "\n".join(pages)
    return f"""---
html_theme.sidebar_secondary.remove: true
---

# The study's findings · profile {study["profile"]}

{_warnings(root, study)}
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
