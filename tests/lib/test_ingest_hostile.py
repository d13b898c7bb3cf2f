"""Hostile HTTP servers and aborted runs: every item still ends indexed, skipped or failed with a reason.

The servers are routes of the ``ImageServer`` of ``test_ingest_urls`` that answer by hand: a trickle,
a body shorter than its Content-Length, gzip nobody asked for, redirect loops, HTML with 200, ...
"""

from __future__ import annotations

import base64
import gzip
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.lib.ingest_helpers import CountingEmbedder, count_docs, good_images, jpeg_bytes, make_settings, setup_index
from tests.lib.test_ingest_urls import ImageServer
from toolkit.cluster import make_client
from toolkit.errors import ToolkitError
from toolkit.images.sources import SourceItem, open_source
from toolkit.ingest import ingest
from toolkit.ingest.fetch import Downloads, FetchError, download
from toolkit.ingest.ledger import Ledger, RetrySource, default_failures_path

#: How long a hostile handler keeps going at most, so that a test without the fix fails instead of hanging.
CAP_SECONDS = 30.0


@pytest.fixture
def images() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.stop()


class Trickle:
    """A route that sends headers, then one byte every ``every`` seconds until the client goes away
    (or ``CAP_SECONDS`` pass: ``capped`` then says the client never gave up)."""

    def __init__(self, length: int = 100_000, every: float = 0.05, before: Callable[[], None] | None = None):
        self.length, self.every, self.before = length, every, before
        self.started = threading.Event()
        self.ended = threading.Event()
        self.capped = False

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            if self.before is not None:
                self.before()
            handler.send_response(200)
            handler.send_header("Content-Type", "image/jpeg")
            handler.send_header("Content-Length", str(self.length))
            handler.end_headers()
            handler.wfile.flush()
            self.started.set()
            give_up = time.monotonic() + CAP_SECONDS
            while time.monotonic() < give_up:
                handler.wfile.write(b"\xff")
                handler.wfile.flush()
                time.sleep(self.every)
            self.capped = True
        except OSError:
            pass  # the client hung up: what we want
        finally:
            self.ended.set()


def _answer(status: int, body: bytes = b"", **headers: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)
    return route


