"""Grad-CAM wrapper: a known answer, every architecture, side effects undone, failures loud; error galleries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.explain import GradCam, error_pairs, overlay
from nsfw_lab.explain.cam import cam_layer, map_sizes
from nsfw_lab.explain.gallery import cam_mass_centre
from nsfw_lab.models import build_model, freeze
from nsfw_lab.models.wrapper import ModelSpec, NsfwModel


def _brightness_model() -> NsfwModel:
    """logit 0 = mean brightness after a ReLU, logit 1 = its negative: the evidence for class 0 is where the
    image is bright, and class 1 has no positive evidence anywhere."""
    conv = nn.Conv2d(3, 1, 1, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    head = nn.Linear(1, 2, bias=False)
    head.weight.data = torch.tensor([[1.0], [-1.0]])
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    spec = ModelSpec("toy", 2, 32, 8, "1", ((),), (), "none", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return NsfwModel(net, spec)


def test_cam_points_at_the_evidence_and_flags_an_empty_map() -> None:
    model = _brightness_model()
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, 2:8, 20:28] = 1.0  # bright patch top right
    x[1, :, 24:30, 2:10] = 1.0  # bottom left
    with GradCam(model) as cam:
        maps = cam(x, [0, 0])
    assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    for m, (rows, cols) in zip(maps, [(range(2, 8), range(20, 28)), (range(24, 30), range(2, 10))], strict=True):
        r, c = np.unravel_index(m.argmax(), m.shape)
        assert r in rows and c in cols
        assert m[rows.start : rows.stop, cols.start : cols.stop].sum() == pytest.approx(m.sum())  # all mass inside
    with GradCam(model) as cam, pytest.raises(NsfwLabError, match="empty or non-finite for 2 of 2 images"):
        cam(x, [1, 1])  # no positive evidence: an all-zero CAM is an error, not a figure
    with GradCam(model) as cam:  # ... unless the caller expects it (the true class of a confident mistake)
        assert not cam(x, [1, 1], allow_flat=True).any()


def test_a_probability_cam_sees_evidence_that_works_by_suppressing_other_classes() -> None:
    """Class 0's logit is constant and brightness lowers class 1's: the patch raises P(class 0) only by
    suppression. A logit CAM of class 0 is flat; a probability CAM finds the patch."""
    model = _brightness_model()
    model.net[-1].weight.data = torch.tensor([[0.0], [-1.0]])
    x = torch.zeros(1, 3, 32, 32)
    x[0, :, 20:28, 4:12] = 1.0
    with GradCam(model) as cam:
        assert not cam(x, [0], allow_flat=True).any()
    with GradCam(model, target="probability") as cam:
        m = cam(x, [0])[0]
    assert m[20:28, 4:12].sum() == pytest.approx(m.sum())
    with pytest.raises(ValueError, match="logit or probability"):
        GradCam(model, target="softmax")


@pytest.mark.parametrize(("name", "size", "layer"), [("baseline", 64, "features.3.-2"), ("resnet18", 64, "layer2"),
                                                     ("resnet18", 128, "layer3"), ("resnet18", 224, "layer4.-1"),
                                                     ("inception_v3", 96, "Mixed_5d"),
                                                     ("inception_v3", 299, "Mixed_7c"),
                                                     ("efficientnet_lite0", 112, "blocks.4")])  # fmt: skip
def test_every_architecture_gets_a_layer_with_a_real_map(name: str, size: int, layer: str) -> None:
    torch.manual_seed(0)  # fixed weights and images: the same maps on every run
    model = build_model(name, 5, "none", size).eval()
    chosen = cam_layer(model, size)
    assert chosen == layer and min(map_sizes(model, [chosen], size)[chosen]) >= 7
    x = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        top = model(x).argmax(1).tolist()  # an untrained net may have no positive evidence for other classes
    with GradCam(model, chosen) as cam:
        maps = cam(x, top)
    assert maps.shape == (3, size, size) and np.isfinite(maps).all()
    assert all(m.max() - m.min() > 1e-6 for m in maps)  # one target per image: none left empty


def test_side_effects_are_undone_under_a_frozen_backbone_and_no_grad() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 5, "none", 64)
    freeze(model, 5)  # every stage frozen: layer4's parameters have requires_grad False
    model.train()
    layer = model.net.layer3
    before = [p.requires_grad for p in layer.parameters()]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.eval()
        top = model(x).argmax(1).tolist()
        model.train()
    with torch.no_grad(), GradCam(model, "layer3") as cam:
        maps = cam(x, top)
        assert model.training is False  # grad-cam's eval() side effect, while inside
    assert maps.shape == (2, 64, 64)
    assert model.training is True and [p.requires_grad for p in layer.parameters()] == before
    assert not layer._forward_hooks and not any(m._forward_hooks for m in model.modules())  # hooks released
    assert all(p.grad is None or not p.grad.any() for p in model.parameters() if not p.requires_grad)


def test_misuse_is_refused() -> None:
    model = _brightness_model()
    with GradCam(model) as cam, pytest.raises(ValueError, match="one class per image: 2 images, 1 classes"):
        cam(torch.rand(2, 3, 32, 32), [0])
    with pytest.raises(RuntimeError, match="with block"):
        GradCam(model)(torch.rand(1, 3, 32, 32), [0])


def test_overlay_accepts_uint8_and_float_chw_and_hwc() -> None:
    cam = np.zeros((8, 8), np.float32)
    cam[2, 2] = 1
    a = overlay(torch.full((3, 8, 8), 255, dtype=torch.uint8), cam)
    b = overlay(np.ones((8, 8, 3), np.float32), cam)
    assert a.shape == b.shape == (8, 8, 3) and a.min() >= 0 and a.max() <= 1 and np.allclose(a, b, atol=1 / 255)


def test_error_pairs_put_known_confusions_first_and_sort_by_confidence() -> None:
    def row(label: str, pred: str, p: float) -> dict[str, str]:
        probs = {f"prob_{c}": "0.0" for c in ("drawings", "hentai", "neutral", "porn", "sexy")}
        return {"path": f"{label}{p}", "label": label, "prediction": pred, **probs, f"prob_{pred}": str(p)}

    preds = [row("neutral", "sexy", 0.6), row("neutral", "sexy", 0.7), row("neutral", "sexy", 0.5),
             row("hentai", "drawings", 0.55), row("porn", "porn", 0.9), row("sexy", "porn", 0.8),
             row("sexy", "porn", 0.95), row("drawings", "neutral", 0.4)]  # fmt: skip
    pairs = error_pairs(preds, per_pair=2)
    assert list(pairs) == [("sexy", "porn"), ("hentai", "drawings"), ("neutral", "sexy"), ("drawings", "neutral")]
    assert [r["confidence"] for r in pairs[("neutral", "sexy")]] == [0.7, 0.6]
    assert pairs[("neutral", "sexy")][0]["count"] == 3 and pairs[("sexy", "porn")][0]["confidence"] == 0.95


def test_cam_mass_centre() -> None:
    cams = np.zeros((2, 20, 20))
    cams[0, 10, 10] = 1  # centre
    cams[1, 0, 0] = 1  # corner
    cams[1, 10, 10] = 3
    assert cam_mass_centre(cams) == pytest.approx((1 + 0.75) / 2)
