"""The bench's files: ``bench.json`` (every figure, machine and versions) and ``bench.md`` (the same as
tables), and reading them back for the model card and the comparison notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nsfw_lab import config
from nsfw_lab.utils.fsutil import atomic_write_json, atomic_write_text, read_json

JSON_NAME, MD_NAME = "bench.json", "bench.md"
GOALS = {  # key: (comparison, goal, what it is)
    "data_speedup": (">=", 4.0, "our loader over the cache ÷ ImageFolder + PIL over the originals"),
    "train_step_ratio": (">=", 0.95, "our training loop ÷ a bare PyTorch loop"),
    "onnx_latency_ratio": ("<=", 0.7, "ONNX Runtime batch-1 latency ÷ eager fp32, ResNet-50"),
}
LEVER_VARIANTS = ("fp32", "channels_last", "bf16", "bf16_channels_last")  # bench.json sorts its keys
VARIANT_NAMES = {"eager": "eager fp32", "channels_last": "channels_last", "torchscript": "TorchScript",
                 "onnxruntime": "ONNX Runtime", "int8": "ONNX Runtime int8"}  # fmt: skip


def default_dir() -> Path:
    """``reports/benchmarks`` (follows ``NSFW_LAB_REPORTS``)."""
    return config.REPORTS_DIR / "benchmarks"


def met(key: str, value: float) -> bool:
    """Whether ``value`` reaches the goal of ``key``."""
    op, goal, _ = GOALS[key]
    return value >= goal if op == ">=" else value <= goal


def _machine_line(b: dict[str, Any]) -> str:
    m, v = b["machine"], b["versions"]
    gpu = f", GPU {m['gpu']['name']} x{m['gpu']['count']}" if m.get("gpu") else ", no GPU"
    mem = f", {m['memory_gib']} GiB" if m.get("memory_gib") else ""
    return (
        f"Measured {b['created']} on {m['cpu']} ({m['cores']} logical CPUs{mem}{gpu}) with torch "
        f"{v['torch']}, torchvision {v['torchvision']}, torchcodec {v['torchcodec']}, onnxruntime "
        f"{v['onnxruntime']}, nsfw_lab {v['nsfw_lab']}."
    )


def _rate(d: dict[str, Any]) -> str:
    return f"{d['median']:.1f} img/s (repeats {', '.join(f'{r:.1f}' for r in d['repeats'])})"


def _ms(v: float | None) -> str:
    return "not measured (unavailable here)" if v is None else f"{v} ms"


def inference_table(rows: list[dict[str, Any]]) -> list[str]:
    """The per-model rows as Markdown table lines."""
    out = ["| model | px | weights | variant | batch-1 ms | batch-32 img/s | peak MiB | top-1 agreement |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        k = r["classes_predicted"]
        agree = f"{r['agreement']:.1%} of {r['agreement_images']} ({k} class{'es' if k != 1 else ''} predicted)"
        if not r["kept"]:
            out.append(f"| {r['model']} | {r['input_px']} | {r['weights']} | {VARIANT_NAMES[r['variant']]} | "
                       f"— | — | — | {agree}: not kept ({r['why']}) |")  # fmt: skip
            continue
        out.append(
            f"| {r['model']} | {r['input_px']} | {r['weights']} | {VARIANT_NAMES[r['variant']]} | {r['batch1_ms']:.1f} "
            f"| {r['batch32_images_per_s']:.1f} | {r['peak_mib'] if r['peak_mib'] is not None else 'n/a'} | {agree} |"
        )
    return out


def _share(r: dict[str, Any], key: str) -> str:
    return f"{r[key]:.1%}" if key in r else "—"


def _gpu_lines(g: dict[str, Any]) -> list[str]:
    if not g.get("available"):
        return [f"_{g.get('note', 'not run')}._"]
    out = [f"Device: **{g['device']}**. Training, bf16 autocast + channels_last, our loop. Loader wait: share of "
           "the wall time the loop waited for a batch; device decode: share spent decoding on the device.", "",
           "| source | model | px | batch | compile | images/s | loader wait | device decode |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = [("synthetic tensors", r) for r in g.get("synthetic", [])]
    rows += [(f"curated cache, decode {r.get('decode', '?')}", r) for r in g.get("end_to_end", [])]
    for source, r in rows:
        if "error" in r:
            out.append(f"| {source} | error: {r['error']} | | | | | | |")
            continue
        out.append(f"| {source} | {r['model']} | {r.get('input_px', 224)} | {r['batch']} | {r.get('compile', False)} "
                   f"| {r['images_per_s']:.0f} | {_share(r, 'loader_wait_share')} | "
                   f"{_share(r, 'device_decode_share')} |")  # fmt: skip
    return out


def _levers_lines(levers: dict[str, Any]) -> list[str]:
    """The section's lines for ``bench.md``."""
    p, c = levers["precision"], levers["cached_probe"]
    rates, gain = p["images_per_s"], p["speedup_over_fp32"]
    rows = [f"| {v} | {rates[v]['median']:.1f} | {gain[v]:.2f}x |" for v in LEVER_VARIANTS if v in rates]
    d = p["default"]
    return [
        f"Training step, {p['model']} at {p['input_px']} px, batch {p['batch']}, steps per turn: "
        f"{p['steps_per_repeat']}, turns: {p['repeats']}. AMX-BF16 on this CPU: {'yes' if p['amx_bf16'] else 'no'}; "
        f"the engine's default here: amp {d['amp']}, channels_last {d['channels_last']}.",
        "",
        "| variant | images/s | over fp32 |",
        "|---|---|---|",
        *rows,
        "",
        f"After the same steps, bf16 + channels_last and fp32 predict the same class on "
        f"{p['bf16_top1_agreement']:.0%} of {p['agreement_images']} held-out images (largest logit difference "
        f"{p['bf16_max_logit_diff']:.3f}).",
        "",
        f"Linear probe, {c['model']} at {c['input_px']} px on {c['images']} images: cached features "
        f"{c['extract_s']:.1f} s (one pass) + {c['fit_s']:.1f} s (fit) against a frozen-backbone run of "
        f"{c['frozen_epoch_s']:.1f} s per epoch: {c['speedup']:.1f}x faster over {c['epochs']} epochs, and a "
        "data-size sweep refits the cached features instead of running again.",
    ]