def _failures(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture
def env(escluster: Any, tmp_path: Path) -> Any:
    class Env:
        def __init__(self, **overrides: Any) -> None:
            values = {"ingest.download_retries": 1, "ingest.download_timeout": 5.0, **overrides}
            self.settings = make_settings(escluster.url, **values)
            self.client = make_client(self.settings)

        def run(self, source: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("failures_file", tmp_path / "failures.jsonl")
            kwargs.setdefault("embedder", CountingEmbedder())
            return ingest(self.client, self.settings, source=source, **kwargs)

    e = Env()
    setup_index(e.client, e.settings)
    e.make = Env  # type: ignore[attr-defined]
    return e


def _listing(tmp_path: Path, images: ImageServer, names: list[str]) -> Path:
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{images.url}/{name}\n" for name in names))
    return listing


# ------------------------------------------------------------------------------------ slow downloads

def test_a_trickle_times_out_as_a_whole_not_per_read(images: ImageServer) -> None:
    # Before: download_timeout applied to each read, so a byte every 50 ms never timed out.
    trickle = Trickle()
    images.routes["/trickle.jpg"] = trickle
    with pytest.raises(FetchError, match="timed out after 0.5 s .*the whole download") as caught:
        download(f"{images.url}/trickle.jpg", timeout=0.5, retries=0)
    assert caught.value.stage == "download"
    assert trickle.ended.wait(CAP_SECONDS) and not trickle.capped  # the client gave up, not the server


def test_items_before_a_slow_download_are_indexed_while_it_is_still_going(env: Any, images: ImageServer,
                                                                         tmp_path: Path) -> None:
    # Before: the chunk with the good rows waited for the slow item (bulk only sends full chunks).
    for n, name in enumerate(("ok1.jpg", "ok2.jpg", "after.jpg")):
        images.routes[f"/{name}"] = jpeg_bytes((80, 60), color=(40 * n, 3, 4))
    seen_before_answer: list[int] = []

    def wait_for_the_good_rows() -> None:
        give_up = time.monotonic() + CAP_SECONDS
        while time.monotonic() < give_up:
            env.client.indices.refresh(index=env.settings.index.alias)
            if count_docs(env.client, env.settings) >= 2:
                break
            time.sleep(0.05)
        seen_before_answer.append(count_docs(env.client, env.settings))

    def slow(handler: BaseHTTPRequestHandler) -> None:
        wait_for_the_good_rows()
        _answer(200, jpeg_bytes((90, 60)))(handler)

    images.routes["/slow.jpg"] = slow
    report = env.make(**{"ingest.download_timeout": 60.0, "ingest.chunk_size": 100}).run(
        open_source(_listing(tmp_path, images, ["ok1.jpg", "ok2.jpg", "slow.jpg", "after.jpg"])),
        flush_after=0.05)
    assert seen_before_answer == [2]  # both good rows were in the index while the slow one waited
    assert (report.indexed, report.failed) == (4, 0)


def test_a_trickle_in_a_run_fails_with_a_reason_and_the_run_goes_on(env: Any, images: ImageServer,
                                                                    tmp_path: Path) -> None:
    images.routes["/ok.jpg"] = jpeg_bytes((80, 60))
    images.routes["/after.jpg"] = jpeg_bytes((81, 60), color=(9, 8, 7))
    trickle = Trickle()
    images.routes["/trickle.jpg"] = trickle
    report = env.make(**{"ingest.download_timeout": 0.5, "ingest.download_retries": 0}).run(
        open_source(_listing(tmp_path, images, ["ok.jpg", "trickle.jpg", "after.jpg"])))
    assert (report.seen, report.indexed, report.failed) == (3, 2, 1)
    [record] = _failures(report.failures_file)
    assert record["location"].endswith("/trickle.jpg") and record["stage"] == "download"
    assert "timed out" in record["reason"] and "ingest.download_timeout" in record["reason"]
    assert not trickle.capped


def test_ctrl_c_during_slow_downloads_stops_at_once_and_lists_every_item(env: Any, images: ImageServer,
                                                                         tmp_path: Path) -> None:
    # Before: the download threads kept the process alive (a second Ctrl-C and a traceback), and items
    # read but not finished were in no file.
    images.routes["/ok.jpg"] = jpeg_bytes((80, 60))
    images.routes["/after.jpg"] = jpeg_bytes((81, 60), color=(9, 8, 7))
    slow1, slow2 = Trickle(), Trickle()
    images.routes["/slow1.jpg"], images.routes["/slow2.jpg"] = slow1, slow2
    main = threading.main_thread().ident
    assert main is not None

    def press_ctrl_c() -> None:
        if slow1.started.wait(CAP_SECONDS) and slow2.started.wait(CAP_SECONDS):
            signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    names = ["ok.jpg", "slow1.jpg", "slow2.jpg", "after.jpg"]
    report = env.make(**{"ingest.download_timeout": 3 * CAP_SECONDS}).run(
        open_source(_listing(tmp_path, images, names)))
    assert report.interrupted
    assert report.seen == 4 and report.seen == report.indexed + report.skipped + report.failed
    # The run did not wait for the downloads: both servers saw the client hang up.
    assert slow1.ended.wait(CAP_SECONDS) and slow2.ended.wait(CAP_SECONDS)
    assert not slow1.capped and not slow2.capped
    records = {r["location"].rsplit("/", 1)[1]: r for r in _failures(report.failures_file)}
    assert {"slow1.jpg", "slow2.jpg", "after.jpg"} <= set(records)
    assert all(records[n]["stage"] == "not sent" and "--retry-failures" in records[n]["reason"]
               for n in ("slow1.jpg", "slow2.jpg", "after.jpg"))
    env.client.indices.refresh(index=env.settings.index.alias)
    assert count_docs(env.client, env.settings) + len(records) == 4


def test_downloads_stop_cuts_a_blocked_read() -> None:
    # A server that accepts and then says nothing: stop() must end the read, not the 60 s timeout.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    downloads = Downloads()
    errors: list[BaseException] = []

    def get() -> None:
        try:
            download(f"http://127.0.0.1:{port}/x.jpg", timeout=3 * CAP_SECONDS, retries=3, downloads=downloads)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=get)
    worker.start()
    conn, _ = listener.accept()
    conn.recv(1024)  # the request arrived: the client now blocks on the answer
    downloads.stop()
    worker.join(CAP_SECONDS)
    conn.close()
    listener.close()
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], FetchError)
    assert "the run stopped" in errors[0].reason


# -------------------------------------------------------------------------------- hostile answers

