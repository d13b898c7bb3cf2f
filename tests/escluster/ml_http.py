"""A minimal HTTP front for :class:`~tests.escluster.ml.MLStore` alone (``GET /`` and ``/_ml/...``).

The ML tests use it to run the real eland CLI and the ``elasticsearch`` client against the ML store
without the rest of the test cluster. It speaks just enough of ES's wire protocol for them: the
``X-Elastic-Product`` header, JSON bodies, ES-shaped errors.

Example::

    with serve_ml(MLStore(license_type=lambda: "trial", ml_nodes=lambda: 1,
                          ml_memory_bytes=lambda: 8 << 30)) as url:
        Elasticsearch(url).ml.get_trained_models()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.escluster.errors import ESError
from tests.escluster.ml import MLStore

ROOT_INFO = {
    "name": "escluster-node",
    "cluster_name": "escluster",
    "cluster_uuid": "ml-only-cluster-uuid",
    "version": {
        "number": "9.2.0",
        "build_flavor": "default",
        "build_type": "tar",
        "lucene_version": "10.3.0",
        "minimum_wire_compatibility_version": "8.19.0",
        "minimum_index_compatibility_version": "8.0.0",
    },
    "tagline": "You Know, for Search",
}


def _handler(store: MLStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- stdlib signature
            pass

        def _send(self, status: int, body: Any) -> None:
            data = b"" if self.command == "HEAD" else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else None
            except json.JSONDecodeError as exc:
                self._send(400, ESError(400, "x_content_parse_exception", str(exc)).body())
                return
            parts = [unquote(p) for p in url.path.split("/") if p]
            try:
                if not parts and self.command in ("GET", "HEAD"):
                    self._send(200, ROOT_INFO)
                elif parts and parts[0] == "_ml":
                    status, out = store.handle(self.command, parts[1:], params, body)
                    self._send(status, out)
                else:
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"no handler found for uri [{url.path}] and method [{self.command}]",
                    )
            except ESError as err:
                self._send(err.status, err.body())

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    return Handler


@contextmanager
def serve_ml(store: MLStore, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``store`` on an ephemeral port in a background thread; yields the base URL."""
    server = ThreadingHTTPServer((host, 0), _handler(store))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
