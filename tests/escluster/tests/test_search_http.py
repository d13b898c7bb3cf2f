"""Search through the real HTTP server with the official ``elasticsearch`` client."""

from __future__ import annotations

import pytest

from tests.escluster.testing import running_cluster

elasticsearch = pytest.importorskip("elasticsearch")


@pytest.fixture(scope="module")
def es():
    with running_cluster(license="basic", ml_nodes=0) as handle:
        client = elasticsearch.Elasticsearch(handle.url)
        client.indices.create(index="imgs", mappings={"properties": {
            "caption": {"type": "text"}, "tag": {"type": "keyword"},
            "v": {"type": "dense_vector", "dims": 2, "similarity": "cosine",
                  "index_options": {"type": "hnsw"}}}})
        docs = [("a", "red car", "x", [1.0, 0.0]), ("b", "blue car", "y", [0.8, 0.6]),
                ("c", "red apple", "x", [0.0, 1.0])]
        for doc_id, caption, tag, vec in docs:
            client.index(index="imgs", id=doc_id, document={"caption": caption, "tag": tag, "v": vec})
        client.indices.refresh(index="imgs")
        yield client


def test_client_knn_search_with_filter_and_fields(es):
    resp = es.search(index="imgs", knn={"field": "v", "query_vector": [1.0, 0.0], "k": 2,
                                        "filter": {"term": {"tag": "x"}}}, fields=["tag"])
    hits = resp["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["a", "c"]
    assert hits[0]["fields"]["tag"] == ["x"] and "v" not in hits[0]["_source"]
    assert hits[1]["_score"] == pytest.approx(0.5)


def test_client_sees_es_errors(es):
    with pytest.raises(elasticsearch.BadRequestError) as info:
        es.search(index="imgs", knn={"field": "v", "query_vector": [1.0, 0.0, 0.0], "k": 1})
    assert info.value.error == "search_phase_execution_exception"
    assert info.value.body["error"]["root_cause"][0]["type"] == "query_shard_exception"
    with pytest.raises(elasticsearch.AuthorizationException) as denied:
        rrf = {"rrf": {"retrievers": [{"standard": {"query": {"match_all": {}}}}]}}
        es.search(index="imgs", retriever=rrf)
    assert denied.value.meta.status == 403


def test_client_count_and_match(es):
    assert es.count(index="imgs", query={"match": {"caption": "red"}})["count"] == 2
    resp = es.search(index="imgs", query={"match": {"caption": "red"}}, sort=[{"tag": "asc"}], size=1)
    assert resp["hits"]["total"] == {"value": 2, "relation": "eq"}
    assert resp["hits"]["hits"][0]["sort"] == ["x"]
