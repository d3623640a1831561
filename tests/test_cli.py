"""The ``nsfw-lab`` command: one-line errors, paths/profiles, image checks, and ``prepare``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsfw_lab import config
from nsfw_lab.errors import NsfwLabError

BIN = Path(sys.executable).parent / "nsfw-lab"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env)


def test_console_script_is_installed() -> None:
    r = run("--version")
    assert r.returncode == 0 and "nsfw-lab" in r.stdout


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    for args in (
        ("curate", str(tmp_path / "missing"), str(tmp_path / "out")),
        ("synth", str(tmp_path / "x"), "--per-class", "0"),
    ):
        r = run(*args)
        assert r.returncode == 2
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")


def test_check_reports_good_and_bad_files(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "ok.png")
    (tmp_path / "bad.jpg").write_bytes(b"<html>gone</html>")
    r = run("check", str(tmp_path / "ok.png"), str(tmp_path / "bad.jpg"))
    assert r.returncode == 2
    assert "ok    " in r.stdout and "bad.jpg: an HTML page, not an image [not_an_image]" in r.stdout


def test_paths_lists_the_profiles() -> None:
    info = json.loads(run("paths").stdout)
    assert set(info["profiles"]) == {"smoke", "cpu", "gpu"}
    assert info["profiles"]["cpu"]["per_class"] == config.PROFILES["cpu"].per_class


def test_prepare_makes_the_curated_proxy_and_is_a_noop_when_current(tmp_path: Path) -> None:
    env = {**os.environ, "NSFW_LAB_DATA": str(tmp_path / "data"), "NSFW_LAB_REPORTS": str(tmp_path / "reports")}
    r = run("prepare", "--profile", "smoke", env=env)
    assert r.returncode == 0, r.stderr
    curated = tmp_path / "data" / "processed" / "proxy-smoke"
    report = json.loads((curated / "curation_report.json").read_text())
    assert report["leakage_check"]["passed"] and report["kept"] > 150
    assert (tmp_path / "data" / "raw" / "proxy-smoke" / "manifest.csv").is_file()
    assert (tmp_path / "reports" / "metrics" / "data_proxy-smoke.json").is_file()
    stamp = (curated / "curation_report.json").stat().st_mtime_ns
    r2 = run("prepare", "--profile", "smoke", env=env)
    assert r2.returncode == 0 and (curated / "curation_report.json").stat().st_mtime_ns == stamp
    # an existing curated folder given as --data is used as it is
    r3 = run("prepare", "--profile", "smoke", "--data", str(curated), env=env)
    assert r3.returncode == 0 and "leakage check passed" in r3.stdout


def test_profiles_are_consistent() -> None:
    for p in config.PROFILES.values():
        assert p.short_side >= p.image_size and p.proxy_px >= p.short_side
    assert config.get_profile("smoke").max_steps is not None
    with pytest.raises(NsfwLabError, match="smoke, cpu, gpu"):
        config.get_profile("laptop")


def test_top_level_api_is_importable() -> None:
    import nsfw_lab

    for name in nsfw_lab.__all__:
        assert getattr(nsfw_lab, name) is not None, name


def test_invalid_options_are_one_line_errors(tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    Image.new("RGB", (40, 40), (9, 9, 9)).save(src / "x.png")
    for args in (
        ("curate", str(tmp_path / "src"), str(tmp_path / "o"), "--val", "0.6", "--test", "0.5"),
        ("curate", str(tmp_path / "src"), str(tmp_path / "o"), "--short-side", "0"),
        ("synth", str(tmp_path / "s"), "--occlusion", "0.9", "0.1"),
        ("synth", str(tmp_path / "s"), "--motif-contrast", "5"),
    ):
        r = run(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, args
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()


def test_prepare_recurates_when_the_source_changes(tmp_path: Path) -> None:
    from PIL import Image

    rng = __import__("numpy").random.default_rng(0)
    src = tmp_path / "mydata"
    for c in ("x", "y"):
        (src / c).mkdir(parents=True)
        for i in range(12):
            arr = rng.integers(0, 255, (8, 8, 3), dtype="uint8")
            Image.fromarray(arr).resize((64, 64)).save(src / c / f"{i}.png")
    env = {**os.environ, "NSFW_LAB_DATA": str(tmp_path / "data"), "NSFW_LAB_REPORTS": str(tmp_path / "rep")}
    assert run("prepare", "--profile", "smoke", "--data", str(src), env=env).returncode == 0
    report = tmp_path / "data" / "processed" / "mydata-smoke" / "curation_report.json"
    assert json.loads(report.read_text())["kept"] == 24
    arr = rng.integers(0, 255, (8, 8, 3), dtype="uint8")
    Image.fromarray(arr).resize((64, 64)).save(src / "x" / "new.png")
    r = run("prepare", "--profile", "smoke", "--data", str(src), env=env)
    assert r.returncode == 0 and json.loads(report.read_text())["kept"] == 25


def test_the_cli_reference_is_generated_from_the_parser_and_current() -> None:
    from nsfw_lab.cli import REFERENCE, build_parser, reference_markdown

    text = reference_markdown()
    assert REFERENCE.read_text() == text, "docs/cli.md is stale: run `make docs` and commit it"
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():  # every command and every one of its flags is in the reference
        section = text.split(f"## nsfw-lab {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in ("-h", "--help") or f"`{flag}`" in section, (name, flag)
    assert str(config.PROJECT_ROOT) not in text  # nothing machine-specific


def test_every_stage_registers_its_own_commands() -> None:
    """One CLI rule: each stage's ``add_parser`` adds its commands; the top-level parser only orders them."""
    import argparse

    from nsfw_lab import cards
    from nsfw_lab.bench import cli as bench
    from nsfw_lab.course import cli as course
    from nsfw_lab.data import cli as data
    from nsfw_lab.evaluate import cli as evaluate
    from nsfw_lab.train import cli as train

    owners = {}
    for stage in (data, train, evaluate, cards, bench, course):
        sub = argparse.ArgumentParser().add_subparsers()
        stage.add_parser(sub)
        owners.update(dict.fromkeys(sub.choices, stage.__name__))
    assert owners == {
        "synth": "nsfw_lab.data.cli", "curate": "nsfw_lab.data.cli", "download": "nsfw_lab.data.cli",
        "prepare": "nsfw_lab.data.cli", "check": "nsfw_lab.data.cli", "train": "nsfw_lab.train.cli",
        "evaluate": "nsfw_lab.evaluate.cli", "predict": "nsfw_lab.evaluate.cli", "export": "nsfw_lab.evaluate.cli",
        "calibrate": "nsfw_lab.evaluate.cli", "robustness": "nsfw_lab.evaluate.cli",
        "cards": "nsfw_lab.cards", "bench": "nsfw_lab.bench.cli",
        "gpu-check": "nsfw_lab.bench.cli", "study": "nsfw_lab.course.cli", "site": "nsfw_lab.course.cli",
    }  # fmt: skip
