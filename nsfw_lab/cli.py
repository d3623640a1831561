"""The ``nsfw-lab`` command line. Every failure is one line: ``error: <file>: <reason>``, exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from nsfw_lab import __version__, config
from nsfw_lab.errors import NsfwLabError

T = TypeVar("T")


def _from_args(cls: type[T], a: argparse.Namespace, **extra: Any) -> T:
    """Build a config dataclass from the parsed options named like its fields (lists become tuples)."""
    values = {f.name: getattr(a, f.name) for f in fields(cls) if hasattr(a, f.name)}  # type: ignore[arg-type]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}, **extra)


def _synth(a: argparse.Namespace) -> None:
    from nsfw_lab.data.synth import Difficulty, SynthConfig, generate

    cfg = _from_args(SynthConfig, a, difficulty=_from_args(Difficulty, a))
    manifest = generate(Path(a.out), cfg, workers=a.workers, overwrite=a.overwrite)
    print(f"wrote {manifest}")


def _curate(a: argparse.Namespace) -> None:
    from nsfw_lab.data.curate import CurateConfig, curate

    r = curate(Path(a.src), Path(a.out), _from_args(CurateConfig, a), workers=a.workers, overwrite=a.overwrite)
    _print_summary(Path(a.out), r)


def _print_summary(out: Path, r: dict) -> None:
    print(
        f"curated {r['kept']} images into {out} ({r['quarantined']} quarantined, "
        f"{r['exact_duplicates_removed']} duplicates removed, {r['label_conflicts_dropped']} label conflicts "
        f"dropped, {r['groups']} groups, leakage check {'passed' if r['leakage_check']['passed'] else 'FAILED'})"
    )
    print(f"{'class':<12}{'train':>7}{'val':>7}{'test':>7}")
    for c, n in r["counts"].items():
        print(f"{c:<12}{n['train']:>7}{n['val']:>7}{n['test']:>7}")
    for w in r.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


def _prepare(a: argparse.Namespace) -> None:
    from nsfw_lab.data.prepare import prepare

    out = prepare(a.profile, Path(a.data) if a.data else None, seed=a.seed)
    r = json.loads((out / "curation_report.json").read_text())
    _print_summary(out, r)


def _check(a: argparse.Namespace) -> None:
    from nsfw_lab.data.imageio import ImageLoadError, load_image

    bad = 0
    for f in a.files:
        try:
            im = load_image(f)
            print(f"ok    {f}: {im.size[0]}x{im.size[1]}")
        except ImageLoadError as exc:
            bad += 1
            print(f"bad   {exc} [{exc.reason}]")
    if bad:
        raise NsfwLabError(f"{bad} of {len(a.files)} files are not usable images")


def _evaluate(a: argparse.Namespace) -> None:
    from nsfw_lab.evaluate import evaluate_run

    r = evaluate_run(a.run, a.split, a.checkpoint, a.data, a.batch_size, a.device, a.bootstrap, a.progress)
    ci = lambda k: "" if r[k][0] is None else f" [{r[k][0]:.4f}, {r[k][1]:.4f}]"  # noqa: E731
    print(
        f"{a.split}: n={r['n']} accuracy {r['accuracy']:.4f}{ci('accuracy_ci95')}  "
        f"macro-F1 {r['macro_f1']:.4f}{ci('macro_f1_ci95')}  -> {a.run}/eval_{a.split}.json"
    )


def _predict(a: argparse.Namespace) -> None:
    from nsfw_lab.fsutil import atomic_open
    from nsfw_lab.inference import iter_predictions, write_rows
    from nsfw_lab.runs import load_run

    if a.batch_size < 1:
        raise NsfwLabError(f"--batch-size must be >= 1, not {a.batch_size}")
    from nsfw_lab.inference import decision_rule

    if a.engine == "torch":
        run = load_run(a.run, a.checkpoint, a.device)
    else:
        from nsfw_lab.export import load_exported_run

        run = load_exported_run(a.run, a.engine, a.export)
        print(f"note: {a.engine} export of {run.checkpoint}.pt, on the CPU (--checkpoint and --device apply to "
              "--engine torch)", file=sys.stderr)  # fmt: skip
    rule = decision_rule(run)
    print(f"note: {rule[3]}", file=sys.stderr)
    rows = iter_predictions(run, a.paths, a.batch_size, a.progress, rule)
    if a.output:
        with atomic_open(Path(a.output), "w", encoding="utf-8", newline="") as fh:
            n, bad = write_rows(rows, a.format, fh)
        print(f"wrote {n} rows to {a.output}", file=sys.stderr)
    else:
        n, bad = write_rows(rows, a.format)
    if bad:
        print(f"warning: {bad} of {n} inputs could not be read (see the error column)", file=sys.stderr)
    if n == 0 or bad == n:
        raise NsfwLabError("no input could be classified")


def _export(a: argparse.Namespace) -> None:
    from nsfw_lab.export import export_run

    info = export_run(a.run, a.format, a.out, a.checkpoint)
    p = info["parity"]
    print(
        f"wrote {info['path']} ({info['format']}, dynamic batch); parity with eager fp32 on {p['images']}: "
        f"max |Δp| {p['max_abs_prob_diff']:.1e} (tolerance {p['tolerance']:.0e})"
    )


def _calibrate(a: argparse.Namespace) -> None:
    from nsfw_lab.moderation import calibrate_and_fit, load_policy

    cal, pol = calibrate_and_fit(a.run, load_policy(a.policy), a.device, a.progress, a.bootstrap)
    t, m = cal["test"], pol["test"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(
        f"temperature {cal['temperature']:.3f} (val); test ECE {f(t['ece_before'])} -> {f(t['ece_after'])}, "
        f"NLL {f(t['nll_before'])} -> {f(t['nll_after'])}"
    )
    print(
        f"policy: block >= {pol['thresholds']['t_block']:.4f}, review >= {pol['thresholds']['t_review']:.4f}; test "
        f"block recall {f(m['block_recall'])}, false-positive rate {f(m['false_positive_rate'])}, review rate "
        f"{f(m['review_rate'])} -> {a.run}/calibration.json, policy.json"
    )


def _cards(a: argparse.Namespace) -> None:
    from nsfw_lab.cards import write_cards

    paths = write_cards(a.run, a.out, a.name or Path(a.run).name, bench=a.bench)
    print(f"wrote {paths['model']} and {paths['data']}")


def _study(a: argparse.Namespace) -> None:
    from nsfw_lab.course import run_study

    results = run_study(a.profile, a.data, a.only, a.out, a.device)
    failed = [r for r in results if not r.ok]
    print(
        f"{len(results) - len(failed)} of {len(results)} notebooks ran; report index in "
        f"{Path(a.out or config.REPORTS_DIR / a.profile) / 'index.html'}"
    )
    if failed:
        raise NsfwLabError("failed: " + "; ".join(f"{r.notebook} (cell {r.cell}): {r.error}" for r in failed))


def _paths(a: argparse.Namespace) -> None:
    info = {
        "project_root": str(config.PROJECT_ROOT),
        "data": str(config.DATA_DIR),
        "reports": str(config.REPORTS_DIR),
        "profiles": {
            n: p.to_dict() | {"raw": str(config.proxy_raw_dir(p)), "curated": str(config.proxy_curated_dir(p))}
            for n, p in config.PROFILES.items()
        },
    }
    print(json.dumps(info, indent=2))


def one_line(exc: NsfwLabError) -> str:
    """The error's message; for one re-raised by a DataLoader worker (whose message carries the worker's
    traceback), the original message only."""
    msg = str(exc)
    if "Original Traceback" in msg:
        msg = msg.strip().splitlines()[-1].split("NsfwLabError: ", 1)[-1]
    return msg


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format (sub-parsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs). Defaults come from the config dataclasses."""
    from nsfw_lab.data.curate import CurateConfig
    from nsfw_lab.data.synth import Difficulty, SynthConfig

    S, D, C = SynthConfig(), Difficulty(), CurateConfig()
    p = _Parser(prog="nsfw-lab", description=__doc__)
    p.add_argument("--version", action="version", version=f"nsfw-lab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthetic proxy dataset (abstract renderings)")
    s.add_argument("out", help="output folder: OUT/<class>/*.jpg and OUT/manifest.csv")
    s.add_argument("--per-class", type=int, default=S.per_class, help="images per class (default %(default)s)")
    s.add_argument("--size", type=int, default=S.size, help="short side in pixels (default %(default)s)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shortcut", action="store_true", help="add a fixed-position watermark badge to most of one class")
    s.add_argument("--shortcut-class", default="porn")
    s.add_argument("--shortcut-rate", type=float, default=S.shortcut_rate, help="share of that class watermarked")
    s.add_argument("--shortcut-leak", type=float, default=S.shortcut_leak, help="share of other classes watermarked")
    s.add_argument("--gallery-size", type=int, nargs=2, default=S.gallery_size, metavar=("MIN", "MAX"))
    s.add_argument("--near-dup-rate", type=float, default=S.near_dup_rate)
    s.add_argument(
        "--exact-dup-rate", type=float, default=S.exact_dup_rate, help="byte-identical reposts within a class"
    )
    s.add_argument("--conflict-rate", type=float, default=S.conflict_rate, help="reposts into the confusable class")
    s.add_argument("--corrupt-rate", type=float, default=S.corrupt_rate, help="broken downloads added per class")
    s.add_argument("--placeholder-rate", type=float, default=S.placeholder_rate, help="'image removed' cards per class")
    s.add_argument("--label-noise", type=float, default=S.label_noise)
    s.add_argument(
        "--motif-scale",
        type=float,
        nargs=2,
        default=D.motif_scale,
        metavar=("MIN", "MAX"),
        help="motif diameter as a share of the short side",
    )
    s.add_argument("--motif-contrast", type=float, default=D.motif_contrast, help="1 = full, lower = fainter motif")
    s.add_argument(
        "--occlusion",
        type=float,
        nargs=2,
        default=D.occlusion,
        metavar=("MIN", "MAX"),
        help="share of the motif covered in 'partly covered' images",
    )
    s.add_argument("--decoy-rate", type=float, default=D.decoy_rate)
    s.add_argument("--cover-rate", type=float, default=D.cover_rate)
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_synth)

    c = sub.add_parser("curate", help="validate, deduplicate, split (group-aware) and cache an ImageFolder")
    c.add_argument("src", help="SRC/<class>/... (nested folders and any extension allowed)")
    c.add_argument("out")
    c.add_argument("--val", type=float, default=C.val)
    c.add_argument("--test", type=float, default=C.test)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--short-side", type=int, default=C.short_side, help="short side of the cache (default %(default)s)")
    c.add_argument(
        "--phash-threshold", type=int, default=C.phash_threshold, help="Hamming distance for near-duplicates (0..16)"
    )
    c.add_argument("--min-side", type=int, default=C.min_side, help="quarantine smaller images")
    c.add_argument(
        "--placeholder-copies",
        type=int,
        default=C.placeholder_copies,
        help="this many near-identical files (pHash within 4 bits, any class) are quarantined as placeholders",
    )
    c.add_argument(
        "--groups",
        help="CSV with group ids (group or group_id, + file or sha256), e.g. a download's manifest.csv; "
        "default SRC/manifest.csv",
    )
    c.add_argument("--workers", type=int, default=None)
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=_curate)

    from nsfw_lab.data.download.cli import add_parser as add_download

    add_download(sub)

    r = sub.add_parser("prepare", help="make the curated data a profile needs (what `make study` runs)")
    r.add_argument("--profile", default=config.DEFAULT_PROFILE, choices=sorted(config.PROFILES))
    r.add_argument("--data", help="a curated folder, or an ImageFolder to curate (default: the proxy)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_prepare)

    k = sub.add_parser("check", help="validate image files with the robust loader")
    k.add_argument("files", nargs="+")
    k.set_defaults(func=_check)

    from nsfw_lab.train.cli import add_parser as add_train

    add_train(sub)

    e = sub.add_parser("evaluate", help="metrics of a run on a split (writes eval_<split>.json, predictions CSV)")
    e.add_argument("--run", required=True, help="run folder")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--checkpoint", default="best", choices=("best", "last"))
    e.add_argument("--data", help="another curated folder with the same classes (default: the run's)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="auto")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    e.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    e.set_defaults(func=_evaluate)

    q = sub.add_parser("predict", help="class probabilities for image files and folders")
    q.add_argument("--run", required=True, help="run folder")
    q.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    q.add_argument("--format", default="csv", choices=("csv", "jsonl"))
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--checkpoint", default="best", choices=("best", "last"), help="(--engine torch)")
    q.add_argument("--device", default="auto", help="(--engine torch; exports run on the CPU)")
    q.add_argument(
        "--engine",
        default="torch",
        choices=("torch", "onnx", "torchscript"),
        help="the checkpoint in PyTorch, or its `nsfw-lab export` through ONNX Runtime or TorchScript",
    )
    q.add_argument("--export", help="the exported file (default RUN/export/model.onnx or model.torchscript.pt)")
    q.add_argument("--output", help="write here (atomically) instead of standard output")
    q.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    q.set_defaults(func=_predict)

    x = sub.add_parser("export", help="export a run's model to ONNX or TorchScript (checked against eager)")
    x.add_argument("--run", required=True, help="run folder")
    x.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    x.add_argument("--checkpoint", default="best", choices=("best", "last"))
    x.add_argument("--out", help="file to write (default RUN/export/model.onnx or model.torchscript.pt)")
    x.set_defaults(func=_export)

    c = sub.add_parser("calibrate", help="fit temperature scaling and the moderation policy's thresholds on val")
    c.add_argument("--run", required=True, help="run folder (writes calibration.json and policy.json into it)")
    c.add_argument("--policy", help="policy TOML file (default: the packaged nsfw_lab/policy.toml)")
    c.add_argument("--device", default="auto")
    c.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    c.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    c.set_defaults(func=_calibrate)

    k = sub.add_parser("cards", help="write a run's model card and data card (Markdown)")
    k.add_argument("--run", required=True, help="run folder")
    k.add_argument(
        "--out", default=str(config.REPORTS_DIR / "cards"), help="folder for <run>/MODEL_CARD.md, DATA_CARD.md"
    )
    k.add_argument("--name", help="the model's name in the card (default: the run folder's name)")
    k.add_argument("--bench", help="`nsfw-lab bench` output (bench.json or its folder; default reports/benchmarks)")
    k.set_defaults(func=_cards)

    from nsfw_lab.bench.cli import add_parser as add_bench

    add_bench(sub)

    st = sub.add_parser("study", help="run the course notebooks through papermill into reports/<profile>/")
    st.add_argument("--profile", default=config.DEFAULT_PROFILE, choices=sorted(config.PROFILES))
    st.add_argument("--data", help="a curated folder, or an ImageFolder to curate (default: the proxy)")
    st.add_argument("--only", nargs="+", help="notebooks by number or name (00 or 00_data)")
    st.add_argument("--out", help="report folder (default: reports/<profile>)")
    st.add_argument("--device", help="auto, cpu or cuda (default: the profile's)")
    st.set_defaults(func=_study)

    sub.add_parser("paths", help="print project paths and run profiles").set_defaults(func=_paths)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nsfw-lab``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except NsfwLabError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", "partial output was discarded")
        print(f"error: interrupted ({hint})", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
