"""``nsfw-lab cards``: a model card and a data card per run, written as Markdown from what the run recorded.

Every figure in a card is read from a file (the run folder's config, test evaluation, calibration,
policy and robustness, :class:`nsfw_lab.rundir.RunDir`; ``curation_report.json`` in its data; notebook 06's measured
explanations when given; the latency table of ``nsfw-lab bench``, ``reports/benchmarks/bench.json``), and a
missing file says so in the card instead of leaving a gap that reads as "fine".

The last step of the pipeline: it reads what evaluate, explain and bench wrote.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nsfw_lab import __version__, config
from nsfw_lab.config import SPLITS
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.cli import Subparsers
from nsfw_lab.utils.fsutil import atomic_write_bytes, read_json

CONTENT_SAFETY = """\
- This repository and its tests contain no real sexual imagery: the proxy is abstract renderings (rings,
  panels, shapes); nothing depicts a person.
- Real data (the nsfw_data_scraper URL lists) links to adult content of unknown origin; it may include
  images that are illegal to hold in your jurisdiction. Only adults with a legal basis should download it,
  on access-controlled storage, never in a shared or public repository.
- This model is **not** a detector of child sexual abuse material or of non-consensual imagery. Such content
  must go to the legal reporting channels and specialised tools (hash matching), never to this classifier.
- Reviewers who look at `review` and `block` decisions need the protections moderation work requires
  (rotation, opt-out, blurred previews)."""

SAFETY_SECTION = ("## Content safety", "", CONTENT_SAFETY, "")

INTENDED = """\
- **Intended use:** first-pass triage of images into the five nsfw_data_scraper classes, turned into
  allow / review / block by a stated policy, with people reviewing the `review` band and a sample of the rest;
  teaching and research on leakage-free evaluation and checked explanations.
