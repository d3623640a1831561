"""Shared fixtures: small generated proxies (session-scoped: generated once per test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsfw_lab.data.synth import SynthConfig, generate

SLOW_FIXTURES = {"smoke_report", "quick_bench"}  # the smoke study's notebooks (minutes), the quick bench


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that read the smoke study or the quick bench are ``slow`` (not in the fast subset); tests marked
    ``cuda`` skip without a CUDA device (``make gpu-check`` runs them on one), and ``torchcodec`` ones where it
    does not load (an existing-PyTorch install without a matching build)."""
    import torch

    from nsfw_lab.data.decode import torchcodec_problem

    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    problem = torchcodec_problem()
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if skip is not None and "cuda" in item.keywords:
            item.add_marker(skip)
        if problem and "torchcodec" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"needs TorchCodec, which is {problem}"))


@pytest.fixture(scope="session")
def small_proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 x 60 images at 64 px with the default structure (galleries, near-duplicates, conflicts, broken files)."""
    out = tmp_path_factory.mktemp("proxy") / "px"
    generate(out, SynthConfig(per_class=60, size=64, seed=3, corrupt_rate=0.04, conflict_rate=0.04), progress=False)
    return out


@pytest.fixture(scope="session")
def shortcut_proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 x 80 images at 64 px with the watermark shortcut on porn."""
    out = tmp_path_factory.mktemp("proxy") / "sc"
    generate(out, SynthConfig(per_class=80, size=64, seed=5, shortcut=True), progress=False)
    return out


@pytest.fixture(scope="session")
def default_curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default proxy (5 x 200, all defaults but a 96 px size), curated with the default settings."""
    from nsfw_lab.data.curate import CurateConfig, curate

    root = tmp_path_factory.mktemp("default")
    generate(root / "raw", SynthConfig(per_class=200, size=96, seed=0), progress=False)
    curate(root / "raw", root / "curated", CurateConfig(short_side=96), progress=False)
    return root / "curated"


@pytest.fixture(scope="session")
def small_curated(small_proxy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_proxy`` curated at 64 px (about 220 train, 30 val, 30 test images)."""
    from nsfw_lab.data.curate import CurateConfig, curate

    out = tmp_path_factory.mktemp("small") / "curated"
    curate(small_proxy, out, CurateConfig(short_side=64), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_config():  # type: ignore[no-untyped-def]
    """Factory of quick training configs: a small baseline CNN at 32 px, no workers, no progress bars."""
    from nsfw_lab.train import make_config

    def make(data: Path, out: Path, **overrides: object):  # type: ignore[no-untyped-def]
        base = dict(model="baseline", image_size=32, cnn_widths=(8, 16), cnn_hidden=32, batch_size=16, epochs=1,
                    lr=0.05, workers=0, save_every=0, progress=False)  # fmt: skip
        return make_config(data=str(data), out=str(out), **{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_run(small_curated: Path, tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:  # type: ignore[no-untyped-def]
    """A 2-epoch tiny CNN trained on ``small_curated`` (tests that write into a run copy it first)."""
    from nsfw_lab.train import fit

    out = tmp_path_factory.mktemp("eval") / "run"
    fit(tiny_config(small_curated, out, epochs=2))
    return out


@pytest.fixture(scope="session")
def quick_bench(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """``nsfw-lab bench --quick --run TINY_RUN`` run once as a user runs it; returns its output folder
    (bench.json, bench.md)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("bench")
    cmd = [str(Path(sys.executable).parent / "nsfw-lab"), "bench", "--quick", "--out", str(root / "out"),
           "--work", str(root / "work"), "--run", str(tiny_run)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "out"
