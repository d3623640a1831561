"""What every stage's command line shares (below every CLI module, importing none of them).

The rule: each stage registers its own sub-commands with an ``add_parser(sub)`` function in its package
(``nsfw_lab/<stage>/cli.py``, or in the stage's module when it is one module); :mod:`nsfw_lab.cli` only puts
them in pipeline order. A command's function takes the parsed namespace; every failure it raises is an
:class:`~nsfw_lab.errors.NsfwLabError`, printed as one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import fields
from typing import Any, NoReturn, TypeVar

from nsfw_lab.errors import NsfwLabError

T = TypeVar("T")
Subparsers = Any  # argparse's private _SubParsersAction


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format (sub-parsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def from_args(cls: type[T], a: argparse.Namespace, **extra: Any) -> T:
    """Build a config dataclass from the parsed options named like its fields (lists become tuples)."""
    values = {f.name: getattr(a, f.name) for f in fields(cls) if hasattr(a, f.name)}  # type: ignore[arg-type]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}, **extra)


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: sets ``progress`` to False."""
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def one_line(exc: NsfwLabError) -> str:
    """The error's message; for one re-raised by a DataLoader worker (whose message carries the worker's
    traceback), the original message only."""
    msg = str(exc)
    if "Original Traceback" in msg:
        msg = msg.strip().splitlines()[-1].split("NsfwLabError: ", 1)[-1]
    return msg


def _commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: (a.help or "").replace("%%", "%") for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, sub, helps.get(name, "")


def _prose(text: str) -> str:
    """A docstring as Markdown: one paragraph, reST roles and double backticks made plain."""
    import re

    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", " ".join(text.split()))
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _option_rows(p: argparse.ArgumentParser) -> Iterator[str]:
    for a in p._actions:
        if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
            continue
        name = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.metavar or a.dest}`"
        if a.option_strings and a.nargs != 0:
            name += f" `{_metavar(a)}`"
        shown = a.default not in (None, argparse.SUPPRESS, [], ()) and a.nargs != 0
        default = f"`{_default(a.default)}`" if shown else ""
        helptext = a.help % dict(vars(a), prog=p.prog) if a.help else ""
        required = " **required**" if a.required and a.option_strings else ""
        yield f"| {name} | {default} | {_cell(helptext)}{required} |"


def _metavar(a: argparse.Action) -> str:
    if isinstance(a.metavar, tuple):
        return " ".join(a.metavar)
    base = a.metavar or (a.dest.upper() if not a.choices else "{" + ",".join(map(str, a.choices)) + "}")
    return f"{base} ..." if a.nargs in ("+", "*") else base


def _default(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return str(value)


def reference(parser: argparse.ArgumentParser, title: str, intro: str) -> str:
    """A Markdown reference of every sub-command of ``parser``: its one-line help, description, usage (at a
    fixed width) and a table of its arguments with defaults, generated from the parser itself."""
    import os

    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        lines = [f"# {title}", "", intro, ""]
        cmds = list(_commands(parser))
        lines += [f"- [`{parser.prog} {n}`](#{parser.prog}-{n}): {_cell(h)}" for n, _, h in cmds]
        for name, sub, helptext in cmds:
            lines += ["", f"## {parser.prog} {name}", "", _cell(helptext[:1].upper() + helptext[1:]) + ".", ""]
            if sub.description and sub.description != helptext:
                lines += [_prose(sub.description), ""]
            usage = sub.format_usage().removeprefix("usage: ").rstrip().splitlines()
            usage = [usage[0], *(line.removeprefix(" " * len("usage: ")) for line in usage[1:])]
            lines += ["```", *usage, "```", ""]
            lines += ["| argument | default | meaning |", "|---|---|---|", *_option_rows(sub)]
        return "\n".join(lines) + "\n"
    finally:
        if width is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = width
