"""``POST _reindex`` and ``GET _tasks/<id>`` of the test cluster, pinned to Elasticsearch's behaviour.

Sources: modules/reindex/.../Reindexer.java (``AsyncIndexBySearchAction.buildRequest``),
AbstractAsyncBulkByScrollAction.prepareSearchRequest (``needsVectors``: vectors fetched unless the
request's ``_source`` says otherwise), server/.../index/reindex/ReindexRequest.java (``PARSER``,
``validate``), UpdateByQueryBasicTests.testUpdateByQueryIncludeVectors (9.2 vectors survive a copy).
"""

from __future__ import annotations

import time

from tests.escluster.testing import call

MAPPING = {"mappings": {"dynamic": "strict", "properties": {
    "v": {"type": "dense_vector", "dims": 3, "similarity": "l2_norm"}, "t": {"type": "keyword"}}}}


def _two_indices(url: str) -> None:
    assert call(url, "PUT", "/a", MAPPING).status == 200
    assert call(url, "PUT", "/b", MAPPING).status == 200
    for i in range(3):
        call(url, "PUT", f"/a/_doc/{i}", {"v": [1.0, 2.0, float(i)], "t": f"x{i}"})
    call(url, "POST", "/a/_refresh")


def _source(url: str, index: str, doc_id: str) -> dict:
    hits = call(url, "POST", f"/{index}/_search", {"query": {"ids": {"values": [doc_id]}},
                                                   "_source": {"exclude_vectors": False}}).body["hits"]["hits"]
    return hits[0]["_source"] if hits else {}


def test_vectors_left_out_of_source_on_9_2_are_still_copied(escluster) -> None:
    url = escluster.url
    _two_indices(url)
    assert "v" not in call(url, "POST", "/a/_search", {}).body["hits"]["hits"][0]["_source"]
    r = call(url, "POST", "/_reindex?refresh=true", {"source": {"index": "a"}, "dest": {"index": "b"}})
    assert r.status == 200, r.body
    assert {k: r.body[k] for k in ("total", "created", "updated", "version_conflicts", "failures")} == {
        "total": 3, "created": 3, "updated": 0, "version_conflicts": 0, "failures": []}
    assert _source(url, "b", "2") == {"v": [1.0, 2.0, 2.0], "t": "x2"}
    # A knn search finds the copies: the vectors are indexed, not only stored.
    knn = call(url, "POST", "/b/_search", {"knn": {"field": "v", "query_vector": [1, 2, 2], "k": 1,
                                                   "num_candidates": 3}}).body["hits"]["hits"]
    assert knn[0]["_id"] == "2"


def test_a_source_excludes_filter_drops_the_field_from_the_copy(escluster) -> None:
    url = escluster.url
    _two_indices(url)
    r = call(url, "POST", "/_reindex?refresh=true",
             {"source": {"index": "a", "_source": {"excludes": ["v"]}}, "dest": {"index": "b"}})
    assert r.status == 200 and r.body["created"] == 3
    assert _source(url, "b", "1") == {"t": "x1"}


def test_op_type_create_counts_conflicts_and_proceed_keeps_going(escluster) -> None:
    url = escluster.url
    _two_indices(url)
    call(url, "PUT", "/b/_doc/1?refresh=true", {"t": "newer"})
    body = {"source": {"index": "a"}, "dest": {"index": "b", "op_type": "create"}}
    aborted = call(url, "POST", "/_reindex?refresh=true", body)
    assert aborted.status == 409
    assert aborted.body["failures"][0]["cause"]["type"] == "version_conflict_engine_exception"
    proceeded = call(url, "POST", "/_reindex?refresh=true", {**body, "conflicts": "proceed"})
    assert proceeded.status == 200 and proceeded.body["version_conflicts"] >= 1 and proceeded.body["failures"] == []
    assert _source(url, "b", "1") == {"t": "newer"}  # create never overwrites


