"""The web app of ``toolkit serve``: a search page and a JSON API over ``toolkit.search``.

Routes (all behind the same checks, see :class:`Guard`):

- ``GET /``: the page (plain HTML + JS from ``static/``, no build step); ``GET /static/...`` its files.
- ``GET|POST /api/search``: one search, answered as ``toolkit search --json`` plus ``devtools`` (the
  requests in Kibana Dev Tools form) and a ``thumbnail`` URL per hit. Fields: ``q`` (text), ``like``
  (a document id), ``image_url`` (http/https only), ``image`` (an upload, POST multipart), ``k``,
  ``label`` (repeatable), ``collapse`` (one hit per relation_id), ``hybrid``.
- ``GET /api/config``: the index, the label values in it (for the filter menu), the defaults.
- ``GET /thumb/{id}``: a thumbnail of an indexed document, found by id (see ``toolkit.serve.thumbs``).

Errors are JSON ``{"error": {"type", "message", "hint", "exit_code"}}`` with the CLI's message and fix.
Elasticsearch credentials live in the server's client only: every text that leaves the server is
scrubbed of them, and no setting is ever sent to the browser but the index name and field names.

Example::

    app = create_app(load_settings(), token=None)
    serve(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from toolkit.errors import (
    AuthenticationFailed,
    AuthorizationFailed,
    ClusterError,
    ConnectionFailed,
    DimsMismatch,
    ImageError,
    LicenseError,
    NotFound,
    ToolkitError,
    ValidationError,
)
from toolkit.settings import MASK, Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATIC_DIR = Path(__file__).parent / "static"
#: The environment variable ``toolkit serve`` reads the access token from.
ENV_TOKEN = "TOOLKIT_SERVE_TOKEN"
COOKIE = "toolkit_serve_token"
#: The most hits the page asks for (each is a thumbnail); the CLI allows up to 10000.
MAX_K = 200
DEFAULT_K = 12
#: Room for the multipart framing and the form's other fields around an upload.
FORM_OVERHEAD_BYTES = 64 * 1024
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

# The status each kind of failure gets on the API. Cluster problems are the server's, not the browser's
# (502), except those the page can fix by asking differently.
_STATUS: list[tuple[type[ToolkitError], int]] = [
    (ValidationError, 400), (ImageError, 400), (DimsMismatch, 400), (NotFound, 404), (LicenseError, 403),
    (AuthenticationFailed, 502), (AuthorizationFailed, 502), (ConnectionFailed, 502), (ClusterError, 502),
]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``): the only hosts that
    may be served without a token."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token, or with a guessable one.

    Raises:
        ValidationError: naming ``--token`` / ``TOOLKIT_SERVE_TOKEN``.
    """
    if token is not None and len(token.strip()) < MIN_TOKEN_LENGTH:
        raise ValidationError(f"the access token is too short ({len(token.strip())} characters; at least "
                              f"{MIN_TOKEN_LENGTH})",
                              hint=f"use a long random one: export {ENV_TOKEN}=$(python -c "
                                   "'import secrets; print(secrets.token_urlsafe(24))')")
    if token is None and not is_loopback(host):
        raise ValidationError(f"--host {host} makes the page reachable from other machines, which needs an "
                              "access token",
                              hint=f"set {ENV_TOKEN} (or --token) to a long random value, or keep the default "
                                   "--host 127.0.0.1")


# --------------------------------------------------------------------------------------------------
# The guard: token, Host header, Origin, body size, security headers; one ASGI layer in front of all


