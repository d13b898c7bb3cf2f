"""Getting the bytes of each item: local files hashed, URLs downloaded (timeouts, retries, size cap).

Runs in a thread pool (I/O bound; hashlib and sockets release the GIL) with a bounded number of items
in flight and the input order kept, so memory stays flat and the output is deterministic.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from toolkit.images.sources import is_url

USER_AGENT = "toolkit-ingest/0.1"
# Statuses worth another try: the server or a proxy is busy or briefly broken.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class FetchError(Exception):
    """An item's bytes could not be had. ``stage`` is ``download`` or ``read``."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.reason = stage, reason


@dataclass(frozen=True)
class Fetched:
    """The image's content: ``data`` (downloaded bytes) or ``path`` (a local file), and its sha256."""

    sha256: str
    size: int
    data: bytes | None = None
    path: Path | None = None

    @property
    def source(self) -> bytes | Path:
        """What ``load_image`` decodes."""
        return self.data if self.data is not None else self.path  # type: ignore[return-value]


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def download(url: str, *, timeout: float = 20.0, retries: int = 3, max_bytes: int = 50 * 1024 * 1024,
             backoff: float = 0.5) -> bytes:
    """Download ``url`` with a per-attempt deadline, retries on transient failures and a size cap.

    Args:
        timeout: seconds per attempt, for connecting and for the whole body (a slow trickle fails too).
        retries: further attempts after transient failures (connection errors, timeouts, 429, 5xx).
            404 and other client errors fail at once.
        max_bytes: larger bodies fail without being read past the cap.
        backoff: seconds before the first retry, doubling each time.

    Raises:
        FetchError: stage ``download`` with the reason of the last attempt.

    Example:
        >>> len(download("https://images.unsplash.com/photo-1?w=640", timeout=10))
        48213
    """
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            return _download_once(url, timeout=timeout, max_bytes=max_bytes)
        except FetchError:
            raise
        except (ValueError, http.client.InvalidURL) as exc:
            # A malformed URL (spaces, a broken IPv6 host) fails the same way on every try.
            raise FetchError("download", f"invalid URL: {exc}") from None
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code not in RETRY_STATUSES:
                raise FetchError("download", reason) from None
        except TimeoutError:
            reason = f"timed out after {timeout:g} s (ingest.download_timeout)"
        except urllib.error.URLError as exc:
            inner = exc.reason
            if isinstance(inner, (TimeoutError, socket.timeout)):
                reason = f"timed out after {timeout:g} s (ingest.download_timeout)"
            else:
                reason = f"cannot connect: {inner}"
        except (OSError, http.client.HTTPException) as exc:
            reason = f"connection failed: {type(exc).__name__}: {exc}"
    tries = f" (after {retries + 1} attempts)" if retries else ""
    raise FetchError("download", reason + tries)


def _download_once(url: str, *, timeout: float, max_bytes: int) -> bytes:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.8"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise FetchError("download", f"too large: {int(length)} bytes is over the limit of {max_bytes} "
                                         "bytes (ingest.max_download_bytes)")
        parts: list[bytes] = []
        total = 0
        while chunk := response.read(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise FetchError("download", f"too large: over the limit of {max_bytes} bytes "
                                             "(ingest.max_download_bytes)")
            if time.monotonic() > deadline:
                raise TimeoutError
            parts.append(chunk)
    data = b"".join(parts)
    if not data:
        raise FetchError("download", "empty response (0 bytes)")
    return data


def fetch(location: str, *, timeout: float = 20.0, retries: int = 3,
          max_bytes: int = 50 * 1024 * 1024, backoff: float = 0.5) -> Fetched:
    """The content of one location: a URL is downloaded, a local file hashed (and decoded later).

    Raises:
        FetchError: ``download`` for URLs, ``read`` for local files.

    Example:
        >>> fetch("photos/a.jpg").sha256[:12]
        '3f2a9c0d11be'
    """
    if not location:
        raise FetchError("source", "no image path or URL in this item")
    if is_url(location):
        data = download(location, timeout=timeout, retries=retries, max_bytes=max_bytes, backoff=backoff)
        return Fetched(sha256=hashlib.sha256(data).hexdigest(), size=len(data), data=data)
    if _SCHEME.match(location):
        raise FetchError("download", f"unsupported URL scheme in {location!r} (use http or https)")
    path = Path(location)
    try:
        if path.is_dir():
            raise FetchError("read", "is a folder, not an image file")
        sha, size = hash_file(path)
        if size == 0:
            # Before an id is derived from the content: empty files are failures, not duplicates.
            raise FetchError("read", "empty file (0 bytes)")
    except FileNotFoundError:
        raise FetchError("read", "file not found") from None
    except PermissionError:
        raise FetchError("read", "permission denied") from None
    except OSError as exc:
        raise FetchError("read", f"cannot read file: {exc.strerror or exc}") from None
    return Fetched(sha256=sha, size=size, path=path)

