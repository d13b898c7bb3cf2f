"""The toolkit's error hierarchy, and the one place foreign exceptions are mapped into it.

    ToolkitError                       base; every expected failure; carries a hint (the fix)
    ├── ConfigError                    bad settings: YAML keys/types, flag values (key, file, line)
    ├── ValidationError                bad input to a command: empty text, bad model id, bad filter
    ├── ClusterError                   anything the cluster said or did not say
    │   ├── ConnectionFailed           unreachable, TLS, connect timeouts
    │   │   └── RequestTimedOut        the cluster took longer than elasticsearch.request_timeout
    │   ├── NotElasticsearch           something else answers on the URL (web server, Kibana, proxy)
    │   ├── AuthenticationFailed       401
    │   ├── AuthorizationFailed        403 that is not a license problem
    │   ├── LicenseError               a feature the cluster's license does not allow (ML, RRF)
    │   ├── UnsupportedVersion         cluster older than the toolkit supports
    │   ├── MLNodeError                no ML node, or not enough ML memory
    │   ├── NotFound                   index / model / pipeline / template missing (what, name)
    │   └── RequestFailed              any other error response (status, type, reason)
    ├── ModelError                     local model problems: loading, tracing, parity
    │   └── ParityError                in-cluster embeddings differ from the local ones
    ├── DimsMismatch                   vector dimensions disagree (template vs model vs cluster)
    ├── ImageError                     one image cannot be read (path, reason); per-item in ingest
    ├── ItemsFailed                    ingest finished but some items failed (failures file named)
    └── CheckFailed                    doctor/smoke found failures (results attached)

Only the CLI turns these into words and exit codes (`toolkit.cli.output.print_error`); every class has its own
exit code so scripts can tell failures apart.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any


class ToolkitError(Exception):
    """Base class. ``hint`` names the flag or command that fixes the problem."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(ToolkitError):
    exit_code = 3

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None,
                 line: int | None = None, hint: str | None = None) -> None:
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}{message}", hint=hint)
        self.key, self.file, self.line = key, file, line


class ValidationError(ToolkitError):
    exit_code = 4


class ClusterError(ToolkitError):
    exit_code = 10


class ConnectionFailed(ClusterError):
    exit_code = 11


