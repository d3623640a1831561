"""``nsfw-lab download RAW_DATA_DIR OUT``: fetch the scraper's URL lists into an audited ImageFolder.

``OUT/<class>/<sha256>.<ext>`` holds the images, ``OUT/manifest.csv`` one row per (class, URL) with what
happened (see :mod:`.manifest`), ``OUT/download.json`` the settings and the per-class table. A rerun skips
every (class, URL) already in the manifest (``retry_errors`` re-fetches the ``error`` ones; a stored file
deleted since is fetched again), so the same command resumes an interrupted download. ``nsfw-lab curate
OUT CURATED`` reads ``OUT/manifest.csv`` for the gallery ids. One process at a time may write to OUT.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path

from nsfw_lab import __version__
from nsfw_lab.data.download.content import Signature, Verdict, judge, load_signatures
from nsfw_lab.data.download.fetch import Aborted, AddressPolicy, Fetcher, FetchSettings, HostLimiter, Outcome
from nsfw_lab.data.download.manifest import NAME, STATUSES, Manifest
from nsfw_lab.data.download.store import PLACEHOLDER_DIR, Store
from nsfw_lab.data.download.urls import ListStats, UrlEntry, host_of, read_lists
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_write_json, read_json
from nsfw_lab.utils.progress import tqdm

INCOMPLETE = ".incomplete"
REPORT = "download.json"

NOTICE = """\
nsfw-lab download: before the first request
- The URL lists of nsfw_data_scraper point at sexually explicit images hosted by third parties. Downloading,
  storing or processing them may be illegal where you are, or against your organisation's rules; some may
  show people who never agreed to be shown. Only you can decide whether you may do this.
- The images belong to their owners: the lists come with no licence to them. Use them for research on
  moderation only, do not redistribute them, and delete them when the work is done.
- Most links are dead (hosts such as Imgur removed this content): expect most rows to be dead or
  placeholder, and read the audit in OUT/manifest.csv before you train on what is left.