@dataclass
class Guard:
    """Checks every HTTP request before any route sees it.

    - ``token`` set: the request must carry it (``Authorization: Bearer``, the cookie the page gets, or
      ``?token=`` on the page's URL, which sets the cookie and redirects to the URL without it),
      compared in constant time. Without a token the server only listens on loopback, and the
      ``Host`` header must name a loopback host or ``allowed_hosts`` (a web page on another site
      cannot reach it through DNS rebinding).
    - A POST whose ``Origin`` is another site is refused (no cross-site form posts).
    - Bodies over ``max_body`` bytes are refused with 413, while they stream in.
    """

    app: ASGIApp
    token: str | None = None
    max_body: int = 50 * 1024 * 1024
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, secured_send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await _too_large(self.max_body)(scope, receive, secured_send)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await secured_send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(self.max_body)(scope, receive, secured_send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> ASGIApp | None:
        host_header = headers.get("host", "")
        if self.token is None:
            hostname = _hostname(host_header)
            if not (is_loopback(hostname) or hostname in self.allowed_hosts):
                return _plain(400, f"this server answers to {', '.join(sorted(LOOPBACK_NAMES))} only "
                                   "(start it with --token to serve other host names)")
        origin = headers.get("origin")
        if scope.get("method") not in ("GET", "HEAD", "OPTIONS") and origin is not None:
            if origin == "null" or urlsplit(origin).netloc.lower() != host_header.lower():
                return _plain(403, "cross-site request refused")
        if self.token is None:
            return None
        given = _presented_token(scope, headers)
        if given is not None and hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
            if _query_token(scope) is not None:
                return _login_redirect(scope, self.token)
            return None
        return _unauthorized()


class _BodyTooLarge(Exception):
    pass


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _query_token(scope: Scope) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _presented_token(scope: Scope, headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            from urllib.parse import unquote

            return unquote(value)
    if scope.get("path") == "/":
        return _query_token(scope)
    return None


def _plain(status: int, text: str) -> ASGIApp:
    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]})
        body = {"error": {"type": "Refused", "message": text, "hint": None, "exit_code": None}}
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
    return respond


def _unauthorized() -> ASGIApp:
    return _plain(401, "this server needs its access token: open the page as /?token=<token> (the value of "
                       f"{ENV_TOKEN} or --token), or send 'Authorization: Bearer <token>'")


def _too_large(limit: int) -> ASGIApp:
    return _plain(413, f"the request is larger than {limit} bytes (ingest.max_download_bytes): upload a "
                       "smaller image")


def _login_redirect(scope: Scope, token: str) -> ASGIApp:
    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        cookie = f"{COOKIE}={quote(token, safe='')}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode("latin-1")),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})
    return respond


# --------------------------------------------------------------------------------------------------
# The app


