"""Explanations: Grad-CAM through one wrapper (:mod:`.cam`) and galleries of mistakes (:mod:`.gallery`)."""

from nsfw_lab.explain.cam import GradCam, overlay
from nsfw_lab.explain.gallery import error_pairs, mistake_cams

__all__ = ["GradCam", "error_pairs", "mistake_cams", "overlay"]
