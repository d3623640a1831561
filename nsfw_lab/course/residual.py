"""Plain vs residual networks of increasing depth on scikit-learn's handwritten digits (offline, seconds).

``DeepNet(depth, residual, preact)`` stacks ``depth`` blocks of two linear layers of the same width:
- plain:               x -> ReLU(BN(W2 ReLU(BN(W1 x))))
- residual (ResNet v1): x -> ReLU(x + BN(W2 ReLU(BN(W1 x))))            H(x) = F(x) + x, identity shortcut
- pre-activation (v2): x -> x + W2 ReLU(BN(W1 ReLU(BN(x))))             the shortcut path stays clean
The input is projected to the width once (a projection shortcut in miniature); the head is linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn


@dataclass
class Digits:
    """Standardised 8x8 digits as flat float tensors."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_split(seed: int = 0, test: float = 0.25) -> Digits:
    """The 1,797 digits that ship with scikit-learn, stratified train/test, standardised on train."""
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test, random_state=seed, stratify=y)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    f = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return Digits(f(xtr), torch.tensor(ytr), f(xte), torch.tensor(yte))


class Block(nn.Module):
    """Two linear layers; with ``residual`` the block adds its input back (v1 or pre-activation v2)."""

    def __init__(self, width: int, residual: bool, preact: bool) -> None:
        super().__init__()
        self.residual, self.preact = residual, preact
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.bn1, self.bn2 = nn.BatchNorm1d(width), nn.BatchNorm1d(width)

    def branch(self, x: Tensor) -> Tensor:
        """F(x), the residual branch."""
        if self.preact:
            return self.fc2(torch.relu(self.bn2(self.fc1(torch.relu(self.bn1(x))))))
        return self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return self.combine(x, self.branch(x))

    def combine(self, x: Tensor, f: Tensor) -> Tensor:
        """The block's output from its input and its branch."""
        if not self.residual:
            return torch.relu(f)
        return x + f if self.preact else torch.relu(x + f)


class DeepNet(nn.Module):
    """Input projection, ``depth`` blocks, linear head."""

    def __init__(self, depth: int, residual: bool, preact: bool = False, width: int = 32, n_in: int = 64) -> None:
        super().__init__()
        self.stem = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(Block(width, residual, preact) for _ in range(depth))
        self.head = nn.Linear(width, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


@torch.no_grad()
def branch_ratios(model: DeepNet, x: Tensor) -> list[float]:
    """||F(x)|| / ||x|| of every block for the batch ``x``, in the model's current mode."""
    ratios, h = [], model.stem(x)
    for b in model.blocks:
        f = b.branch(h)
        ratios.append(float(f.norm() / h.norm().clamp_min(1e-12)))
        h = b.combine(h, f)
    return ratios


def gradient_norms(model: DeepNet, data: Digits) -> list[float]:
    """Norm of the loss gradient w.r.t. each block's first weight matrix (input side first), full batch."""
    model.zero_grad()
    model.train()
    nn.functional.cross_entropy(model(data.x_train), data.y_train).backward()
    norms = [float(b.fc1.weight.grad.norm()) for b in model.blocks]
    model.zero_grad()
    return norms


def train_curve(model: DeepNet, data: Digits, epochs: int = 30, lr: float = 0.05, batch: int = 64,
                seed: int = 0) -> dict[str, list[float]]:  # fmt: skip
    """SGD (momentum 0.9) on the training digits; per epoch: mean training loss and test accuracy."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses, accs = [], []
    n = len(data.x_train)
    for _ in range(epochs):
        model.train()
        perm, total = torch.randperm(n, generator=g), 0.0
        for i in range(0, n - batch + 1, batch):
            idx = perm[i : i + batch]
            loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / (n // batch * batch))
        model.eval()
        with torch.no_grad():
            accs.append(float((model(data.x_test).argmax(1) == data.y_test).float().mean()))
    return {"train_loss": losses, "test_acc": accs}


def sensitivity(x: float = 5.0, h_before: float = 5.1, h_after: float = 5.2) -> dict[str, float]:
    """The "5.1 vs 5" argument computed: when the wanted output moves from ``h_before`` to ``h_after``
    for input ``x``, a plain layer's output changes by a small fraction of itself, the residual branch
    F = H - x by a large one — so the residual form makes small corrections easy to represent and to learn."""
    plain = (h_after - h_before) / h_before
    residual = ((h_after - x) - (h_before - x)) / (h_before - x)
    return {"plain_relative_change": plain, "residual_relative_change": residual, "ratio": residual / plain}


def depth_study(depths: list[int], epochs: int, seed: int = 0, width: int = 32) -> dict[str, dict[int, dict]]:
    """Train plain, residual (v1) and pre-activation (v2) nets of each depth; curves and gradient norms."""
    data = load_digits_split(seed)
    out: dict[str, dict[int, dict]] = {"plain": {}, "residual": {}, "preact": {}}
    for kind in out:
        for d in depths:
            torch.manual_seed(seed)
            net = DeepNet(d, residual=kind != "plain", preact=kind == "preact", width=width)
            init = gradient_norms(net, data)
            curve = train_curve(net, data, epochs, seed=seed)
            out[kind][d] = {**curve, "grad_norm_init": init, "grad_norm_trained": gradient_norms(net, data),
                            "branch_ratio": branch_ratios(net, data.x_train)}  # fmt: skip
    return out


def final(study: dict, key: str = "train_loss") -> dict[str, dict[int, float]]:
    """Last-epoch value of ``key`` per kind and depth."""
    return {k: {d: float(np.asarray(v[key])[-1]) for d, v in by.items()} for k, by in study.items()}
