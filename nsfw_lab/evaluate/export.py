"""``nsfw-lab export``: a run's model as ONNX or TorchScript with a dynamic batch, checked against eager.

The exported graph takes what the data path gives: ``images``, uint8 ``(N, 3, H, W)`` RGB after the eval
transform (short side resized to ``round(H / 0.875)``, centre crop), and normalises inside, like
:class:`nsfw_lab.models.NsfwModel`; it returns ``logits`` ``(N, classes)`` before temperature scaling.
Beside the file, a record (``<file>.json``, :func:`nsfw_lab.rundir.export_record`) holds the classes,
input, checkpoint (with its SHA-256, so a stale export is refused) and the parity measured at export:
softmax probabilities of the export against the eager fp32 model on validation images at batch 1 and
batch 8; above ``1e-4`` the export is not written.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsfw_lab import __version__
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.loading import LoadedRun, load_run
from nsfw_lab.rundir import EXPORT_FORMATS, RunDir, export_record
from nsfw_lab.utils.fsutil import atomic_write_json, read_json

PARITY_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 8)
OPSET = 18


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parity_images(run: LoadedRun, n: int = max(PARITY_BATCHES)) -> tuple[torch.Tensor, str]:
    """Up to ``n`` validation images of the run's data through the eval transform (uint8), or seeded random
    images when the data is gone; and which of the two it was."""
    from nsfw_lab.data.dataset import CuratedImageDataset
    from nsfw_lab.data.transforms import eval_transform

    try:
        ds = CuratedImageDataset(run.data_dir, "val", eval_transform(run.image_size, normalize=False))
        if len(ds) >= n:
            return torch.stack([ds[i][0] for i in range(n)]), f"val images of {run.data_dir}"
    except NsfwLabError:
        pass
    g = torch.Generator().manual_seed(0)
    size = run.image_size
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), "random images"


def onnx_bytes(model: torch.nn.Module, example: torch.Tensor, meta: dict[str, str]) -> bytes:
    """``model`` as a serialised ONNX graph (dynamo exporter, batch dimension dynamic, ``meta`` as metadata)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model,
            (example,),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    proto = prog.model_proto
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    return proto.SerializeToString()


