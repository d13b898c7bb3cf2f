"""`toolkit setup`: installs assets idempotently; --dry-run prints requests that recreate the same state."""

from __future__ import annotations

import contextlib
import http.server
import json
import pathlib
import re
import threading
from collections.abc import Iterator

import pytest
import requests
from typer.testing import CliRunner

from toolkit.cli import app

runner = CliRunner()


def setup(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["setup", "--es-url", url, *args])
    return result.exit_code, result.output


def cluster_state(url: str) -> dict:
    """What setup is responsible for, as the cluster reports it."""
    s = requests.Session()
    return {
        "pipeline": s.get(f"{url}/_ingest/pipeline/toolkit-caption-embedding").json(),
        "components": s.get(f"{url}/_component_template/toolkit-images-*").json(),
        "template": s.get(f"{url}/_index_template/toolkit-images").json(),
        "alias": s.get(f"{url}/_alias/images").json(),
        "mapping": s.get(f"{url}/images/_mapping").json(),
        "settings": {k: v["settings"]["index"].get("default_pipeline")
                     for k, v in s.get(f"{url}/images/_settings").json().items()},
    }


def test_setup_creates_everything_then_reports_unchanged(escluster) -> None:
    code, out = setup(escluster.url, "--json")
    assert code == 0, out
    first = json.loads(out)
    assert {r["outcome"] for r in first["results"]} == {"created"}
    assert [r["kind"] for r in first["results"]] == ["pipeline", "component_template", "component_template",
                                                     "index_template", "index"]
    code, out = setup(escluster.url, "--json")
    assert code == 0, out
    second = json.loads(out)
    assert {r["outcome"] for r in second["results"]} == {"unchanged"}
    assert second["changed"] is False
    state = cluster_state(escluster.url)
    assert state["alias"] == {"images-000001": {"aliases": {"images": {"is_write_index": True}}}}
    props = state["mapping"]["images-000001"]["mappings"]["properties"]
    assert props["image_embedding"]["index_options"]["type"] == "int8_hnsw"
    assert props["caption_embedding"]["dims"] == 512
    assert state["settings"] == {"images-000001": "toolkit-caption-embedding"}


def test_changed_settings_update_only_what_changed(escluster) -> None:
    assert setup(escluster.url)[0] == 0
    pathlib.Path("toolkit.yaml").write_text("index:\n  replicas: 2\n")
    code, out = setup(escluster.url, "--json")
    assert code == 0, out
    outcomes = {r["name"]: r["outcome"] for r in json.loads(out)["results"]}
    assert outcomes["toolkit-images-settings"] == "updated"
    assert outcomes["toolkit-images-mappings"] == "unchanged"
    assert outcomes["toolkit-caption-embedding"] == "unchanged"


def paste(url: str, console_text: str) -> None:
    """Send Kibana console text request by request, as a user pasting it would."""
    blocks = [b for b in re.split(r"\n\s*\n(?=[A-Z]+ )", console_text.strip()) if b.strip()]
    for block in blocks:
        first, _, body = block.partition("\n")
        method, path = first.split(" ", 1)
        response = requests.request(method, f"{url}/{path}", data=body.encode() if body.strip() else None,
                                    headers={"Content-Type": "application/json"})
        assert response.status_code < 300, (first, response.text)


def test_dry_run_sends_nothing_and_pasting_it_gives_the_same_state(escluster_factory) -> None:
    pasted, applied = escluster_factory(), escluster_factory()
    code, out = setup("http://127.0.0.1:9", "--dry-run")  # nothing listens there: nothing may be sent
    assert code == 0, out
    assert out.startswith("PUT _ingest/pipeline/toolkit-caption-embedding\n{")
    assert "PUT _index_template/toolkit-images\n" in out
    assert "PUT images-000001\n" in out
    paste(pasted.url, out)
    assert setup(applied.url)[0] == 0
    assert cluster_state(pasted.url) == cluster_state(applied.url)
    code, out = setup(pasted.url, "--json")  # setup recognises the pasted state as current
    assert {r["outcome"] for r in json.loads(out)["results"]} == {"unchanged"}


@pytest.mark.parametrize(("setting", "value", "field"), [
    ("image_dims", 768, "image_embedding"),
])
def test_setup_refuses_template_dims_that_differ_from_the_image_model(escluster, setting, value, field) -> None:
    pathlib.Path("toolkit.yaml").write_text(f"index:\n  {setting}: {value}\n")
    code, out = setup(escluster.url)
    assert code == 22, out
    assert field in out and "512" in out and str(value) in out
    assert "index.image_dims: 512" in out  # the fix
    assert requests.get(f"{escluster.url}/_index_template/toolkit-images").status_code == 404


def test_setup_reports_unreachable_cluster(escluster) -> None:
    code, out = setup("http://127.0.0.1:9")
    assert code == 11, out
    assert "cannot reach the cluster" in out and "Traceback" not in out


@contextlib.contextmanager
def not_elasticsearch() -> Iterator[str]:
    """A web server on the URL instead of Elasticsearch (200 at /, 404 elsewhere, no PUT): its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_setup_says_when_the_url_is_not_elasticsearch() -> None:
    with not_elasticsearch() as url:
        code, out = setup(url)
    assert code == 25, out  # NotElasticsearch
    assert "not Elasticsearch" in out and "<html" not in out.lower()
