"""Data pipeline: generate (synth) → load safely (imageio) → curate (hashing, split) → serve (dataset).

Torch-free on import: the names the command line needs live here.
"""

DECODERS: tuple[str, ...] = ("torchcodec", "pil", "gpu")
"""How the curated cache can be decoded (:mod:`nsfw_lab.data.decode`): TorchCodec or Pillow in the loader's
workers, or nvJPEG batches on the training device."""
