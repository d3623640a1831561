"""Progress bars: ``tqdm.auto`` (widgets in JupyterLab, text in a terminal), silenced by
``NSFW_LAB_PROGRESS=0`` — which ``nsfw-lab study`` sets, so executed notebooks and papermill logs stay
free of bar updates and widget state."""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm as _tqdm


def enabled() -> bool:
    """False when ``NSFW_LAB_PROGRESS`` is ``0``."""
    return os.environ.get("NSFW_LAB_PROGRESS", "1") != "0"


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm`` with ``disable`` forced on when progress is switched off."""
    kwargs["disable"] = bool(kwargs.get("disable", False)) or not enabled()
    return _tqdm(*args, **kwargs)
