"""Shared by the serve tests: a trial test cluster with the 64-dim tiny models, the 7 bundled photos
ingested, a few hostile documents, and ``toolkit serve``'s app running on 127.0.0.1 in a thread."""

from __future__ import annotations

import atexit
import functools
import http.server as http_server
import io
import json
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from toolkit.cluster import make_client
from toolkit.devtools import Request, path, send
from toolkit.settings import Settings, load_settings

PASSWORD = "s3cret-Serve-Passw0rd"
#: Extra documents: id -> where its image is said to be (URL ids get the local image server's address).
URL_DOC = "web/pic #1?x=y&z"   # an id with the characters URLs reserve
MISSING_DOC = "missing-file"
PASSWD_DOC = "etc-passwd"
DEVICE_DOC = "dev-zero"
#: A caption that would run script if the page put it in as HTML.
XSS_CAPTION = 'gone <img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@dataclass
class Env:
    es: Any
    settings: Settings
    image_server: Any
    embedder: Any
    downloads: list[str] = field(default_factory=list)

    @property
    def client(self) -> Any:
        return make_client(self.settings)


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _image_server(downloads: list[str]) -> http_server.ThreadingHTTPServer:
    picture = _png((20, 120, 220))

    class Handler(http_server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            downloads.append(self.path)
            if self.path == "/pic.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(picture)))
                self.end_headers()
                self.wfile.write(picture)
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    atexit.register(server.shutdown)
    return server


@functools.cache
def serve_env() -> Env:
    """Built once per test session (the tiny text model is traced and deployed: the longest part)."""
    from tests.lib.test_smoke import shared_env, smoke_config
    from tests.models import tiny_clip_model
    from toolkit import datasets
    from toolkit.images.embedder import ClipImageEmbedder
    from toolkit.ingest import ingest

    # The cluster, model and setup of the smoke tests (built once per session, shared with them); the
    # client here also sends a password (the test cluster has no auth, so it only has to stay hidden).
    shared = shared_env()
    es = shared.handle
    settings = load_settings(environ={}, overrides={**smoke_config(es.url), "elasticsearch.username": "elastic",
                                                    "elasticsearch.password": PASSWORD})
    client = make_client(settings)
    embedder = ClipImageEmbedder(str(tiny_clip_model()), device="cpu", batch_size=8)
    report = ingest(client, settings, source=datasets.sample_source(), embedder=embedder)
    assert report.indexed == 7, report.as_json()
    downloads: list[str] = []
    images = _image_server(downloads)
    vector = send(client, Request("POST", f"{settings.index.alias}/_search", body={
        "size": 1, "query": {"ids": {"values": ["cat"]}},
        "_source": {"exclude_vectors": False, "includes": [settings.fields.image_vector]}}))
    vec = vector["hits"]["hits"][0]["_source"][settings.fields.image_vector]
    f = settings.fields
    extra = {
        URL_DOC: {f.url: f"http://127.0.0.1:{images.server_address[1]}/pic.png", f.caption: "a blue picture",
                  f.label: "web"},
        MISSING_DOC: {f.path: "/nonexistent/nowhere.jpg", f.caption: XSS_CAPTION, f.label: "web"},
        PASSWD_DOC: {f.path: "../../../../../../etc/passwd", f.caption: "not an image", f.label: "web"},
        DEVICE_DOC: {f.path: "/dev/zero", f.caption: "a device", f.label: "web"},
    }
    for doc_id, doc in extra.items():
        send(client, Request("PUT", path(settings.index.alias, "_doc", doc_id),
                             body={**doc, f.relation_id: "r-web", f.image_vector: vec},
                             params={"refresh": "true", "pipeline": "_none"}))
    return Env(es=es, settings=settings, image_server=images, embedder=embedder, downloads=downloads)


@dataclass
class Running:
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_app(app: Any) -> Running:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread."""
    from toolkit.serve import make_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = make_server(app, host="127.0.0.1", port=sock.getsockname()[1])
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    import time

    for _ in range(200):  # until uvicorn has started (a readiness wait, not a timed test)
        if server.started:
            break
        time.sleep(0.02)
    return Running(url=f"http://127.0.0.1:{sock.getsockname()[1]}", server=server, thread=thread)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http(method: str, url: str, *, headers: dict[str, str] | None = None, data: bytes | None = None) -> Reply:
    """One HTTP request without following redirects; any status comes back as a Reply."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = "----toolkit-serve-test-boundary"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, ctype) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def png(colour: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (96, 64)) -> bytes:
    return _png(colour, size)
