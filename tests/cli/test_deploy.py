"""toolkit deploy-model / toolkit undeploy against the test cluster with the tiny local text model."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil

import pytest
from typer.testing import CliRunner

from tests.models import tiny_text_model
from toolkit.cli import app
from toolkit.cluster import make_client
from toolkit.errors import ConfigError, LicenseError, MLNodeError, ParityError, ValidationError
from toolkit.settings import load_settings
from toolkit.textmodel import deployment, get_model, trace, upload

runner = CliRunner()
ENV_VARS = ("ES_URL", "ES_API_KEY", "ES_USERNAME", "ES_PASSWORD", "ES_CA_CERTS", "ES_VERIFY_CERTS", "TOOLKIT_CONFIG")
# Read before the isolation fixture clears them: the real-cluster test needs the user's connection.
REAL_ENV = {var: os.environ[var] for var in ENV_VARS if os.environ.get(var)}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def deploy(url, *args):
    return runner.invoke(app, ["deploy-model", "--es-url", url, "--model", str(tiny_text_model()),
                               "--model-id", "tiny-text", *args])


def undeploy(url, *args):
    return runner.invoke(app, ["undeploy", "--es-url", url, "--model-id", "tiny-text", *args])


def client_for(url):
    return make_client(load_settings(overrides={"elasticsearch.url": url}, environ={}))


def test_deploy_again_replace_undeploy_delete(escluster, tmp_path):
    result = deploy(escluster.url)
    assert result.exit_code == 0, result.output
    assert "uploaded" in result.output and "parity passed" in result.output
    # Output ends with the request to paste into Kibana.
    assert result.stdout.strip().startswith("POST _ml/trained_models/tiny-text/_infer")
    assert '"text_field": "a dog playing in the snow"' in result.stdout

    again = deploy(escluster.url, "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["action"] == "unchanged"
    assert report["model_id"] == report["deployment_id"] == "tiny-text"
    assert report["parity"]["min_cosine"] >= 0.9999 and report["parity"]["dims"] == 512
    assert {p["language"] for p in report["parity"]["probes"]} >= {"en", "zh", "de", "ru", "ar", "ja"}
    assert report["devtools"].startswith("POST _ml/trained_models/tiny-text/_infer")
    assert not any("tracing with torch" in w for w in report["warnings"])  # nothing was traced

    moved = shutil.copytree(tiny_text_model(), tmp_path / "moved")
    same_files = runner.invoke(app, ["deploy-model", "--es-url", escluster.url, "--model", str(moved),
                                     "--model-id", "tiny-text", "--skip-parity", "--json"])
    assert json.loads(same_files.stdout)["action"] == "unchanged", same_files.output

    replaced = deploy(escluster.url, "--replace", "--skip-parity", "--json")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(replaced.stdout)["action"] == "replaced"

    stopped = undeploy(escluster.url)
    assert stopped.exit_code == 0, stopped.output
    assert "stopped deployment tiny-text" in stopped.output
    client = client_for(escluster.url)
    assert deployment(client, "tiny-text", "tiny-text") is None
    assert get_model(client, "tiny-text") is not None

    restarted = deploy(escluster.url, "--skip-parity", "--json")
    assert json.loads(restarted.stdout)["action"] == "started", restarted.output

    deleted = undeploy(escluster.url, "--delete", "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout) == {"model_id": "tiny-text", "deployment_id": "tiny-text",
                                          "stopped": True, "deleted": True}
    assert get_model(client, "tiny-text") is None


def test_skip_parity_says_what_it_skips_and_settings_reach_the_cluster(escluster):
    result = deploy(escluster.url, "--skip-parity", "--threads", "2", "--adaptive-min", "1",
                    "--adaptive-max", "3", "--queue-capacity", "50", "--deployment-id", "tiny-search")
    assert result.exit_code == 0, result.output
    assert "parity skipped" in result.output and "not compared with the local model" in result.output
    assert "POST _ml/trained_models/tiny-search/_infer" in result.stdout
    state = deployment(client_for(escluster.url), "tiny-text", "tiny-search")
    assert state.threads_per_allocation == 2 and state.queue_capacity == 50
    assert state.adaptive_allocations == {"enabled": True, "min_number_of_allocations": 1,
                                          "max_number_of_allocations": 3}


def test_threads_must_be_a_power_of_two(escluster):
    result = deploy(escluster.url, "--threads", "3")
    assert result.exit_code == ConfigError.exit_code, result.output
    assert "power of 2" in result.output
    assert get_model(client_for(escluster.url), "tiny-text") is None


def test_license_and_ml_node_fail_before_tracing(escluster_factory, monkeypatch):
    def no_trace(*args, **kwargs):
        raise AssertionError("traced before preflight")

    # The package re-exports the function deploy(), so reach the module through importlib.
    monkeypatch.setattr(importlib.import_module("toolkit.textmodel.deploy"), "trace", no_trace)
    basic = escluster_factory(license="basic")
    result = deploy(basic.url)
    assert result.exit_code == LicenseError.exit_code, result.output
    assert "license is 'basic'" in result.output and "start_trial" in result.output

    no_ml = escluster_factory(ml_nodes=0)
    result2 = deploy(no_ml.url)
    assert result2.exit_code == MLNodeError.exit_code, result2.output
    assert "no ML node" in result2.output
    assert result.exit_code != result2.exit_code

    small = escluster_factory(ml_memory_bytes=100 * 1024**2)
    result3 = deploy(small.url)
    assert result3.exit_code == MLNodeError.exit_code, result3.output
    assert re.search(r"the model needs about 24\d MB .* allowance is 100 MB", result3.output)


def test_another_model_under_the_id_needs_replace(escluster):
    assert deploy(escluster.url, "--skip-parity").exit_code == 0
    other = runner.invoke(app, ["deploy-model", "--es-url", escluster.url, "--model",
                                str(tiny_text_model(dense=False)), "--model-id", "tiny-text"])
    assert other.exit_code == ValidationError.exit_code, other.output
    assert "already holds" in other.output and "--replace" in other.output


def test_a_mismatched_deployment_fails_parity_naming_the_cause(escluster, tmp_path):
    """The cluster holds the Dense-less model but claims the dense model's source and revision."""
    dense = trace(str(tiny_text_model()), tmp_path / "dense")
    nodense = trace(str(tiny_text_model(dense=False)), tmp_path / "nodense")
    nodense.config["metadata"]["toolkit"] = dense.config["metadata"]["toolkit"]
    client = client_for(escluster.url)
    upload(client, nodense, "tiny-text")

    result = deploy(escluster.url)
    assert result.exit_code == ParityError.exit_code, result.output
    assert "parity check failed" in result.output
    assert "cluster returns 32 dims but the local model 512" in result.output
    assert "Dense projection layer missing" in result.output