@dataclass
class ServeContext:
    """What the routes share: settings, the one client, the lazily built image embedder, thumbnails."""

    settings: Settings
    client: Elasticsearch
    index: str
    embedder: Any = None
    thumbnails: Any = None
    _embedder_lock: threading.Lock = field(default_factory=threading.Lock)
    image_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while an image is embedded: one at a time on the one model (its first batch picks the precision)."""

    def image_embedder(self) -> Any:
        """The CLIP image model, loaded on the first image query (text queries never load torch)."""
        with self._embedder_lock:
            if self.embedder is None:
                from toolkit.ingest import load_embedder

                self.embedder = load_embedder(self.settings)
            return self.embedder

    def scrub(self, text: str) -> str:
        """``text`` without any secret of the settings (ES password, API key, URL credentials)."""
        for secret in sorted(self.settings.secrets(), key=len, reverse=True):
            if len(secret) >= 3:
                text = text.replace(secret, MASK)
        return text


def create_app(settings: Settings, *, token: str | None = None, index: str | None = None,
               client: Elasticsearch | None = None, embedder: Any = None,
               allowed_hosts: frozenset[str] = frozenset()) -> ASGIApp:
    """The ASGI app: the page, ``/api/``, thumbnails, wrapped in :class:`Guard`.

    Args:
        settings: cluster, fields, index alias, ingest limits (uploads and downloads use them).
        token: the access token every request must carry (None: loopback only).
        index: alias or index to search (default ``settings.index.alias``); the browser cannot change it.
        client: an Elasticsearch client (default ``toolkit.cluster.make_client(settings)``).
        embedder: an image embedder (default: the configured model, built on the first image query).
        allowed_hosts: extra ``Host`` names accepted without a token (the bound host).

    Example::

        app = create_app(settings, token=os.environ.get("TOOLKIT_SERVE_TOKEN"))
    """
    try:
        from starlette.applications import Starlette
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ToolkitError("toolkit serve needs the web extras (starlette, uvicorn, python-multipart)",
                           hint="pip install 'toolkit[serve]'") from exc
    from toolkit.serve.thumbs import Thumbnails

    if client is None:
        from toolkit.cluster import make_client

        client = make_client(settings)
    ctx = ServeContext(settings=settings, client=client, index=index or settings.index.alias, embedder=embedder,
                       thumbnails=Thumbnails(settings))

    async def page(request: Request) -> Response:
        from starlette.responses import FileResponse

        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-store"})

    async def api_search(request: Request) -> Response:
        return await _api_search(ctx, request)

    async def api_config(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_config, ctx)

    async def thumb(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_thumbnail, ctx, request.path_params["doc_id"])

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error_response(ctx, NotFound(f"no page {request.url.path!r} here", hint="open / for the page"))

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/api/search", api_search, methods=["GET", "POST"]),
        Route("/api/config", api_config, methods=["GET"]),
        Route("/thumb/{doc_id:path}", thumb, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, follow_symlink=False), name="static"),
    ]
    app: Starlette = Starlette(routes=routes, exception_handlers={404: not_found})
    max_body = settings.ingest.max_download_bytes + FORM_OVERHEAD_BYTES
    return Guard(app, token=token, max_body=max_body, allowed_hosts=allowed_hosts)


# --------------------------------------------------------------------------------------------------
# Routes


@dataclass
class Query:
    """One search as the page asks for it (the fields of the form)."""

    text: str | None = None
    like: str | None = None
    image_url: str | None = None
    upload: bytes | None = None
    upload_name: str = "upload"
    k: int = DEFAULT_K
    labels: tuple[str, ...] = ()
    collapse: bool = False
    hybrid: bool = False


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "on", "yes")


async def _read_query(request: Request, max_upload: int) -> Query:
    params: Any = request.query_params
    upload: bytes | None = None
    upload_name = "upload"
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise ValidationError("POST /api/search takes a form (multipart/form-data)",
                                  hint="send the fields as a form, or use GET with query parameters")
        try:
            form = await request.form(max_files=1, max_fields=50, max_part_size=64 * 1024)
        except _BodyTooLarge:
            raise
        except Exception as exc:  # MultiPartException and friends: a broken or hostile form
            raise ValidationError(f"the form could not be read: {exc}", hint="send multipart/form-data") from exc
        params = form
        file = form.get("image")
        if file is not None and not isinstance(file, str):
            try:
                data = await file.read(max_upload + 1)
            finally:
                await form.close()  # the spooled temporary file goes now, not when the process ends
            if len(data) > max_upload:
                raise ValidationError(f"the uploaded image is over {max_upload} bytes (ingest.max_download_bytes)",
                                      hint="upload a smaller image")
            if data:
                upload = data
                upload_name = f"upload {_printable(file.filename or 'image')}"

    def text(name: str) -> str | None:
        value = params.get(name)
        if value is None or not isinstance(value, str) or not value.strip():
            return None
        return value

    k_text = text("k")
    try:
        k = int(k_text) if k_text is not None else DEFAULT_K
    except ValueError:
        raise ValidationError(f"k must be a whole number, got {k_text!r}", hint=f"give k from 1 to {MAX_K}") from None
    if not 1 <= k <= MAX_K:
        raise ValidationError(f"k must be between 1 and {MAX_K} on this page, got {k}",
                              hint=f"give k from 1 to {MAX_K} (toolkit search -k goes to 10000)")
    labels = tuple(v for v in params.getlist("label") if isinstance(v, str) and v.strip())
    return Query(text=text("q"), like=text("like"), image_url=text("image_url"), upload=upload,
                 upload_name=upload_name, k=k, labels=labels, collapse=_flag(text("collapse")),
                 hybrid=_flag(text("hybrid")))


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in name)[:200]


async def _api_search(ctx: ServeContext, request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    try:
        query = await _read_query(request, ctx.settings.ingest.max_download_bytes)
    except ToolkitError as exc:
        return _error_response(ctx, exc)
    except _BodyTooLarge:
        # Answered here: Starlette's error middleware would turn the exception into a 500 first.
        from starlette.responses import JSONResponse

        limit = ctx.settings.ingest.max_download_bytes + FORM_OVERHEAD_BYTES
        message = (f"the request is larger than {limit} bytes (ingest.max_download_bytes): upload a smaller "
                   "image")
        return JSONResponse({"error": {"type": "Refused", "message": message, "hint": None, "exit_code": None}},
                            status_code=413, headers={"cache-control": "no-store"})
    return await run_in_threadpool(_search, ctx, query)


def _search(ctx: ServeContext, query: Query) -> Response:
    from starlette.responses import JSONResponse

    try:
        outcome = run_query(ctx, query)
    except ToolkitError as exc:
        return _error_response(ctx, exc)
    except Exception as exc:
        return _unexpected(ctx, exc)
    from toolkit.search import render_steps

    data = outcome.as_json()
    for hit in data["hits"]:
        hit["thumbnail"] = "/thumb/" + quote(hit["id"], safe="")
    data["devtools"] = render_steps(outcome.steps)
    return JSONResponse(_scrubbed(ctx, data), headers={"cache-control": "no-store"})


def run_query(ctx: ServeContext, query: Query) -> Any:
    """Run the page's query through ``toolkit.search`` (the same builders as ``toolkit search``)."""
    from toolkit import search as s

    f = ctx.settings.fields
    options = s.SearchOptions(k=query.k, filters=tuple(f"{f.label}={v}" for v in query.labels),
                              collapse=f.relation_id if query.collapse else None, hybrid=query.hybrid)
    given = [name for name, value in (("text", query.text), ("more like this", query.like),
                                      ("image URL", query.image_url), ("image upload", query.upload))
             if value is not None]
    if len(given) != 1:
        raise ValidationError("give exactly one of: text, an image upload, an image URL" +
                              (f" (got {' and '.join(given)})" if given else ""),
                              hint="type a query, or choose an image, or paste an image URL")
    if query.hybrid and query.text is None:
        raise ValidationError("hybrid matches the caption text, so it needs a text query",
                              hint="untick hybrid, or search with text")
    if query.image_url is not None:
        if not s.is_url(query.image_url.strip()):
            # Never a local path from the browser: the server would read its own files.
            raise ValidationError(f"the image URL must start with http:// or https://, got {query.image_url!r}",
                                  hint="paste the address of an image on the web, or upload the file")
        embedder = ctx.image_embedder()
        with ctx.image_lock:
            return s.search(settings=ctx.settings, options=options, image=query.image_url.strip(), index=ctx.index,
                            client=ctx.client, embedder=embedder)
    if query.upload is not None:
        embedder = ctx.image_embedder()
        with ctx.image_lock:
            vector = s.embed_query_bytes(query.upload, ctx.settings, embedder=embedder, name=query.upload_name)
        request = s.image_query(vector, ctx.settings, options, index=ctx.index)
        step = s.Step(f"image search: kNN on {f.image_vector} with the embedding of the {query.upload_name}",
                      request)
        outcome = s.SearchOutcome(kind="image", mode="knn", why="kNN", index=ctx.index, steps=[step])
        outcome.result = s.run(ctx.client, request)
        return outcome
    return s.search(settings=ctx.settings, options=options, text=query.text, like=query.like, index=ctx.index,
                    client=ctx.client)


