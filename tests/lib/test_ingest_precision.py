"""Ingest and precision: base64 vectors to 9.3+ clusters, JSON arrays below; the precision recorded per
document and in the report; the parity guard's fallback and strict stop as the run reports them."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.lib.ingest_helpers import DIMS, CountingEmbedder, good_images, make_settings, setup_index
from toolkit.cluster import make_client
from toolkit.errors import ParityError
from toolkit.images.sources import open_source
from toolkit.ingest import encode_vector, ingest, load_embedder


def _stored_source(handle: Any, alias: str) -> dict[str, Any]:
    """The ``_source`` the test cluster stored for the one document (what the bulk request carried)."""
    docs = [rec for idx in handle.state.indices.values() for rec in idx.docs.values()]
    assert len(docs) >= 1
    return dict(docs[0].source)


def _run(handle: Any, tmp_path: Path, embedder: Any = None, **overrides: Any) -> tuple[Any, Any]:
    settings = make_settings(handle.url, **overrides)
    client = make_client(settings)
    setup_index(client, settings)
    good_images(tmp_path / "imgs", 3)
    report = ingest(client, settings, source=open_source(tmp_path / "imgs"),
                    embedder=embedder or CountingEmbedder(), failures_file=tmp_path / "failures.jsonl")
    return report, client


def test_encode_vector_is_big_endian_float32_base64() -> None:
    vector = np.array([1.0, -2.5, 0.1], dtype=np.float32)
    encoded = encode_vector(vector, "base64")
    assert isinstance(encoded, str)
    assert struct.unpack(">3f", base64.b64decode(encoded)) == tuple(float(x) for x in vector)
    assert encode_vector(vector, "json") == [float(x) for x in vector]


def test_a_93_cluster_receives_base64_vectors_and_finds_them(escluster_factory: Any, tmp_path: Path) -> None:
    handle = escluster_factory(license="trial", version="9.3.0")
    embedder = CountingEmbedder()
    report, client = _run(handle, tmp_path, embedder)
    assert (report.indexed, report.failed) == (3, 0), report.failed_examples
    assert report.vector_encoding == "base64" and report.as_json()["vector_encoding"] == "base64"
    stored = _stored_source(handle, "images")["image_embedding"]
    assert isinstance(stored, str) and len(stored) == len(base64.b64encode(b"\0" * DIMS * 4))
    # The cluster decoded it to the vector we computed: a kNN search with it finds the document first.
    vector = struct.unpack(f">{DIMS}f", base64.b64decode(stored))
    client.indices.refresh(index="images")
    hits = client.search(index="images", knn={"field": "image_embedding", "query_vector": list(vector), "k": 1,
                                              "num_candidates": 10})["hits"]["hits"]
    assert hits and hits[0]["_score"] == pytest.approx(1.0, abs=1e-6)


def test_a_92_cluster_receives_json_arrays(escluster_factory: Any, tmp_path: Path) -> None:
    handle = escluster_factory(license="trial", version="9.2.0")
    report, _ = _run(handle, tmp_path)
    assert (report.indexed, report.failed) == (3, 0), report.failed_examples
    assert report.vector_encoding == "json"
    stored = _stored_source(handle, "images")["image_embedding"]
    assert isinstance(stored, list) and len(stored) == DIMS


def test_a_92_cluster_rejects_a_base64_vector_as_elasticsearch_92_does(escluster_factory: Any) -> None:
    handle = escluster_factory(license="trial", version="9.2.0")
    settings = make_settings(handle.url)
    client = make_client(settings)
    setup_index(client, settings)
    value = encode_vector(np.ones(DIMS, dtype=np.float32), "base64")
    resp = client.options(ignore_status=400).index(index="images", id="x", document={"image_embedding": value},
                                                   pipeline="_none")
    # ES 9.2 FLOAT.parseKnnVectorAndIndex: the next token after the string is not a number.
    assert resp["error"]["type"] == "document_parsing_exception"
    assert resp["error"]["caused_by"] == {
        "type": "parsing_exception",
        "reason": "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [END_OBJECT]"}


@pytest.mark.parametrize(("value", "reason"), [
    ("AAAA-AAA", "Illegal base64 character 2d"),
    (base64.b64encode(b"\0" * 12).decode(), "Failed to parse object: Base64 decoded vector byte length [12] does "
                                            f"not match the expected length of [{DIMS * 4}] or [{DIMS * 2}] for "
                                            f"dimension count [{DIMS}]"),
])
def test_a_93_cluster_rejects_bad_base64_in_elasticsearchs_words(escluster_factory: Any, value: str,
                                                                 reason: str) -> None:
    handle = escluster_factory(license="trial", version="9.3.0")
    settings = make_settings(handle.url)
    client = make_client(settings)
    setup_index(client, settings)
    resp = client.options(ignore_status=400).index(index="images", id="x", document={"image_embedding": value},
                                                   pipeline="_none")
    assert resp["error"]["type"] == "document_parsing_exception"
    assert resp["error"]["caused_by"]["reason"] == reason


def test_a_93_cluster_accepts_bfloat16_base64_and_unpadded_base64(escluster_factory: Any) -> None:
    handle = escluster_factory(license="trial", version="9.3.0")
    settings = make_settings(handle.url)
    client = make_client(settings)
    setup_index(client, settings)
    bf16 = base64.b64encode(struct.pack(f">{DIMS}H", *([0x3F80] * DIMS))).decode()  # 1.0 in bfloat16
    unpadded = encode_vector(np.full(DIMS, 0.5, dtype=np.float32), "base64").rstrip("=")
    for doc_id, value in (("bf16", bf16), ("unpadded", unpadded)):
        resp = client.index(index="images", id=doc_id, document={"image_embedding": value}, pipeline="_none")
        assert resp["result"] == "created"


def test_documents_record_the_precision_and_the_report_says_why(escluster_factory: Any, tmp_path: Path) -> None:
    from tests.models import tiny_clip_model

    handle = escluster_factory(license="trial", version="9.3.0")
    overrides = {"image_model.name": str(tiny_clip_model()), "image_model.device": "cpu",
                 "image_model.precision": "int8", "image_model.min_cosine.int8": 1.0}
    settings = make_settings(handle.url, **overrides)
    report, client = _run(handle, tmp_path, load_embedder(settings), **overrides)
    assert (report.indexed, report.failed) == (3, 0), report.failed_examples
    precision = report.as_json()["precision"]
    assert precision["requested"] == "int8" and precision["used"] == "fp32" and precision["fell_back"] is True
    assert "int8 min cosine" in precision["reason"]
    client.indices.refresh(index="images")
    sources = [h["_source"] for h in client.search(index="images", source_includes=["image_model", "image_precision"])
               ["hits"]["hits"]]
    assert sources and all(s["image_precision"] == "fp32" for s in sources)


def test_strict_stops_the_run_with_the_parity_error_and_keeps_every_item(escluster_factory: Any,
                                                                         tmp_path: Path) -> None:
    from tests.models import tiny_clip_model

    handle = escluster_factory(license="trial", version="9.3.0")
    overrides = {"image_model.name": str(tiny_clip_model()), "image_model.device": "cpu",
                 "image_model.precision": "int8", "image_model.min_cosine.int8": 1.0,
                 "image_model.strict_precision": True}
    settings = make_settings(handle.url, **overrides)
    report, _ = _run(handle, tmp_path, load_embedder(settings), **overrides)
    assert isinstance(report.error, ParityError)
    assert report.indexed == 0 and report.seen == report.failed == 3  # none lost: all in the failures file
    assert report.as_json()["complete"] is False