@pytest.mark.real_cluster
@pytest.mark.skipif(not os.environ.get("ES_URL"), reason="needs a real Elasticsearch at ES_URL")
def test_real_cluster_deploys_the_default_model_with_parity(monkeypatch):
    for var, value in REAL_ENV.items():
        monkeypatch.setenv(var, value)
    result = runner.invoke(app, ["deploy-model", "--model-id", "toolkit-test-clip-text", "--replace", "--json",
                                 "--timeout", "900"])
    try:
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["parity"]["min_cosine"] >= 0.9999 and report["parity"]["dims"] == 512
    finally:
        runner.invoke(app, ["undeploy", "--model-id", "toolkit-test-clip-text", "--delete", "--force"])


def test_undeploy_against_a_server_that_is_not_elasticsearch_fails(tmp_path):
    import http.server
    import threading

    class NotFoundHandler(http.server.BaseHTTPRequestHandler):
        """Answers 404 to every path but / (like a web server or Kibana on the wrong port)."""

        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        do_POST = do_DELETE = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFoundHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = undeploy(f"http://127.0.0.1:{server.server_address[1]}", "--delete")
    finally:
        server.shutdown()
    assert result.exit_code == 25, result.output  # NotElasticsearch
    assert "not Elasticsearch" in result.output
    assert "was not running" not in result.output
