"""The evaluate stage's commands: ``evaluate``, ``predict``, ``export``, ``calibrate`` and ``robustness``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nsfw_lab.config import SPLITS
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.rundir import CHECKPOINTS, EXPORT_FORMATS, RunDir
from nsfw_lab.utils.cli import Subparsers, add_progress_flag


def _evaluate(a: argparse.Namespace) -> None:
    from nsfw_lab.evaluate.scoring import evaluate_run

    r = evaluate_run(a.run, a.split, a.checkpoint, a.data, a.batch_size, a.device, a.bootstrap, a.progress)
    ci = lambda k: "" if r[k][0] is None else f" [{r[k][0]:.4f}, {r[k][1]:.4f}]"  # noqa: E731
    print(
        f"{a.split}: n={r['n']} accuracy {r['accuracy']:.4f}{ci('accuracy_ci95')}  "
        f"macro-F1 {r['macro_f1']:.4f}{ci('macro_f1_ci95')}  -> {RunDir(a.run).evaluation(a.split)}"
    )


def _predict(a: argparse.Namespace) -> None:
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.evaluate.predict import decision_rule, iter_predictions, write_rows
    from nsfw_lab.utils.fsutil import atomic_open

    if a.batch_size < 1:
        raise NsfwLabError(f"--batch-size must be >= 1, not {a.batch_size}")
    if a.max_frames is not None and a.max_frames < 1:
        raise NsfwLabError(f"--max-frames must be >= 1, not {a.max_frames}")

    if a.engine == "torch":
        run = load_run(a.run, a.checkpoint, a.device)
    else:
        from nsfw_lab.evaluate.export import load_exported_run

        run = load_exported_run(a.run, a.engine, a.export)
        source = run.files.checkpoint(run.checkpoint).name
        print(f"note: {a.engine} export of {source}, on the CPU (--checkpoint and --device apply to --engine torch)",
              file=sys.stderr)  # fmt: skip
    rule = decision_rule(run, a.operating_point)
    print(f"note: {rule.note}", file=sys.stderr)
    rows = iter_predictions(run, a.paths, a.batch_size, a.progress, rule, a.clips, a.max_frames)
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
    from nsfw_lab.evaluate.export import export_run

    info = export_run(a.run, a.format, a.out, a.checkpoint)
    p = info["parity"]
    print(
        f"wrote {info['path']} ({info['format']}, dynamic batch); parity with eager fp32 on {p['images']}: "
        f"max |Δp| {p['max_abs_prob_diff']:.1e} (tolerance {p['tolerance']:.0e})"
    )


def _calibrate(a: argparse.Namespace) -> None:
    from nsfw_lab.evaluate.calibration import calibrate_run
    from nsfw_lab.evaluate.policy import load_policy

    if a.clips:
        from nsfw_lab.evaluate.clip_fit import calibrate_clips, check_clip_folder

        check_clip_folder(a.clips, a.max_frames)  # before anything is rewritten
    done = calibrate_run(a.run, load_policy(a.policy), a.device, a.progress, a.bootstrap)
    clips = calibrate_clips(a.run, a.clips, a.device, a.max_frames, a.bootstrap, a.progress) if a.clips else None
    cal, pol, files = done.calibration, done.policy, RunDir(a.run)
    t, m = cal["test"], pol["test"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(
        f"temperature {cal['temperature']:.3f} (val); test ECE {f(t['ece_before'])} -> {f(t['ece_after'])}, "
        f"NLL {f(t['nll_before'])} -> {f(t['nll_after'])}"
    )
    print(
        f"policy: block >= {pol['thresholds']['t_block']:.4f}, review >= {pol['thresholds']['t_review']:.4f}; test "
        f"block recall {f(m['block_recall'])}, false-positive rate {f(m['false_positive_rate'])}, review rate "
        f"{f(m['review_rate'])} -> {files.calibration}, {files.policy.name}"
    )
    rc, b = pol["risk_controlled"], pol["risk_controlled"]["bound"]
    promise = f"miss rate <= {b['alpha']:g} with probability {1 - b['delta']:g}"
    how = (f"review >= {rc['thresholds']['t_review']:.4f} (val: {b['misses']} of {b['n']} block-group images missed, "
           f"upper bound {b['upper_bound']:.3f})" if b["certified"] else f"not certifiable with {b['n']} block-group "
           "val images: everything not blocked goes to review")  # fmt: skip
    print(
        f"risk-controlled: {promise}: {how}; test miss rate {f(rc['test']['missed_rate'])} "
        f"({'held' if rc['held_on_test'] else 'NOT held'}), review rate {f(rc['test']['review_rate'])}"
    )
    if done.removed_clip_policy and not clips:
        print(f"note: removed {files.clip_policy} (fitted at the previous thresholds; refit with --clips DIR)",
              file=sys.stderr)  # fmt: skip
    if clips:
        c, one = clips, clips["any_frame"]["test"]
        met = "" if c["met_on_val"] else f" (no k meets clip FPR <= {c['clip_fpr']:g} on val)"
        print(
            f"clips: block at {c['k']} blocked frames of up to {c['max_frames']}{met}; test clip false-positive rate "
            f"{f(c['test']['false_positive_rate'])}, block recall {f(c['test']['block_recall'])} (any blocked frame: "
            f"{f(one['false_positive_rate'])}, {f(one['block_recall'])}) -> {files.clip_policy.name}"
        )


def _numbers(text: str, flag: str) -> list[float]:
    """A comma-separated list of numbers, or a one-line error naming the flag."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NsfwLabError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def _robustness(a: argparse.Namespace) -> None:
    from nsfw_lab.evaluate.robustness import robustness_run, worst

    sev = _numbers(a.severities, "--severities")
    if any(v != int(v) for v in sev):
        raise NsfwLabError(f"--severities must be whole numbers in 1..5, not {a.severities!r}")
    sev = [int(v) for v in sev]
    eps = _numbers(a.fgsm_eps, "--fgsm-eps")
    names = [v.strip() for v in a.corruptions.split(",") if v.strip()] if a.corruptions else None
    r = robustness_run(a.run, a.split, a.checkpoint, names, sev, eps, a.limit, a.batch_size, a.device, a.bootstrap,
                       a.seed, a.progress)  # fmt: skip
    c = r["clean"]
    print(f"{a.split}: n={r['n']} clean macro-F1 {c['macro_f1']:.3f}, block recall {c['block_recall'] or 0:.3f}")
    for w in worst(r):
        at = f"eps {w['eps']:g}/255" if "eps" in w else f"severity {w['severity']}"
        print(f"  {w['corruption']:<15} {at:<13} macro-F1 {w['macro_f1']:.3f} ({w['drop']['delta']:+.3f}: "
              f"{w['verdict']})  block recall {w['block_recall'] or 0:.3f}")  # fmt: skip
    files = RunDir(a.run)
    print(f"-> {files.robustness(a.split)}, {files.robustness_plot(a.split).name}")


