"""The modern backbone ladder (ConvNeXt-T, EfficientNetV2-S, Swin-T from torchvision): the same spec as every
other model (input size, freezable stages, head, Grad-CAM layer; Swin's channels-last maps reshaped for
Grad-CAM), ImageNet weights through the same files and messages, and each one trained a few steps by the
engine, exported to ONNX with parity and explained with non-flat maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models as tvm

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.models import build_model, freeze, zoo
from nsfw_lab.models.wrapper import get_submodule

LADDER = {"convnext_tiny": tvm.ConvNeXt, "efficientnet_v2_s": tvm.EfficientNet, "swin_t": tvm.SwinTransformer}


@pytest.mark.parametrize("name", list(LADDER))
def test_the_spec_names_real_stages_a_linear_head_and_a_cam_layer(name: str) -> None:
    m = build_model(name, 5, "none", 64)
    assert isinstance(m.net, LADDER[name]) and len(m.spec.stages) == 5
    heads = [get_submodule(m.net, h) for h in m.spec.head]
    assert all(isinstance(h, nn.Linear) and h.out_features == 5 for h in heads)
    names = [n for stage in m.spec.stages for n in stage]
    assert len(names) == len(set(names)) == len(m.net.features)  # every feature block in exactly one stage
    frozen = freeze(m, 2)
    assert frozen == [*m.spec.stages[0], *m.spec.stages[1]]
    assert not any(p.requires_grad for n in frozen for p in get_submodule(m.net, n).parameters())
    assert all(p.requires_grad for h in heads for p in h.parameters())
    out = get_submodule(m.net, m.spec.target_layer)
    seen: list[torch.Size] = []
    hook = out.register_forward_hook(lambda _m, _i, o: seen.append(o.shape))
    m.eval()(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    hook.remove()
    channels = seen[0][-1] if m.spec.map_layout == "NHWC" else seen[0][1]
    assert channels == heads[0].in_features  # the CAM layer feeds the head: it is the last feature map
    assert m.spec.map_layout == ("NHWC" if name == "swin_t" else "NCHW")


@pytest.mark.parametrize("name", list(LADDER))
def test_imagenet_weights_come_from_torchvisions_file_and_keep_everything_but_the_head(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoo, "checkpoint_dir", lambda: tmp_path)
    monkeypatch.setattr(zoo, "DOWNLOAD_TIMEOUT_S", 1)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    expected = zoo.imagenet_file(name)
    with pytest.raises(NsfwLabError, match=rf"ImageNet weights for {name} are not available: expected "
                       rf"{expected.name} in {tmp_path}") as e:  # fmt: skip
        build_model(name, 5, "imagenet")
    assert "\n" not in str(e.value)
    torch.manual_seed(1)
    reference = getattr(tvm, name)(weights=None)  # 1000 classes, as torchvision's file is
    torch.save(reference.state_dict(), expected)
    m = build_model(name, 5, "imagenet")
    assert m.spec.weights == "imagenet"
    ref, got = reference.state_dict(), m.net.state_dict()
    head_keys = {k for k in got if any(k.startswith(f"{h}.") for h in m.spec.head)}
    assert head_keys and all(got[k].shape[0] == 5 for k in head_keys)
    assert all(torch.equal(got[k], ref[k]) for k in got if k not in head_keys)


@pytest.fixture(scope="module", params=list(LADDER))
def ladder_run(request, small_curated: Path, tmp_path_factory: pytest.TempPathFactory, tiny_config):  # type: ignore[no-untyped-def]
    from nsfw_lab.train import fit

    out = tmp_path_factory.mktemp("ladder") / request.param
    r = fit(tiny_config(small_curated, out, model=request.param, image_size=64, batch_size=8, max_steps=3,
                        optimizer="adamw", lr=1e-3, recipe="two-stage", freeze_stages=2, refine_epochs=1))  # fmt: skip
    return request.param, out, r


@pytest.mark.slow
def test_each_trains_exports_to_onnx_with_parity_and_gets_real_maps(ladder_run) -> None:  # type: ignore[no-untyped-def]
    from nsfw_lab.evaluate.export import PARITY_TOLERANCE, export_run
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.explain.cam import GradCam, cam_layer

    name, out, r = ladder_run
    assert [h["stage_name"] for h in r.history] == ["full", "refine"]
    assert all(np.isfinite(h["train_loss"]) and h["train_images"] == 3 * 8 for h in r.history)
    info = export_run(out, "onnx")
    assert info["model"] == name and info["parity"]["max_abs_prob_diff"] <= PARITY_TOLERANCE
    run = load_run(out, device="cpu")
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with GradCam(run.model, cam_layer(run.model, 64)) as cam:
        maps = cam(x, [0, 1, 2], allow_flat=True)
    assert maps.shape == (3, 64, 64) and np.isfinite(maps).all()
    assert all(m.max() > m.min() for m in maps)  # a map with structure, not a constant
