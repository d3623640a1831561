"""Models: the hand-written baseline, torchvision ResNets and InceptionV3, each wrapped with its spec."""

from nsfw_lab.models.baseline import ConvPoolFC
from nsfw_lab.models.summary import count_parameters, layer_table
from nsfw_lab.models.wrapper import ModelSpec, NsfwModel, freeze
from nsfw_lab.models.zoo import MODELS, build_model, imagenet_file, model_from_spec

__all__ = [
    "MODELS",
    "ConvPoolFC",
    "ModelSpec",
    "NsfwModel",
    "build_model",
    "count_parameters",
    "freeze",
    "imagenet_file",
    "layer_table",
    "model_from_spec",
]