def _inference_flags(p: argparse.ArgumentParser) -> None:
    """What ``evaluate`` and ``calibrate`` share: the device, the bootstrap's resamples, the progress bar."""
    p.add_argument("--device", default="auto")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    add_progress_flag(p)


def add_parser(sub: Subparsers) -> None:
    """Register ``evaluate``, ``predict``, ``export`` and ``calibrate``."""
    run = RunDir("RUN")
    exports = " or ".join(str(run.export(f)) for f in EXPORT_FORMATS)
    e = sub.add_parser(
        "evaluate",
        help="metrics of a run on a split with 95%% intervals (writes its eval JSON and predictions CSV)",
        description="Accuracy, balanced accuracy and macro-F1 with 95% bootstrap intervals over images, per-class "
        "precision, recall and F1, the confusion matrix, one-vs-rest ROC-AUC and PR-AUC, written to "
        f"{run.evaluation('test')} (for --split test), with one row per image (path, label, prediction, "
        f"probabilities) in {run.predictions('test').name}. Serving speed is `nsfw-lab bench`'s job.",
    )
    e.add_argument("--run", required=True, help="run folder")
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    e.add_argument("--data", help="another curated folder with the same classes (default: the run's)")
    e.add_argument("--batch-size", type=int, default=64)
    _inference_flags(e)
    e.set_defaults(func=_evaluate)

    q = sub.add_parser(
        "predict",
        help="class probabilities for image files and folders",
        description="One row per input (folders are searched recursively): the prediction, a probability per class "
        f"(temperature-scaled when {run.calibration.name} exists), `block_score` (P(block group)) and a "
        f"`decision` (allow / review / block) from the run's {run.policy.name}; uncalibrated, block when "
        "P(block group) >= 0.5, said on standard error. An unreadable file, or a folder without images, gets an "
        "`error` in its own row and the rest go on; exit status 2 only when nothing could be classified. "
        "An animated GIF, WebP or APNG (with `--clips`: each folder given, its images the frames) gets a row per "
        "sampled frame (`frame` = its index) and a clip row (`frame` = clip) blocked when k frames are, k from the "
        f"run's {run.clip_policy.name} (`calibrate --clips`; else 1). "
        "`--engine onnx|torchscript` runs the run's export instead (the same rows; an export older than its "
        "checkpoint is refused).",
    )
    q.add_argument("--run", required=True, help="run folder")
    q.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    q.add_argument("--format", default="csv", choices=("csv", "jsonl"))
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--checkpoint", default="best", choices=CHECKPOINTS, help="(--engine torch)")
    q.add_argument("--device", default="auto", help="(--engine torch; exports run on the CPU)")
    q.add_argument(
        "--engine",
        default="torch",
        choices=("torch", *EXPORT_FORMATS),
        help="the checkpoint in PyTorch, or its `nsfw-lab export` through ONNX Runtime or TorchScript",
    )
    q.add_argument("--export", help=f"the exported file (default {exports})")
    q.add_argument("--output", help="write here (atomically) instead of standard output")
    q.add_argument("--operating-point", default="val", choices=("val", "risk"),
                   help="val-chosen thresholds, or the risk-controlled ones (certified review threshold)")  # fmt: skip
    q.add_argument("--clips", action="store_true", help="each folder given is one clip of frame images")
    q.add_argument("--max-frames", type=int, help="frames sampled per clip (default: the clip rule's cap, else 16)")
    add_progress_flag(q)
    q.set_defaults(func=_predict)

    x = sub.add_parser(
        "export",
        help="export a run's model to ONNX or TorchScript (checked against eager)",
        description="uint8 (N, 3, H, W) RGB in (after the eval transform), normalisation inside, logits out, "
        "dynamic batch. Written only if its probabilities are within 1e-4 of the eager fp32 model on validation "
        "images at batch 1 and 8; a record beside it (<file>.json) holds the classes, the input, the checkpoint's "
        "SHA-256 and the parity measured.",
    )
    x.add_argument("--run", required=True, help="run folder")
    x.add_argument("--format", default="onnx", choices=EXPORT_FORMATS)
    x.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    x.add_argument("--out", help=f"file to write (default {exports})")
    x.set_defaults(func=_export)

    c = sub.add_parser(
        "calibrate",
        help="fit temperature scaling and the moderation policy's thresholds on val",
        description=f"Temperature scaling fitted on val ({run.calibration.name}: T, ECE and NLL before and after on "
        "val and test, reliability bins); then the policy's thresholds on the calibrated val probabilities for its "
        "target recall of the block group, with an abstain band sent to review "
        f"({run.policy.name}: thresholds; block recall and precision, false-positive, review and missed rates "
        "with 95% CIs on val and test). The default policy: block = porn + hentai, review = sexy, allow = "
        "neutral + drawings, target recall 0.95. Beside them, a risk-controlled review threshold certified on val "
        "(block-group miss rate <= risk_alpha with probability 1 - risk_delta) with the miss rate it achieved on test. "
        f"With --clips DIR: the clip rule (block at k blocked frames) on DIR's val clips ({run.clip_policy.name}).",
    )
    c.add_argument(
        "--run", required=True, help=f"run folder (writes {run.calibration.name} and {run.policy.name} in it)"
    )
    c.add_argument("--policy", help="policy TOML file (default: the packaged nsfw_lab/evaluate/policy.toml)")
    c.add_argument("--clips", help="a folder of val and test clips (DIR/<split>/<class>/<clip>): fit the clip rule "
                   f"too ({run.clip_policy.name})")  # fmt: skip
    c.add_argument("--max-frames", type=int, default=16, help="frames sampled per clip (with --clips)")
    _inference_flags(c)
    c.set_defaults(func=_calibrate)

    from nsfw_lab.evaluate.corruptions import CORRUPTIONS
    from nsfw_lab.evaluate.robustness import FGSM_EPS

    r = sub.add_parser(
        "robustness",
        help="a run's model under graded corruptions and FGSM, per confusion pair (writes JSON and a figure)",
        description="The split's images corrupted before the eval transform, each at severities 1..5 and seeded per "
        f"image ({', '.join(CORRUPTIONS)}), and FGSM at small ε: macro-F1 and block-group recall with 95% "
        "intervals, the paired macro-F1 drop from the clean images with its verdict, and the confusion pairs that "
        f"grew with their counts, written to {run.robustness('test')} and {run.robustness_plot('test').name}.",
    )
    r.add_argument("--run", required=True, help="run folder")
    r.add_argument("--split", default="test", choices=SPLITS)
    r.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    r.add_argument("--corruptions", help="comma-separated names (default: all)")
    r.add_argument("--severities", default="1,2,3,4,5", help="comma-separated, in 1..5")
    r.add_argument("--fgsm-eps", default=",".join(f"{e:g}" for e in FGSM_EPS),
                   help="comma-separated ε in grey levels (/255); empty: no FGSM")  # fmt: skip
    r.add_argument("--limit", type=int, help="the first N images per class of the split (default: all)")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--seed", type=int, default=0, help="seeds the corruptions (per image)")
    _inference_flags(r)
    r.set_defaults(func=_robustness)
