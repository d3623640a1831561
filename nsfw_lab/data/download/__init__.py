"""Acquiring the real dataset from nsfw_data_scraper's URL lists: audited, resumable, safe.

``download(RAW_DATA_DIR, OUT, DownloadConfig(...), confirm=True)`` (CLI ``nsfw-lab download``); the
modules in pipeline order: ``urls`` (lists, normalisation, gallery ids), ``fetch`` (address policy,
redirects, size cap, retries), ``content`` (what the bytes are, placeholder signatures), ``store`` (files
and rows), ``manifest`` (the append-safe audit), ``run`` (the whole step), ``simhost`` (a local host that
serves generated images and faults, for the tests and the course).
"""

from nsfw_lab.data.download.manifest import audit, is_download_manifest, read_manifest
from nsfw_lab.data.download.run import NOTICE, DownloadConfig, download, summarise

__all__ = ["NOTICE", "DownloadConfig", "audit", "download", "is_download_manifest", "read_manifest", "summarise"]
