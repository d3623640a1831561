"""The download audit manifest, ``OUT/manifest.csv``: one row per (class, URL) attempt, appended safely.

Each row is written with a single ``write()`` of a complete line to a file opened in append mode, and
the file is flushed to disk every few seconds and at the end, so a kill leaves at most one incomplete
last line; opening the manifest again cuts that line off (and says so), and the URL it belonged to is
simply done again. The latest row of a (class, URL) is its current state: a later row supersedes an
earlier one (a retried error, or an image found to be a repeated placeholder).
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections import Counter
from pathlib import Path

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_write_bytes

NAME = "manifest.csv"
COLUMNS = (
    "url", "class", "status", "http_code", "final_url", "bytes", "sha256", "content_type", "format", "file",
    "group_id", "error", "attempts", "line", "time",
)  # fmt: skip
STATUSES = ("ok", "duplicate", "dead", "placeholder", "rejected", "error")
STORED = frozenset({"ok", "duplicate"})  # rows whose file is in OUT/<class>/
FSYNC_SECONDS = 2.0
_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # what str.splitlines() splits on


def _line(row: dict) -> bytes:
    """One CSV line; line breaks inside values (only ever in a reason) become spaces, nothing else changes
    (the url and class columns are the resume key and are written exactly as listed)."""
    values = ["" if row.get(c) is None else str(row[c]) for c in COLUMNS]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_BREAKS.sub(" ", v) for v in values])
    return buf.getvalue().encode("utf-8")


class Manifest:
    """Read (repairing an interrupted last line) and append to a download manifest."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.repaired = False
        self.latest: dict[tuple[str, str], dict[str, str]] = {}
        if self.path.exists():
            self._load()
        else:
            atomic_write_bytes(self.path, _line(dict(zip(COLUMNS, COLUMNS, strict=True))))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._synced = time.monotonic()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = _complete_lines(data)
        if len(complete) < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(len(complete))
                fh.flush()
                os.fsync(fh.fileno())
            self.repaired = True
        self.latest = _parse(complete, self.path)

    def append(self, row: dict) -> None:
        """Write one row (a complete line in one write) and make it the latest for its (class, URL)."""
        row = {**row, "time": row.get("time") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        data = _line(row)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.latest[(str(row["class"]), str(row["url"]))] = {c: str(row.get(c, "") or "") for c in COLUMNS}
        if time.monotonic() - self._synced > FSYNC_SECONDS:
            self.sync()

    def sync(self) -> None:
        """Flush appended rows to disk."""
        os.fsync(self._fd)
        self._synced = time.monotonic()

    def close(self) -> None:
        """Sync and close (idempotent)."""
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1


def _complete_lines(data: bytes) -> bytes:
    """``data`` without an incomplete last line (an interrupted append)."""
    return data if not data or data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]


def _parse(data: bytes, path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """The latest row of every (class, URL), in first-seen order; one-line errors for anything else."""
    latest: dict[tuple[str, str], dict[str, str]] = {}
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        header = next(reader, None)
        if header is None:
            raise NsfwLabError(f"{path}: empty file (not a download manifest); move it away")
        if tuple(header) != COLUMNS:
            raise NsfwLabError(f"{path}: not a download manifest (its header is not {','.join(COLUMNS)})")
        for n, values in enumerate(reader, start=2):
            if len(values) != len(COLUMNS) or values[2] not in STATUSES:
                raise NsfwLabError(f"{path}: line {n} is not a manifest row ({len(values)} fields)")
            row = dict(zip(COLUMNS, values, strict=True))
            latest[(row["class"], row["url"])] = row
    except UnicodeDecodeError as exc:
        raise NsfwLabError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise NsfwLabError(f"{path}: cannot parse ({exc})") from None
    return latest


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The latest row of every (class, URL) in a manifest, in first-seen order (read-only; an interrupted
    last line is left out)."""
    path = Path(path)
    if not path.is_file():
        raise NsfwLabError(f"{path}: no download manifest here")
    return list(_parse(_complete_lines(path.read_bytes()), path).values())


def is_download_manifest(path: str | Path | None) -> bool:
    """True when ``path`` is a file whose header is a download manifest's."""
    if not path or not Path(path).is_file():
        return False
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return tuple(next(csv.reader(fh), ())) == COLUMNS


def reason_kind(row: dict[str, str]) -> str:
    """The reason of a row without its particulars (numbers, addresses, URLs), for counting."""
    text = row["error"].split(" (")[0] if row["status"] != "rejected" else row["error"]
    text = re.sub(r"https?://\S+|(?<!HTTP )\b\d+(\.\d+)*\b", "N", text)
    return text or ("stored" if row["status"] in STORED else row["status"])


def audit(path: str | Path) -> dict:
    """A download manifest summarised: ``by_class`` (status counts per class, current rows) and
    ``reasons`` (``[(status, reason, count)]``, most frequent first)."""
    rows = read_manifest(Path(path))
    by_class: dict[str, dict[str, int]] = {}
    reasons: Counter = Counter()
    for r in rows:
        by_class.setdefault(r["class"], dict.fromkeys(STATUSES, 0))[r["status"]] += 1
        reasons[(r["status"], reason_kind(r))] += 1
    return {"by_class": dict(sorted(by_class.items())), "reasons": [(s, k, n) for (s, k), n in reasons.most_common()]}
