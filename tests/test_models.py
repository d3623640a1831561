"""Models: every architecture builds and trains a step on CPU; weights from files, the offline ImageNet
message, InceptionV3's flags, freezing, the spec each model carries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.models import ConvPoolFC, build_model, count_parameters, freeze, imagenet_file, layer_table
from nsfw_lab.models.zoo import INCEPTION_AUX_MIN

SMALL = {"baseline": 32, "resnet18": 32, "resnet50": 32, "resnet101": 32, "inception_v3": 75, "efficientnet_lite0": 32,
         "convnext_tiny": 32, "efficientnet_v2_s": 32, "swin_t": 32}  # fmt: skip


@pytest.mark.parametrize("name", list(SMALL))
def test_every_model_runs_forward_and_backward_on_cpu(name: str) -> None:
    size = SMALL[name]
    torch.manual_seed(0)
    m = build_model(name, 5, "none", size)
    m.train()
    x = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)  # uint8 in, normalised inside
    out = m(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 5)
    logits.sum().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    m.eval()
    with torch.no_grad():
        assert m(x.float() / 255).shape == (2, 5)
    assert m.spec.input_size == size and m.spec.num_classes == 5
    assert isinstance(m.target_layer, nn.Module)


def test_default_sizes_and_target_layers() -> None:
    r50 = build_model("resnet50", 5)
    assert r50.spec.input_size == 224 and r50.target_layer is r50.net.layer4[-1]
    inc = build_model("inception_v3", 5)
    assert inc.spec.input_size == 299 and inc.target_layer is inc.net.Mixed_7c
    assert inc.spec.mean == (0.485, 0.456, 0.406)


def test_inception_trains_with_aux_loss_at_299_and_without_below() -> None:
    inc = build_model("inception_v3", 5, "none", INCEPTION_AUX_MIN).train()
    out = inc(torch.rand(2, 3, 299, 299))
    assert isinstance(out, tuple) and out[1].shape == (2, 5)  # (logits, aux_logits)
    assert inc.spec.arch_kwargs == {"transform_input": False, "aux_logits": True}
    assert inc.eval()(torch.rand(1, 3, 299, 299)).shape == (1, 5)  # plain logits in eval
    small = build_model("inception_v3", 5, "none", 96)
    assert small.net.AuxLogits is None and small.spec.arch_kwargs["aux_logits"] is False


def test_image_size_below_minimum_is_an_error() -> None:
    with pytest.raises(NsfwLabError, match="minimum of 75"):
        build_model("inception_v3", 5, "none", 64)
    with pytest.raises(NsfwLabError, match="unknown model 'vgg'"):
        build_model("vgg", 5)


def test_imagenet_offline_names_the_expected_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))

    def offline(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(NsfwLabError) as e:
        build_model("resnet50", 5, "imagenet")
    msg = str(e.value)
    assert "resnet50-11ad3fa6.pth" in msg and "$TORCH_HOME/hub/checkpoints/" in msg
    assert str(tmp_path / "th" / "hub" / "checkpoints") in msg and "\n" not in msg
    assert imagenet_file("inception_v3").name == "inception_v3_google-0cc3c7bd.pth"


def _fake_imagenet_file(name: str, builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw) -> dict:
    """Write a randomly initialised 1000-class state dict where torchvision would cache the real one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    torch.manual_seed(1)
    state = builder(weights=None, num_classes=1000, **kw).state_dict()
    path = imagenet_file(name)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_imagenet_weights_from_the_cache_get_a_new_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _fake_imagenet_file("resnet18", tvm.resnet18, tmp_path, monkeypatch)
    m = build_model("resnet18", 5, "imagenet", 64)
    assert torch.equal(m.state_dict()["layer3.0.conv1.weight"], state["layer3.0.conv1.weight"])
    assert m.net.fc.out_features == 5 and m.spec.weights == "imagenet"


def test_inception_imagenet_weights_set_transform_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_imagenet_file("inception_v3", tvm.inception_v3, tmp_path, monkeypatch, aux_logits=True, init_weights=False)
    m = build_model("inception_v3", 5, "imagenet")
    assert m.net.transform_input is True and m.net.aux_logits is True
    assert m.net.fc.out_features == 5 and m.net.AuxLogits.fc.out_features == 5
    assert m.spec.arch_kwargs["transform_input"] is True
    scratch = build_model("inception_v3", 5, "none")
    assert scratch.net.transform_input is False  # from scratch: no Google re-normalisation


