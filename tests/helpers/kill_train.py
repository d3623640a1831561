"""Run ``nsfw-lab train`` and SIGKILL this process at a chosen checkpoint write (test helper).

``KILL_AT=N`` kills at the N-th write of ``last.pt``; ``KILL_MODE=before-save`` kills before the
write starts (the step's work is lost), ``before-rename`` after the temporary file is complete but
before it replaces ``last.pt`` (a stray temporary file is left behind).
"""

from __future__ import annotations

import os
import signal
import sys

from nsfw_lab import cli
from nsfw_lab.models import checkpoint
from nsfw_lab.utils import fsutil

KILL_AT, MODE = int(os.environ["KILL_AT"]), os.environ.get("KILL_MODE", "before-save")
count = 0
_save, _replace = checkpoint.save, os.replace


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def save(path, state):  # type: ignore[no-untyped-def]
    global count
    if path.name == "last.pt":
        count += 1
        if count == KILL_AT and MODE == "before-save":
            _die()
    _save(path, state)


def replace(src, dst):  # type: ignore[no-untyped-def]
    if str(dst).endswith("last.pt") and count == KILL_AT and MODE == "before-rename":
        _die()
    _replace(src, dst)


checkpoint.save = save
fsutil.os.replace = replace  # type: ignore[attr-defined]
sys.exit(cli.main(sys.argv[1:]))