def _config(ctx: ServeContext) -> Response:
    from starlette.responses import JSONResponse

    from toolkit.search import label_values

    f = ctx.settings.fields
    data: dict[str, Any] = {"index": ctx.index, "k": DEFAULT_K, "max_k": MAX_K, "label_field": f.label,
                            "collapse_field": f.relation_id, "labels": [], "error": None}
    try:
        data["labels"] = label_values(ctx.client, ctx.settings, index=ctx.index)
    except ToolkitError as exc:
        data["error"] = _error_json(exc)
    except Exception as exc:
        data["error"] = {"type": type(exc).__name__, "message": f"unexpected error: {exc}", "hint": None,
                         "exit_code": 1}
    return JSONResponse(_scrubbed(ctx, data), headers={"cache-control": "no-store"})


def _thumbnail(ctx: ServeContext, doc_id: str) -> Response:
    from starlette.responses import Response as Plain

    from toolkit.search import document_location

    try:
        location = document_location(ctx.client, doc_id, ctx.settings, index=ctx.index)
    except ToolkitError as exc:
        return _error_response(ctx, exc)
    except Exception as exc:
        return _unexpected(ctx, exc)
    thumb = ctx.thumbnails.get(location)
    headers = {"cache-control": "private, max-age=300"}
    if thumb.error:
        headers["x-thumbnail-error"] = _header_safe(ctx.scrub(thumb.error))
    return Plain(thumb.data, media_type=thumb.media_type, headers=headers)


