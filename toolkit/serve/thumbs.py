"""Thumbnails for the search page: the image of an indexed document, resized, cached in memory.

The route looks the document up by id (``toolkit.search.document_location``) and hands the stored
``path`` or ``url`` here; no path from the browser ever reaches this module. So only images that were
ingested can be shown, and a ``../`` in a request has nothing to walk.

- local paths: read with ingest's guards (regular files only, ``open_local_file``: no FIFOs, devices or
  folders; ingest's byte cap) and decoded with ingest's pixel cap (``ingest.max_image_pixels``).
  Relative paths are resolved against the folder ``toolkit serve`` was started in.
- URLs: downloaded by the server with ingest's downloader and limits (``ingest.download_timeout``,
  ``ingest.max_download_bytes``, no retries), then decoded like a file.
- anything that fails (missing file, not an image, download error) gets a placeholder picture (SVG) and
  the reason in the ``X-Thumbnail-Error`` header; failures are retried after ``FAILURE_TTL`` seconds.

Example::

    thumbs = Thumbnails(settings)
    thumb = thumbs.get("/photos/cat.jpg")
    thumb.media_type, len(thumb.data), thumb.error     # ("image/jpeg", 9120, None)
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ImageError
from toolkit.settings import Settings

#: Longest side of a thumbnail, in pixels (the page shows them at about 200 px).
THUMB_SIZE = 256
MAX_ENTRIES = 2000
MAX_CACHE_BYTES = 64 * 1024 * 1024
FAILURE_TTL = 60.0

PLACEHOLDER = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">'
    b'<rect width="256" height="256" fill="#e5e7eb"/>'
    b'<path d="M64 176l40-48 32 36 24-28 32 40z" fill="#9ca3af"/><circle cx="168" cy="92" r="16" fill="#9ca3af"/>'
    b'<text x="128" y="222" font-family="sans-serif" font-size="18" text-anchor="middle" fill="#6b7280">'
    b"no preview</text></svg>"
)


@dataclass(frozen=True)
class Thumb:
    """A thumbnail: its bytes and type, and why it is the placeholder (``error``) when it is."""

    data: bytes
    media_type: str
    error: str | None = None
    made_at: float = 0.0


class Thumbnails:
    """Make and cache thumbnails by location (a stored path or URL). Thread-safe.

    A local file's entry is keyed by its path, size and modification time, so a replaced file gets a
    fresh thumbnail.
    """

    def __init__(self, settings: Settings, *, root: Path | None = None, size: int = THUMB_SIZE) -> None:
        self.settings = settings
        self.root = root or Path.cwd()
        self.size = size
        self._cache: OrderedDict[tuple[str, int, int], Thumb] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.made = 0
        """How many thumbnails were made (not served from the cache)."""

    def get(self, location: str) -> Thumb:
        from toolkit.search import is_url

        key = (location, 0, 0) if is_url(location) else self._file_key(location)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and (cached.error is None or time.monotonic() - cached.made_at < FAILURE_TTL):
                self._cache.move_to_end(key)
                return cached
        thumb = self._make(location)
        with self._lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._cache[key] = thumb
            self._bytes += len(thumb.data)
            while self._cache and (len(self._cache) > MAX_ENTRIES or self._bytes > MAX_CACHE_BYTES):
                _, dropped = self._cache.popitem(last=False)
                self._bytes -= len(dropped.data)
        return thumb

    def _path(self, location: str) -> Path:
        path = Path(location).expanduser()
        return path if path.is_absolute() else self.root / path

    def _file_key(self, location: str) -> tuple[str, int, int]:
        try:
            info = os.stat(self._path(location))
            return (location, info.st_size, info.st_mtime_ns)
        except (OSError, ValueError):
            return (location, -1, -1)

    def _make(self, location: str) -> Thumb:
        from toolkit.images.decode import load_image
        from toolkit.search import download, is_url

        limits = self.settings.ingest
        self.made += 1
        try:
            source: bytes | Path
            if is_url(location):
                source = download(location, timeout=limits.download_timeout, max_bytes=limits.max_download_bytes)
            else:
                source = self._path(location)
            image = load_image(source, target=self.size, max_pixels=limits.max_image_pixels)
            image.thumbnail((self.size, self.size))
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=82)
            return Thumb(out.getvalue(), "image/jpeg", made_at=time.monotonic())
        except ImageError as exc:
            return Thumb(PLACEHOLDER, "image/svg+xml", error=exc.reason, made_at=time.monotonic())
        except Exception as exc:  # never a 500 for one bad image: the placeholder says it
            return Thumb(PLACEHOLDER, "image/svg+xml", error=f"{type(exc).__name__}: {exc}",
                         made_at=time.monotonic())
