"""The course's first model: a hand-written conv-pool-FC network.

The original project's "single conv layer CNN", generalised: ``len(widths)`` blocks of
conv 3x3 -> (BatchNorm) -> ReLU -> max-pool 2x2, then flatten -> FC -> ReLU -> dropout -> FC.
Every size is computed from the constructor arguments, so shapes and parameter counts can be
printed before anything runs (see :func:`nsfw_lab.models.summary.layer_table`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ConvPoolFC(nn.Module):
    """Conv-pool blocks followed by two fully connected layers.

    Args:
        num_classes: outputs of the last layer.
        image_size: input height = width; fixes the flattened feature size (no global pooling,
            as in the classic design: the first FC layer holds most of the parameters).
        widths: output channels of each conv-pool block; ``(32,)`` is the article's single conv layer.
        hidden: units of the hidden FC layer.
        batchnorm: BatchNorm after each conv.
        dropout: dropout before the last layer.
    """

    def __init__(
        self,
        num_classes: int = 5,
        image_size: int = 64,
        widths: Sequence[int] = (32, 64, 128, 256),
        hidden: int = 256,
        batchnorm: bool = True,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one conv-pool block")
        if image_size < 2 ** len(widths):
            raise ValueError(f"image_size {image_size} is below {2 ** len(widths)} for {len(widths)} pooling blocks")
        blocks, c_in = [], 3
        for w in widths:
            layers: list[nn.Module] = [nn.Conv2d(c_in, w, 3, padding=1, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(w))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            blocks.append(nn.Sequential(*layers))
            c_in = w
        self.features = nn.Sequential(*blocks)
        self.feature_size = image_size // 2 ** len(widths)  # each pool halves (floor)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * self.feature_size**2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.widths, self.image_size = tuple(widths), image_size

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) normalised images -> (N, num_classes) logits."""
        return self.classifier(self.features(x))
