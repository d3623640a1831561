"""The ``nsfw-lab download`` sub-command: flags, the notice and its confirmation, the per-class table."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.cli import Subparsers, add_progress_flag, from_args

TABLE = ("ok", "duplicate", "dead", "placeholder", "rejected", "error", "pending")


def byte_size(text: str) -> int:
    """``20M``, ``500k``, ``1G`` or a plain number of bytes (binary multiples)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 20M, 500k, 1048576)") from None


def add_parser(sub: Subparsers) -> None:
    """Register ``download`` on the CLI's sub-parsers (defaults from :class:`DownloadConfig`)."""
    from nsfw_lab.data.download.run import DownloadConfig

    D = DownloadConfig()
    d = sub.add_parser("download", help="fetch the scraper's URL lists into an audited, resumable ImageFolder")
    d.add_argument("raw", metavar="RAW_DATA_DIR", help="the scraper's raw_data (<class>/urls_<class>.txt)")
    d.add_argument("out", metavar="OUT", help="OUT/<class>/<sha256>.<ext> + OUT/manifest.csv (resumes if present)")
    d.add_argument("--classes", nargs="+", help="only these classes (default: every list found)")
    d.add_argument("--workers", type=int, default=D.workers, help="concurrent requests (default %(default)s)")
    d.add_argument("--per-host", type=int, default=D.per_host, help="concurrent requests per host (%(default)s)")
    d.add_argument("--timeout", type=float, default=D.timeout, help="seconds per request (default %(default)s)")
    d.add_argument("--retries", type=int, default=D.retries, help="retries on timeouts, 5xx, cut transfers")
    d.add_argument("--max-bytes", type=byte_size, default=D.max_bytes, help="size cap, e.g. 20M (default 20M)")
    d.add_argument("--max-redirects", type=int, default=D.max_redirects)
    d.add_argument("--backoff", type=float, default=D.backoff, help="first retry delay in s, doubling")
    d.add_argument(
        "--allow-private", dest="allow_any", action="store_true", help="allow any non-public address (local testing)"
    )
    d.add_argument(
        "--allow-network",
        action="append",
        metavar="CIDR",
        help="allow only this non-public network (repeatable), e.g. 127.0.0.1/32 for a local test server",
    )
    d.add_argument("--placeholders", metavar="FILE", help="extra placeholder signatures (TOML, see the docs)")
    d.add_argument(
        "--placeholder-copies",
        type=int,
        default=D.placeholder_copies,
        help="the same bytes from this many URLs are a placeholder (0: off; default %(default)s)",
    )
    d.add_argument("--retry-errors", action="store_true", help="fetch again the URLs whose last try was an error")
    d.add_argument("--ca-bundle", metavar="FILE", help="CA certificates for HTTPS, instead of the system's")
    d.add_argument("--yes", action="store_true", help="proceed without asking (after reading the notice)")
    add_progress_flag(d)
    d.set_defaults(func=run)


def _confirm(yes: bool):  # type: ignore[no-untyped-def]
    def confirm(notice: str) -> bool:
        print(notice, file=sys.stderr)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise NsfwLabError("refusing to download without confirmation: pass --yes (after reading the notice)")
        return input("Proceed? [y/N] ").strip().lower() in ("y", "yes")

    return confirm


def _on_term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a polite kill cleans up like Ctrl-C


def run(a: argparse.Namespace) -> None:
    """``nsfw-lab download``: run, then print the per-class table."""
    from nsfw_lab.data.download.run import DownloadConfig, download

    allow = () if a.allow_any else tuple(a.allow_network) if a.allow_network else None
    cfg = from_args(DownloadConfig, a, allow_private=allow)
    a.on_interrupt = f"finished URLs are in {a.out}/manifest.csv; run the same command again to resume"
    signal.signal(signal.SIGTERM, _on_term)
    r = download(Path(a.raw), Path(a.out), cfg, progress=a.progress, confirm=_confirm(a.yes))
    print(f"{'class':<12}" + "".join(f"{c:>12}" for c in TABLE))
    for cls, t in r["summary"].items():
        print(f"{cls:<12}" + "".join(f"{t[c]:>12}" for c in TABLE))
    if r["learned_placeholders"]:
        print(
            f"note: {r['learned_placeholders']} distinct images came from >= {cfg.placeholder_copies} URLs each and "
            f"were treated as placeholders (kept in {Path(a.out) / '.placeholders'} for review; "
            "--placeholder-copies 0 turns this off)",
            file=sys.stderr,
        )
    print(f"audit: {Path(a.out) / 'manifest.csv'}; next: nsfw-lab curate {a.out} CURATED_DIR")
    if r["manifest_repaired"]:
        print("warning: the manifest's last line was incomplete (interrupted write) and was dropped", file=sys.stderr)
