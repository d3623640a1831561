"""Residual-learning experiments on scikit-learn's digits: the blocks, the degradation effect, the arithmetic."""

from __future__ import annotations

import pytest
import torch

from nsfw_lab.course.residual import Block, DeepNet, depth_study, final, gradient_norms, load_digits_split, sensitivity


def test_the_5_1_vs_5_argument_by_hand() -> None:
    s = sensitivity(5.0, 5.1, 5.2)
    assert s["plain_relative_change"] == pytest.approx(0.1 / 5.1)  # about 2%
    assert s["residual_relative_change"] == pytest.approx(1.0)  # F goes from 0.1 to 0.2: 100%
    assert s["ratio"] == pytest.approx(51)


def test_a_residual_block_with_a_zero_branch_is_the_identity() -> None:
    b = Block(8, residual=True, preact=True).eval()
    torch.nn.init.zeros_(b.fc2.weight)
    torch.nn.init.zeros_(b.fc2.bias)
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(b(x), x) and float(b.branch(x).norm()) == 0.0
    plain = Block(8, residual=False, preact=False).eval()
    torch.nn.init.zeros_(plain.fc2.weight)
    torch.nn.init.zeros_(plain.fc2.bias)
    assert torch.equal(plain(x), torch.zeros_like(x))  # a plain block must *learn* the identity


def test_digits_split_and_gradient_norms() -> None:
    d = load_digits_split(0)
    assert d.x_train.shape[1] == 64 and len(d.x_train) + len(d.x_test) == 1797
    assert abs(float(d.x_train.mean())) < 1e-4
    torch.manual_seed(0)
    norms = gradient_norms(DeepNet(5, residual=True), d)
    assert len(norms) == 5 and all(n > 0 for n in norms)


def test_deep_plain_nets_degrade_and_residual_ones_do_not() -> None:
    s = depth_study([2, 16], epochs=6, seed=0)
    loss = final(s)
    assert loss["plain"][16] > 2 * loss["plain"][2]  # deeper plain net: worse *training* loss
    assert loss["residual"][16] < loss["plain"][16] / 3 and loss["preact"][16] < loss["plain"][16] / 3
    assert len(s["plain"][16]["train_loss"]) == 6 and len(s["residual"][16]["branch_ratio"]) == 16
