"""The ``nsfw-lab bench`` sub-command."""

from __future__ import annotations

import argparse
from pathlib import Path

from nsfw_lab.utils.cli import Subparsers


def add_parser(sub: Subparsers) -> None:
    """Register ``bench`` on the CLI's sub-parsers."""
    from nsfw_lab.models.names import MODELS

    b = sub.add_parser(
        "bench",
        help="measure the data path, the training loop and inference side by side (reports/benchmarks/)",
        description="Writes bench.json and bench.md naming the machine and versions; every figure is a median "
        "of repeats measured in this run. On a CUDA machine the GPU part runs too.",
    )
    b.add_argument("--quick", action="store_true", help="small settings: a few minutes on 2 cores")
    b.add_argument("--out", help="folder for bench.json and bench.md (default reports/benchmarks)")
    b.add_argument("--models", nargs="+", choices=MODELS, help="inference table models (default: quick resnet50, "
                   "full all); must include resnet50")  # fmt: skip
    b.add_argument("--run", dest="runs", action="append", default=[], metavar="RUN_DIR",
                   help="also bench a trained run's model (repeatable): its int8 agreement is meaningful")  # fmt: skip
    b.add_argument(
        "--gpu-data", help="curated folder for the GPU end-to-end part (default: 2,000 generated proxy images)"
    )
    b.add_argument("--work", help="where the bench's generated images live (default data/interim/bench)")
    b.add_argument("--if-missing", action="store_true", help="do nothing when OUT already holds a bench.json")
    b.set_defaults(func=run)
    g = sub.add_parser(
        "gpu-check",
        help="on a CUDA machine: the CUDA tests, the bench's GPU part and a gpu-profile mini study (minutes)",
        description="Writes gpu_check.json and gpu_check.md naming the device (`make gpu-check` installs the package "
        "next to the machine's own PyTorch first). Without CUDA it records that and exits 0.",
    )
    g.add_argument("--out", help="folder for gpu_check.json and .md (default reports/benchmarks)")
    g.add_argument("--work", help="where its proxy and runs live (default data/interim/gpu_check)")
    g.add_argument("--rehearse", action="store_true", help="run the same steps at toy sizes on the CPU (about "
                   "a minute): check an install before spending GPU time")  # fmt: skip
    g.set_defaults(func=run_check)


def run(a: argparse.Namespace) -> None:
    """Run the bench and print the headline figures."""
    from nsfw_lab.bench.report import GOALS, JSON_NAME, default_dir, met
    from nsfw_lab.bench.run import run_bench

    out = Path(a.out) if a.out else default_dir()
    if a.if_missing and (out / JSON_NAME).is_file():
        print(f"{out / JSON_NAME} exists; not measured again (run without --if-missing to refresh it)")
        return
    work = Path(a.work) if a.work else None
    gpu_data = Path(a.gpu_data) if a.gpu_data else None
    models = tuple(a.models) if a.models else None
    bench, js, md = run_bench(out, a.quick, models, tuple(map(Path, a.runs)), gpu_data, work)
    for k, (op, goal, _) in GOALS.items():
        print(f"{k:<20} {bench[k]:8.3f}  goal {op} {goal}: {'met' if met(k, bench[k]) else 'NOT met'}")
    gpu = bench["gpu"]
    print(f"gpu: {gpu['device'] if gpu.get('available') else gpu.get('note')}")
    print(f"wrote {js} and {md} in {bench['seconds']:.0f} s")


def run_check(a: argparse.Namespace) -> None:
    """Run ``gpu-check`` and print where it wrote."""
    from nsfw_lab.bench.gpu_check import CheckSettings, failures, run_gpu_check
    from nsfw_lab.errors import NsfwLabError

    settings, device = (CheckSettings.tiny(), "cpu") if a.rehearse else (None, None)
    r, js, md = run_gpu_check(Path(a.out) if a.out else None, Path(a.work) if a.work else None, settings, device)
    where = "nothing was run" if "note" in r else f"run on {r['run_on']}"
    device = r["device"] if r["cuda"] else "no CUDA device"
    print(f"gpu-check ({device}, {where}): {r['seconds']:.0f} s; wrote {js} and {md}")
    if failures(r):
        raise NsfwLabError(f"gpu-check: failed: {'; '.join(failures(r))} (details in {js})")
