"""The ``nsfw-lab`` command line. Every failure is one line: ``error: <file>: <reason>``, exit status 2.

Each stage registers its own commands (``add_parser`` in ``nsfw_lab/<stage>/cli.py``, or in the stage's module);
this module puts them in pipeline order, adds ``paths`` and runs the one that was asked for. The reference of
every command, ``docs/cli.md``, is generated from this parser (``make docs``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from nsfw_lab import __version__, config
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.cli import Parser, one_line, reference

REFERENCE = config.PROJECT_ROOT / "docs" / "cli.md"


def _paths(a: argparse.Namespace) -> None:
    info = {
        "project_root": str(config.PROJECT_ROOT),
        "data": str(config.DATA_DIR),
        "reports": str(config.REPORTS_DIR),
        "profiles": {
            n: p.to_dict() | {"raw": str(config.proxy_raw_dir(p)), "curated": str(config.proxy_curated_dir(p))}
            for n, p in config.PROFILES.items()
        },
    }
    print(json.dumps(info, indent=2))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs): every stage's commands, in pipeline order."""
    from nsfw_lab import cards
    from nsfw_lab.bench import cli as bench
    from nsfw_lab.course import cli as course
    from nsfw_lab.data import cli as data
    from nsfw_lab.evaluate import cli as evaluate
    from nsfw_lab.train import cli as train

    p = Parser(prog="nsfw-lab", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"nsfw-lab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for stage in (data, train, evaluate, cards, bench, course):
        stage.add_parser(sub)
    sub.add_parser("paths", help="print project paths and run profiles").set_defaults(func=_paths)
    return p


def reference_markdown() -> str:
    """``docs/cli.md``: every command's usage and arguments, from :func:`build_parser`."""
    intro = (
        "Generated from the argument parser by `make docs` (a test fails when this file is stale); "
        "`nsfw-lab COMMAND --help` prints the same. Every failure is one line, `error: <file>: <reason>`, "
        "with exit status 2."
    )
    return reference(build_parser(), "Command-line reference", intro)


def write_reference(path: Path = REFERENCE) -> Path:
    """Regenerate ``docs/cli.md`` (atomically)."""
    from nsfw_lab.utils.fsutil import atomic_write_text

    atomic_write_text(path, reference_markdown())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nsfw-lab``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except NsfwLabError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", "partial output was discarded")
        print(f"error: interrupted ({hint})", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
