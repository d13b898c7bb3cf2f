"""`toolkit doctor`: each failure mode is reported with its own message, fix and exit code."""

from __future__ import annotations

import json
import pathlib

import pytest
from typer.testing import CliRunner

from tests.models import tiny_clip_model, tiny_text_model
from toolkit.cli import app

runner = CliRunner()


def doctor(url: str, *args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["doctor", "--json", "--es-url", url, *args])
    data = json.loads(result.output)
    assert data["exit_code"] == result.exit_code
    return result.exit_code, data


def status(data: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in data["checks"]}


def check(data: dict, name: str) -> dict:
    return next(c for c in data["checks"] if c["name"] == name)


@pytest.fixture
def ready_cluster(escluster):
    """A cluster where everything is in place: tiny text model deployed, setup done."""
    pathlib.Path("toolkit.yaml").write_text(
        f"text_model:\n  hub_id: {tiny_text_model()}\n  model_id: tiny-text\n")
    from toolkit.cluster import make_client
    from toolkit.settings import load_settings
    from toolkit.textmodel import deploy

    settings = load_settings(overrides={"elasticsearch.url": escluster.url})
    deploy(make_client(settings), settings, skip_parity=True)
    assert runner.invoke(app, ["setup", "--es-url", escluster.url]).exit_code == 0
    return escluster


def test_all_ok_when_everything_is_in_place(ready_cluster) -> None:
    code, data = doctor(ready_cluster.url)
    assert code == 0, data
    assert data["ok"] is True
    assert {n: s for n, s in status(data).items() if n != "torch"} == {
        n: "ok" for n in ("reachable", "auth", "version", "license", "ml_nodes", "text_model", "assets", "index",
                          "dims")}


def test_unreachable_url(escluster) -> None:
    code, data = doctor("http://127.0.0.1:9")
    assert code == 11
    assert check(data, "reachable")["status"] == "fail"
    assert "cannot reach" in check(data, "reachable")["message"]
    assert status(data)["license"] == "skip"


def test_wrong_api_key(escluster_factory, monkeypatch) -> None:
    es = escluster_factory(api_key="right-key")
    monkeypatch.setenv("ES_API_KEY", "wrong-key")
    code, data = doctor(es.url)
    assert code == 12
    assert check(data, "auth")["status"] == "fail"
    assert "ES_API_KEY" in check(data, "auth")["fix"]
    assert "wrong-key" not in json.dumps(data)
    assert check(data, "reachable")["status"] == "ok"
    assert [c["name"] for c in data["checks"]][:3] == ["reachable", "auth", "version"]


def test_right_api_key_passes_auth(escluster_factory, monkeypatch) -> None:
    es = escluster_factory(api_key="right-key")
    monkeypatch.setenv("ES_API_KEY", "right-key")
    _, data = doctor(es.url)
    assert status(data)["auth"] == "ok"


def test_basic_license(escluster_factory) -> None:
    es = escluster_factory(license="basic")
    code, data = doctor(es.url)
    assert code == 14
    assert check(data, "license")["status"] == "fail"
    assert "start_trial" in check(data, "license")["fix"]


def test_no_ml_node(escluster_factory) -> None:
    es = escluster_factory(ml_nodes=0)
    code, data = doctor(es.url)
    assert code == 16
    assert "no ML node" in check(data, "ml_nodes")["message"]


def test_no_model(escluster) -> None:
    runner.invoke(app, ["setup", "--es-url", escluster.url])
    code, data = doctor(escluster.url)
    assert code == 17
    assert check(data, "text_model")["status"] == "fail"
    assert "toolkit deploy-model" in check(data, "text_model")["fix"]
    assert status(data)["assets"] == "ok" and status(data)["index"] == "ok"


def test_missing_assets_and_index(ready_cluster) -> None:
    import requests

    requests.delete(f"{ready_cluster.url}/_ingest/pipeline/toolkit-caption-embedding")
    requests.delete(f"{ready_cluster.url}/images-000001")
    code, data = doctor(ready_cluster.url)
    assert code == 17
    assert "pipeline toolkit-caption-embedding is missing" in check(data, "assets")["message"]
    assert check(data, "index")["status"] == "fail"
    assert "toolkit setup" in check(data, "index")["fix"]


