"""The fast data path: cache decoders, GPU-style batch decoding (run here on the CPU), loader sizing and
``--compile``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nsfw_lab.data.dataset import CuratedImageDataset, loader_options, loader_workers
from nsfw_lab.data.decode import decode_file
from nsfw_lab.data.transforms import train_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.train.device_decode import DeviceDecoder, EncodedDataset, collate_encoded
from nsfw_lab.train.sampler import ResumableBatchSampler, SeededDataset


@pytest.mark.torchcodec
def test_torchcodec_and_pillow_decode_the_cache_to_the_same_pixels(small_curated: Path) -> None:
    ds = CuratedImageDataset(small_curated, "train")
    for p in ds.paths[:20]:
        a, b = decode_file(p, "torchcodec"), decode_file(p, "pil")
        assert a.dtype == torch.uint8 and a.shape[0] == 3 and torch.equal(a, b)


@pytest.fixture
def no_torchcodec(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """TorchCodec as an environment with its own PyTorch may have it: installed, but its library fails to load."""
    import sys

    from nsfw_lab.data import decode

    fake = Path(__file__).parent / "helpers" / "broken_torchcodec"
    for name in [m for m in sys.modules if m == "torchcodec" or m.startswith("torchcodec.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(fake))
    decode._torchcodec.cache_clear()
    decode._say_fallback.cache_clear()
    yield
    decode._torchcodec.cache_clear()
    decode._say_fallback.cache_clear()


def test_without_a_loadable_torchcodec_the_cache_decodes_with_pillow_said_once(  # type: ignore[no-untyped-def]
    small_curated: Path, no_torchcodec, capsys: pytest.CaptureFixture[str]
) -> None:
    from nsfw_lab.bench.measure import versions
    from nsfw_lab.data.decode import effective_decoder, torchcodec_problem

    problem = torchcodec_problem()
    assert problem.startswith(f"installed but does not load with torch {torch.__version__} (")
    assert "undefined symbol" in problem and "\n" not in problem
    ds = CuratedImageDataset(small_curated, "train")  # the default decoder
    assert ds.decoder == "pil" and CuratedImageDataset(small_curated, "val", decoder="gpu").decoder == "pil"
    a, b = decode_file(ds.paths[0], "torchcodec"), decode_file(ds.paths[0], "pil")
    assert torch.equal(a, b) and a.shape[0] == 3
    err = capsys.readouterr().err
    assert err.count("note: TorchCodec installed but does not load") == 1 and "decoding with Pillow" in err
    with pytest.raises(NsfwLabError, match="--decode gpu needs TorchCodec") as e:
        effective_decoder("gpu")
    assert "\n" not in str(e.value)
    assert versions()["torchcodec"].startswith("unused: installed but does not load")


def test_a_missing_torchcodec_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, no_torchcodec) -> None:  # type: ignore[no-untyped-def]
    import sys

    from nsfw_lab.data.decode import torchcodec_problem

    monkeypatch.setitem(sys.modules, "torchcodec", None)  # what `import` sees when it is not installed
    assert torchcodec_problem() == "not installed (pip install torchcodec, or the nsfw-lab[decode] extra)"


def test_a_broken_cache_file_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    for decoder in ("torchcodec", "pil"):
        with pytest.raises(NsfwLabError, match=r"x\.jpg: cannot decode the cached image") as e:
            decode_file(bad, decoder)
        assert "\n" not in str(e.value)
    with pytest.raises(NsfwLabError, match="unknown decoder"):
        CuratedImageDataset(tmp_path, "train", decoder="cv2")


@pytest.mark.torchcodec
def test_batch_decoding_on_the_device_reproduces_the_worker_path(small_curated: Path) -> None:
    """``--decode gpu`` decodes and augments in the main process; on the CPU device it must give exactly the
    tensors the workers give for the same (index, seed) items: same decoder output, same crops and flips."""
    tf = train_transform(40, scale=(0.2, 1.0), normalize=False)
    base = CuratedImageDataset(small_curated, "train")
    cpu, enc = SeededDataset(base, tf), EncodedDataset(base, tf)
    sampler = ResumableBatchSampler(len(base), 8, seed=4)
    sampler.set_epoch(2)
    decode = DeviceDecoder(tf, torch.device("cpu"), channels_last=True)
    for batch in list(sampler)[:3]:
        want = torch.stack([cpu[item][0] for item in batch])
        x, y, idx = decode(collate_encoded([enc[item] for item in batch]))
        assert torch.equal(x, want) and x.is_contiguous(memory_format=torch.channels_last)
        assert idx.tolist() == [i for i, _ in batch] and y.tolist() == [base.targets[i] for i, _ in batch]
    assert not torch.equal(want[0], cpu[(batch[0][0], batch[0][1] + 1)][0])  # another seed, another crop


@pytest.mark.torchcodec
def test_encoded_batches_cross_worker_processes_as_one_buffer(small_curated: Path) -> None:
    from nsfw_lab.train.data import batch_preparer, loader_over, train_val_datasets

    train, _ = train_val_datasets(small_curated, 40, (0.2, 1.0), (), "gpu")
    plain, _ = train_val_datasets(small_curated, 40, (0.2, 1.0), (), "torchcodec")
    sampler = ResumableBatchSampler(len(train), 8, seed=1)
    loader = loader_over(train, sampler, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert loader.num_workers == 1 and not loader.pin_memory  # the decoder reads the bytes from host memory
    prepare = batch_preparer(train, torch.device("cpu"), False)
    for k, (batch, items) in enumerate(zip(loader, sampler, strict=False)):
        data, lengths, *_ = batch
        assert data.dim() == 1 and int(lengths.sum()) == len(data)  # one buffer per batch, not one per image
        x, _, idx = prepare(batch)
        assert idx.tolist() == [i for i, _ in items] and torch.equal(x, torch.stack([plain[i][0] for i in items]))
        if k == 2:
            break
    assert batch_preparer(plain, torch.device("cpu"), False) is None


def test_a_corrupt_cache_file_in_a_worker_is_one_line_from_the_cli(
    small_curated: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    from nsfw_lab.cli import main

    data = tmp_path / "data"
    shutil.copytree(small_curated, data)
    for victim in CuratedImageDataset(data, "train").paths:  # every one: whichever the first batch reads
        victim.write_bytes(b"\xff\xd8\xff broken")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "baseline", "--image-size", "32",
            "--cnn-widths", "8", "--epochs", "1", "--batch-size", "200", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 2  # one batch of 200 of the 220 training images
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {data}/train/") and ": cannot decode the cached image" in err and "\n" not in err


def test_decoder_and_compile_changes_on_resume() -> None:
    from nsfw_lab.data.decode import DECODERS
    from nsfw_lab.train.config import DECODE, TrainConfig, resume_diff

    assert DECODE == DECODERS
    c = TrainConfig(data="d", out="o")
    assert resume_diff(c, TrainConfig(data="d", out="o", decode="pil")) == []  # identical pixels
    assert resume_diff(c, TrainConfig(data="d", out="o", decode="gpu")) == ["decode"]
    assert resume_diff(c, TrainConfig(data="d", out="o", compile=True)) == ["compile"]


@pytest.mark.cuda
@pytest.mark.torchcodec
def test_gpu_decoding_matches_the_worker_path_on_cuda(small_curated: Path) -> None:
    tf = train_transform(40, scale=(0.2, 1.0), normalize=False)
    base = CuratedImageDataset(small_curated, "train")
    cpu, enc = SeededDataset(base, tf), EncodedDataset(base, tf)
    batch = next(iter(ResumableBatchSampler(len(base), 8, seed=4)))
    x, _, _ = DeviceDecoder(tf, torch.device("cuda"))(collate_encoded([enc[item] for item in batch]))
    want = torch.stack([cpu[item][0] for item in batch])
    assert x.device.type == "cuda" and x.shape == want.shape and x.dtype == torch.uint8
    diff = (x.cpu().float() - want.float()).abs()
    assert diff.mean() < 3 and (diff > 40).float().mean() < 0.01  # same crops; nvJPEG and CUDA resize round apart


@pytest.mark.cuda
@pytest.mark.torchcodec
def test_training_with_gpu_decoding(small_curated: Path, tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    from nsfw_lab.train import fit

    r = fit(tiny_config(small_curated, tmp_path / "run", decode="gpu", device="cuda", workers=2, max_steps=4))
    assert r.history[0]["train_images"] == 4 * 16 and r.history[0]["val_images"] > 0


def test_loader_options_are_sized_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import nsfw_lab.data.dataset as dataset

    monkeypatch.delenv("NSFW_LAB_WORKERS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(dataset, "default_workers", lambda: 16)
    monkeypatch.setattr(dataset.os, "cpu_count", lambda: 16)
    assert loader_workers() == 8  # capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert loader_workers() == 3  # 16 cores / 4 processes, one left for each main process
    assert loader_options(None, "cuda") == {
        "num_workers": 3,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": 6,
    }  # fmt: skip  (about 16 batches in flight)
    assert loader_options(8, "cuda")["prefetch_factor"] == 2 and loader_options(1, "cuda")["prefetch_factor"] == 8
    assert loader_options(None, "cpu")["prefetch_factor"] == 2 and not loader_options(None, "cpu")["pin_memory"]
    assert loader_options(0, "cuda") == {
        "num_workers": 0, "pin_memory": True, "persistent_workers": False, "prefetch_factor": None,
    }  # fmt: skip
    monkeypatch.setattr(dataset.os, "cpu_count", lambda: 64)  # this process bound to 16 of 64 CPUs already
    assert loader_workers() == 8
    monkeypatch.setattr(dataset, "default_workers", lambda: 4)
    assert loader_workers() == 3  # its own 4 CPUs, not divided again by the 4 local processes
    monkeypatch.setenv("NSFW_LAB_WORKERS", "1")
    assert loader_workers() == 1 and loader_workers(5) == 5


def test_decoders_train_identically_and_gpu_decode_needs_cuda(small_curated: Path, tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    from nsfw_lab.train import fit

    a = fit(tiny_config(small_curated, tmp_path / "codec", max_steps=5))
    b = fit(tiny_config(small_curated, tmp_path / "pil", max_steps=5, decode="pil"))
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert json.loads((tmp_path / "pil" / "config.json").read_text())["config"]["decode"] == "pil"
    if not torch.cuda.is_available():
        with pytest.raises(NsfwLabError, match="--decode gpu needs CUDA"):
            fit(tiny_config(small_curated, tmp_path / "gpu", decode="gpu", device="cpu"))


@pytest.mark.slow
def test_compile_runs_the_same_function(small_curated: Path, tmp_path: Path, tiny_config) -> None:  # type: ignore[no-untyped-def]
    """(Dropout masks come from another generator under torch.compile, so the training trajectories are not
    compared; the compiled model's validation numbers are, against the plain model with the same weights.)"""
    from torch._dynamo.utils import counters

    from nsfw_lab.data.transforms import eval_transform
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.train import fit

    counters.clear()
    # fp32: on a CPU with AMX-BF16 `--amp auto` validates under bf16 autocast, which the fp32 check below is not
    comp = fit(tiny_config(small_curated, tmp_path / "comp", max_steps=6, compile=True, amp="off"))
    assert counters["stats"]["unique_graphs"] > 0  # the model did go through torch.compile
    fit(tiny_config(small_curated, tmp_path / "plain", max_steps=1))
    state = torch.load(tmp_path / "comp" / "last.pt", weights_only=True)["model"]
    ref = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)["model"]
    assert list(state) == list(ref)  # no "_orig_mod." prefixes: the checkpoint loads into the plain model
    run = load_run(tmp_path / "comp", "last", "cpu")  # a plain, uncompiled model
    ds = CuratedImageDataset(small_curated, "val", eval_transform(run.image_size, normalize=False))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor(ds.targets)
    with torch.inference_mode():
        loss = float(torch.nn.functional.cross_entropy(run.model(x), y))
    assert loss == pytest.approx(comp.history[-1]["val_loss"], abs=1e-4)
