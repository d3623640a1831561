"""Error types whose message is a complete one-line explanation for the user."""

from __future__ import annotations


class NsfwLabError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with status 2, no traceback."""


class RunConfigChanged(NsfwLabError):
    """An existing run folder was trained with other settings than the ones given now."""
