"""The whole test cluster over HTTP with the official client: model upload, inference pipeline, kNN search."""

from __future__ import annotations

import base64
import io

import pytest
from elasticsearch import Elasticsearch, helpers

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "dog", "cat", "snow"]
DIMS = 4


@pytest.fixture(scope="module")
def definition() -> bytes:
    """A scripted model: the masked mean of a fixed token embedding table, [batch, 4]."""
    import torch

    class MeanEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            table = torch.arange(len(VOCAB) * DIMS, dtype=torch.float32).reshape(len(VOCAB), DIMS)
            self.table = torch.nn.Parameter(table / 10.0 + 0.1)

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
            position_ids: torch.Tensor,
        ) -> torch.Tensor:
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            return (self.table[input_ids] * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(MeanEmbedding()), buffer)
    return buffer.getvalue()


def deploy(es: Elasticsearch, definition: bytes, model_id: str = "tiny") -> None:
    es.ml.put_trained_model(
        model_id=model_id,
        model_type="pytorch",
        input={"field_names": ["text_field"]},
        inference_config={
            "text_embedding": {"tokenization": {"bert": {"do_lower_case": True}}, "embedding_size": DIMS}
        },
    )
    es.ml.put_trained_model_definition_part(
        model_id=model_id,
        part=0,
        definition=base64.b64encode(definition).decode(),
        total_definition_length=len(definition),
        total_parts=1,
    )
    es.ml.put_trained_model_vocabulary(model_id=model_id, vocabulary=VOCAB)
    es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started")


def test_inference_pipeline_bulk_and_knn(escluster, definition):
    es = Elasticsearch(escluster.url)
    deploy(es, definition)
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
    deploy(es, definition)
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
