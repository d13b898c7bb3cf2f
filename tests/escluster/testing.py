"""Helpers to run the test cluster inside a test process.

Example::

    from tests.escluster.testing import running_cluster

    with running_cluster(license="basic") as es:
        Elasticsearch(es.url).info()
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .server import ESServer, make_server
from .state import Cluster


@dataclass
class Handle:
    """A running in-process cluster: ``url``, the ``state`` (:class:`Cluster`), its ``ml`` store."""

    url: str
    state: Cluster
    server: ESServer
    api_key: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def ml(self) -> Any:
        return self.state.ml

    @property
    def faults(self) -> Any:
        """The fault injector (as ``POST /_test/faults``): ``handle.faults.add({"bulk_429_items": 3})``."""
        return self.state.faults

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
        self._thread = None


def start_cluster(
    *,
    license: str = "trial",
    api_key: str | None = None,
    version: str = "9.2.0",
    ml_nodes: int = 1,
    ml_memory_bytes: int = 4 * 1024**3,
    password: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Handle:
    """Start a cluster on a daemon thread and return its :class:`Handle` (call ``stop()`` when done).

    Example::

        es = start_cluster(api_key="k")
        ...
        es.stop()
    """
    cluster = Cluster(license=license, version=version, ml_nodes=ml_nodes, ml_memory_bytes=ml_memory_bytes)
    server = make_server(cluster, host, port, api_key=api_key, password=password)
    bound_host, bound_port = server.server_address[:2]
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"escluster-{bound_port}",
        daemon=True,
    )
    thread.start()
    return Handle(
        url=f"http://{bound_host}:{bound_port}", state=cluster, server=server, api_key=api_key, _thread=thread
    )


@contextmanager
def running_cluster(
    *,
    license: str = "trial",
    api_key: str | None = None,
    version: str = "9.2.0",
    ml_nodes: int = 1,
    ml_memory_bytes: int = 4 * 1024**3,
    password: str | None = None,
) -> Iterator[Handle]:
    """Context manager around :func:`start_cluster`; the cluster stops on exit.

    Example::

        with running_cluster(license="trial", ml_nodes=0) as es:
            requests.get(es.url)
    """
    handle = start_cluster(
        license=license,
        api_key=api_key,
        version=version,
        ml_nodes=ml_nodes,
        ml_memory_bytes=ml_memory_bytes,
        password=password,
    )
    try:
        yield handle
    finally:
        handle.stop()


@dataclass
class Reply:
    """A raw HTTP reply: ``status``, ``headers`` (lower-case), ``body`` (parsed JSON or None), ``raw``."""

    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


def call(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    ndjson: bool = False,
    timeout: float = 30.0,
) -> Reply:
    """Send one request without any client library (to check the wire protocol exactly).

    Args:
        url: the cluster URL (``handle.url``).
        method: HTTP method.
        path: path with query string, e.g. ``"/idx/_doc/1?refresh=true"``.
        body: a dict/list (sent as JSON), a ``str``/``bytes`` (sent as is) or None.
        headers: extra headers; ``Content-Type`` defaults to JSON (NDJSON with ``ndjson=True``).

    Example::

        r = call(es.url, "PUT", "/idx", {"mappings": {}})
        assert r.status == 200 and r.body["acknowledged"]
    """
    import http.client
    import json
    from urllib.parse import urlsplit

    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=timeout)
    send_headers = dict(headers or {})
    payload: bytes | None = None
    if body is not None:
        if isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode()
        send_headers.setdefault("Content-Type", "application/x-ndjson" if ndjson else "application/json")
    try:
        conn.request(method, path, body=payload, headers=send_headers)
        resp = conn.getresponse()
        raw = resp.read()
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed, raw)
    finally:
        conn.close()
