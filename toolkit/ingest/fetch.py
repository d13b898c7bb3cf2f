"""Getting the bytes of each item: local files hashed, URLs downloaded (deadlines, retries, size cap).

Runs in a thread pool (I/O bound; hashlib and sockets release the GIL) with a bounded number of items
in flight and the input order kept, so memory stays flat and the output is deterministic.

Downloads use ``http.client`` directly rather than ``urllib`` so that every rule is ours:

- one deadline per attempt (``timeout``) covers connecting, the headers and the whole body, checked
  before every read of the socket (a server sending a byte a second fails too, not only a silent one);
- a :class:`Downloads` handle stops every download of a run at once (Ctrl-C) by shutting its sockets;
- a body shorter than its ``Content-Length`` (or a broken chunked body) is a retried download error;
- ``Accept-Encoding: identity``; a gzip/deflate body sent anyway is decoded (under the size cap),
  any other encoding fails naming it;
- redirects: at most :data:`MAX_REDIRECTS`, to http/https only;
- ``Retry-After`` on 429/503 is honoured up to ``timeout`` seconds;
- credentials in the URL (``https://user:pw@host/``) are sent as Basic auth and never appear in a
  reason (:func:`display_url` masks them).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import io
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from toolkit.images.sources import is_url, open_local_file
from toolkit.settings import MASK, mask_url

USER_AGENT = "toolkit-ingest/0.1"
# Statuses worth another try: the server or a proxy is busy or briefly broken.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Redirects followed per attempt (browsers allow about 20; an image CDN needs one or two).
MAX_REDIRECTS = 5
_CHUNK = 1 << 16
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# Characters left as they are when quoting a path or query (RFC 3986 reserved + unreserved + "%").
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


class FetchError(Exception):
    """An item's bytes could not be had. ``stage`` is ``download`` or ``read``."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.reason = stage, reason


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not (``reason`` says how)."""

    def __init__(self, reason: str, *, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


class Downloads:
    """The live downloads of one run, so that :meth:`stop` ends all of them at once.

    ``stop()`` shuts every open socket (a blocked read returns at once) and makes every later attempt
    or backoff fail with :data:`STOPPED`. Thread-safe.

    Example:
        >>> downloads = Downloads()
        >>> fetch(url, downloads=downloads)   # in worker threads; on Ctrl-C: downloads.stop()
    """

    STOPPED = "not finished: the run stopped during the download"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopped = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` unless stopped first (then raise)."""
        if self._stopped.wait(seconds):
            raise FetchError("download", self.STOPPED)

    def check(self) -> None:
        if self.stopped:
            raise FetchError("download", self.STOPPED)

    def _add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self.stopped:  # stopped between the check and the connect
            sock.shutdown(socket.SHUT_RDWR)

    def _discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


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


def display_url(url: str) -> str:
    """``url`` as it may be shown or stored: a password in it masked."""
    try:
        return mask_url(url)
    except ValueError:  # unparsable (a broken IPv6 host): mask anything between ':' and '@'
        return re.sub(r"(//[^/@:]*:)[^/@]*@", rf"\1{MASK}@", url)


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    # Only regular files, opened without blocking, reads capped: a FIFO or /dev/zero never hangs.
    with open_local_file(path) as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def download(url: str, *, timeout: float = 20.0, retries: int = 3, max_bytes: int = 50 * 1024 * 1024,
             backoff: float = 0.5, downloads: Downloads | None = None) -> bytes:
    """Download ``url`` with a deadline per attempt, retries on transient failures and a size cap.

    Args:
        timeout: seconds per attempt for everything: connecting, the headers and the whole body (a slow
            trickle fails too); also the longest ``Retry-After`` waited for.
        retries: further attempts after transient failures (connection errors, timeouts, a short body,
            429, 5xx). 404 and other client errors fail at once.
        max_bytes: larger bodies fail without being read past the cap (decoded size for gzip).
        backoff: seconds before the first retry, doubling each time.
        downloads: the run's :class:`Downloads`, to stop this download from another thread.

    Raises:
        FetchError: stage ``download`` with the reason of the last attempt.

    Example:
        >>> len(download("https://images.unsplash.com/photo-1?w=640", timeout=10))
        48213
    """
    control = downloads or Downloads()
    reason = ""
    for attempt in range(retries + 1):
        control.check()
        try:
            return _download_once(url, timeout=timeout, max_bytes=max_bytes, downloads=control)
        except _Retryable as exc:
            if control.stopped:
                raise FetchError("download", Downloads.STOPPED) from None
            reason = exc.reason
            if attempt < retries:
                control.wait(exc.wait if exc.wait is not None else backoff * 2 ** attempt)
    tries = f" (after {retries + 1} attempts)" if retries else ""
    raise FetchError("download", reason + tries)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int | None
    target: str
    authorization: str | None


