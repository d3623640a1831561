"""The architectures :func:`nsfw_lab.models.build_model` knows, one spec each. Torch-free: the command line
takes its choices from here, and the zoo builds from the same table (nothing else lists them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """What the zoo needs to build one architecture."""

    name: str
    builder: str | None  # the torchvision.models function; None: the hand-written baseline (models.baseline)
    imagenet: str | None  # torchvision's ImageNet weights, "<Enum>.<member>"; None: there are none
    input_size: int  # default input size in px
    min_size: int  # smallest input the network accepts (the baseline's depends on its depth)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("baseline", None, None, 64, 2),
        Architecture("resnet18", "resnet18", "ResNet18_Weights.IMAGENET1K_V1", 224, 32),
        Architecture("resnet50", "resnet50", "ResNet50_Weights.IMAGENET1K_V2", 224, 32),
        Architecture("resnet101", "resnet101", "ResNet101_Weights.IMAGENET1K_V2", 224, 32),
        Architecture("inception_v3", "inception_v3", "Inception_V3_Weights.IMAGENET1K_V1", 299, 75),
    )
}
MODELS: tuple[str, ...] = tuple(ARCHITECTURES)
