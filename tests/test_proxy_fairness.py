"""The default proxy is a fair proxy: a small CNN learns it well above chance but not perfectly, and its
main confusions are the ones reported on the real data (porn<->sexy, hentai<->drawings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix
from torch import nn

from nsfw_lab.data.dataset import CuratedImageDataset
from nsfw_lab.data.transforms import eval_transform

PX = 64


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default proxy at 5 x 400 (enough galleries in val+test for stable confusion counts)."""
    from nsfw_lab.data.curate import CurateConfig, curate
    from nsfw_lab.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("probe")
    generate(root / "raw", SynthConfig(per_class=400, size=80, seed=1), progress=False)
    curate(root / "raw", root / "curated", CurateConfig(short_side=80, val=0.15, test=0.15), progress=False)
    return root / "curated"


def _tensors(root: Path, splits: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    xs, ys = [], []
    for s in splits:
        ds = CuratedImageDataset(root, s, eval_transform(PX))
        for i in range(len(ds)):
            x, y = ds[i]
            xs.append(x)
            ys.append(y)
    return torch.stack(xs), torch.tensor(ys), ds.classes


def _small_cnn() -> nn.Module:
    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(3, 16),
        block(16, 32),
        block(32, 64),
        block(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 5),
    )


@pytest.mark.slow
def test_small_cnn_learns_the_default_proxy_with_the_expected_confusions(probe_data: Path) -> None:
    torch.manual_seed(0)
    xtr, ytr, classes = _tensors(probe_data, ("train",))
    xte, yte, _ = _tensors(probe_data, ("val", "test"))
    net, epochs, bs = _small_cnn(), 15, 32
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * ((len(xtr) + bs - 1) // bs))
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(perm), bs):
            idx = perm[i : i + bs]
            xb = xtr[idx]
            flip = torch.rand(len(idx)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = nn.functional.cross_entropy(net(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = net(xte).argmax(1)
    acc = float((pred == yte).float().mean())
    cm = confusion_matrix(yte, pred, labels=range(5))
    sym = cm + cm.T
    errors = int(cm.sum() - np.trace(cm))
    k = {c: i for i, c in enumerate(classes)}
    pair = {
        name: int(sym[k[a], k[b]])
        for name, (a, b) in {"porn-sexy": ("porn", "sexy"), "hentai-drawings": ("hentai", "drawings")}.items()
    }
    photo, drawing = [k[c] for c in ("neutral", "sexy", "porn")], [k[c] for c in ("drawings", "hentai")]
    cross_style = int(cm[np.ix_(photo, drawing)].sum() + cm[np.ix_(drawing, photo)].sum())
    print(f"accuracy {acc:.3f}, errors {errors}, pairs {pair}, cross-style {cross_style}\n{classes}\n{cm}")
    assert 0.45 <= acc <= 0.97  # well above chance (0.2), not solved
    assert pair["porn-sexy"] + pair["hentai-drawings"] >= 0.4 * errors
    off = sym.copy()
    np.fill_diagonal(off, 0)
    top = {frozenset((classes[i], classes[j])) for i, j in zip(*np.nonzero(off == off.max()), strict=True)}
    assert top & {frozenset(("porn", "sexy")), frozenset(("hentai", "drawings"))}
    assert cross_style <= 0.1 * errors
