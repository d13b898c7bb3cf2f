"""Ingest from URLs served by a local http.server: 404, slow, oversized, flaky, pixel cap; Unsplash."""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.lib.ingest_helpers import CountingEmbedder, count_docs, jpeg_bytes, make_settings, setup_index
from toolkit.cluster import make_client
from toolkit.images.sources import open_source
from toolkit.ingest import ingest
from toolkit.ingest.fetch import FetchError, download

Route = bytes | Callable[[BaseHTTPRequestHandler], None]


class ImageServer:
    """Serves ``routes`` (path -> bytes, or a function that answers with the handler itself: the
    hostile cases); ``/slow*`` waits, ``/flaky*`` fails once with 503."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.flaky_seen: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                route = self.path.split("?", 1)[0]
                if route.startswith("/slow"):
                    time.sleep(1.5)
                if route.startswith("/flaky") and route not in server.flaky_seen:
                    server.flaky_seen.add(route)
                    self.send_response(503)
                    self.end_headers()
                    return
                body = server.routes.get(route)
                if callable(body):
                    try:
                        body(self)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def images() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.stop()


def test_download_cap_retry_and_404(images: ImageServer) -> None:
    images.routes["/a.jpg"] = jpeg_bytes()
    images.routes["/flaky.jpg"] = jpeg_bytes()
    assert download(f"{images.url}/a.jpg") == images.routes["/a.jpg"]
    assert download(f"{images.url}/flaky.jpg", retries=1, backoff=0.01) == images.routes["/flaky.jpg"]
    with pytest.raises(FetchError, match="HTTP 404"):
        download(f"{images.url}/missing.jpg", retries=3, backoff=0.01)
    assert images.requests.count("/missing.jpg") == 1  # a 404 is not retried
    with pytest.raises(FetchError, match="too large"):
        download(f"{images.url}/a.jpg", max_bytes=100)


@pytest.mark.parametrize("url", ["http://exa mple.com/a.jpg", "https://[::1/x.jpg"])
def test_malformed_url_fails_at_download_at_once(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: InvalidURL was retried with backoff (seconds lost per line), a ValueError escaped as stage "read".
    sleeps: list[float] = []
    fetch_module = importlib.import_module("toolkit.ingest.fetch")  # toolkit.ingest.fetch is also a function
    monkeypatch.setattr(fetch_module.time, "sleep", sleeps.append)
    with pytest.raises(FetchError, match="invalid URL") as caught:
        download(url, retries=3, backoff=5)
    assert caught.value.stage == "download"
    assert sleeps == []  # not retried


def test_url_list_ingests_and_records_every_download_failure(escluster: Any, images: ImageServer,
                                                             tmp_path: Path) -> None:
    images.routes["/ok1.jpg"] = jpeg_bytes((80, 60), color=(1, 2, 3))
    images.routes["/ok2.jpg"] = jpeg_bytes((81, 60), color=(9, 9, 9))
    images.routes["/same-as-ok1.jpg"] = images.routes["/ok1.jpg"]
    images.routes["/flaky.jpg"] = jpeg_bytes((82, 60))
    images.routes["/slow.jpg"] = jpeg_bytes((83, 60))
    images.routes["/big.jpg"] = b"\xff\xd8" + b"\0" * 60_000
    images.routes["/many-pixels.jpg"] = jpeg_bytes((400, 300))
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(f"{images.url}/{name}" for name in (
        "ok1.jpg", "ok2.jpg", "same-as-ok1.jpg", "flaky.jpg", "missing.jpg", "slow.jpg", "big.jpg",
        "many-pixels.jpg")) + "\n")
    settings = make_settings(escluster.url, **{
        "ingest.download_timeout": 0.5, "ingest.download_retries": 1, "ingest.max_download_bytes": 50_000,
        "ingest.max_image_pixels": 100_000})
    client = make_client(settings)
    setup_index(client, settings)
    report = ingest(client, settings, source=open_source(listing), embedder=CountingEmbedder(),
                    failures_file=tmp_path / "f.jsonl")
    assert (report.seen, report.indexed, report.skipped, report.failed) == (8, 3, 1, 4)
    lines = Path(report.failures_file).read_text().splitlines()
    failures = {r["location"].rsplit("/", 1)[1]: r for r in map(json.loads, lines)}
    assert set(failures) == {"missing.jpg", "slow.jpg", "big.jpg", "many-pixels.jpg"}
    assert "404" in failures["missing.jpg"]["reason"] and failures["missing.jpg"]["stage"] == "download"
    assert "timed out" in failures["slow.jpg"]["reason"]
    assert "too large" in failures["big.jpg"]["reason"]
    pixels = failures["many-pixels.jpg"]
    assert pixels["stage"] == "decode" and "too large" in pixels["reason"]  # ingest.max_image_pixels
    assert count_docs(client, settings) == 3
    doc = client.search(index=settings.index.alias, query={"term": {"url": f"{images.url}/ok2.jpg"}},
                        source_includes=["url", "path"])["hits"]["hits"][0]["_source"]
    assert doc == {"url": f"{images.url}/ok2.jpg"}


def test_unsplash_folder_ingests_with_captions_from_keywords(escluster: Any, images: ImageServer,
                                                             tmp_path: Path) -> None:
    images.routes["/photo-1"] = jpeg_bytes((90, 60), color=(200, 0, 0))
    images.routes["/photo-2"] = jpeg_bytes((91, 60), color=(0, 200, 0))
    (tmp_path / "photos.tsv000").write_text(
        "photo_id\tphoto_image_url\tphoto_description\tai_description\tphotographer_username\n"
        f"u1\t{images.url}/photo-1\tA red fox\t\tann\n"
        f"u2\t{images.url}/photo-2\t\tgreen hills\tbob\n")
    (tmp_path / "keywords.tsv000").write_text(
        "photo_id\tkeyword\tai_service_1_confidence\tai_service_2_confidence\tsuggested_by_user\n"
        "u1\tfox\t\t\tt\nu1\tanimal\t88\t\tf\n")
    settings = make_settings(escluster.url)
    client = make_client(settings)
    setup_index(client, settings)
    report = ingest(client, settings, source=open_source(tmp_path), embedder=CountingEmbedder(),
                    failures_file=tmp_path / "f.jsonl")
    assert (report.indexed, report.failed) == (2, 0)
    assert sorted(images.requests) == ["/photo-1?w=640", "/photo-2?w=640"]  # never the originals
    doc = client.get(index=settings.index.alias, id="u1")["_source"]
    assert doc["caption"] == "A red fox; fox"
    assert doc["metadata"] == {"photographer_username": "ann"}
    assert client.get(index=settings.index.alias, id="u2")["_source"]["caption"] == "green hills"