class RequestTimedOut(ConnectionFailed):
    exit_code = 19

    def __init__(self, message: str, *, seconds: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.seconds = seconds


class NotElasticsearch(ClusterError):
    """A response without ``X-Elastic-Product: Elasticsearch``: another server answers on the URL."""

    exit_code = 25

    def __init__(self, message: str, *, url: str = "", status: int | None = None, content_type: str = "",
                 first_line: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url, self.status, self.content_type, self.first_line = url, status, content_type, first_line


class AuthenticationFailed(ClusterError):
    exit_code = 12


class AuthorizationFailed(ClusterError):
    exit_code = 13


class LicenseError(ClusterError):
    exit_code = 14


class UnsupportedVersion(ClusterError):
    exit_code = 15


class MLNodeError(ClusterError):
    exit_code = 16


class NotFound(ClusterError):
    exit_code = 17

    def __init__(self, message: str, *, what: str = "", name: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.what, self.name = what, name


class RequestFailed(ClusterError):
    exit_code = 18

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None,
                 reason: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status, self.error_type, self.reason = status, error_type, reason


class ModelError(ToolkitError):
    exit_code = 20


class ParityError(ModelError):
    exit_code = 21

    def __init__(self, message: str, *, report: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class DimsMismatch(ToolkitError):
    exit_code = 22


class ImageError(ToolkitError):
    """One image could not be used. Ingest records it per item; search fails with it."""

    exit_code = 23

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}", hint=None)
        self.path, self.reason = path, reason


class CheckFailed(ToolkitError):
    exit_code = 30

    def __init__(self, message: str, *, results: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.results = results


def _error_parts(exc: Any) -> tuple[int | None, str, str]:
    """(status, ES error type, reason) from an elasticsearch ApiError."""
    status = getattr(exc, "status_code", None)
    if status is None and getattr(exc, "meta", None) is not None:
        status = getattr(exc.meta, "status", None)
    body = getattr(exc, "body", None)
    err_type, reason = "", str(getattr(exc, "message", "") or exc)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        err_type = str(err.get("type", ""))
        reason = str(err.get("reason", reason))
        causes = err.get("root_cause") or []
        # "all shards failed" says nothing: the shard's own error is in root_cause.
        if causes and (not reason or reason == "all shards failed"):
            reason = str(causes[0].get("reason", "")) or reason
    elif isinstance(body, dict) and "error" in body:
        reason = str(body["error"])
    return status, err_type, reason


def _short_reason(exc: BaseException) -> str:
    """The innermost useful words of a nested transport error (``[Errno 111] Connection refused``)."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\][^)'\"]*", text)
    if m:
        return m.group(0).strip()
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return "timed out"
    return _first_line(text)


def _first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of a body or message, control characters dropped, at most ``limit`` long."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    line = re.sub(r"[\x00-\x1f\x7f-\x9f]", "", line)
    return line if len(line) <= limit else line[:limit] + "..."


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its ``errors`` (elastic_transport keeps earlier attempts there) and its causes."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo.extend(e for e in getattr(cur, "errors", ()) or () if isinstance(e, BaseException))
        todo.extend(e for e in (cur.__cause__, cur.__context__) if e is not None)


def _read_timeout(exc: BaseException) -> tuple[bool, float | None]:
    """(is a read timeout, seconds) for a ConnectionTimeout: urllib3 says which phase timed out."""
    for cur in _chain(exc):
        name = type(cur).__name__
        if name == "ReadTimeoutError" or "Read timed out" in str(cur):
            m = re.search(r"read timeout=([\d.]+)", str(cur))
            return True, float(m.group(1)) if m else None
        if name in ("ConnectTimeoutError", "NewConnectionError"):
            return False, None
    return False, None


def _product(meta: Any) -> str | None:
    """The ``X-Elastic-Product`` header ("" when absent); None when the response has no headers at all
    (a hand-made error: every real HTTP response has some, such as Content-Type)."""
    headers = getattr(meta, "headers", None)
    if not headers:
        return None
    try:
        return str(headers.get("x-elastic-product", ""))
    except AttributeError:
        return None


# Statuses a proxy or load balancer in front of a real cluster answers itself (no product header):
# they stay retryable request failures rather than "not Elasticsearch".
_PROXY_STATUSES = (429, 502, 503, 504)
_MAX_REASON = 1000


def _mask_userinfo(url: str) -> str:
    return re.sub(r"(//[^/@:]*:)[^@/]*@", r"\1********@", url)


def not_elasticsearch(meta: Any, body: Any, *, doing: str = "") -> NotElasticsearch:
    """The error for a response that did not come from Elasticsearch, saying what did answer.

    Elasticsearch puts ``X-Elastic-Product: Elasticsearch`` on every REST response, errors included
    (``RestController.dispatchRequest`` / ``dispatchBadRequest`` add it before any handler runs).
    """
    node = getattr(meta, "node", None)
    url = ""
    if node is not None:
        host = f"[{node.host}]" if ":" in str(node.host) else node.host
        url = f"{node.scheme}://{host}:{node.port}{node.path_prefix or ''}"  # NodeConfig never holds userinfo
    status = getattr(meta, "status", None)
    headers = getattr(meta, "headers", None)
    ctype = ""
    if headers is not None:
        try:
            ctype = _first_line(str(headers.get("content-type", "") or ""), 80)
        except AttributeError:
            ctype = ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = body if isinstance(body, str) else ("" if body is None else repr(body))
    if re.search(r"<\s*(!doctype|html|head|body|title|h1|p)\b", text[:4096], re.IGNORECASE):
        # An HTML page: its title, or its first line of text, not its markup.
        title = re.search(r"<title[^>]*>(.*?)</title>", text[:65536], re.IGNORECASE | re.DOTALL)
        text = title.group(1) if title else re.sub(r"<[^>]*>", "\n", text[:65536])
    first = _first_line(" ".join(text.split()) if "\n" not in text.strip() else text, 120)
    prefix = f"{doing}: " if doing else ""
    what = f"HTTP {status}" if status else "a response"
    location = ""
    if headers is not None and status and 300 <= status < 400:
        try:
            location = _first_line(str(headers.get("location", "") or ""), 200)
        except AttributeError:
            location = ""
    what += f", {ctype}" if ctype else ""
    what += f", redirecting to {_mask_userinfo(location)}" if location else ""
    what += f": {first!r}" if first else ", empty body"
    return NotElasticsearch(
        f"{prefix}the server at {url or 'the URL'} is not Elasticsearch (it answered {what}, without the "
        "'X-Elastic-Product: Elasticsearch' header)", url=url, status=status, content_type=ctype,
        first_line=first,
        hint=("the client does not follow redirects: set ES_URL / --es-url to where it points" if location else
              "check ES_URL / --es-url: it must point at Elasticsearch's HTTP port (9200 by default), not "
              "Kibana (5601), a proxy's page or another web server"))


def from_elasticsearch(exc: BaseException, *, doing: str = "") -> ToolkitError:
    """Translate an ``elasticsearch``/``elastic_transport`` exception into a ToolkitError."""
    import elastic_transport
    import elasticsearch

    prefix = f"{doing}: " if doing else ""
    if isinstance(exc, elasticsearch.UnsupportedProductError):
        return not_elasticsearch(getattr(exc, "meta", None), getattr(exc, "body", None), doing=doing)
    if isinstance(exc, elastic_transport.ConnectionTimeout):
        is_read, seconds = _read_timeout(exc)
        if is_read:
            after = f" after {seconds:g} s" if seconds else ""
            return RequestTimedOut(f"{prefix}the request timed out{after} (elasticsearch.request_timeout): "
                                   "the cluster did not answer in time", seconds=seconds,
                                   hint="raise elasticsearch.request_timeout (seconds) in the config file "
                                        "(toolkit.yaml / --config), or try again when the cluster is less busy")
    if isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout,
                        elastic_transport.TlsError, elasticsearch.ConnectionError)):
        text = " ".join(str(e) for e in _chain(exc))
        hint = ("check ES_URL / --es-url, that the cluster is running, and TLS settings (ES_CA_CERTS, "
                "ES_VERIFY_CERTS)")
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            # An https:// URL on a port that answers plain http.
            hint = "the server does not speak TLS on that port: use http:// in ES_URL / --es-url"
        elif "RemoteDisconnected" in text or "Connection reset by peer" in text:
            # What Elasticsearch with TLS on (the default since 8.0) does to plain http.
            hint = ("the server closed the connection without answering: if the cluster has TLS on (the "
                    "default since 8.0), use https:// in ES_URL and point ES_CA_CERTS at its http_ca.crt")
        return ConnectionFailed(f"{prefix}cannot reach the cluster ({_short_reason(exc)})", hint=hint)
    if isinstance(exc, elasticsearch.ApiError | elastic_transport.ApiError):
        meta = getattr(exc, "meta", None)
        product = _product(meta)
        status, err_type, reason = _error_parts(exc)
        if product is not None and product != "Elasticsearch" and status not in _PROXY_STATUSES:
            return not_elasticsearch(meta, getattr(exc, "body", None), doing=doing)
        if not isinstance(getattr(exc, "body", None), dict):
            reason = _first_line(reason)  # an HTML or text body: its first line, not the whole page
        # Messages quote at most _MAX_REASON characters (a reason can echo a whole document); the
        # error keeps the full reason.
        said = reason if len(reason) <= _MAX_REASON else f"{reason[:_MAX_REASON]}... ({len(reason)} characters)"
        if status == 401:
            return AuthenticationFailed(f"{prefix}authentication failed: {said}",
                                        hint="check ES_API_KEY (the 'encoded' value of the create-API-key response, or "
                                             "id:api_key; not the 'api_key' field alone), or ES_USERNAME and "
                                             "ES_PASSWORD")
        if status == 403 and "license" in reason and "non-compliant" in reason:
            return LicenseError(f"{prefix}{said}",
                                hint="this needs a Platinum/Enterprise license or a trial: "
                                     "POST _license/start_trial?acknowledge=true")
        if status == 403:
            return AuthorizationFailed(f"{prefix}not allowed: {said}",
                                       hint="use credentials with the privileges this command needs")
        if status == 404:
            # ES answers a missing pipeline/template with 404 and an empty body ({}).
            return NotFound(f"{prefix}{said or 'not found'}", what=err_type)
        if status == 400 and err_type == "media_type_header_exception":
            return UnsupportedVersion(f"{prefix}the cluster rejected the 9.x client ({said})",
                                      hint="toolkit needs Elasticsearch 9.1 or later")
        return RequestFailed(f"{prefix}{status} {err_type}: {said}", status=status,
                             error_type=err_type, reason=reason)
    if isinstance(exc, elastic_transport.TransportError):
        return ConnectionFailed(f"{prefix}{type(exc).__name__}: {_first_line(str(exc))}",
                                hint="check ES_URL / --es-url and that the cluster is running")
    return ToolkitError(f"{prefix}{type(exc).__name__}: {_first_line(str(exc))}")


@contextlib.contextmanager
def mapped(doing: str = "") -> Iterator[None]:
    """Run a block and re-raise foreign cluster exceptions as ToolkitErrors (``raise ... from``).

    Example::

        with mapped("creating index"):
            client.indices.create(index="images-000001")
    """
    try:
        yield
    except ToolkitError:
        raise
    except Exception as exc:
        mod = type(exc).__module__
        if mod.startswith(("elasticsearch", "elastic_transport")):
            raise from_elasticsearch(exc, doing=doing) from exc
        raise


class ItemsFailed(ToolkitError):
    """A run went through every item but some failed; they are listed in the failures file."""

    exit_code = 24

    def __init__(self, message: str, *, failures_file: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failures_file = failures_file
