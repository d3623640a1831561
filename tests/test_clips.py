"""Many frames, one decision: animated inputs, frame folders, the k-of-n clip rule and the animated proxy."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_lab.cli import main
from nsfw_lab.config import CLASSES
from nsfw_lab.data.imageio import ImageLoadError, load_frames, sample_indices
from nsfw_lab.data.synth.clips import CLIP_FORMATS, ClipConfig, encode_clip, frame_motifs, generate_clips
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.clip_fit import choose_k
from nsfw_lab.evaluate.clips import clip_decision, clip_frames, clip_score
from nsfw_lab.evaluate.policy import Policy
from nsfw_lab.evaluate.predict import predict
from nsfw_lab.rundir import RunDir


def _frames(n: int, size: int = 40) -> list[Image.Image]:
    """``n`` distinct benign frames: a bar moving across a gradient."""
    out = []
    for k in range(n):
        a = np.zeros((size, size, 3), np.uint8)
        a[..., 2] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]
        a[:, (k * 3) % size : (k * 3) % size + 3, 0] = 255
        out.append(Image.fromarray(a))
    return out


@pytest.mark.parametrize("fmt", CLIP_FORMATS)
def test_animated_files_give_their_frames_sampled_with_a_cap(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(encode_clip(_frames(24), fmt))
    frames, index, n = load_frames(path, cap=6)
    assert n == 24 and index == sample_indices(24, 6) == [0, 5, 9, 14, 18, 23]
    assert all(f.mode == "RGB" and f.size == (40, 40) for f in frames)
    assert len({np.asarray(f).tobytes() for f in frames}) == 6, "the sampled frames are not distinct frames"
    still = tmp_path / "still.png"
    _frames(1)[0].save(still)
    assert load_frames(still, cap=6)[1:] == ([0], 1)
    pages = tmp_path / "pages.tiff"  # a multi-page TIFF is a document, not a clip: its first page, as before
    _frames(1)[0].save(pages, save_all=True, append_images=_frames(3)[1:])
    assert load_frames(pages, cap=6)[1:] == ([0], 1)


def test_a_gif_with_no_decodable_frame_is_a_one_line_error_row(tmp_path: Path, tiny_run: Path) -> None:
    good = encode_clip(_frames(4), "gif")
    header_only = tmp_path / "empty.gif"
    header_only.write_bytes(good[:13] + b";")  # header and screen descriptor, then the trailer: no frame
    cut = tmp_path / "cut.gif"
    with Image.open(io.BytesIO(good)) as im:
        start = im.tile[0][2]  # where the first frame's pixel data begins
    cut.write_bytes(good[: start + 2])  # its descriptor, then almost nothing
    for bad in (header_only, cut):
        with pytest.raises(ImageLoadError) as e:
            load_frames(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    ok = tmp_path / "ok.gif"
    ok.write_bytes(good)
    rows = predict(tiny_run, [header_only, ok, cut], device="cpu")
    assert [(r["path"], r["frame"]) for r in rows] == [(str(header_only), None), *[(str(ok), i) for i in range(4)],
                                                       (str(ok), "clip"), (str(cut), None)]  # fmt: skip
    for r in (rows[0], rows[-1]):
        assert r["error"] and r["prediction"] is None and "\n" not in r["error"]


def test_a_clip_row_sums_up_its_frames(tiny_run: Path, tmp_path: Path) -> None:
    gif = tmp_path / "c.gif"
    gif.write_bytes(encode_clip(_frames(30), "gif"))
    rows = predict(tiny_run, [gif], device="cpu")
    frames, clip = rows[:-1], rows[-1]
    assert [r["frame"] for r in frames] == sample_indices(30, 16) and clip["frame"] == "clip"
    for c in ("drawings", "porn"):
        assert clip[f"prob_{c}"] == pytest.approx(np.mean([r[f"prob_{c}"] for r in frames]), abs=1e-5)
    assert clip["decision"] == clip_decision([r["decision"] for r in frames], 1)  # no clip policy: k = 1
    assert clip["block_score"] == pytest.approx(max(r["block_score"] for r in frames), abs=1e-6)


def test_predict_clips_reads_each_folder_as_one_clip(tiny_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    clip = tmp_path / "frames"
    clip.mkdir()
    for k, f in enumerate(_frames(5)):
        f.save(clip / f"{k:03d}.png")
    (clip / "zz_broken.jpg").write_bytes(b"<html>not found</html>")
    assert main(["predict", "--run", str(tiny_run), str(clip), "--clips", "--max-frames", "3", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["frame"] for r in rows] == ["0", "2", "clip"]  # 3 of 6 files sampled; the broken last one skipped
    assert rows[-1]["decision"] in ("allow", "review", "block")
    frames, index, n = clip_frames(clip, 16)
    assert n == 6 and index == [0, 1, 2, 3, 4] and len(frames) == 5


def test_clip_decision_and_score_count_blocked_frames() -> None:
    d = ["allow", "block", "review", "block", "allow"]
    assert [clip_decision(d, k) for k in (1, 2, 3, 4)] == ["block", "block", "review", "allow"]
    assert clip_decision(["block"], 3) == "block"  # k is capped by the frame count
    s = [0.1, 0.9, 0.4, 0.7]
    assert [clip_score(s, k) for k in (1, 2, 3, 9)] == [0.9, 0.7, 0.4, 0.1]


def test_k_chosen_on_val_clips_holds_the_clip_false_positive_rate_on_fresh_clips() -> None:
    """Allowed clips whose 8 frames are each blocked with probability 0.1, block clips with 0.7: one blocked
    frame flags 57% of allowed clips; the k chosen on 400 val clips keeps fresh clips near the 2% target."""
    rng = np.random.default_rng(0)
    policy = Policy(clip_fpr=0.02)

    def clips(n: int) -> list[dict]:
        out = []
        for i in range(n):
            cls = CLASSES[i % 5]
            p = 0.7 if cls in policy.block else 0.1
            out.append({"class": cls, "decisions": ["block" if v else "allow" for v in rng.random(8) < p]})
        return out

    k, met = choose_k(clips(1000), list(CLASSES), policy, 8)
    theory = lambda kk, p: 1 - sum(math.comb(8, j) * p**j * (1 - p) ** (8 - j) for j in range(kk))  # noqa: E731
    assert met and k == 4  # P(>= 3 of 8) = 0.038 > 0.02 >= P(>= 4 of 8) = 0.005
    assert theory(1, 0.1) > 0.5 and theory(k - 1, 0.1) > 0.02 >= theory(k, 0.1)
    fresh = clips(5000)
    allowed = [c for c in fresh if c["class"] not in policy.block]
    fpr = np.mean([clip_decision(c["decisions"], k) == "block" for c in allowed])
    recall = np.mean([clip_decision(c["decisions"], k) == "block" for c in fresh if c["class"] in policy.block])
    assert fpr <= 0.02 and recall > 0.7
    assert choose_k([{"class": "neutral", "decisions": ["block"] * 8}], list(CLASSES), policy, 8) == (8, False)


def test_the_animated_proxy_shows_the_motif_in_some_frames_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        shown = frame_motifs("porn", 8, rng)
        assert 2 <= sum(m == "visible" for m in shown) <= 7 and set(shown) <= {"visible", "absent"}
    assert frame_motifs("neutral", 8, rng) == ["absent"] * 8
    assert set(frame_motifs("sexy", 8, rng)) == {"partial", "absent"}
    manifest = generate_clips(tmp_path / "clips", ClipConfig(per_class=3, frames=5, size=48), progress=False)
    rows = list(csv.DictReader(manifest.open()))
    assert len(rows) == 2 * 5 * 3 and {r["format"] for r in rows} == set(CLIP_FORMATS)
    for r in rows:
        with Image.open(tmp_path / "clips" / r["file"]) as im:
            assert im.n_frames == 5 and r["file"].startswith(f"{r['split']}/{r['class']}/")
        assert (r["motif_frames"].count("1") == 0) == (r["class"] in ("neutral", "drawings"))
    again = generate_clips(tmp_path / "again", ClipConfig(per_class=3, frames=5, size=48), progress=False)
    assert manifest.read_text() == again.read_text()
    assert (tmp_path / "clips" / rows[0]["file"]).read_bytes() == (tmp_path / "again" / rows[0]["file"]).read_bytes()


def test_calibrate_with_clips_writes_the_rule_predict_applies(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    generate_clips(tmp_path / "clips", ClipConfig(per_class=4, frames=6, size=48), progress=False)
    args = ["calibrate", "--run", str(run), "--clips", str(tmp_path / "clips"), "--bootstrap", "50",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "clips: block at" in capsys.readouterr().out
    fitted = json.loads(RunDir(run).clip_policy.read_text())
    assert fitted["chosen_on"] == "val" and 1 <= fitted["k"] <= 16 and fitted["frames_per_clip"] == 6
    assert fitted["val"]["n"] == fitted["test"]["n"] == 20
    if fitted["met_on_val"]:
        assert fitted["val"]["false_positive_rate"] <= 0.02 + 1e-9
    assert fitted["any_frame"]["val"]["false_positive_rate"] >= fitted["val"]["false_positive_rate"]
    clip = sorted((tmp_path / "clips" / "test" / "porn").iterdir())[0]
    rows = predict(run, [clip], device="cpu")
    assert rows[-1]["decision"] == clip_decision([r["decision"] for r in rows[:-1]], fitted["k"])
    files = RunDir(run)
    files.clip_policy.write_text(json.dumps({**fitted, "k": 6}))  # all 6 frames: the clip's score is their minimum
    rows = predict(run, [clip], device="cpu")
    assert rows[-1]["block_score"] == pytest.approx(min(r["block_score"] for r in rows[:-1]), abs=1e-6)
    assert rows[-1]["decision"] == clip_decision([r["decision"] for r in rows[:-1]], 6)
    files.clip_policy.write_text(json.dumps({**fitted, "thresholds": {"t_block": 0.1, "t_review": 0.1}}))
    with pytest.raises(NsfwLabError, match="fitted at other thresholds"):
        predict(run, [clip], device="cpu")
    files.clip_policy.write_text(json.dumps(fitted))
    assert main(["predict", "--run", str(run), str(clip), "--max-frames", "0"]) == 2
    assert "--max-frames must be >= 1" in capsys.readouterr().err
    before = files.policy.read_bytes()
    assert main([*args[:4], str(tmp_path / "nowhere"), *args[5:]]) == 2  # refused before anything is rewritten
    assert "no val clips" in capsys.readouterr().err and files.policy.read_bytes() == before
    from nsfw_lab.cards import model_card

    card = model_card(run, "tiny")
    assert f"Clips (animations): blocked at {fitted['k']} blocked frames" in card and "Risk-controlled" in card
    assert main([a for a in args if a not in ("--clips", str(tmp_path / "clips"))]) == 0
    assert not files.clip_policy.exists() and "removed" in capsys.readouterr().err  # stale once refitted
    assert "Clips (animations)" not in model_card(run, "tiny")
