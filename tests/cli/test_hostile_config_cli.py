"""Hostile configuration, secrets and servers, end to end through the CLI.

Each test is a scenario a user hit: a key with a trailing newline, a URL without a scheme, a web
server (not Elasticsearch) on the URL, a slow cluster, NaN options, escape sequences in data.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.escluster.testing import call
from toolkit.cli import app
from toolkit.errors import NotElasticsearch, RequestTimedOut

runner = CliRunner()


def run(*args: str, **env: str):
    return runner.invoke(app, list(args), env=env or None)


@contextlib.contextmanager
def web_server(status: int = 404, ctype: str = "text/html", body: bytes = b"<html>hello</html>",
               delay: float = 0.0) -> Iterator[str]:
    """Another HTTP server on the URL: every method answers ``status`` with ``body`` (no product header);
    with ``delay`` it waits that long (or until the test ends) before answering."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if delay:
                release.wait(delay)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------- another server on the URL

SERVERS = {
    "404-html": dict(status=404, body=b"<html><head><title>404 Not Found</title></head><body>nginx</body></html>"),
    "501-html": dict(status=501, body=b"<!DOCTYPE HTML>\n<html><body><h1>Error response</h1>"
                                      b"<p>Error code: 501</p></body></html>"),
    "200-html": dict(status=200, body=b"<!doctype html><html><head><title>Kibana</title></head></html>"),
}


def _photos() -> Path:
    from PIL import Image

    folder = Path.cwd() / "photos"
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (32, 32), "red").save(folder / "red.png")
    return folder


COMMANDS = {
    "setup": lambda url: ["setup", "--es-url", url],
    "doctor": lambda url: ["doctor", "--es-url", url],
    "search-text": lambda url: ["search", "a dog", "--es-url", url],
    "search-like": lambda url: ["search", "--like", "x", "--es-url", url],
    "ingest": lambda url: ["ingest", str(_photos()), "--es-url", url],
    "undeploy": lambda url: ["undeploy", "--es-url", url],
    "deploy-model": lambda url: ["deploy-model", "--model", str(_tiny_text()), "--model-id", "tiny-text",
                                 "--es-url", url],
    "quickstart": lambda url: ["quickstart", "--wait", "60", "--es-url", url],  # fails at once, not after 60 s
    "smoke": lambda url: ["smoke", "--es-url", url],
}


def _tiny_text() -> Path:
    from tests.models import tiny_text_model

    return tiny_text_model()