def torchscript_bytes(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """``model`` traced on ``example`` and frozen, as the bytes of a TorchScript file."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # torch 2.14 deprecates TorchScript in favour of torch.export
        torch.jit.save(torch.jit.freeze(torch.jit.trace(model, example, check_trace=False)), buf)
    return buf.getvalue()


class OnnxModel:
    """An ONNX export run by onnxruntime, called like the eager model: uint8 images in, logits out."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: onnxruntime's default (the physical cores)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable/invalid files
            raise NsfwLabError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a uint8 ``(N, 3, H, W)`` batch."""
        x = x.cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: x})[0])


def load_exported(path: Path, fmt: str) -> Any:
    """An exported file as a callable model: :class:`OnnxModel` or a TorchScript module."""
    if fmt == "onnx":
        return OnnxModel(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript for torch.export
            return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as exc:
        raise NsfwLabError(f"{path}: not a loadable TorchScript file ({exc})") from None


@torch.inference_mode()
def max_prob_diff(reference: Any, candidate: Any, images: torch.Tensor, batches: tuple[int, ...]) -> float:
    """Largest absolute difference of softmax probabilities between two models over ``images`` split into
    batches of each size in ``batches``."""
    worst = 0.0
    for b in batches:
        for lo in range(0, len(images), b):
            x = images[lo : lo + b]
            p = reference(x).float().softmax(1)
            q = candidate(x).float().softmax(1)
            worst = max(worst, float((p - q).abs().max()))
    return worst


def export_run(run_dir: Path | str, fmt: str, out: Path | str | None = None, checkpoint: str = "best") -> dict:
    """Export ``run_dir``'s model (see the module docstring); returns the record's content, whose ``path``
    is the written file (default: the run folder's ``export/model.onnx`` or ``export/model.torchscript.pt``)."""
    if fmt not in EXPORT_FORMATS:
        raise NsfwLabError(f"unknown export format {fmt!r}; choose {' or '.join(EXPORT_FORMATS)}")
    run = load_run(run_dir, checkpoint, device="cpu")
    model = run.model.float().eval()
    path = Path(out) if out else run.files.export(fmt)
    images, source = parity_images(run)
    ck = run.files.checkpoint(checkpoint)
    info: dict[str, Any] = {
        "format": fmt,
        "path": str(path),
        "run": str(run.run_dir),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha256_file(ck),
        "model": run.model.spec.name,
        "classes": run.classes,
        "input": {"name": "images", "dtype": "uint8", "layout": "NCHW RGB", "size": run.image_size,
                  "batch": "dynamic", "preprocessing": "eval transform: resize short side, centre crop; "
                  "normalised inside the graph"},
        "output": {"name": "logits", "note": "before temperature scaling (`nsfw-lab calibrate` fits it)"},
        "versions": {"nsfw_lab": __version__, "torch": torch.__version__},
    }  # fmt: skip
    if fmt == "onnx":
        meta = {"classes": json.dumps(run.classes), "input_size": str(run.image_size), "nsfw_lab": __version__}
        data = onnx_bytes(model, images[:2], meta)
        info["opset"] = OPSET
    else:
        data = torchscript_bytes(model, images[:2])
    staged = path.with_name(f".{path.name}.check")
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        staged.write_bytes(data)  # a hidden name, checked before it is renamed into place (or removed)
        diff = max_prob_diff(model, load_exported(staged, fmt), images, PARITY_BATCHES)
        if not np.isfinite(diff) or diff > PARITY_TOLERANCE:
            raise NsfwLabError(
                f"{path}: the {fmt} export differs from the eager model by {diff:.2e} in probability "
                f"(tolerance {PARITY_TOLERANCE:.0e}); not written"
            )
        info["parity"] = {"max_abs_prob_diff": diff, "tolerance": PARITY_TOLERANCE,
                          "batches": list(PARITY_BATCHES), "images": f"{len(images)} {source}"}  # fmt: skip
        export_record(path).unlink(missing_ok=True)  # between the renames the pair is incomplete, never mismatched
        staged.replace(path)
        atomic_write_json(export_record(path), info)
    finally:
        staged.unlink(missing_ok=True)
    return info


@dataclass
class ExportedRun:
    """What ``predict`` needs of a run, with an exported model in place of the checkpoint."""

    run_dir: Path
    model: Any
    classes: list[str]
    checkpoint: str
    image_size: int
    device: torch.device

    @property
    def files(self) -> RunDir:
        """The run folder's files."""
        return RunDir(self.run_dir)


def load_exported_run(run_dir: Path | str, fmt: str = "onnx", path: Path | str | None = None) -> ExportedRun:
    """The run's export in ``fmt`` (default: the run folder's ``export/model.onnx`` or ``model.torchscript.pt``)
    for ``predict``; refused when its checkpoint has changed since the export."""
    files = RunDir(run_dir)
    run = files.path
    path = Path(path) if path else files.export(fmt)
    meta = export_record(path)
    if not path.is_file() or not meta.is_file():
        raise NsfwLabError(f"{path}: no export (with {meta.name}); run `nsfw-lab export --run {run} --format {fmt}`")
    info = read_json(meta)
    try:
        fmt_saved, checkpoint, digest = info["format"], info["checkpoint"], info["checkpoint_sha256"]
        classes, size = list(info["classes"]), int(info["input"]["size"])
    except (KeyError, TypeError, ValueError):
        raise NsfwLabError(f"{meta}: not an nsfw-lab export record; export again (`nsfw-lab export`)") from None
    if fmt_saved != fmt:
        raise NsfwLabError(f"{path}: exported as {fmt_saved}, not {fmt}")
    try:
        ck = files.checkpoint(checkpoint)
    except NsfwLabError:
        raise NsfwLabError(f"{meta}: not an nsfw-lab export record; export again (`nsfw-lab export`)") from None
    if not ck.is_file() or sha256_file(ck) != digest:
        raise NsfwLabError(f"{path}: exported from an older {ck.name}; export again (`nsfw-lab export --run {run}`)")
    return ExportedRun(run, load_exported(path, fmt), classes, checkpoint, size, torch.device("cpu"))