def test_dest_pipeline_runs_and_none_skips_the_default_pipeline(escluster) -> None:
    url = escluster.url
    _two_indices(url)
    call(url, "PUT", "/_ingest/pipeline/up", {"processors": [{"uppercase": {"field": "t"}}]})
    call(url, "PUT", "/b/_settings", {"index": {"default_pipeline": "up"}})
    call(url, "POST", "/_reindex?refresh=true", {"source": {"index": "a", "query": {"ids": {"values": ["0"]}}},
                                                 "dest": {"index": "b"}})
    assert _source(url, "b", "0")["t"] == "X0"  # an ordinary index request: the default pipeline ran
    call(url, "POST", "/_reindex?refresh=true", {"source": {"index": "a", "query": {"ids": {"values": ["1"]}}},
                                                 "dest": {"index": "b", "pipeline": "_none"}})
    assert _source(url, "b", "1")["t"] == "x1"


def test_a_rejected_document_is_a_failure_with_its_id_and_status(escluster) -> None:
    url = escluster.url
    _two_indices(url)
    strict = {"dynamic": "strict", "properties": {"v": {"type": "dense_vector", "dims": 3}}}
    call(url, "PUT", "/c", {"mappings": strict})
    r = call(url, "POST", "/_reindex", {"source": {"index": "a"}, "dest": {"index": "c"}})
    assert r.status == 400
    failure = r.body["failures"][0]
    assert failure["status"] == 400 and failure["cause"]["type"] == "strict_dynamic_mapping_exception"


def test_validation_messages_follow_reindex_request_validate(escluster) -> None:
    r = call(escluster.url, "POST", "/_reindex", {"source": {}, "dest": {}})
    assert r.status == 400 and r.body["error"]["type"] == "action_request_validation_exception"
    assert r.body["error"]["reason"] == ("Validation Failed: 1: use _all if you really want to copy from all "
                                         "existing indexes;2: index must be specified;")
    r = call(escluster.url, "POST", "/_reindex", {"source": {"index": "a", "_source": False}, "dest": {"index": "b"}})
    assert "_source:false is not supported in this context" in r.body["error"]["reason"]
    r = call(escluster.url, "POST", "/_reindex", {"source": {"index": "missing"}, "dest": {"index": "b"}})
    assert r.status == 404 and r.body["error"]["type"] == "index_not_found_exception"


def test_wait_for_completion_false_returns_a_task_whose_result_is_stored(escluster) -> None:
    url = escluster.url
    _two_indices(url)
    r = call(url, "POST", "/_reindex?wait_for_completion=false", {"source": {"index": "a"}, "dest": {"index": "b"}})
    assert r.status == 200 and set(r.body) == {"task"}
    for _ in range(100):
        state = call(url, "GET", f"/_tasks/{r.body['task']}").body
        if state["completed"]:
            break
        time.sleep(0.05)
    assert state["completed"] and state["response"]["created"] == 3
    assert state["task"]["action"] == "indices:data/write/reindex"
    assert state["task"]["description"] == "reindex from [a] to [b]"
    missing = call(url, "GET", "/_tasks/nope:1")
    assert missing.status == 404 and missing.body["error"]["type"] == "resource_not_found_exception"


def test_a_failure_lets_its_batch_finish_then_stops_the_copy(escluster) -> None:
    url = escluster.url
    _two_indices(url)
    call(url, "PUT", "/c", {"mappings": {"dynamic": "strict", "properties": {"t": {"type": "keyword"}}}})
    call(url, "PUT", "/a/_doc/0?refresh=true", {"v": [1.0, 2.0, 0.0]})  # doc 0 holds v, which c does not map
    for i in (1, 2):
        call(url, "PUT", f"/a/_doc/{i}?refresh=true", {"t": f"x{i}"})
    r = call(url, "POST", "/_reindex?refresh=true", {"source": {"index": "a", "size": 2, "sort": ["_doc"]},
                                                     "dest": {"index": "c"}})
    assert r.status == 400 and [f["id"] for f in r.body["failures"]] == ["0"]
    assert r.body["created"] == 1 and r.body["batches"] == 1  # doc 1 (same batch) copied, doc 2 not