def _header_safe(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:300]


# --------------------------------------------------------------------------------------------------
# Errors as the CLI words them


def _error_json(exc: ToolkitError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}


def status_for(exc: ToolkitError) -> int:
    """The HTTP status of a library error on the API."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def _error_response(ctx: ServeContext, exc: ToolkitError) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(_scrubbed(ctx, {"error": _error_json(exc)}), status_code=status_for(exc),
                        headers={"cache-control": "no-store"})


def _unexpected(ctx: ServeContext, exc: Exception) -> Response:
    from starlette.responses import JSONResponse

    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(ctx.scrub(details))
    body = {"error": {"type": type(exc).__name__, "message": f"unexpected {type(exc).__name__}: {exc}",
                      "hint": "this is a bug in toolkit: please report it with the server's log (secrets "
                              "are masked)", "exit_code": 1}}
    return JSONResponse(_scrubbed(ctx, body), status_code=500, headers={"cache-control": "no-store"})


def _scrubbed(ctx: ServeContext, data: Any) -> Any:
    """``data`` with every secret masked in every string (keys and values)."""
    if isinstance(data, str):
        return ctx.scrub(data)
    if isinstance(data, dict):
        return {_scrubbed(ctx, k): _scrubbed(ctx, v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_scrubbed(ctx, v) for v in data]
    return data


# --------------------------------------------------------------------------------------------------
# Running it


def make_server(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8080) -> Any:
    """A ``uvicorn.Server`` for ``app`` (access log off: it would print ``?token=`` URLs).

    Example::

        server = make_server(app, host="127.0.0.1", port=0)
        server.run()
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ToolkitError("toolkit serve needs uvicorn", hint="pip install 'toolkit[serve]'") from exc
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                            server_header=False, proxy_headers=False, lifespan="off")
    return uvicorn.Server(config)


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          index: str | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Check the bind, build the app and serve it until Ctrl-C.

    Raises:
        ValidationError: a non-loopback ``host`` without ``token``, or a short token.
        ToolkitError: the port is taken or cannot be bound (with the fix).

    Example::

        serve(load_settings(), host="0.0.0.0", port=8080, token=os.environ["TOOLKIT_SERVE_TOKEN"])
    """
    import socket

    check_bind(host, token)
    app = create_app(settings, token=token, index=index, allowed_hosts=frozenset({host.strip("[]").lower()}))
    server = make_server(app, host=host, port=port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ValidationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              hint="pick another --port (or stop what uses it)") from exc
    sock.listen(128)
    if on_ready:
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{sock.getsockname()[1]}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
