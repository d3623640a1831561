"""The training engine: learning on the proxy, the two-stage recipe, gradient accumulation, exact resume
after SIGKILL, DDP with two Gloo processes, and one-line errors for bad arguments."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nsfw_lab.cli import main
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.scoring import evaluate_run
from nsfw_lab.train import fit, make_config
from nsfw_lab.train.config import resolve
from nsfw_lab.train.loop import Running, Step, train_epoch
from nsfw_lab.train.sampler import ResumableBatchSampler, SeededDataset

HELPER = Path(__file__).parent / "helpers" / "kill_train.py"


def _flags(**options: object) -> list[str]:
    """``nsfw-lab train`` flags from keyword options (``batch_size=16`` -> ``--batch-size 16``; lists spread)."""
    out: list[str] = []
    for k, v in options.items():
        out.append("--" + k.replace("_", "-"))
        out += [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    return out


TINY = [
    *_flags(model="baseline", image_size=32, cnn_widths=(8, 16), cnn_hidden=32, lr=0.05, workers=0),
    "--no-progress",
]


def _env() -> dict[str, str]:
    return {**os.environ, "NSFW_LAB_WORKERS": "0", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _train(*args: str, helper: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(HELPER)] if helper else [sys.executable, "-m", "nsfw_lab"]
    return subprocess.run([*cmd, "train", *args], env={**_env(), **(env or {})}, capture_output=True, text=True)


def _history(run: Path) -> list[dict]:
    drop = {"images_per_s"}  # the only field that depends on the clock
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in (run / "metrics.jsonl").open()]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_baseline_learns_the_proxy_well_above_chance(default_curated: Path, tmp_path: Path) -> None:
    cfg = make_config(
        data=str(default_curated),
        out=str(tmp_path / "run"),
        model="baseline",
        image_size=48,
        cnn_widths=(16, 32, 64),
        cnn_hidden=64,
        batch_size=32,
        epochs=5,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=1e-4,
        workers=0,
        save_every=0,
        progress=False,
    )
    r = fit(cfg)
    assert len(r.history) == 5 and r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.best["score"] == max(h["val_macro_f1"] for h in r.history)
    ev = evaluate_run(tmp_path / "run", "test", n_boot=200, progress=False)
    assert ev["accuracy"] >= 0.45 and ev["accuracy_ci95"][0] > 0.3  # chance is 0.2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["lr"] == 3e-3 and saved["model"]["name"] == "baseline"
    assert saved["data"]["manifest_sha256"] and saved["classes"] == ev["classes"]
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # tensors and plain types only
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "position", "ranks", "history"}


def test_two_stage_recipe_freezes_and_lowers_the_lr(small_curated: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    p = _train(
        *_flags(data=small_curated, out=out, batch_size=16, epochs=2, recipe="two-stage", refine_epochs=1),
        *TINY,
        *_flags(freeze_stages=1, refine_lr_factor=0.1, schedule="step"),
    )
    assert p.returncode == 0, p.stderr
    h = _history(out)
    assert [(r["stage_name"], r["epoch"]) for r in h] == [("full", 1), ("full", 2), ("refine", 1)]
    assert h[2]["lr"] == pytest.approx(0.005) and h[0]["lr"] == pytest.approx(0.05)
    last = _weights(out / "last.pt")
    best_stage1 = max(h[:2], key=lambda r: r["val_macro_f1"])
    # stage 2 started from stage 1's best weights with the first conv block frozen: those never moved
    ref = _train(
        *_flags(data=small_curated, out=tmp_path / "one"),
        *TINY,
        *_flags(batch_size=16, epochs=best_stage1["epoch"], schedule="step"),
    )
    assert ref.returncode == 0, ref.stderr
    stage1 = _weights(tmp_path / "one" / "last.pt")
    assert torch.equal(last["features.0.0.weight"], stage1["features.0.0.weight"])
    assert not torch.equal(last["features.1.0.weight"], stage1["features.1.0.weight"])


def _resume_args(data: Path) -> list[str]:
    return [
        *TINY,
        *_flags(data=data, batch_size=16, epochs=2, recipe="two-stage", refine_epochs=1, freeze_stages=1),
        *_flags(save_every=1, warmup_epochs=0.5),
    ]


@pytest.fixture(scope="module")
def resume_reference(small_curated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run the resumed ones must reproduce bit for bit."""
    ref = tmp_path_factory.mktemp("resume") / "ref"
    p = _train("--out", str(ref), *_resume_args(small_curated))
    assert p.returncode == 0, p.stderr
    return ref


