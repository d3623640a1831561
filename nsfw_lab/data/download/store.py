"""Where fetched images go: ``OUT/<class>/<sha256>.<ext>``, one file per distinct content and class, and
the manifest row that says what happened to each (class, URL).

A file is renamed into place only after it was fully written, flushed and judged, right after its row is
appended: a kill between the two leaves a row whose file is missing, and the next run fetches that URL
again. A class folder never holds a file the manifest does not account for. The same bytes from another
URL of the class are a ``duplicate`` row pointing at
the stored file. The same bytes under two classes are kept in both (curation reports and drops them as a
label conflict). Bytes that arrive from ``placeholder_copies`` or more different URLs are a host's
placeholder: their files move to ``OUT/.placeholders/`` and every row that pointed at them is superseded
by a ``placeholder`` row.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path

from nsfw_lab.data.download.content import Verdict
from nsfw_lab.data.download.fetch import Outcome
from nsfw_lab.data.download.manifest import STORED, Manifest
from nsfw_lab.data.download.urls import UrlEntry

PLACEHOLDER_DIR = ".placeholders"


class Store:
    """Files under ``out`` and the rows of ``manifest`` (used from one thread)."""

    def __init__(self, out: Path, manifest: Manifest, placeholder_copies: int) -> None:
        self.out = out
        self.manifest = manifest
        self.copies = placeholder_copies
        self.files: dict[str, dict[str, str]] = defaultdict(dict)  # sha256 -> {class: file relative to out}
        self.urls_by_sha: dict[str, set[str]] = defaultdict(set)
        self.keys_by_sha: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.placeholder_shas: set[str] = set()
        for key, row in manifest.latest.items():
            sha = row["sha256"]
            if row["status"] in STORED and sha and (out / row["file"]).is_file():
                self.files[sha].setdefault(row["class"], row["file"])
                self.urls_by_sha[sha].add(row["url"])
                self.keys_by_sha[sha].add(key)
            elif row["status"] == "placeholder" and sha:
                self.placeholder_shas.add(sha)

    def to_do(self, row: dict[str, str] | None, retry_errors: bool) -> bool:
        """Whether a (class, URL) with this latest row is fetched: not in the manifest yet, an error being
        retried, or a stored file that has gone missing since."""
        if row is None:
            return True
        if row["status"] in STORED:
            return self.files.get(row["sha256"], {}).get(row["class"]) != row["file"]
        return retry_errors and row["status"] == "error"

    def _row(self, e: UrlEntry, status: str, o: Outcome | None = None, **extra: object) -> None:
        row: dict[str, object] = {"url": e.url, "class": e.cls, "status": status, "group_id": e.group_id,
                                  "line": e.line}  # fmt: skip
        if o is not None:
            row |= {"http_code": o.http_code, "final_url": o.final_url, "bytes": o.size or "", "sha256": o.sha256,
                    "content_type": o.content_type, "error": o.error, "attempts": o.attempts}  # fmt: skip
        self.manifest.append(row | extra)

    def reject(self, e: UrlEntry) -> None:
        """Record a listed line that is not a URL we fetch."""
        self._row(e, "rejected", error=e.reject_reason)

    def record(self, entries: list[UrlEntry], o: Outcome, v: Verdict | None) -> None:
        """Record what one fetched URL gave for every (class, URL) that listed it; stores its file."""
        try:
            if o.status != "fetched" or v is None:
                for e in entries:
                    self._row(e, o.status, o)
            elif v.status != "ok":
                for e in entries:
                    self._row(e, v.status, o, format=v.format, error=v.error)
            elif o.sha256 in self.placeholder_shas:
                for e in entries:
                    self._row(e, "placeholder", o, format=v.format, error=self._repeat_reason(o.sha256))
            else:
                self._store(entries, o, v)
        finally:
            if o.tmp is not None:
                o.tmp.unlink(missing_ok=True)

    def _store(self, entries: list[UrlEntry], o: Outcome, v: Verdict) -> None:
        """Store an image that passed: a new file per class that lacks it, a duplicate row otherwise."""
        sha = o.sha256
        stored = self.files[sha]
        for e in entries:
            if e.cls in stored:
                self._row(e, "duplicate", o, format=v.format, file=stored[e.cls],
                          error="same bytes as a file already stored for this class")  # fmt: skip
            else:
                rel = f"{e.cls}/{sha}.{v.ext}"
                dest = self.out / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._row(e, "ok", o, format=v.format, file=rel)  # row first: a kill before the rename
                if o.tmp is not None and o.tmp.exists():  # leaves a row whose file is missing: redone
                    os.replace(o.tmp, dest)
                elif stored:  # a second class listing the same URL: copy the first class's file
                    part = self.out / ".incomplete" / f"copy-{sha}"
                    shutil.copyfile(self.out / next(iter(stored.values())), part)
                    os.replace(part, dest)
                stored[e.cls] = rel
            self.urls_by_sha[sha].add(e.url)  # requested, not final: one card is often behind every removed URL
            self.keys_by_sha[sha].add(e.key)
        if self.copies and len(self.urls_by_sha[sha]) >= self.copies:
            self._demote(sha)

    def _repeat_reason(self, sha: str) -> str:
        return (f"the same bytes came from {len(self.urls_by_sha[sha])} different URLs "
                f"(>= --placeholder-copies {self.copies}): a host's repeated placeholder")  # fmt: skip

    def _demote(self, sha: str) -> None:
        """Turn every stored copy of ``sha`` into a placeholder: move its files out, supersede its rows."""
        self.placeholder_shas.add(sha)
        ph = self.out / PLACEHOLDER_DIR
        ph.mkdir(exist_ok=True)
        for cls, rel in self.files.pop(sha, {}).items():
            src = self.out / rel
            if src.exists():
                os.replace(src, ph / f"{cls}-{src.name}")
        reason = self._repeat_reason(sha)
        for key in sorted(self.keys_by_sha.pop(sha, set())):
            row = self.manifest.latest.get(key)
            if row and row["status"] in STORED:
                self.manifest.append({**row, "status": "placeholder", "file": "", "error": reason, "time": ""})