def _parse(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a broken IPv6 literal, a port that is not a number
        raise FetchError("download", f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError("download", f"unsupported URL scheme {scheme}:// (only http and https)")
    host = parts.hostname
    if not host:
        raise FetchError("download", "invalid URL: no host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise FetchError("download", "invalid URL: it contains spaces or control characters "
                                     "(percent-encode them: %20)")
    authorization = None
    if parts.username is not None or parts.password is not None:
        if parts.password == MASK:
            raise FetchError("download", "the password in this URL was masked when it was written to the "
                                         "failures file: retry this item from its original source "
                                         "(the same command with --resume)")
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    target = quote(parts.path or "/", safe=_SAFE_PATH)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE_QUERY)
    return _Target(scheme, host, port, target, authorization)


class _Clock:
    """The deadline of one attempt: each socket operation waits at most what is left of it."""

    def __init__(self, timeout: float, downloads: Downloads) -> None:
        self.timeout, self.downloads = timeout, downloads
        self.deadline = time.monotonic() + timeout

    def left(self) -> float:
        self.downloads.check()
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


class _DeadlineReader(io.RawIOBase):
    """The socket's raw file (which keeps the socket open after ``HTTPConnection.close``, as
    ``makefile`` does) with every read bounded by what is left of the attempt's deadline."""

    def __init__(self, sock: socket.socket, clock: _Clock) -> None:
        self.sock, self.clock = sock, clock
        self.raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.sock.settimeout(self.clock.left())
        return self.raw.readinto(buffer) or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


class _SockShim:
    """What ``HTTPResponse.__init__`` calls ``makefile`` on."""

    def __init__(self, sock: socket.socket, clock: _Clock) -> None:
        self.sock, self.clock = sock, clock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self.sock, self.clock))


def _connection(target: _Target, clock: _Clock) -> http.client.HTTPConnection:
    cls = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    conn = cls(target.host, target.port, timeout=clock.left())

    class Response(http.client.HTTPResponse):
        def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            super().__init__(_SockShim(sock, clock), *args, **kwargs)  # type: ignore[arg-type]

    conn.response_class = Response
    return conn


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _download_once(url: str, *, timeout: float, max_bytes: int, downloads: Downloads) -> bytes:
    clock = _Clock(timeout, downloads)
    timed_out = f"timed out after {timeout:g} s (ingest.download_timeout: the whole download, not each read)"
    current = url
    authorization: str | None = None
    first_host: str | None = None
    for _ in range(MAX_REDIRECTS + 1):
        target = _parse(current)
        if target.authorization is not None:
            authorization = target.authorization
        if first_host is None:
            first_host = target.host
        elif target.host != first_host:
            authorization = target.authorization  # credentials never follow a redirect to another host
        conn = _connection(target, clock)
        sock: socket.socket | None = None
        response: http.client.HTTPResponse | None = None
        try:
            try:
                conn.connect()
                sock = conn.sock
                assert sock is not None
                downloads._add(sock)
                headers = {"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.8",
                           "Accept-Encoding": "identity"}
                if authorization:
                    headers["Authorization"] = authorization
                sock.settimeout(clock.left())
                conn.request("GET", target.target, headers=headers)
                response = conn.getresponse()
                if response.status in REDIRECT_STATUSES:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchError("download", f"HTTP {response.status} redirect without a Location")
                    current = urljoin(current, location.strip())
                    scheme = urlsplit(current).scheme.lower()
                    if scheme not in ("http", "https"):
                        raise FetchError("download", f"redirected to a {scheme or '(no scheme)'}:// URL "
                                                     "(only http and https redirects are followed)")
                    continue
                if not 200 <= response.status < 300 or response.status in (204, 205):
                    reason = f"HTTP {response.status} {response.reason}".rstrip()
                    if response.status in RETRY_STATUSES:
                        wait = _retry_after(response.getheader("Retry-After"))
                        if wait is not None and wait > timeout:
                            raise FetchError("download", f"{reason}: the server asks to retry after "
                                                         f"{wait:.0f} s (more than ingest.download_timeout"
                                                         "): retry later with --retry-failures")
                        raise _Retryable(reason, wait=wait)
                    if response.status < 400:
                        reason += " (no image in the answer)"
                    raise FetchError("download", reason)
                return _body(response, max_bytes=max_bytes, clock=clock)
            except (FetchError, _Retryable):
                raise
            except TimeoutError:
                raise _Retryable(timed_out) from None
            except http.client.IncompleteRead:
                raise _Retryable("connection closed mid-body (a chunked body cut short or "
                                 "malformed)") from None
            except http.client.RemoteDisconnected:
                raise _Retryable("connection closed before an answer") from None
            except (http.client.InvalidURL, UnicodeError) as exc:
                raise FetchError("download", f"invalid URL: {_no_secret(str(exc), current)}") from None
            except http.client.HTTPException as exc:  # a status line or headers that are not HTTP
                raise FetchError("download", f"not an HTTP answer: {type(exc).__name__}: "
                                             f"{_no_secret(str(exc), current)[:200]}") from None
            except socket.gaierror as exc:
                raise _Retryable(f"cannot connect: unknown host {target.host} ({exc.strerror})") from None
            except ConnectionRefusedError:
                raise _Retryable("cannot connect: connection refused") from None
            except OSError as exc:
                if downloads.stopped:
                    raise FetchError("download", Downloads.STOPPED) from None
                raise _Retryable(f"connection failed: {exc.strerror or exc or type(exc).__name__}") from None
        finally:
            if sock is not None:
                downloads._discard(sock)
            if response is not None:
                response.close()
            conn.close()
    raise FetchError("download", f"too many redirects (more than {MAX_REDIRECTS})")


