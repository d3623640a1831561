"""The architectures :func:`nsfw_lab.models.build_model` knows (torch-free, for the CLI's choices)."""

MODELS: tuple[str, ...] = ("baseline", "resnet18", "resnet50", "resnet101", "inception_v3")