"""


@dataclass(frozen=True)
class DownloadConfig:
    """Settings of one download (the CLI's flags)."""

    classes: tuple[str, ...] | None = None  # None: every class with a urls_<class>.txt
    workers: int = 16  # concurrent requests in all
    per_host: int = 4  # concurrent requests to one host
    timeout: float = 30.0  # seconds per request (connect, headers and body), once the host's slot is free
    retries: int = 3  # extra attempts after a timeout, connection failure, cut transfer or 5xx
    max_bytes: int = 20 * 2**20  # larger bodies are rejected (checked while streaming)
    max_redirects: int = 5
    backoff: float = 1.0  # first retry after about this many seconds, doubling (with jitter)
    allow_private: tuple[str, ...] | None = None  # None: public addresses only; (): any; or these networks
    placeholder_copies: int = 10  # same bytes from this many URLs = a placeholder (0: off)
    placeholders: str | None = None  # extra placeholder signatures (TOML)
    retry_errors: bool = False  # fetch again the URLs whose latest row is an error
    ca_bundle: str | None = None  # CA certificates file for HTTPS (default: the system's)

    def validate(self) -> None:
        """Raise NsfwLabError naming the first invalid setting."""
        checks = [
            (1 <= self.workers <= 256, f"--workers must be in 1..256 (got {self.workers})"),
            (1 <= self.per_host <= 64, f"--per-host must be in 1..64 (got {self.per_host})"),
            (0 < self.timeout <= 3600, f"--timeout must be in (0, 3600] seconds (got {self.timeout})"),
            (0 <= self.retries <= 20, f"--retries must be in 0..20 (got {self.retries})"),
            (self.max_bytes >= 1024, f"--max-bytes must be at least 1024 (got {self.max_bytes})"),
            (0 <= self.max_redirects <= 30, f"--max-redirects must be in 0..30 (got {self.max_redirects})"),
            (0 <= self.backoff <= 60, f"--backoff must be in 0..60 seconds (got {self.backoff})"),
            (
                self.placeholder_copies == 0 or self.placeholder_copies >= 2,
                f"--placeholder-copies must be 0 (off) or >= 2 (got {self.placeholder_copies})",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise NsfwLabError(msg)
        try:
            AddressPolicy(self.allow_private)
        except ValueError as exc:
            raise NsfwLabError(f"--allow-network: {exc}") from None
        if self.ca_bundle and not Path(self.ca_bundle).is_file():
            raise NsfwLabError(f"{self.ca_bundle}: CA bundle not found")

    def fetch_settings(self) -> FetchSettings:
        """The subset the fetcher needs."""
        return FetchSettings(self.timeout, self.retries, self.max_bytes, self.max_redirects, self.backoff,
                             f"nsfw-lab/{__version__} (dataset audit)", self.ca_bundle)  # fmt: skip


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NsfwLabError(f"{out}: another nsfw-lab download is writing here; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def _check_out(raw: Path, out: Path) -> None:
    if out == raw:
        raise NsfwLabError(f"{out}: OUT must not be RAW_DATA_DIR (the scraper's own files live there)")
    if out.exists() and not out.is_dir():
        raise NsfwLabError(f"{out}: exists and is not a folder")
    if out.is_dir() and not (out / NAME).is_file() and any(p for p in out.iterdir() if p.name != ".lock"):
        raise NsfwLabError(f"{out}: exists, is not empty and holds no {NAME}; pick a new or empty folder")


def _interleave(urls: list[str]) -> list[str]:
    """Round-robin over hosts, so that one big host does not hold every worker at its per-host limit."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for u in urls:
        by_host[host_of(u)].append(u)
    return [u for group in zip_longest(*by_host.values()) for u in group if u is not None]


def _work(fetcher: Fetcher, url: str, signatures: list[Signature]) -> tuple[Outcome, Verdict | None]:
    """Worker: fetch one URL and judge its body (decoding happens here, off the main thread). An unexpected
    failure becomes an ``error`` row naming it, never a lost URL."""
    try:
        o = fetcher.fetch(url)
    except Aborted:
        raise
    except Exception as exc:  # recorded in the manifest; the download goes on
        return Outcome("error", error=f"unexpected failure ({type(exc).__name__}: {exc})"), None
    if o.status != "fetched" or o.tmp is None:
        return o, None
    try:
        with open(o.tmp, "rb") as fh:
            data = fh.read()
            os.fsync(fh.fileno())
        return o, judge(data, o.final_url, o.sha256, signatures)
    except Exception as exc:  # recorded in the manifest; the download goes on
        o.tmp.unlink(missing_ok=True)
        o.status, o.tmp, o.error = "error", None, f"cannot judge the body ({type(exc).__name__}: {exc})"
        return o, None


def summarise(latest: dict[tuple[str, str], dict[str, str]], entries: list[UrlEntry]) -> dict[str, dict[str, int]]:
    """Per class: how many (class, URL) entries ended in each status, ``pending`` for those not done yet."""
    table: dict[str, dict[str, int]] = {}
    for e in entries:
        row = latest.get(e.key)
        t = table.setdefault(e.cls, dict.fromkeys((*STATUSES, "pending"), 0))
        t[row["status"] if row else "pending"] += 1
    return table


def _fetch_all(
    todo: list[UrlEntry], store: Store, cfg: DownloadConfig, signatures: list[Signature], tmpdir: Path, progress: bool
) -> None:
    url_only = [s for s in signatures if s.url_only()]
    abort = threading.Event()

    def known_placeholder(url: str) -> bool:  # the final URL alone decides: no body needed
        return any(s.matches(url, "", 0, "", 0, 0, None) for s in url_only)

    fetcher = Fetcher(cfg.fetch_settings(), AddressPolicy(cfg.allow_private), HostLimiter(cfg.per_host), tmpdir,
                      abort, stop_at=known_placeholder)  # fmt: skip
    by_url: dict[str, list[UrlEntry]] = defaultdict(list)
    for e in todo:
        by_url[e.request_url or ""].append(e)
    queue = iter(_interleave(list(by_url)))
    counts: Counter = Counter()
    pool = ThreadPoolExecutor(max_workers=min(cfg.workers, max(1, len(by_url))), thread_name_prefix="download")
    pending: dict[Future, str] = {}
    try:
        with tqdm(total=len(by_url), desc="download", unit="url", disable=not progress, mininterval=0.5) as bar:
            while True:
                while len(pending) < 2 * cfg.workers and (url := next(queue, None)) is not None:
                    pending[pool.submit(_work, fetcher, url, signatures)] = url
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    url = pending.pop(f)
                    o, v = f.result()
                    store.record(by_url[url], o, v)
                    counts[v.status if o.status == "fetched" and v else o.status] += 1
                    bar.update()
                    bar.set_postfix(dict(sorted(counts.items())), refresh=False)
    except BaseException:
        abort.set()
        fetcher.close_all()
        for f in pending:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def download(
    raw: Path | str,
    out: Path | str,
    cfg: DownloadConfig = DownloadConfig(),
    progress: bool = True,
    confirm: bool | Callable[[str], bool] = False,
) -> dict:
    """Download the URL lists under ``raw`` into ``out``; returns what ``download.json`` holds.

    ``confirm`` gates the first request: ``True`` once the :data:`NOTICE` was read (the CLI's ``--yes``),
    or a function shown the notice that answers whether to go on. Nothing is fetched otherwise.
    """
    raw, out = Path(raw).resolve(), Path(out).resolve()
    cfg.validate()
    entries, stats = read_lists(raw, cfg.classes)
    signatures = load_signatures(cfg.placeholders)  # a bad signature file fails before anything is written
    _check_out(raw, out)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        tmpdir = out / INCOMPLETE
        shutil.rmtree(tmpdir, ignore_errors=True)  # leftovers of a killed run (we hold the lock)
        tmpdir.mkdir()
        manifest = Manifest(out / NAME)
        try:
            store = Store(out, manifest, cfg.placeholder_copies)
            todo = [e for e in entries if store.to_do(manifest.latest.get(e.key), cfg.retry_errors)]
            fetch = [e for e in todo if e.request_url]
            if fetch and not (confirm(NOTICE) if callable(confirm) else confirm):
                raise NsfwLabError("download not confirmed: read the notice, then pass --yes")
            for e in todo:
                if not e.request_url:
                    store.reject(e)
            if fetch:
                _fetch_all(fetch, store, cfg, signatures, tmpdir, progress)
        finally:
            manifest.close()
            shutil.rmtree(tmpdir, ignore_errors=True)
        report = {
            "source": str(raw),
            "settings": asdict(cfg),
            "summary": summarise(manifest.latest, entries),
            "lists": {c: _list_stats(s) for c, s in stats.items()},
            "manifest_repaired": manifest.repaired,
            "learned_placeholders": len(learned_placeholders(out)),
        }
        path = out / REPORT
        if _json(path) != json.loads(json.dumps(report)):  # unchanged: not rewritten (a rerun changes nothing)
            atomic_write_json(path, report)
    return report


def learned_placeholders(out: Path) -> set[str]:
    """SHA-256 of the bytes found to be a repeated placeholder (their files are in ``OUT/.placeholders/``)."""
    d = out / PLACEHOLDER_DIR
    return {p.stem.rsplit("-", 1)[-1] for p in d.iterdir()} if d.is_dir() else set()  # <class>-<sha256>.<ext>


def _list_stats(s: ListStats) -> dict:
    return {"lines": s.lines, "blank_or_comment": s.blank_or_comment, "repeated_lines": s.repeated,
            "urls": s.entries, "rejected": s.rejected, "top_hosts": dict(s.hosts.most_common(10))}  # fmt: skip


def _json(path: Path) -> object:
    """The JSON at ``path``, or None when it is missing or unreadable (it is then written again)."""
    try:
        return read_json(path)
    except (OSError, NsfwLabError):
        return None
