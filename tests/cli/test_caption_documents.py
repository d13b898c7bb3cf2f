"""Captioned documents index with the fields the real `inference` processor writes.

Elasticsearch's inference processor (``input_output``, output field without a dot) writes ``model_id``
next to the vector, and ``is_truncated: true`` when the caption was cut at the model's max sequence
length (``InferenceResults.writeResultToField``, ``NlpInferenceResults``). Under the strict image
mapping an unmapped field rejects the whole document, after the pipeline ran. These tests run the real
asset files through the test cluster (which writes those fields as ES does) and check that every
captioned document is indexed with its caption vector, and nothing the mapping does not know.

One cluster for the module: deploy-model and setup run once; the undeploy test runs last.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.lib.test_smoke import tiny_text_model_64, write_config
from toolkit.assets import content_hash
from toolkit.cli import app
from toolkit.cluster import make_client
from toolkit.devtools import Request, send
from toolkit.errors import RequestFailed
from toolkit.settings import load_settings

runner = CliRunner()
MODEL_ID = "tiny-text-64"
PIPELINE = "toolkit-caption-embedding"
# Well over the 128 tokens the toolkit uploads as max_sequence_length: Elasticsearch truncates it.
LONG_CAPTION = " ".join(["a small grey cat sleeping on a warm windowsill in the afternoon sun"] * 20)


@pytest.fixture(scope="module")
def cluster():
    from tests.escluster.testing import running_cluster

    with running_cluster(license="trial") as es:
        yield es


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from tests.models import tiny_clip_model

    folder = tmp_path_factory.mktemp("captions")
    write_config(folder, {"index.image_dims": 64, "index.caption_dims": 64, "image_model.device": "cpu",
                          "image_model.name": str(tiny_clip_model()), "text_model.model_id": MODEL_ID})
    return folder


def cli(es, folder: Path, *args: str):
    return runner.invoke(app, [*args, "--es-url", es.url, "--config", str(folder / "toolkit.yaml")])


@pytest.fixture(scope="module")
def installed(cluster, workdir):
    result = cli(cluster, workdir, "deploy-model", "--model", str(tiny_text_model_64()), "--skip-parity")
    assert result.exit_code == 0, result.output
    result = cli(cluster, workdir, "setup")
    assert result.exit_code == 0, result.output
    return cluster


def client_for(es):
    return make_client(load_settings(environ={}, overrides={"elasticsearch.url": es.url}))


def all_docs(es, index: str = "images") -> dict[str, dict]:
    client = client_for(es)
    send(client, Request("POST", f"{index}/_refresh"))
    body = send(client, Request("POST", f"{index}/_search", body={
        "size": 100, "_source": {"exclude_vectors": False}}))
    return {h["_id"]: h["_source"] for h in body["hits"]["hits"]}


def mapped_fields(es, index: str = "images") -> set[str]:
    mapping = send(client_for(es), Request("GET", f"{index}/_mapping"))
    (body,) = mapping.values()
    return set(body["mappings"]["properties"])


def test_the_pipeline_output_is_what_elasticsearch_writes_and_the_mapping_knows_it(installed):
    """_simulate through the installed pipeline: the vector, the model id kept as caption_model, and
    the truncation flag for a long caption only; every field is mapped."""
    body = send(client_for(installed), Request("POST", f"_ingest/pipeline/{PIPELINE}/_simulate", body={
        "docs": [{"_source": {"caption": "a cat"}}, {"_source": {"caption": LONG_CAPTION}}]}))
    short, long = (d["doc"]["_source"] for d in body["docs"])
    assert len(short["caption_embedding"]) == 64 and short["caption_model"] == MODEL_ID
    assert "caption_truncated" not in short and "model_id" not in short
    assert long["caption_truncated"] is True and "is_truncated" not in long
    assert set(short) | set(long) <= mapped_fields(installed)


def test_ingest_of_a_captioned_manifest_indexes_every_row_with_its_caption_vector(installed, workdir):
    from tests.lib.ingest_helpers import good_images

    photos = good_images(workdir / "shots", 4)
    manifest = workdir / "captions.csv"
    captions = ["a red square", "eine rote Katze", LONG_CAPTION, ""]
    manifest.write_text("id,path,caption\n" + "".join(
        f"m{i},{p},\"{c}\"\n" for i, (p, c) in enumerate(zip(photos, captions, strict=True))), encoding="utf-8")
    result = cli(installed, workdir, "ingest", str(manifest), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 4 and report["failed"] == 0, report
    docs = {k: v for k, v in all_docs(installed).items() if k in {"m0", "m1", "m2", "m3"}}
    assert set(docs) == {"m0", "m1", "m2", "m3"}
    for doc_id in ("m0", "m1", "m2"):
        assert len(docs[doc_id]["caption_embedding"]) == 64, doc_id
        assert docs[doc_id]["caption_model"] == MODEL_ID
        assert "ingest_error" not in docs[doc_id]
    assert docs["m2"]["caption_truncated"] is True
    assert "caption_truncated" not in docs["m0"]
    assert "caption_embedding" not in docs["m3"] and "caption_model" not in docs["m3"]
    mapped = mapped_fields(installed)
    assert all(set(d) <= mapped for d in docs.values())


def test_quickstart_indexes_all_seven_photos_with_caption_vectors(installed, workdir, monkeypatch):
    from tests.models import tiny_clip_model

    monkeypatch.chdir(workdir)
    result = runner.invoke(app, ["quickstart", "--es-url", installed.url, "--text-model", str(tiny_text_model_64()),
                                 "--model-id", MODEL_ID, "--image-model", str(tiny_clip_model()),
                                 "--skip-parity", "--json", "--index", "qs"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ingest"]["indexed"] == 7
    docs = all_docs(installed, "qs")
    assert len(docs) == 7
    assert all(len(d["caption_embedding"]) == 64 and d["caption_model"] == MODEL_ID for d in docs.values())


def test_smoke_passes(installed, workdir):
    result = cli(installed, workdir, "smoke")
    assert result.exit_code == 0, result.output


def install_the_old_shape(es) -> None:
    """What toolkit setup installed before: the pipeline with no rename, an index without the fields."""
    client = client_for(es)
    stored = send(client, Request("GET", f"_ingest/pipeline/{PIPELINE}"))[PIPELINE]
    stored["processors"] = [p for p in stored["processors"] if "inference" in p]
    stored["_meta"] = {"managed_by": "toolkit"}
    stored["_meta"]["toolkit_hash"] = content_hash(stored)  # as the older toolkit stored its own body
    send(client, Request("PUT", f"_ingest/pipeline/{PIPELINE}", body=stored))
    send(client, Request("PUT", "old-000001", body={
        "settings": {"index": {"default_pipeline": PIPELINE}},
        "mappings": {"dynamic": "strict", "properties": {
            "caption": {"type": "text"}, "image_embedding": {"type": "dense_vector", "dims": 64},
            "caption_embedding": {"type": "dense_vector", "dims": 64}, "path": {"type": "keyword"},
            "ingest_error": {"properties": {"message": {"type": "text"}, "processor": {"type": "keyword"}}}}},
        "aliases": {"old": {"is_write_index": True}}}))


def test_an_old_installation_is_flagged_by_doctor_and_brought_up_to_date_by_setup(installed, workdir):
    from tests.models import tiny_clip_model

    install_the_old_shape(installed)
    folder = workdir / "old"
    folder.mkdir()
    write_config(folder, {"index.image_dims": 64, "index.caption_dims": 64, "index.alias": "old",
                          "index.template_name": "old-images",
                          "image_model.name": str(tiny_clip_model()), "text_model.model_id": MODEL_ID})
    # The old shape really fails a captioned document (the test cluster writes model_id, as ES does).
    client = client_for(installed)
    with pytest.raises(RequestFailed, match="strict_dynamic_mapping_exception|model_id"):
        send(client, Request("PUT", "old/_doc/x", body={"caption": "a cat", "path": "x"}))

    result = cli(installed, folder, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert result.exit_code != 0
    assert "model_id" in checks["index"]["message"] and "old-000001" in checks["index"]["message"]
    assert "toolkit setup" in (checks["index"]["fix"] or "")

    result = cli(installed, folder, "smoke")
    assert result.exit_code != 0
    assert "pipeline" in result.output and "model_id" in result.output, result.output

    result = cli(installed, folder, "setup", "--json")
    assert result.exit_code == 0, result.output
    outcomes = {(r["kind"], r["name"]): r["outcome"] for r in json.loads(result.stdout)["results"]}
    assert outcomes[("pipeline", PIPELINE)] == "updated"
    assert outcomes[("index", "old-000001")] == "updated"
    assert {"caption_model", "caption_truncated"} <= mapped_fields(installed, "old")
    send(client, Request("PUT", "old/_doc/x", body={"caption": "a cat", "path": "x"}))
    assert all_docs(installed, "old")["x"]["caption_model"] == MODEL_ID

    result = cli(installed, folder, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["index"]["status"] == "ok", checks["index"]


def test_zz_undeploy_while_the_caption_pipeline_uses_the_model_names_it_and_force_works(installed, workdir):
    """Runs last: it stops the deployment. Elasticsearch refuses with 409; the toolkit names the pipeline."""
    result = cli(installed, workdir, "undeploy")
    assert result.exit_code == RequestFailed.exit_code, result.output
    assert f"'{PIPELINE}'" in result.output and "--force" in result.output
    stats = send(client_for(installed), Request("GET", f"_ml/trained_models/{MODEL_ID}/_stats"))
    assert stats["trained_model_stats"][0]["deployment_stats"]["state"] == "started"

    result = cli(installed, workdir, "undeploy", "--force", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stopped"] is True
    # With the model stopped a captioned document is still indexed, with the reason in ingest_error.
    client = client_for(installed)
    send(client, Request("PUT", "images/_doc/after", body={"caption": "a cat", "path": "p"}))
    doc = all_docs(installed)["after"]
    assert "caption_embedding" not in doc and doc["ingest_error"]["message"]