@pytest.mark.parametrize(
    ("kills", "mode"),
    [((5,), "before-save"), ((9, 24), "before-rename"), ((14,), "before-save")],
    ids=["mid-epoch", "both-stages-mid-write", "at-epoch-end"],
)
def test_sigkill_and_resume_is_bit_identical(
    small_curated: Path, resume_reference: Path, tmp_path: Path, kills: tuple, mode: str
) -> None:
    args = _resume_args(small_curated)
    ref, run = resume_reference, tmp_path / "run"
    stages_killed = []
    for i, k in enumerate(kills):
        extra = ["--resume"] if i else []
        p = _train("--out", str(run), *args, *extra, helper=True, env={"KILL_AT": str(k), "KILL_MODE": mode})
        assert p.returncode == -9, p.stderr  # really killed
        stages_killed.append(torch.load(run / "last.pt", weights_only=True)["position"]["stage"])
    assert stages_killed == list(range(len(kills)))  # the second kill lands in the refine stage
    done = _train("--out", str(run), "--resume")  # the rest of the options come from config.json
    assert done.returncode == 0, done.stderr
    a, b = _weights(ref / "last.pt"), _weights(run / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a, b = _weights(ref / "best.pt"), _weights(run / "best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _history(ref) == _history(run)
    assert not list(run.glob(".*.tmp"))


def _torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, env={**_env(), **(env or {})}, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ddp_two_gloo_processes_cover_the_same_samples(small_curated: Path, tmp_path: Path) -> None:
    args = [*TINY, "--data", str(small_curated), "--epochs", "2"]
    single = _train("--out", str(tmp_path / "single"), "--batch-size", "16", *args)
    assert single.returncode == 0, single.stderr
    p = _torchrun("-m", "nsfw_lab", "train", "--out", str(tmp_path / "ddp"), "--batch-size", "8", *args)
    assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert cfg["resolved"]["world_size"] == 2 and cfg["resolved"]["effective_batch"] == 16
    s, d = _history(tmp_path / "single"), _history(tmp_path / "ddp")
    keys = ("step", "train_images", "train_unique_images", "train_coverage_sha", "val_images")
    assert [{k: r[k] for k in keys} for r in s] == [{k: r[k] for k in keys} for r in d]
    n_train = sum(1 for line in (small_curated / "manifest.csv").open() if line.startswith("train,"))
    assert s[0]["train_unique_images"] == s[0]["train_images"] == n_train // 16 * 16  # each image once
    assert p.stdout.count("best macro_f1") == 1  # only rank 0 reports

    # SIGKILL rank 0 mid-epoch (torchrun then stops rank 1), resume under torchrun: the same weights
    killed = _torchrun(str(HELPER), "train", "--out", str(tmp_path / "k"), "--batch-size", "8", "--save-every", "1",
                       *args, env={"KILL_AT": "9"})  # fmt: skip
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    resumed = _torchrun("-m", "nsfw_lab", "train", "--out", str(tmp_path / "k"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "ddp" / "last.pt"), _weights(tmp_path / "k" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _history(tmp_path / "ddp") == _history(tmp_path / "k")


def test_sampler_splits_global_batches_between_ranks() -> None:
    one = ResumableBatchSampler(50, 8, seed=3)
    two = [ResumableBatchSampler(50, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in (one, *two):
        s.set_epoch(1)
    for b1, r0, r1 in zip(one, two[0], two[1], strict=True):
        assert b1 == r0 + r1  # same images, same augmentation seeds, at every step
    resumed = ResumableBatchSampler(50, 8, seed=3)
    resumed.set_epoch(1, start_batch=4)
    assert list(resumed) == list(one)[4:]
    other = ResumableBatchSampler(50, 8, seed=3)
    other.set_epoch(2)
    assert list(other) != list(one)


def test_gradient_accumulation_matches_the_big_batch() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 4, 4), torch.randint(0, 5, (64,))
    ds = SeededDataset(TensorDataset(x, y), lambda t: t)

    def run(batch: int, accum: int) -> torch.Tensor:
        torch.manual_seed(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
        s = Step(
            opt,
            sched,
            torch.amp.GradScaler("cpu", enabled=False),
            nn.CrossEntropyLoss(),
            torch.device("cpu"),
            accum,
            None,
            False,
        )
        loader = DataLoader(ds, batch_sampler=ResumableBatchSampler(64, batch, seed=0))
        steps, _, images = train_epoch(
            model, loader, s, Running.zeros(64, torch.device("cpu")), 0, lambda k: False, "", False
        )
        assert steps == 64 // (batch * accum) and images == 64
        return model[1].weight.detach()

    assert torch.allclose(run(16, 1), run(8, 2), atol=1e-6)
    assert torch.allclose(run(16, 1), run(4, 4), atol=1e-6)


def test_effective_batch_and_linear_lr_scaling() -> None:
    c = make_config(data="d", out="o", batch_size=32, effective_batch=512, lr=0.1, lr_scale="linear")
    r = resolve(c, world_size=2, cuda=False, amx=False)
    assert r.accum == 8 and r.effective_batch == 512 and r.lr == pytest.approx(0.2)
    assert r.amp == "off" and r.channels_last is False
    g = resolve(make_config(data="d", out="o"), world_size=1, cuda=True, amx=False)
    assert g.amp == "bf16" and g.channels_last is True
    amx = resolve(make_config(data="d", out="o"), world_size=1, cuda=False, amx=True)  # a CPU with AMX-BF16
    assert amx.amp == "bf16" and amx.channels_last is True
    forced = resolve(make_config(data="d", out="o", amp="off", channels_last=False), 1, cuda=False, amx=True)
    assert forced.amp == "off" and forced.channels_last is False
    lite = resolve(make_config(data="d", out="o", model="efficientnet_lite0"), 1, cuda=False, amx=False)
    assert lite.amp == "off" and lite.channels_last is True  # depthwise convs gain from it on any CPU
    art = make_config(data="d", out="o", preset="article")
    assert (art.model, art.recipe, art.effective_batch, art.lr_steps) == ("resnet101", "two-stage", 512, (20, 40, 80))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "vgg"], "invalid choice: 'vgg'"),
        (["--image-size", "40", "--model", "inception_v3"], "below inception_v3's minimum of 75"),
        (["--data", "{missing}"], "not a curated dataset"),
        (["--data", "{raw}"], "not a curated dataset"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--accum", "2", "--effective-batch", "64"], "give --accum or --effective-batch, not both"),
        (["--batch-size", "5000"], "fewer than one batch"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--lr", "-1"], "--"),
        (["--amp", "fp16"] if not torch.cuda.is_available() else ["--lr", "-1"], "--"),
        (["--freeze-stages", "9", "--recipe", "two-stage"], "--freeze-stages 9: baseline has 4 stages"),
        (["--image-size", "8"], "below the baseline's minimum of 16 px"),
        (["--workers", "-1"], "--workers must be >= 0"),
        (["--momentum", "-1"], "--momentum must be >= 0"),
        (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
        (["--cnn-hidden", "0"], "--cnn-hidden must be >= 1"),
        (["--augment", "blur"], "argument --augment: invalid choice: 'blur'"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    small_curated: Path, small_proxy: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list, message: str
) -> None:
    base = {"--data": str(small_curated), "--out": str(tmp_path / "r"), "--model": "baseline", "--image-size": "32"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v.format(missing=tmp_path / "nope", raw=small_proxy)
    base = {"--workers": "0", "--epochs": "1", **base}
    argv = ["train", *[x for kv in base.items() for x in kv], "--no-progress"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "r").exists()  # checked before the run folder is made: fix the flag and rerun


def test_resume_with_a_different_config_is_refused(
    small_curated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "r")
    args = [*TINY, "--data", str(small_curated), "--batch-size", "16", "--epochs", "1", "--max-steps", "2"]
    assert main(["train", "--out", out, *args]) == 0
    with pytest.raises(NsfwLabError, match=r"different config \(lr\)"):
        fit(
            make_config(
                **{**json.loads((tmp_path / "r" / "config.json").read_text())["config"], "lr": 0.1, "resume": True}
            )
        )
    assert main(["train", "--out", out, *args]) == 2  # no --resume: refuses to overwrite
    assert main(["train", "--out", out, "--resume", "--lr", "0.05"]) == 0  # same value: fine
    # the same folders spelled differently (relative paths, from another working directory) are the same run
    monkeypatch.chdir(small_curated.parent)
    rel = ["--data", small_curated.name, "--out", os.path.relpath(out, small_curated.parent), "--resume"]
    assert main(["train", *rel]) == 0


def test_explicit_flags_beat_the_preset() -> None:
    c = make_config(data="d", out="o", preset="article", accum=2)
    assert c.accum == 2 and c.effective_batch is None and c.model == "resnet101"
    c = make_config(data="d", out="o", preset="article", effective_batch=256, lr=0.1)
    assert c.effective_batch == 256 and c.lr == 0.1 and c.optimizer == "sgd"


def test_an_effective_batch_beyond_the_epoch_is_warned(small_curated: Path, tmp_path: Path, tiny_config) -> None:
    out = tmp_path / "big"
    fit(tiny_config(small_curated, out, cnn_widths=(8,), cnn_hidden=8, effective_batch=4096))
    cfg = json.loads((out / "config.json").read_text())
    assert any("exceeds" in w for w in cfg["warnings"])
    assert json.loads((out / "metrics.jsonl").read_text())["step"] == 1


def test_inception_training_loss_adds_0_4_aux_and_eval_gives_logits() -> None:
    from nsfw_lab.models import build_model
    from nsfw_lab.train.loop import forward_loss

    torch.manual_seed(0)
    m = build_model("inception_v3", 5, "none").train()
    x, y = torch.rand(2, 3, 299, 299), torch.tensor([1, 3])
    ce = nn.CrossEntropyLoss()
    torch.manual_seed(1)
    loss, logits = forward_loss(m, x, y, ce)
    torch.manual_seed(1)  # same dropout mask
    main_out, aux_out = m(x)
    assert torch.allclose(loss, ce(main_out, y) + 0.4 * ce(aux_out, y)) and torch.equal(logits, main_out)
    m.eval()
    with torch.no_grad():
        loss_eval, logits_eval = forward_loss(m, x, y, ce)
    assert torch.allclose(loss_eval, ce(logits_eval, y))


def test_amp_bf16_accumulation_and_early_stopping_run(small_curated: Path, tmp_path: Path, tiny_config) -> None:
    out = tmp_path / "amp"
    cfg = tiny_config(small_curated, out, batch_size=8, accum=2, epochs=6, lr=1e-6, patience=1, amp="bf16",
                      channels_last=True)  # fmt: skip
    r = fit(cfg)
    saved = json.loads((out / "config.json").read_text())["resolved"]
    assert saved["amp"] == "bf16" and saved["effective_batch"] == 16 and saved["channels_last"] is True
    n_train = sum(1 for line in (small_curated / "manifest.csv").open() if line.startswith("train,"))
    assert r.history[0]["step"] == -(-(n_train // 8) // 2)  # optimiser steps = ceil(micro-batches / accum)
    # with a learning rate this small the val score cannot keep improving: patience 1 stops the run early
    assert len(r.history) < 6 and not r.history[-1]["best"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == len(r.history) and summary["best"]["score"] == r.best["score"]


def test_top_level_api() -> None:
    import nsfw_lab
    from nsfw_lab import predict, prepare  # names shared with submodules: the functions, not the modules

    assert inspect.isfunction(predict) and inspect.isfunction(prepare)
    for name in ("build_model", "freeze", "fit", "make_config", "evaluate_run", "predict", "load_run", "TrainConfig",
                 "export_run", "run_bench"):  # fmt: skip
        assert callable(getattr(nsfw_lab, name))


@pytest.mark.cuda
def test_on_cuda_the_defaults_are_bf16_and_channels_last_and_the_loss_falls(  # type: ignore[no-untyped-def]
    small_curated: Path, tmp_path: Path, tiny_config
) -> None:
    from nsfw_lab.train import fit

    r = fit(tiny_config(small_curated, tmp_path / "run", model="resnet18", image_size=64, epochs=4, batch_size=32,
                        optimizer="adamw", lr=1e-3, device="cuda"))  # fmt: skip
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["amp"] == "bf16" and resolved["channels_last"] is True
    losses = [h["train_loss"] for h in r.history]
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0], losses