@pytest.mark.parametrize("server", list(SERVERS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_says_the_server_is_not_elasticsearch(server: str, command: str) -> None:
    from tests.models import tiny_clip_model

    Path("toolkit.yaml").write_text(f"image_model:\n  name: {tiny_clip_model()}\n")
    with web_server(**SERVERS[server]) as url:  # type: ignore[arg-type]
        result = run(*COMMANDS[command](url))
    out = " ".join(result.output.split())
    if command == "doctor":
        assert "fail reachable" in out, out
    if command == "smoke":
        assert "FAIL reachable" in out, out
    assert result.exit_code == (30 if command == "smoke" else NotElasticsearch.exit_code), out
    assert "still waiting" not in out  # quickstart gives up at once: waiting cannot make it Elasticsearch
    assert f"the server at {url} is not Elasticsearch" in out, out
    assert f"HTTP {SERVERS[server]['status']}, text/html" in out
    assert "<html" not in out.lower() and "does not exist" not in out and ": ?" not in out
    assert "Traceback" not in out


# ------------------------------------------------------------------------------------------- timeouts


def test_a_slow_cluster_is_a_timeout_naming_the_setting_not_cannot_reach() -> None:
    with web_server(status=200, delay=30) as url:
        Path("toolkit.yaml").write_text("elasticsearch:\n  request_timeout: 0.5\n")
        result = run("search", "--like", "x", "--es-url", url)
    assert result.exit_code == RequestTimedOut.exit_code, result.output
    assert "timed out after 0.5 s" in result.output
    assert "elasticsearch.request_timeout" in result.output
    assert "cannot reach" not in result.output and "check ES_URL" not in result.output


def test_nothing_listening_is_still_cannot_reach() -> None:
    result = run("search", "--like", "x", "--es-url", "http://127.0.0.1:9")
    assert result.exit_code == 11, result.output
    assert "cannot reach the cluster" in result.output


# -------------------------------------------------------------------------------------------- secrets


def test_an_api_key_with_a_trailing_newline_works(escluster_factory) -> None:
    es = escluster_factory(api_key="Zm9vOmJhcjEyMw==")
    result = run("doctor", "--json", "--es-url", es.url, ES_API_KEY="Zm9vOmJhcjEyMw==\n")
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["auth"]["status"] == "ok", result.output
    assert "Zm9vOmJhcjEyMw" not in result.output


def test_an_api_key_in_id_colon_key_form_is_sent_encoded(escluster_factory) -> None:
    es = escluster_factory(api_key=base64.b64encode(b"key-id:key-s3cret").decode())
    result = run("doctor", "--json", "--es-url", es.url, ES_API_KEY="key-id:key-s3cret")
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["auth"]["status"] == "ok", result.output
    assert "key-s3cret" not in result.output


def test_a_non_ascii_password_is_sent_as_utf8_like_elasticsearch_reads_it(escluster_factory) -> None:
    es = escluster_factory(password="pässwörd-ü1")
    result = run("doctor", "--json", "--es-url", es.url, ES_USERNAME="elastic", ES_PASSWORD="pässwörd-ü1")
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["auth"]["status"] == "ok", result.output
    assert "pässwörd" not in result.output and "not a URL" not in result.output


@pytest.mark.parametrize("args", [["config", "show"], ["config", "show", "--json"], ["doctor"], ["setup"],
                                  ["search", "x", "--dry-run"]])
def test_a_url_without_a_scheme_is_refused_with_its_password_masked(args: list[str]) -> None:
    result = run(*args, ES_URL="elastic:Sch3meless-pw@127.0.0.1:9200")
    assert result.exit_code == 3, result.output
    assert "Sch3meless-pw" not in result.output
    assert "has no scheme" in result.output and "http://elastic:********@127.0.0.1:9200" in result.output


def test_ftp_url_is_refused() -> None:
    result = run("doctor", ES_URL="ftp://127.0.0.1:21")
    assert result.exit_code == 3, result.output
    assert "only http:// or https://" in result.output and "reachable" not in result.output


def test_doctor_json_masks_the_url_password(escluster_factory) -> None:
    es = escluster_factory(password="Js0n-pw-9")
    result = run("doctor", "--json", "--es-url", es.url.replace("http://", "http://elastic:Js0n-pw-9@"))
    assert "Js0n-pw-9" not in result.output and json.loads(result.output)["checks"]


def test_an_unexpected_exception_never_prints_a_secret(monkeypatch) -> None:
    """The last-resort handler: a bug whose message and cause hold the key is printed scrubbed."""
    import toolkit.cli.config_cmd as config_cmd

    real = config_cmd.settings_from
    key = "dW5leHBlY3RlZDprZXk5OQ=="

    def broken(**kwargs):
        real(**kwargs)
        try:
            raise KeyError(f"password was elastic:Unexp-pw-7 and {base64.b64decode(key).decode()}")
        except KeyError as cause:
            raise ValueError(f"Invalid header value b'ApiKey {key}\\n'") from cause

    monkeypatch.setattr(config_cmd, "settings_from", broken)
    result = run("config", "show", ES_API_KEY=key, ES_USERNAME="elastic", ES_PASSWORD="Unexp-pw-7")
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ValueError" in result.output and "KeyError" in result.output
    assert "this is a bug" in result.output
    for secret in (key, "Unexp-pw-7", "unexpected:key99", "key99"):
        assert secret not in result.output, secret
    assert "ApiKey ********" in result.output


def test_an_exception_before_settings_resolve_is_scrubbed_of_environment_secrets(monkeypatch) -> None:
    import toolkit.cli.config_cmd as config_cmd

    def broken(**kwargs):
        raise RuntimeError("header Basic " + base64.b64encode(b"elastic:Early-pw-3").decode())

    monkeypatch.setattr(config_cmd, "settings_from", broken)
    result = run("config", "show", ES_USERNAME="elastic", ES_PASSWORD="Early-pw-3")
    assert result.exit_code == 1
    assert base64.b64encode(b"elastic:Early-pw-3").decode() not in result.output
    assert "Basic ********" in result.output


def test_show_request_never_carries_credentials() -> None:
    result = run("search", "a cat", "--dry-run", "--show-request", ES_API_KEY="Sh0w-req-key",
                 ES_URL="http://127.0.0.1:9")
    assert result.exit_code == 0, result.output
    assert "Sh0w-req-key" not in result.output and "Authorization" not in result.output


# ------------------------------------------------------------------------------------- bad options


@pytest.mark.parametrize("option,value", [("--min-similarity", "nan"), ("--min-score", "inf"),
                                          ("--caption-weight", "nan"), ("--min-score", "-inf")])
def test_non_finite_search_options_are_refused_naming_the_option(option: str, value: str) -> None:
    result = run("search", "a dog", "--dry-run", "--show-request", option, value)
    assert result.exit_code == 2, result.output
    assert option in result.output and "not a finite number" in result.output
    assert "NaN" not in result.output and "Infinity" not in result.output


def test_non_finite_options_of_other_commands_are_refused_too() -> None:
    result = run("deploy-model", "--timeout", "nan")
    assert result.exit_code == 2, result.output
    assert "--timeout" in result.output and "not a finite number" in result.output


def test_a_duplicate_key_is_named_with_both_lines() -> None:
    Path("toolkit.yaml").write_text("index:\n  alias: a\n  shards: 1\n  alias: b\n")
    result = run("config", "show")
    assert result.exit_code == 3
    assert "'index.alias' is given twice (lines 2 and 4)" in result.output


# ------------------------------------------------------------------------------- terminal escapes


def test_escape_sequences_in_captions_and_paths_are_shown_escaped(escluster_factory) -> None:
    es = escluster_factory(license="basic")
    vec = {"type": "dense_vector", "dims": 4, "similarity": "cosine", "index": True}
    assert call(es.url, "PUT", "/pics-000001", {"aliases": {"pics": {}}, "mappings": {"properties": {
        "image_embedding": vec, "caption": {"type": "text"}, "path": {"type": "keyword"}}}}).status == 200
    for doc_id, caption in (("a", "plain"), ("b", "red\x1b[31m\x1b]0;pwned\x07 car")):
        assert call(es.url, "PUT", f"/pics/_doc/{doc_id}?refresh=true",
                    {"image_embedding": [1, 0, 0, 0], "caption": caption,
                     "path": f"/x/\x1b[2J{doc_id}.jpg"}).status in (200, 201)
    Path("toolkit.yaml").write_text("index:\n  image_dims: 4\n")
    result = run("search", "--like", "a", "--index", "pics", "--es-url", es.url)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "red\\x1b[31m" in result.output and "\\x1b[2Jb.jpg" in result.output


def test_ca_certs_that_is_a_directory_says_so(tmp_path: Path) -> None:
    result = run("doctor", "--es-url", "https://127.0.0.1:9", ES_CA_CERTS=f"{tmp_path}\n")
    assert result.exit_code == 3, result.output
    assert f"{tmp_path} is a directory" in result.output and "cannot reach" not in result.output


def test_ca_certs_that_is_not_a_certificate_says_so(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    result = run("doctor", "--es-url", "https://127.0.0.1:9", ES_CA_CERTS=str(tmp_path / "ca.crt"))
    assert result.exit_code == 3, result.output
    assert "holds no PEM certificate" in result.output and "cannot reach" not in result.output


def test_a_closed_stdout_pipe_stops_quietly(monkeypatch) -> None:
    """`toolkit search ... --json | head -1`: the reader went away; that is not a bug to report."""
    import toolkit.cli.config_cmd as config_cmd

    def closed(text: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(config_cmd, "print_text", closed)
    result = run("config", "show")
    assert result.exit_code == 141
    assert "Traceback" not in result.output and "bug" not in result.output


def test_rich_markup_in_a_query_is_shown_as_typed_on_stderr() -> None:
    """--show-request with --json prints the request on stderr: "[/]" in the query crashed rich."""
    result = run("search", "a [/] dog [bold]x", "--dry-run", "--show-request", "--json")
    assert result.exit_code == 0, result.output
    assert '"model_text": "a [/] dog [bold]x"' in result.stderr


def test_info_survives_unescaped_markup(capsys) -> None:
    from toolkit.cli.output import info

    info("plot written to /tmp/[/]odd.png")
    assert "/tmp/[/]odd.png" in capsys.readouterr().err