def _no_secret(text: str, url: str) -> str:
    """``text`` (an exception's message) without the password of ``url`` in it."""
    try:
        password = urlsplit(url).password if "@" in url else None
    except ValueError:
        password = None
    return text.replace(password, MASK) if password else text


def _body(response: http.client.HTTPResponse, *, max_bytes: int, clock: _Clock) -> bytes:
    too_large = f"too large: over the limit of {max_bytes} bytes (ingest.max_download_bytes)"
    length_header = response.getheader("Content-Length")
    expected: int | None = None
    if length_header is not None and length_header.strip().isdigit():
        expected = int(length_header.strip())
        if expected > max_bytes:
            raise FetchError("download", f"too large: {expected} bytes is over the limit of {max_bytes} "
                                         "bytes (ingest.max_download_bytes)")
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    decoder: Any = None
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = _Deflate()
    elif encoding not in ("identity", ""):
        raise FetchError("download", f"the server sent the body with Content-Encoding: {encoding[:40]}, which "
                                     "ingest cannot decode (it asks for identity; gzip and deflate are "
                                     "decoded): fix the server or download the images yourself")
    parts: list[bytes] = []
    raw_total = total = 0
    while True:
        clock.left()
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        raw_total += len(chunk)
        if raw_total > max_bytes:
            raise FetchError("download", too_large)
        if decoder is not None:
            try:
                chunk = decoder.decompress(chunk, max_bytes - total + 1)
            except zlib.error as exc:
                raise FetchError("download", f"the {encoding} body cannot be decoded ({exc})") from None
            if decoder.unconsumed_tail:
                raise FetchError("download", too_large + f" once {encoding}-decoded")
        total += len(chunk)
        if total > max_bytes:
            raise FetchError("download", too_large)
        parts.append(chunk)
    if expected is not None and raw_total < expected and not response.chunked:
        raise _Retryable(f"incomplete body: the connection closed after {raw_total} of the {expected} "
                         "bytes of Content-Length")
    if decoder is not None and not decoder.eof:
        raise _Retryable(f"incomplete body: the {encoding} stream ended early")
    data = b"".join(parts)
    if not data:
        raise FetchError("download", "empty response (0 bytes)")
    content_type = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
    head = data[:512].lstrip().lower()
    if (content_type.startswith("text/") and head[:1] == b"<") or head.startswith((b"<!doctype html", b"<html")):
        raise FetchError("download", f"the server answered {response.status} with a web page "
                                     f"(Content-Type: {content_type}), not an image: the URL may need a "
                                     "login, or point at a page rather than at the image file")
    return data


class _Deflate:
    """``Content-Encoding: deflate``: zlib-wrapped as the RFC says, or raw as some servers send it."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._head = b""

    @property
    def unconsumed_tail(self) -> bytes:
        return bytes(self._inner.unconsumed_tail) if self._inner is not None else b""

    @property
    def eof(self) -> bool:
        return bool(self._inner is not None and self._inner.eof)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            zlib_header = (self._head[0] & 0x0F) == 8 and int.from_bytes(self._head[:2], "big") % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        return bytes(self._inner.decompress(data, max_length))


def fetch(location: str, *, timeout: float = 20.0, retries: int = 3,
          max_bytes: int = 50 * 1024 * 1024, backoff: float = 0.5,
          downloads: Downloads | None = None) -> Fetched:
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
        data = download(location, timeout=timeout, retries=retries, max_bytes=max_bytes, backoff=backoff,
                        downloads=downloads)
        return Fetched(sha256=hashlib.sha256(data).hexdigest(), size=len(data), data=data)
    if _SCHEME.match(location):
        raise FetchError("download", f"unsupported URL scheme in {display_url(location)!r} (use http or "
                                     "https)")
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