def test_wrong_dims(ready_cluster) -> None:
    # The index holds 512-dim image vectors; the configured image model now outputs 64 (tiny CLIP).
    pathlib.Path("toolkit.yaml").write_text(
        f"text_model:\n  hub_id: {tiny_text_model()}\n  model_id: tiny-text\n"
        f"image_model:\n  name: {tiny_clip_model()}\n")
    code, data = doctor(ready_cluster.url)
    assert code == 22, data
    assert status(data)["assets"] == "ok"
    message = check(data, "dims")["message"]
    assert "image_embedding" in message and "512" in message and "64" in message
    assert "index.image_dims" in check(data, "dims")["fix"]


def test_human_output_names_the_fix(escluster_factory) -> None:
    es = escluster_factory(license="basic")
    result = runner.invoke(app, ["doctor", "--es-url", es.url])
    assert result.exit_code == 14
    assert "fail license" in " ".join(result.output.split())
    assert "fix: start a 30-day trial" in result.output


def test_text_model_that_cannot_search_the_images(escluster) -> None:
    # Image side consistent (64-dim tiny CLIP, 64-dim index), but the text model outputs 512.
    pathlib.Path("toolkit.yaml").write_text(
        f"text_model:\n  hub_id: {tiny_text_model()}\n  model_id: tiny-text\n"
        f"image_model:\n  name: {tiny_clip_model()}\nindex:\n  image_dims: 64\n")
    from toolkit.cluster import make_client
    from toolkit.settings import load_settings
    from toolkit.textmodel import deploy

    settings = load_settings(overrides={"elasticsearch.url": escluster.url})
    deploy(make_client(settings), settings, skip_parity=True)
    assert runner.invoke(app, ["setup", "--es-url", escluster.url]).exit_code == 0
    code, data = doctor(escluster.url)
    assert code == 22
    assert "text queries cannot search the images" in check(data, "dims")["message"]


@pytest.mark.parametrize("url", ["http://elastic:Pw9secret@127.0.0.1", "localhost:9200", "http://h:notaport"])
def test_url_the_client_cannot_use_is_a_config_error_without_the_password(url: str) -> None:
    for command in (["doctor"], ["undeploy"]):
        result = runner.invoke(app, [*command, "--es-url", url])
        assert result.exit_code == 3, result.output
        assert "elasticsearch.url" in result.output and "http://localhost:9200" in result.output  # the fix
        assert "Pw9secret" not in result.output


def test_a_server_that_is_not_elasticsearch_fails_reachable_not_auth() -> None:
    from tests.cli.test_setup_cli import not_elasticsearch

    with not_elasticsearch() as url:
        code, data = doctor(url)
    assert code == 25  # NotElasticsearch
    assert check(data, "reachable")["status"] == "fail"
    assert "not Elasticsearch" in check(data, "reachable")["message"]
    assert status(data)["auth"] == "skip"


def test_missing_ca_file_is_named_not_reported_as_unreachable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ES_CA_CERTS", str(tmp_path / "nope.crt"))
    result = runner.invoke(app, ["doctor", "--es-url", "https://127.0.0.1:9"])
    assert result.exit_code == 3, result.output
    assert "nope.crt does not exist" in result.output and "cannot reach" not in result.output


def test_library_checks_never_carry_the_url_password(escluster_factory, monkeypatch) -> None:
    """The CLI scrubs what it prints; the checks themselves (library callers print them) must not hold it."""
    from toolkit import doctor as doctor_lib
    from toolkit.cluster import make_client
    from toolkit.settings import load_settings

    es = escluster_factory(password="Url-Pa55word")
    url = es.url.replace("http://", "http://elastic:Url-Pa55word@")
    settings = load_settings(overrides={"elasticsearch.url": url}, environ={})
    results = doctor_lib.run_checks(make_client(settings), settings)
    assert next(c for c in results if c.name == "reachable").status == "ok"
    assert "Url-Pa55word" not in json.dumps([c.as_dict() for c in results])
