"""The synthetic proxy dataset: abstract renderings with the real taxonomy's structure."""

from nsfw_lab.data.synth.generate import CLASS_FACTORS, SynthConfig, generate
from nsfw_lab.data.synth.render import Difficulty

__all__ = ["CLASS_FACTORS", "Difficulty", "SynthConfig", "generate"]
