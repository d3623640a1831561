"""``nsfw-lab export``: ONNX and TorchScript files with a dynamic batch that agree with the eager model
(probabilities within 1e-4 in fp32, checked here independently of the exporter's own check), and
``nsfw-lab predict`` through ONNX Runtime."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nsfw_lab.cli import main
from nsfw_lab.data.dataset import CuratedImageDataset
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.export import export_run, load_exported_run
from nsfw_lab.evaluate.loading import load_run
from nsfw_lab.evaluate.predict import predict


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture(scope="module")
def resnet_run(small_curated: Path, tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:  # type: ignore[no-untyped-def]
    """A ResNet-18 (batch norm, residual adds, adaptive pooling) trained a few steps at 48 px."""
    from nsfw_lab.train import fit

    out = tmp_path_factory.mktemp("export") / "r18"
    fit(tiny_config(small_curated, out, model="resnet18", image_size=48, max_steps=6, lr=0.02))
    return out


def _test_images(run: Path, n: int = 11) -> torch.Tensor:
    loaded = load_run(run, device="cpu")
    ds = CuratedImageDataset(loaded.data_dir, "test", eval_transform(loaded.image_size, normalize=False))
    return torch.stack([ds[i][0] for i in range(n)])


@torch.inference_mode()
def _eager_probs(run: Path, x: torch.Tensor) -> np.ndarray:
    return load_run(run, device="cpu").model(x).softmax(1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny", "resnet18"])
def test_onnx_export_matches_eager_at_any_batch(which: str, run_copy: Path, resnet_run: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    run = run_copy if which == "tiny" else resnet_run
    out = tmp_path / "m.onnx"
    info = export_run(run, "onnx", out)
    assert out.is_file() and json.loads((tmp_path / "m.onnx.json").read_text())["checkpoint"] == "best"
    assert info["parity"]["max_abs_prob_diff"] <= 1e-4 and "val images" in info["parity"]["images"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "images" and isinstance(inp.shape[0], str) and inp.type == "tensor(uint8)"
    x = _test_images(run)  # test images: not the ones the exporter checked
    ref = _eager_probs(run, x)
    for b in (1, 4, 11):  # batch sizes never seen at export
        got = np.concatenate(
            [torch.from_numpy(sess.run(None, {"images": x[i : i + b].numpy()})[0]).softmax(1).numpy()
             for i in range(0, len(x), b)]
        )  # fmt: skip
        assert np.abs(got - ref).max() <= 1e-4
    assert not np.allclose(ref, ref.mean(0))  # the comparison is over distinct, non-trivial predictions


@pytest.mark.slow
def test_torchscript_export_matches_eager(resnet_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    export_run(resnet_run, "torchscript", out)
    ts = torch.jit.load(str(out))
    x = _test_images(resnet_run, 5)
    with torch.inference_mode():
        got = torch.cat([ts(x[:2]), ts(x[2:])]).softmax(1).numpy()
    assert np.abs(got - _eager_probs(resnet_run, x)).max() <= 1e-4


def test_an_export_above_the_tolerance_is_not_written(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nsfw_lab.evaluate.export as ex

    monkeypatch.setattr(ex, "PARITY_TOLERANCE", -1.0)  # every export now "differs"
    with pytest.raises(NsfwLabError, match="differs from the eager model"):
        export_run(run_copy, "onnx")
    assert not any((run_copy / "export").iterdir())  # no model file, no sidecar, no staged file


def test_predict_runs_the_onnx_export_and_agrees_with_torch(run_copy: Path, small_curated: Path) -> None:
    folder = small_curated / "test"

    def rows(*extra: str) -> list[dict]:
        out = run_copy / f"pred{len(extra)}.csv"
        args = ["predict", "--run", str(run_copy), str(folder), "--no-progress", "--output", str(out), *extra]
        assert main(args) == 0
        return list(csv.DictReader(io.StringIO(out.read_text())))

    with pytest.raises(NsfwLabError, match="no export"):
        load_exported_run(run_copy)
    assert main(["export", "--run", str(run_copy), "--format", "onnx"]) == 0
    torch_rows, onnx_rows = rows(), rows("--engine", "onnx")
    assert len(torch_rows) == len(onnx_rows) > 20
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert a["path"] == b["path"] and a["prediction"] == b["prediction"] and a["decision"] == b["decision"]
        assert abs(float(a["prob_porn"]) - float(b["prob_porn"])) <= 1e-4


def test_a_stale_export_is_refused(run_copy: Path) -> None:
    export_run(run_copy, "onnx")
    assert load_exported_run(run_copy, "onnx").classes == load_run(run_copy).classes
    ck = torch.load(run_copy / "best.pt", weights_only=True)
    ck["best"]["score"] = -1.0
    torch.save(ck, run_copy / "best.pt")  # best.pt changed after the export
    with pytest.raises(NsfwLabError, match=r"older best\.pt"):
        load_exported_run(run_copy, "onnx")
    with pytest.raises(NsfwLabError, match="exported as onnx, not torchscript"):
        load_exported_run(run_copy, "torchscript", run_copy / "export" / "model.onnx")


def test_predict_through_torchscript_and_a_broken_record_is_one_line(
    run_copy: Path, small_curated: Path, capsys: pytest.CaptureFixture
) -> None:
    export_run(run_copy, "torchscript")
    files = sorted((small_curated / "test").rglob("*.jpg"))[:5]
    want = {r["path"]: r["prob_porn"] for r in predict(run_copy, files, device="cpu")}
    assert main(["predict", "--run", str(run_copy), "--engine", "torchscript", "--no-progress", *map(str, files)]) == 0
    out, err = capsys.readouterr()
    assert "note: torchscript export of best.pt, on the CPU" in err
    got = {r["path"]: float(r["prob_porn"]) for r in csv.DictReader(io.StringIO(out))}
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) <= 1e-4 for k in got)
    (run_copy / "export" / "model.torchscript.pt.json").write_text('{"format": "torchscript"}')
    assert main(["predict", "--run", str(run_copy), "--engine", "torchscript", str(files[0])]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {run_copy}/export/model.torchscript.pt.json: not an nsfw-lab export record; export again " \
        "(`nsfw-lab export`)"  # fmt: skip
