"""The whole test cluster over HTTP with the official client: model upload, inference pipeline, kNN search."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch, helpers

from tests.escluster.tests.scripted_model import DIMS, deploy_with_client, mean_embedding


@pytest.fixture(scope="module")
def definition() -> bytes:
    return mean_embedding()


def test_inference_pipeline_bulk_and_knn(escluster, definition):
    es = Elasticsearch(escluster.url)
    deploy_with_client(es, definition, embedding_size=DIMS)
    es.ingest.put_pipeline(
        id="embed",
        processors=[
            {
                "inference": {
                    "model_id": "tiny",
                    "input_output": [{"input_field": "caption", "output_field": "caption_embedding"}],
                }
            }
        ],
    )
    es.indices.put_index_template(
        name="captions",
        index_patterns=["captions-*"],
        template={
            "settings": {"index.default_pipeline": "embed", "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "caption": {"type": "text"},
                    "caption_embedding": {"type": "dense_vector", "dims": DIMS, "similarity": "cosine"},
                }
            },
        },
    )
    docs = [
        {"_index": "captions-1", "_id": str(i), "caption": text}
        for i, text in enumerate(["dog", "cat", "snow dog", "Cat cat"])
    ]
    ok, errors = helpers.bulk(es, docs, refresh=True)
    assert (ok, errors) == (4, [])
    stored = es.get(index="captions-1", id="0", source_exclude_vectors=False)["_source"]
    inferred = es.ml.infer_trained_model(model_id="tiny", docs=[{"text_field": "dog"}])
    assert stored["caption_embedding"] == pytest.approx(inferred["inference_results"][0]["predicted_value"])
    res = es.search(
        index="captions-1",
        knn={
            "field": "caption_embedding",
            "k": 2,
            "num_candidates": 10,
            "query_vector_builder": {"text_embedding": {"model_id": "tiny", "model_text": "DOG"}},
        },
    )
    assert res["hits"]["hits"][0]["_id"] == "0"
    assert res["hits"]["hits"][0]["_score"] == pytest.approx(1.0, abs=1e-6)


def test_inference_processor_on_basic_license_fails_the_item(escluster_factory, definition):
    handle = escluster_factory(license="trial")
    es = Elasticsearch(handle.url)
    deploy_with_client(es, definition, embedding_size=DIMS)
    es.ingest.put_pipeline(
        id="embed",
        processors=[
            {"inference": {"model_id": "tiny", "input_output": [{"input_field": "caption", "output_field": "v"}]}}
        ],
    )
    handle.state.configure({"license": "basic"})
    res = es.bulk(operations=[{"index": {"_index": "a", "pipeline": "embed"}}, {"caption": "dog"}])
    item = res["items"][0]["index"]
    assert item["status"] == 403 and item["error"]["type"] == "security_exception"