def test_a_body_shorter_than_its_content_length_is_a_retried_download_error(images: ImageServer) -> None:
    # Before: accepted as complete, then reported as a decode error ("truncated").
    image = jpeg_bytes((80, 60))
    images.routes["/short.jpg"] = _answer(200, image[: len(image) // 2], Content_Length=str(len(image)))
    with pytest.raises(FetchError, match="incomplete body.*of the") as caught:
        download(f"{images.url}/short.jpg", retries=2, backoff=0.01)
    assert caught.value.stage == "download" and "after 3 attempts" in caught.value.reason
    assert images.requests.count("/short.jpg") == 3


def test_a_gzip_body_that_was_not_asked_for_is_decoded(images: ImageServer) -> None:
    image = jpeg_bytes((80, 60))
    images.routes["/gz.jpg"] = _answer(200, gzip.compress(image), Content_Encoding="gzip")
    images.routes["/deflate.jpg"] = _answer(200, __import__("zlib").compress(image), Content_Encoding="deflate")
    assert download(f"{images.url}/gz.jpg") == image
    assert download(f"{images.url}/deflate.jpg") == image


def test_an_unknown_content_encoding_fails_naming_it(images: ImageServer) -> None:
    # Before: "not an image (unrecognized file format)".
    images.routes["/br.jpg"] = _answer(200, b"\x1b\x03\x00garbage", Content_Encoding="br")
    with pytest.raises(FetchError, match="Content-Encoding: br"):
        download(f"{images.url}/br.jpg", retries=0)


def test_a_gzip_bomb_stops_at_the_size_cap(images: ImageServer) -> None:
    images.routes["/bomb.jpg"] = _answer(200, gzip.compress(b"\0" * 5_000_000), Content_Encoding="gzip")
    with pytest.raises(FetchError, match="too large.*gzip-decoded"):
        download(f"{images.url}/bomb.jpg", max_bytes=100_000, retries=0)


@pytest.mark.parametrize(("route", "expect"), [
    (_answer(302, Location="/loop.jpg"), "too many redirects"),
    (_answer(302, Location="file:///etc/passwd"), "redirected to a file:// URL"),
    (_answer(301, Location="ftp://127.0.0.1/a.jpg"), "redirected to a ftp:// URL"),
    (_answer(200, b"<!doctype html><html>login</html>", Content_Type="text/html; charset=utf-8"), "web page"),
    (_answer(200, b"", Content_Length="10000000000"), "10000000000 bytes is over the limit"),
    (_answer(503, Retry_After="3600"), "retry after 3600 s"),
    (_answer(200, b"zz\r\nxx", Transfer_Encoding="chunked"), "closed mid-body"),
    (_answer(200, b""), "empty response"),
])
def test_hostile_answers_fail_with_their_own_reason(images: ImageServer, route: Any, expect: str) -> None:
    images.routes["/loop.jpg"] = route
    with pytest.raises(FetchError, match=expect):
        download(f"{images.url}/loop.jpg", retries=1, backoff=0.01, timeout=5)


def test_retry_after_is_honoured_then_the_image_comes(images: ImageServer) -> None:
    image = jpeg_bytes((80, 60))
    answers = iter([_answer(503, Retry_After="0"), _answer(200, image)])
    images.routes["/busy.jpg"] = lambda handler: next(answers)(handler)
    assert download(f"{images.url}/busy.jpg", retries=1, backoff=CAP_SECONDS) == image  # not the backoff


def test_a_redirect_to_the_image_is_followed(images: ImageServer) -> None:
    image = jpeg_bytes((80, 60))
    images.routes["/real.jpg"] = image
    images.routes["/moved.jpg"] = _answer(301, Location="/real.jpg")
    assert download(f"{images.url}/moved.jpg") == image


def test_an_ipv6_literal_url_downloads() -> None:
    from http.server import ThreadingHTTPServer

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    image = jpeg_bytes((80, 60))

    class V6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            _answer(200, image)(self)

    try:
        server = V6(("::1", 0), Handler)
    except OSError:
        pytest.skip("no IPv6 loopback")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert download(f"http://[::1]:{server.server_address[1]}/a.jpg") == image
    finally:
        server.shutdown()
        server.server_close()


def test_credentials_in_a_url_are_sent_and_never_written(env: Any, images: ImageServer, tmp_path: Path) -> None:
    image = jpeg_bytes((80, 60))
    expected = "Basic " + base64.b64encode(b"ann:s3cr3t-pw").decode()

    def private(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") != expected:
            _answer(401)(handler)
        else:
            _answer(200, image)(handler)

    images.routes["/private.jpg"] = private
    base = images.url.replace("http://", "http://ann:s3cr3t-pw@")
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{base}/private.jpg\n{base}/missing.jpg\n")
    report = env.run(open_source(listing))
    assert (report.indexed, report.failed) == (1, 1)
    text = Path(report.failures_file).read_text()
    assert "s3cr3t-pw" not in text and "ann:********@" in text
    assert "s3cr3t-pw" not in json.dumps(report.as_json()) + json.dumps(report.failed_examples)
    hit = env.client.search(index=env.settings.index.alias, source_includes=["url"])["hits"]["hits"][0]
    assert "s3cr3t-pw" not in hit["_source"]["url"]
    # Retrying the masked URL says what to do instead of sending "********" as the password.
    retry = env.run(RetrySource(Path(report.failures_file)), failures_file=tmp_path / "retry.jsonl")
    [record] = _failures(retry.failures_file)
    assert "masked" in record["reason"] and "--resume" in record["reason"]


# ----------------------------------------------------------------------------- failures file / aborts

def test_two_runs_in_the_same_second_never_share_a_failures_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: both took toolkit-failures-<second>.jsonl and the second truncated the first's records.
    import toolkit.ingest.ledger as ledger_module

    first, second = default_failures_path(tmp_path), default_failures_path(tmp_path)
    assert first != second  # pid + random suffix
    monkeypatch.setattr(ledger_module, "default_failures_path", lambda cwd=None: first)
    a = Ledger(failures_path=first, exclusive=True)
    b = Ledger(failures_path=first, exclusive=True)  # the same name, as if the suffix collided
    a.record_failed(SourceItem(location="/x/a.jpg"), doc_id=None, stage="read", reason="a")
    monkeypatch.undo()
    b.record_failed(SourceItem(location="/x/b.jpg"), doc_id=None, stage="read", reason="b")
    a.close()
    b.close()
    assert a.failures_file != b.failures_file
    assert [r["reason"] for r in _failures(a.failures_file)] == ["a"]  # type: ignore[arg-type]
    assert [r["reason"] for r in _failures(b.failures_file)] == ["b"]  # type: ignore[arg-type]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_keeps_the_failed_items_in_the_report(env: Any, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not an image")
    report = env.run(open_source(tmp_path / "imgs"), failures_file=Path("/dev/full"))
    assert (report.indexed, report.failed) == (2, 1)
    assert "No space left" in (report.failures_write_error or "")
    assert [r["location"] for r in report.unsaved_failures] == [str(tmp_path / "imgs" / "broken.jpg")]


def test_failures_file_stores_absolute_paths(env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    good_images(tmp_path / "imgs", 1)
    (tmp_path / "imgs" / "later.jpg").write_bytes(b"not yet")
    report = env.run(open_source(Path("imgs")))
    [record] = _failures(report.failures_file)
    assert record["location"] == str(tmp_path / "imgs" / "later.jpg")
    assert report.failed_examples[0]["location"] == str(Path("imgs") / "later.jpg")  # shown relative
    (tmp_path / "imgs" / "later.jpg").write_bytes(jpeg_bytes((70, 50)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    retry = env.run(RetrySource(Path(report.failures_file)), failures_file=tmp_path / "retry.jsonl")
    assert (retry.indexed, retry.failed) == (1, 0)


def test_old_failures_files_with_relative_paths_resolve_against_their_folder(
        env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good_images(tmp_path / "run" / "imgs", 1)
    old = tmp_path / "run" / "old.jsonl"
    old.write_text(json.dumps({"location": "imgs/img000.jpg", "stage": "read", "reason": "x"}) + "\n")
    monkeypatch.chdir(tmp_path)  # not the failures file's folder
    source = RetrySource(old)
    report = env.run(source, failures_file=tmp_path / "retry.jsonl")
    assert (report.indexed, report.failed, source.relative_resolved) == (1, 0, 1)


def test_a_torn_last_line_of_a_failures_file_fails_alone(env: Any, tmp_path: Path) -> None:
    # A run killed (SIGKILL, power loss) while writing a record leaves half a line at the end.
    good_images(tmp_path / "imgs", 1)
    file = tmp_path / "f.jsonl"
    whole = json.dumps({"location": str(tmp_path / "imgs" / "img000.jpg"), "stage": "read", "reason": "x"})
    file.write_text(whole + "\n" + whole[:25])
    source = RetrySource(file)
    report = env.run(source, failures_file=tmp_path / "retry.jsonl")
    assert (report.seen, report.indexed, report.failed, report.error) == (2, 1, 1, None)
    assert report.failed_reasons == {"source": 1}


class _Exploding:
    """A source that yields ``good`` items, then raises ``exc`` (a bad row the source did not catch)."""

    def __init__(self, paths: list[Path], exc: BaseException) -> None:
        self.paths, self.exc = paths, exc

    def __iter__(self) -> Iterator[SourceItem]:
        for path in self.paths:
            yield SourceItem(location=str(path), position=path.name)
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("bad row"), OSError(5, "Input/output error"),
                                 ToolkitError("the source broke")])
def test_an_abort_from_the_source_still_accounts_for_every_item_read(env: Any, tmp_path: Path,
                                                                     exc: BaseException) -> None:
    paths = good_images(tmp_path / "imgs", 6)
    report = env.make(**{"ingest.chunk_size": 4}).run(_Exploding(paths, exc))
    assert report.error is not None and not report.complete
    assert report.seen == 6 == report.indexed + report.failed
    records = _failures(report.failures_file) if report.failures_file else []
    assert all(r["stage"] == "not sent" for r in records)
    env.client.indices.refresh(index=env.settings.index.alias)
    assert count_docs(env.client, env.settings) == report.indexed
