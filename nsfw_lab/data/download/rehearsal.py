"""The real acquisition path rehearsed offline: URL lists in the scraper's layout → ``download`` from the
simulated host on 127.0.0.1 → ``curate`` with the download's gallery ids. Notebook 00 runs it, so the
course shows the audit table a real download produces, with generated images only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from nsfw_lab import config
from nsfw_lab.data.curate import CurateConfig, curate
from nsfw_lab.data.download.manifest import read_manifest
from nsfw_lab.data.download.run import DownloadConfig, download
from nsfw_lab.data.download.simhost import Route, SimHost, placeholder_card, sim_image, write_lists

GALLERY = 3  # images per simulated gallery


def _class_urls(host: SimHost, ci: int, cls: str, per_class: int, card: bytes) -> list[str]:
    """One class's list: galleries of live images, then the faults every real list has."""
    lines = [f"# rehearsal list for {cls}: every URL points at the simulated host"]
    alive = max(GALLERY, per_class - 6)
    for k in range(alive):
        g, i = divmod(k, GALLERY)
        lines.append(host.add(f"/{cls}/gallery{g:03d}/{i + 1:02d}.jpg", Route(sim_image(1000 * ci + k))))
    lines.append(host.add(f"/{cls}/gone.jpg", Route(b"<html>Not Found</html>", 404, "text/html")))
    lines.append(host.add(f"/{cls}/deleted.jpg", Route(b"<html>Gone</html>", 410, "text/html")))
    for k in range(2):  # the same "removed" card behind two URLs of every class: learned as a placeholder
        lines.append(host.add(f"/{cls}/r{k}.png", Route(card, content_type="image/png")))
    lines.append(host.add(f"/{cls}/page.jpg", Route(b"<!doctype html><html>login</html>", content_type="image/jpeg")))
    lines.append(host.add(f"/{cls}/flaky.jpg", Route(sim_image(1000 * ci + 999), fail_first=1)))
    lines.append(lines[1])  # listed twice: one entry
    if ci == 0:
        lines.append("ftp://example.invalid/not-http.jpg")
    return lines


def rehearse(root: Path, per_class: int = 12, progress: bool = False) -> dict:
    """Run download then curate under ``root`` (replaced); returns the download report, the manifest's
    rows and the curation report."""
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    card = placeholder_card()
    with SimHost() as host:
        urls = {c: _class_urls(host, ci, c, per_class, card) for ci, c in enumerate(config.CLASSES)}
        raw = write_lists(root / "raw_data", urls)
        cfg = DownloadConfig(workers=4, timeout=10, backoff=0.05, allow_private=("127.0.0.1/32",),
                             placeholder_copies=2 * len(config.CLASSES))  # fmt: skip
        report = download(raw, root / "downloaded", cfg, progress=progress, confirm=True)
    curated = curate(root / "downloaded", root / "curated", CurateConfig(val=0.2, test=0.2, short_side=64),
                     progress=progress)  # fmt: skip
    return {"download": report, "rows": read_manifest(root / "downloaded" / "manifest.csv"), "curation": curated}
