"""Names of a package loaded on first use, so that importing it (and starting the CLI) stays fast."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, table: dict[str, tuple[str, str | None]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` -> ``getattr(import_module(module), attr)`` (the module
    itself when ``attr`` is None), cached in the package so later lookups skip it."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = table[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