- **Out of scope / misuse:** sole automated decisions about people or their accounts without human review;
  judging age, identity, consent or legality; surveillance or profiling; any use on the proxy's numbers as if
  they were real-world performance."""


def _ci(v: list | None) -> str:
    return "" if not v or v[0] is None else f" [{v[0]:.3f}, {v[1]:.3f}]"


def _missing(what: str, cmd: str) -> str:
    return f"_Not recorded: {what}. Run `{cmd}` and regenerate this card._"


def _metrics(ev: dict[str, Any] | None, run: Path) -> list[str]:
    if not ev:
        return [_missing("test metrics", f"nsfw-lab evaluate --run {run}")]
    out = [
        f"Test split, n = {ev['n']} images (95% bootstrap CIs over images):",
        "",
        f"- accuracy {ev['accuracy']:.3f}{_ci(ev.get('accuracy_ci95'))}",
        f"- macro-F1 {ev['macro_f1']:.3f}{_ci(ev.get('macro_f1_ci95'))}",
        f"- balanced accuracy {ev['balanced_accuracy']:.3f}",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for c, m in ev["per_class"].items():
        out.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    cm, classes = ev["confusion_matrix"], ev["classes"]
    confusions = sorted(
        ((cm[i][j], classes[i], classes[j]) for i in range(len(cm)) for j in range(len(cm)) if i != j), reverse=True
    )
    top = [f"{t} → {p} ({n})" for n, t, p in confusions[:3] if n]
    out += ["", "Most frequent confusions (true → predicted): " + (", ".join(top) or "none")]
    return out


def _calibration(cal: dict[str, Any] | None, run: Path) -> list[str]:
    from nsfw_lab.evaluate.calibration import T_RANGE

    if not cal:
        return [_missing("calibration", f"nsfw-lab calibrate --run {run}")]
    t = cal["test"]
    return [
        f"Temperature scaling fitted on val: T = {cal['temperature']:.3f}. On test (n = {t['n']}): "
        f"ECE {t['ece_before']:.3f} → {t['ece_after']:.3f}, NLL {t['nll_before']:.3f} → {t['nll_after']:.3f}. "
        "`nsfw-lab predict` applies T."
        + (
            f" **T sits at the search bound {T_RANGE}: the logits are degenerate (an untrained or collapsed model)"
            " and no single temperature calibrates them.**"
            if cal.get("temperature_at_bound")
            else ""
        )
    ]


def _policy(pol: dict[str, Any] | None, run: Path) -> list[str]:
    if not pol:
        return [_missing("the moderation policy's operating point", f"nsfw-lab calibrate --run {run}")]
    p, t = pol["policy"], pol["thresholds"]
    out = [
        f"Groups: block = {', '.join(p['block'])}; review = {', '.join(p['review'])}; allow = {', '.join(p['allow'])}.",
        f"Thresholds on P(block group), chosen on val for block recall ≥ {p['target_recall']} and block-or-review "
        f"recall ≥ {p['review_recall']}: block ≥ {t['t_block']:.4f}, review band ≥ {t['t_review']:.4f}.",
        "",
        "| split | block recall | block precision | false-positive rate | review rate | missed (allowed) |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        m = pol[split]
        cell = lambda k, m=m: "n/a" if m[k] is None else f"{m[k]:.3f}{_ci(m[f'{k}_ci95'])}"  # noqa: E731
        out.append(
            f"| {split} (n = {m['n']}) | {cell('block_recall')} | {cell('block_precision')} | "
            f"{cell('false_positive_rate')} | {cell('review_rate')} | {cell('missed_rate')} |"
        )
    rc = pol.get("risk_controlled")
    if rc:
        b, m = rc["bound"], rc["test"]
        how = (f"review ≥ {rc['thresholds']['t_review']:.4f}, certified on {b['n']} val block-group images"
               if b["certified"] else f"not certifiable with {b['n']} val block-group images: all not blocked "
               "goes to review")  # fmt: skip
        missed = "n/a" if m["missed_rate"] is None else f"{m['missed_rate']:.3f}{_ci(m['missed_rate_ci95'])}"
        promise = f"miss rate ≤ {b['alpha']:g} with probability {1 - b['delta']:g}"
        out += ["", f"Risk-controlled (`predict --operating-point risk`): {promise}; {how}. On test: missed "
                f"{missed}, review rate {m['review_rate']:.3f}."]  # fmt: skip
    return out


def _clips(clips: dict[str, Any] | None) -> list[str]:
    if not clips:
        return []
    t, one = clips["test"], clips["any_frame"]["test"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    met = "" if clips["met_on_val"] else " (no k met it on val)"
    return ["", f"Clips (animations): blocked at {clips['k']} blocked frames of up to {clips['max_frames']}, k chosen "
            f"on val clips for a clip false-positive rate ≤ {clips['clip_fpr']:g}{met}. Test clips (n = {t['n']}): "
            f"false-positive rate {f(t['false_positive_rate'])}, block recall {f(t['block_recall'])}; any blocked "
            f"frame blocking would give {f(one['false_positive_rate'])} and {f(one['block_recall'])}."]  # fmt: skip


def _explanations(exp: dict[str, Any] | None, shortcut: dict[str, Any] | None) -> list[str]:
    out = []
    if exp and exp.get("n"):
        c, r, z = exp["cam"], exp["random"], exp["centre"]
        out.append(
            f"- Pointing game (Grad-CAM at `{exp['layer']}`, true class, n = {exp['n']} test images with an "
            f"evidence box): {c['pointing']['mean']:.3f}{_ci(c['pointing']['ci95'])} against random "
            f"{r['pointing']['mean']:.3f} and centre prior {z['pointing']['mean']:.3f}; verdict: "
            f"**{exp['verdict']}** (target ≥ {exp['target']}). Energy in box {c['energy']['mean']:.3f}."
        )
        f = exp.get("faithfulness")
        if f:
            out.append(
                f"- ROAD (combined, higher = more faithful): CAM {f['cam']['road_combined']:.3f} vs random "
                f"{f['random']['road_combined']:.3f} (n = {f['n']})."
            )
    else:
        out.append("- Explanations not measured for this model (notebook 06; needs the proxy's evidence boxes).")
    if shortcut:
        out.append(
            "- Study-level shortcut experiment (notebook 06: a baseline CNN trained on a proxy where a badge comes "
            f"with one class, against the same recipe on clean data; not this model): {shortcut['summary']}"
        )
    return out


def _robustness(rob: dict[str, Any] | None, run: Path) -> list[str]:
    from nsfw_lab.evaluate.robustness import worst

    if not rob:
        return [_missing("robustness", f"nsfw-lab robustness --run {run}")]
    c = rob["clean"]
    out = [
        f"Test split, n = {rob['n']} images, each corruption at its most severe level measured (severities "
        f"{', '.join(map(str, rob['severities']))} of 1..5; the figure `{RunDir(run).robustness_plot('test').name}` "
        f"has every level). Clean: macro-F1 {c['macro_f1']:.3f}{_ci(c['macro_f1_ci95'])}, block recall "
        f"{c['block_recall'] or 0:.3f}{_ci(c['block_recall_ci95'])}. The drop is paired on the same images.",
        "",
        "| corruption | level | macro-F1 | drop (verdict) | block recall | pair that grew most |",
        "|---|---|---|---|---|---|",
    ]
    for w in worst(rob):
        level = f"ε {w['eps']:g}/255" if "eps" in w else str(w["severity"])
        g = w["grown_pairs"][0] if w["grown_pairs"] else None
        pair = f"{g['true']} → {g['predicted']} {g['clean']} → {g['now']}" if g else "none"
        recall = "n/a" if w["block_recall"] is None else f"{w['block_recall']:.3f}{_ci(w['block_recall_ci95'])}"
        out.append(f"| {w['corruption']} | {level} | {w['macro_f1']:.3f}{_ci(w['macro_f1_ci95'])} | "
                   f"{w['drop']['delta']:+.3f} ({w['verdict']}) | {recall} | {pair} |")  # fmt: skip
    return out


def _deployment(bench: dict[str, Any] | None, arch: str, px: int) -> list[str]:
    from nsfw_lab.bench.report import inference_table, latency_rows, summary_line

    if bench is None:
        return [_missing("inference latency", "make bench")]
    rows = latency_rows(bench, arch)
    if not rows:
        return [f"_Not measured: {summary_line(bench)} has no `{arch}` rows (the full `make bench` covers every "
                "architecture)._"]  # fmt: skip
    size = rows[0]["input_px"]
    note = "" if size == px else f" (this model runs at {px} px: latency grows about with the pixel count)"
    return [
        f"CPU inference of the `{arch}` architecture at {size} px{note}, from {summary_line(bench)}; latency does "
        "not depend on the trained weights, int8 agreement does (see `bench.md`).",
        "",
        *inference_table(rows),
    ]


def model_card(
    run_dir: Path,
    name: str,
    explanations: dict | None = None,
    shortcut: dict | None = None,
    bench: dict | None = None,
) -> str:
    """The Markdown model card of ``run_dir`` (see the module docstring for the sources; ``bench``: a loaded
    ``bench.json``)."""
    files = RunDir(run_dir)
    run, cfg = files.path, files.read_config()
    m, tc = cfg["model"], cfg["config"]
    weights = "ImageNet" if m["weights"] != "none" else "random (trained from scratch)"
    lines = [
        f"# Model card: {name}",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d} by nsfw_lab {__version__} from `{run}`.",
        "",
        "## Model",
        "",
        f"- Architecture `{m['name']}`, input {m['input_size']} px, initial weights: {weights}.",
        f"- Training: {tc['epochs']} epochs, {tc['optimizer']} lr {tc['lr']}, batch {tc['batch_size']}, "
        f"augmentations: {', '.join(tc.get('augment') or []) or 'crop + flip only'}, seed {tc['seed']}.",
        f"- Classes: {', '.join(cfg['classes'])}. Data: `{cfg['data']['path']}` (manifest sha256 "
        f"`{cfg['data']['manifest_sha256'][:16]}…`); see the data card.",
        "",
        "## Intended use",
        "",
        INTENDED,
        "",
        "## Metrics",
        "",
        *_metrics(read_json(files.evaluation("test")), run),
        "",
        "## Calibration",
        "",
        *_calibration(read_json(files.calibration), run),
        "",
        "## Moderation policy: operating points",
        "",
        *_policy(read_json(files.policy), run),
        *_clips(read_json(files.clip_policy)),
        "",
        "## Explanations and known failure modes",
        "",
        *_explanations(explanations, shortcut),
        "",
        "## Robustness: corruptions and FGSM",
        "",
        *_robustness(read_json(files.robustness("test")), run),
        "",
        "## Deployment cost",
        "",
        *_deployment(bench, m["name"], m["input_size"]),
        "",
        "## Caveats",
        "",
        "- Scores on the synthetic proxy measure the method, not real-world performance; the real study "
        "reruns every notebook on curated scraper data (`make study PROFILE=gpu DATA=...`).",
        "- A model trained from random weights at a reduced size is far from a fine-tuned ImageNet model.",
        "",
        *SAFETY_SECTION,
    ]
    return "\n".join(lines)


def data_card(curated: Path) -> str:
    """The Markdown data card of a curated folder, from its curation report."""
    from nsfw_lab.data.curate import read_report

    rep = read_report(curated)
    src = Path(rep["source"])
    synth = read_json(src / "synth_config.json")
    if synth:
        prov = (
            f"Synthetic proxy generated by `nsfw-lab synth` (seed {synth['seed']}, {synth['per_class']} per class, "
            f"{synth['size']} px, shortcut badge: {'yes' if synth['shortcut'] else 'no'}). Abstract renderings "
            "released with the project under its MIT licence; they stand in for the real data's structure "
            "(galleries, reposts, cross-class duplicates, broken files), not its content."
        )
    else:
        prov = (
            f"Images from `{src}` (e.g. downloaded from the nsfw_data_scraper URL lists). The images belong to "
            "their owners; no licence is granted by the lists, many links are dead, and the labels come from the "
            "subreddit or site each URL was scraped from, so they are noisy."
        )
    leak = rep["leakage_check"]
    split_totals = {s: sum(c.get(s, 0) for c in rep["counts"].values()) for s in SPLITS}
    lines = [
        f"# Data card: {Path(curated).name}",
        "",
        "## Provenance and licence",
        "",
        prov,
        "",
        "## Curation",
        "",
        f"- Files seen {rep['files_seen']}, kept {rep['kept']}; quarantined {rep['quarantined']} "
        f"({', '.join(f'{k} {v}' for k, v in rep['quarantined_by_reason'].items()) or 'none'}).",
        f"- Byte-identical duplicates removed {rep['exact_duplicates_removed']}; images found in two classes "
        f"dropped {rep['label_conflicts_dropped']}; near-duplicate clusters {rep['near_duplicate_clusters']}.",
        f"- Split (train / val / test): {split_totals['train']} / {split_totals['val']} / {split_totals['test']}; "
        f"class proportions differ by at most {rep['max_class_proportion_gap']:.1%} between splits.",
        "",
        "| class | train | val | test |",
        "|---|---|---|---|",
        *[f"| {c} | {n.get('train', 0)} | {n.get('val', 0)} | {n.get('test', 0)} |" for c, n in rep["counts"].items()],
        "",
        "## Leakage controls",
        "",
        f"- Group-aware split over {rep['groups']} groups (galleries and near-duplicate clusters never straddle "
        "splits).",
        f"- Check {'passed' if leak['passed'] else '**FAILED**'}: {leak['cross_split_sha256']} identical and "
        f"{leak['cross_split_near_duplicates']} near-identical images across splits, "
        f"{leak['groups_straddling_splits']} groups straddling splits (pHash threshold {leak['phash_threshold']}).",
        *[f"- Warning: {w}" for w in rep.get("warnings", [])],
        "",
        *SAFETY_SECTION,
    ]
    return "\n".join(lines)


def write_cards(
    run_dir: Path | str,
    out: Path | str,
    name: str,
    explanations: dict | None = None,
    shortcut: dict | None = None,
    bench: Path | str | None = None,
) -> dict[str, Path]:
    """Write ``OUT/<run folder name>/MODEL_CARD.md`` and ``DATA_CARD.md`` (atomically); returns their paths.
    ``bench``: a ``bench.json`` or its folder (default ``reports/benchmarks``)."""
    from nsfw_lab.bench.report import load as load_bench

    files = RunDir(run_dir)
    run, cfg = files.path, files.read_config()
    folder = Path(out) / run.name
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model": folder / "MODEL_CARD.md", "data": folder / "DATA_CARD.md"}
    card = model_card(run, name, explanations, shortcut, load_bench(bench))
    atomic_write_bytes(paths["model"], card.encode())
    atomic_write_bytes(paths["data"], data_card(Path(cfg["data"]["path"])).encode())
    return paths


def _cards_command(a: argparse.Namespace) -> None:
    out = Path(a.out) if a.out else config.REPORTS_DIR / "cards"
    paths = write_cards(a.run, out, a.name or Path(a.run).name, bench=a.bench)
    print(f"wrote {paths['model']} and {paths['data']}")


def add_parser(sub: Subparsers) -> None:
    """Register ``cards``."""
    k = sub.add_parser("cards", help="write a run's model card and data card (Markdown)")
    k.add_argument("--run", required=True, help="run folder")
    k.add_argument("--out", help="folder for <run>/MODEL_CARD.md, DATA_CARD.md (default: reports/cards)")
    k.add_argument("--name", help="the model's name in the card (default: the run folder's name)")
    k.add_argument("--bench", help="`nsfw-lab bench` output (bench.json or its folder; default reports/benchmarks)")
    k.set_defaults(func=_cards_command)