def _goal_rows(b: dict[str, Any]) -> list[str]:
    return [
        f"| `{k}` | {b[k]:.3f} | {op} {goal} | {'yes' if met(k, b[k]) else '**no**'} | {what} |"
        for k, (op, goal, what) in GOALS.items()
    ]


def markdown(b: dict[str, Any]) -> str:
    """``bench.md``."""
    d, t, o = b["data"], b["train_step"], b["onnx"]
    lines = [
        f"# nsfw_lab benchmarks ({'quick' if b['quick'] else 'full'})",
        "",
        _machine_line(b),
        "Every figure is the median of repeated measurements taken in turns in this one run; the ratios "
        "compare two things measured side by side on this machine.",
        "",
        "| figure | value | goal | met | what |",
        "|---|---|---|---|---|",
        *_goal_rows(b),
        "",
        "The first two ratios are medians of per-repeat ratios (each repeat measures both, one after the other).",
        "",
        "## Data path (CPU)",
        "",
        f"- Ours (curated {d['cache_short_side']} px cache, TorchCodec in {d['workers']} worker(s), uint8, "
        f"normalised after): {_rate(d['ours_images_per_s'])}.",
        f"- Plain ImageFolder + PIL over the originals (median {d['original_megapixels_median']} MP): "
        f"{_rate(d['plain_images_per_s'])}.",
        f"- Same {d['images']} images, batches {tuple(d['batch_shape'])}, {d['augmentation']}, "
        f"{d['epochs_per_repeat']} epochs per repeat.",
        f"- Decoding one image: cache {_ms(d['decode']['cache_torchcodec_ms'])} with TorchCodec, "
        f"{_ms(d['decode']['cache_pil_ms'])} with Pillow; original {_ms(d['decode']['original_pil_ms'])} with Pillow.",
        "",
        "## Training loop (CPU)",
        "",
        f"{t['model']} at {t['input_px']} px, batch {t['batch']}, {t['steps_per_repeat']} steps per repeat: ours "
        f"{_rate(t['ours_images_per_s'])}, bare loop {_rate(t['bare_images_per_s'])}.",
        "",
        "## CPU levers: bf16, channels_last, cached features",
        "",
        *(_levers_lines(b["cpu_levers"]) if "cpu_levers" in b else ["_not measured by this bench version._"]),
        "",
        "## Inference (CPU)",
        "",
        f"ONNX Runtime {o['onnxruntime_batch1_ms']:.1f} ms vs eager {o['eager_batch1_ms']:.1f} ms at batch 1 "
        f"({o['model']}). Peak MiB: growth of resident memory while a variant runs (approximate). Random-weight "
        "models get batch norm statistics from proxy images first, so that agreement is not trivial; int8 is "
        "kept only at >= 99% top-1 agreement with eager fp32 on images eager sorts into more than one class.",
        "",
        *inference_table(b["inference"]),
        "",
        "## GPU",
        "",
        *_gpu_lines(b["gpu"]),
        "",
    ]
    return "\n".join(lines)


def write(out: Path, bench: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``bench.json`` and ``bench.md`` into ``out`` (atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / JSON_NAME, bench)
    atomic_write_text(out / MD_NAME, markdown(bench))
    return out / JSON_NAME, out / MD_NAME


def load(path: Path | str | None = None) -> dict[str, Any] | None:
    """A ``bench.json`` (a file or its folder; default ``reports/benchmarks``), or None when there is none."""
    p = Path(path) if path else default_dir()
    return read_json(p / JSON_NAME if p.is_dir() or not p.suffix else p)


def latency_rows(bench: dict[str, Any] | None, model: str) -> list[dict[str, Any]]:
    """The inference rows of architecture ``model`` (empty when the bench did not measure it)."""
    return [r for r in (bench or {}).get("inference", []) if r["model"] == model]


def summary_line(bench: dict[str, Any]) -> str:
    """Where and when the figures come from, in one line (for cards and notebooks)."""
    m = bench["machine"]
    gpu = f", GPU {m['gpu']['name']}" if m.get("gpu") else ""
    cmd = "nsfw-lab bench --quick" if bench["quick"] else "nsfw-lab bench"
    return f"`{cmd}` on {m['cpu']} ({m['cores']} logical CPUs{gpu}), {bench['created']}"
