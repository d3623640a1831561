"""Error types whose message is a complete one-line explanation for the user."""

from __future__ import annotations


class NsfwLabError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with status 2, no traceback."""
