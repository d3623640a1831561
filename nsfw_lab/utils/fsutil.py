"""Atomic file and folder writes: a reader never sees a half-written file or an unfinished folder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from nsfw_lab.errors import NsfwLabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are 0600


@contextmanager
def atomic_open(path: Path, mode: str = "wb", fsync: bool = True, **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` only if the block succeeds.

    ``fsync=False`` skips the flush to disk, for files inside a folder that is itself staged
    (:func:`staged_dir`), where durability comes from the folder's final rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: Path) -> Any:
    """A JSON file's content, None when the file does not exist, a one-line error when it is not JSON."""
    from nsfw_lab.errors import NsfwLabError

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise NsfwLabError(f"{path}: not valid JSON ({exc})") from None


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomic, stable (sorted keys, indented) JSON write."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Atomically write a CSV with ``header``, streaming ``rows``; returns the number of rows written."""
    n = 0
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV with a header row into a list of dicts."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_partials(out: Path) -> int:
    """Remove ``.<name>.partial-<pid>-*`` siblings of ``out`` left by processes that no longer run."""
    removed = 0
    if not out.parent.is_dir():
        return 0
    for p in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(p.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def staged_dir(out: Path, overwrite: bool = False, owned_marker: str | None = None) -> Iterator[Path]:
    """Build a folder under a temporary sibling name and move it to ``out`` only on success.

    An interrupted build leaves at most a hidden ``.<name>.partial-<pid>-*`` sibling (swept by the next
    run once that process is gone), never an ``out`` that looks complete. With ``overwrite`` an existing
    ``out`` is replaced at the very end, but only if it is empty or holds ``owned_marker`` (a file this
    project writes), so a mistyped path never deletes somebody's folder.
    """
    out = Path(out).resolve()
    if out.exists():
        if not overwrite:
            raise NsfwLabError(f"{out}: already exists (pass --overwrite to replace it)")
        ours = out.is_dir() and (not any(out.iterdir()) or (owned_marker and (out / owned_marker).is_file()))
        if not ours:
            raise NsfwLabError(
                f"{out}: exists and was not made by nsfw-lab (no {owned_marker}); refusing to replace it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_partials(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