def test_local_state_dict_with_another_head_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = tvm.resnet18(weights=None, num_classes=1000)
    f = tmp_path / "r18.pth"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, f)  # a DataParallel-style file
    m = build_model("resnet18", 5, str(f), 64)
    assert torch.equal(m.state_dict()["conv1.weight"], src.state_dict()["conv1.weight"])
    assert m.net.fc.weight.shape == (5, 512)
    # a 5-class file keeps its head
    f5 = tmp_path / "r18-5.pth"
    torch.save(m.state_dict(), f5)
    again = build_model("resnet18", 5, str(f5), 64)
    assert torch.equal(again.net.fc.weight, m.net.fc.weight)


def test_bad_weight_files_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(NsfwLabError, match=r"junk\.pt: not a loadable weights file"):
        build_model("resnet18", 5, str(junk))
    with pytest.raises(NsfwLabError, match=r"missing\.pt: weight file not found"):
        build_model("resnet18", 5, str(tmp_path / "missing.pt"))
    other = tmp_path / "r50.pth"
    torch.save(tvm.resnet50(weights=None).state_dict(), other)
    with pytest.raises(NsfwLabError, match=r"r50\.pth: shape mismatch"):
        build_model("resnet18", 5, str(other))

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("executed",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)  # weights_only=True refuses arbitrary objects
    with pytest.raises(NsfwLabError, match=r"evil\.pt: not a loadable weights file"):
        build_model("resnet18", 5, str(evil))


def test_freeze_resnet_stages_and_batchnorm_held_in_eval() -> None:
    m = build_model("resnet18", 5, "none", 32)
    total = count_parameters(m)
    names = freeze(m, 3)
    assert names == ["conv1", "bn1", "layer1", "layer2"]
    assert not any(p.requires_grad for p in m.net.layer2.parameters())
    assert all(p.requires_grad for p in m.net.layer3.parameters()) and m.net.fc.weight.requires_grad
    m.train()
    assert not m.net.bn1.training and not m.net.layer2[0].bn1.training and m.net.layer3[0].bn1.training
    frozen_stats = m.net.layer1[0].bn1.running_mean.clone()
    m(torch.rand(4, 3, 32, 32))
    assert torch.equal(m.net.layer1[0].bn1.running_mean, frozen_stats)  # eval-mode BN: stats fixed
    assert count_parameters(m, trainable_only=True) < total
    freeze(m, 0)
    assert count_parameters(m, trainable_only=True) == total and m.net.bn1.training
    with pytest.raises(ValueError, match=r"0\.\.5"):
        freeze(m, 6)


def test_freeze_inception_blocks() -> None:
    m = build_model("inception_v3", 5, "none", 96)
    assert freeze(m, 2)[-1] == "Mixed_5d"
    assert not any(p.requires_grad for p in m.net.Mixed_5d.parameters())
    assert all(p.requires_grad for p in m.net.Mixed_6a.parameters())


def test_baseline_shapes_and_parameter_counts_are_computable() -> None:
    net = ConvPoolFC(5, image_size=64, widths=(32,), hidden=16, batchnorm=False, dropout=0.0)  # the article's CNN
    conv = 3 * 32 * 9 + 32
    fc1 = 32 * 32 * 32 * 16 + 16  # 64 px -> one pool -> 32 x 32 x 32 features
    fc2 = 16 * 5 + 5
    assert count_parameters(net) == conv + fc1 + fc2
    m = build_model("baseline", 5, "none", 64, widths=(16, 32), hidden=24)
    rows = layer_table(m, 64)
    shapes = {r["layer"]: r["output"] for r in rows}
    assert shapes["net.features"] == (32, 16, 16) and rows[-1]["output"] == (5,)
    assert m.spec.stages == (("features.0",), ("features.1",))
    assert isinstance(m.target_layer, nn.ReLU)


def test_receptive_field_of_the_baseline_by_hand() -> None:
    from nsfw_lab.models.summary import receptive_field

    rows = receptive_field(build_model("baseline", 5, "none", 64))
    # conv3: +2, pool2: +1 (then stride x2) per block: 3, 4 | 8, 10 | 18, 22 | 38, 46
    assert [r["receptive_field"] for r in rows] == [3, 4, 8, 10, 18, 22, 38, 46]
    assert rows[-1]["stride"] == 16
