"""toolkit quickstart against the test cluster with tiny local models passed by flag.

One fresh cluster for the module: the first test runs quickstart from nothing (deploy, setup, ingest,
queries); later ones reuse the deployed model. The towhee download path is served by a local
``http.server`` on 127.0.0.1 (no test reaches the internet).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.cli.test_quickstart_datasets import serve, towhee_zip
from tests.lib.test_smoke import tiny_text_model_64, write_config
from toolkit.cli import app
from toolkit.cluster import make_client
from toolkit.devtools import Request, send
from toolkit.errors import ConnectionFailed, ValidationError
from toolkit.settings import load_settings

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    from tests.escluster.testing import running_cluster

    with running_cluster(license="trial") as es:
        yield es


def quickstart(es, tmp_path, *args):
    from tests.models import tiny_clip_model

    write_config(tmp_path, {"index.image_dims": 64, "index.caption_dims": 64, "image_model.device": "cpu"})
    return runner.invoke(app, ["quickstart", "--es-url", es.url, "--text-model", str(tiny_text_model_64()),
                               "--model-id", "tiny-text-64", "--image-model", str(tiny_clip_model()), *args])


def test_quickstart_end_to_end_then_again_idempotently(cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = quickstart(cluster, tmp_path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "indexed 7, skipped 0 (already there), failed 0 of 7 from the 7 bundled photos" in out
    assert "text (en): a cat" in out and "text (de): eine Katze" in out
    # The image query uses the bundled cat photo: it finds itself first.
    image_part = out.split("image: ", 1)[1]
    assert image_part.splitlines()[1].split()[:2] == ["1.", "cat"]
    assert "Try next:" in out and "toolkit search --image " in out
    # Kibana requests are rendered as the toolkit sends them.
    assert "POST images/_search" in out and '"model_text": "eine Katze"' in out
    assert "POST _ml/trained_models/tiny-text-64/_infer" in out
    for step in ("waiting for the cluster", "deploying the text model", "installing templates",
                 "embedding and indexing", "searching"):
        assert step in result.stderr
    client = make_client(load_settings(environ={}, overrides={"elasticsearch.url": cluster.url}))
    assert send(client, Request("GET", "images/_count"))["count"] == 7

    again = quickstart(cluster, tmp_path, "--skip-parity", "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["deploy"]["action"] == "unchanged"
    assert {r["outcome"] for r in report["setup"]["results"]} == {"unchanged"}
    assert report["ingest"]["skipped"] == 7 and report["ingest"]["indexed"] == 0
    assert [q["title"] for q in report["queries"]] == ["text (en)", "text (de)", "image"]
    assert report["queries"][2]["hits"][0]["id"] == "cat"
    assert report["cluster"]["status"] in ("green", "yellow")
    assert all(len(q["hits"]) == 3 for q in report["queries"])


def test_quickstart_downloads_and_ingests_the_towhee_dataset(cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    towhee_zip(site / "reverse_image_search.zip")
    with serve(site) as base:
        result = quickstart(cluster, tmp_path, "--skip-parity", "--json", "--dataset", "towhee",
                            "--data-dir", str(tmp_path / "data"), "--index", "towhee",
                            "--dataset-url", f"{base}/reverse_image_search.zip")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ingest"]["indexed"] == 4 and report["ingest"]["failed"] == 0
    assert (tmp_path / "data" / "reverse_image_search.zip").is_file()
    assert (tmp_path / "data" / "reverse_image_search" / "reverse_image_search.csv").is_file()
    # The image query is a held-out test photo; the text queries fit the dataset.
    assert report["queries"][2]["query"].endswith("test/goldfish/q1.png")
    assert report["queries"][0]["query"] == "a dog running on the grass"
    labels = {h["source"].get("label") for q in report["queries"] for h in q["hits"]}
    assert labels <= {"goldfish", "tabby"}

    # Second run: the extracted folder is reused, nothing is downloaded (the server is gone).
    again = quickstart(cluster, tmp_path, "--skip-parity", "--json", "--dataset", "towhee",
                       "--data-dir", str(tmp_path / "data"), "--index", "towhee", "--limit", "2",
                       "--dataset-url", "http://127.0.0.1:9/gone.zip")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ingest"]["skipped"] == 2


def test_unknown_dataset_names_the_choices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["quickstart", "--dataset", "imagenet"])
    assert result.exit_code == ValidationError.exit_code, result.output
    assert "unknown dataset 'imagenet'" in result.output and "towhee | unsplash-lite" in result.output


def test_a_cluster_that_never_comes_up_times_out_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["quickstart", "--es-url", "http://127.0.0.1:9", "--wait", "1"])
    assert result.exit_code == ConnectionFailed.exit_code, result.output
    assert "not ready (yellow) after 1s" in result.output and "--wait" in result.output
