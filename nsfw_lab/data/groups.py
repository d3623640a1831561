"""Known group ids (galleries) for curation's group-aware split, read from a manifest CSV: the proxy's
``manifest.csv``, a download's audit ``manifest.csv`` (``nsfw-lab download``), or any ``--groups`` file."""

from __future__ import annotations

import csv
from pathlib import Path

from nsfw_lab.data.hashing import UnionFind
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import read_csv


def load_known_groups(path: Path, root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Read a group manifest: ``group``/``group_id`` plus ``sha256`` and/or ``file``/``path`` columns.

    Returns (group by sha256, group by path relative to ``root``). Works with the proxy's manifest and
    with the download audit manifest (``nsfw-lab download``): there only rows whose ``status`` is ``ok``
    or ``duplicate`` count, and groups that share an image (the same bytes in two galleries) are merged
    into one, named by the smallest id, so that neither gallery can straddle splits.
    """
    try:
        rows = read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NsfwLabError(f"{path}: cannot read group manifest ({exc})") from None
    if not rows:
        return {}, {}
    cols = set(rows[0])
    gcol = "group" if "group" in cols else "group_id" if "group_id" in cols else None
    fcol = "file" if "file" in cols else "path" if "path" in cols else None
    if gcol is None or (fcol is None and "sha256" not in cols):
        raise NsfwLabError(f"{path}: a group manifest needs a 'group' column and a 'file' or 'sha256' column")
    pairs: list[tuple[str, str, str]] = []  # (group, sha256, file)
    for r in rows:
        g = (r.get(gcol) or "").strip()
        if g and r.get("status", "ok") in ("ok", "duplicate"):
            rel = Path(r[fcol]).as_posix() if fcol and r.get(fcol) else ""
            pairs.append((g, (r.get("sha256") or "").strip().lower(), rel))
    names = sorted({g for g, _, _ in pairs})
    index = {g: k for k, g in enumerate(names)}
    uf = UnionFind(len(names))
    first_by_sha: dict[str, str] = {}
    for g, sha, _ in pairs:
        if sha:
            uf.union(index[g], index[first_by_sha.setdefault(sha, g)])
    canon = [names[c] for c in uf.labels()]  # labels() names a set by its smallest index: the smallest id
    by_sha = {sha: canon[index[g]] for g, sha, _ in pairs if sha}
    by_rel = {f: canon[index[g]] for g, _, f in pairs if f}
    return by_sha, by_rel
