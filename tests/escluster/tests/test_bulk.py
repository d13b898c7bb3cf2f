"""_bulk, single-document APIs and fault injection of the test cluster."""

from __future__ import annotations

import json
import random

import pytest
from elasticsearch import ApiError, ConflictError, ConnectionError, Elasticsearch, NotFoundError, helpers

from tests.escluster.testing import call


@pytest.fixture
def es(escluster):
    return Elasticsearch(escluster.url)


def ndjson(*lines):
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_bulk_requires_trailing_newline(escluster):
    r = call(
        escluster.url,
        "POST",
        "/_bulk",
        ndjson({"index": {"_index": "a"}}, {"x": 1}).rstrip("\n"),
        ndjson=True,
    )
    assert r.status == 400
    assert r.body["error"]["type"] == "illegal_argument_exception"
    assert r.body["error"]["reason"] == "The bulk request must be terminated by a newline [\\n]"


def test_bulk_malformed_action_fails_request(escluster):
    r = call(escluster.url, "POST", "/_bulk", ndjson({"explode": {"_index": "a"}}), ndjson=True)
    assert r.status == 400 and "Malformed action/metadata line [1]" in r.body["error"]["reason"]
    r = call(escluster.url, "POST", "/_bulk", ndjson({"index": {}}, {"x": 1}), ndjson=True)
    assert r.status == 200 and r.body["items"][0]["index"]["status"] == 400


def test_bulk_actions_and_response_shape(escluster, es):
    body = ndjson(
        {"index": {"_index": "a", "_id": "1"}},
        {"x": 1},
        {"create": {"_index": "a", "_id": "2"}},
        {"x": 2},
        {"index": {"_index": "a"}},
        {"x": 3},
        {"update": {"_index": "a", "_id": "1"}},
        {"doc": {"y": 1}},
        {"update": {"_index": "a", "_id": "9"}},
        {"doc": {"y": 1}, "doc_as_upsert": True},
        {"delete": {"_index": "a", "_id": "2"}},
        {"delete": {"_index": "a", "_id": "404"}},
    )
    r = call(escluster.url, "POST", "/_bulk?refresh=true", body, ndjson=True)
    assert r.status == 200
    assert set(r.body) == {"took", "errors", "items"} and r.body["errors"] is False
    items = r.body["items"]
    first = items[0]["index"]
    assert {"_index", "_id", "_version", "result", "_shards", "_seq_no", "_primary_term", "status"} <= set(first)
    assert (first["result"], first["status"], first["_version"]) == ("created", 201, 1)
    assert items[1]["create"]["status"] == 201
    auto_id = items[2]["index"]["_id"]
    assert len(auto_id) == 20
    assert (items[3]["update"]["result"], items[3]["update"]["_version"]) == ("updated", 2)
    assert items[4]["update"]["result"] == "created"
    assert (items[5]["delete"]["result"], items[5]["delete"]["status"]) == ("deleted", 200)
    assert (items[6]["delete"]["result"], items[6]["delete"]["status"]) == ("not_found", 404)
    assert es.get(index="a", id="1")["_source"] == {"x": 1, "y": 1}
    assert es.count(index="a")["count"] == 3
    seq_nos = [next(iter(i.values()))["_seq_no"] for i in items]
    assert seq_nos == sorted(seq_nos) and len(set(seq_nos)) == len(seq_nos)


def test_bulk_with_index_in_path_and_create_conflict(escluster):
    body = ndjson({"create": {"_id": "1"}}, {"x": 1}, {"create": {"_id": "1"}}, {"x": 2})
    r = call(escluster.url, "POST", "/a/_bulk", body, ndjson=True)
    assert r.body["errors"] is True
    ok, conflict = (i["create"] for i in r.body["items"])
    assert ok["_index"] == "a" and ok["status"] == 201
    assert conflict["status"] == 409
    assert conflict["error"]["type"] == "version_conflict_engine_exception"
    assert conflict["error"]["reason"] == "[1]: version conflict, document already exists (current version [1])"


def test_bulk_validation_error_fails_only_that_item(escluster, es):
    es.indices.create(index="a", mappings={"properties": {"v": {"type": "dense_vector", "dims": 2}}})
    body = ndjson(
        {"index": {"_index": "a", "_id": "1"}},
        {"v": [1, 0]},
        {"index": {"_index": "a", "_id": "2"}},
        {"v": [1, 0, 0]},
        {"index": {"_index": "Bad"}},
        {"v": [1, 0]},
        {"update": {"_index": "a", "_id": "missing"}},
        {"doc": {"v": [0, 1]}},
        {"index": {"_index": "a", "_id": "3"}},
        {"v": [0, 1]},
    )
    r = call(escluster.url, "POST", "/_bulk", body, ndjson=True)
    statuses = [next(iter(i.values()))["status"] for i in r.body["items"]]
    assert statuses == [201, 400, 400, 404, 201]
    errors = [next(iter(i.values())).get("error", {}).get("type") for i in r.body["items"]]
    assert errors == [
        None,
        "document_parsing_exception",
        "invalid_index_name_exception",
        "document_missing_exception",
        None,
    ]


def test_require_alias(escluster, es):
    es.indices.create(index="real", aliases={"al": {}})
    body = ndjson(
        {"index": {"_index": "al", "require_alias": True}},
        {"x": 1},
        {"index": {"_index": "real", "require_alias": True}},
        {"x": 1},
    )
    items = call(escluster.url, "POST", "/_bulk", body, ndjson=True).body["items"]
    assert items[0]["index"]["status"] == 201 and items[0]["index"]["_index"] == "real"
    assert items[1]["index"]["status"] == 404
    assert items[1]["index"]["error"]["type"] == "index_not_found_exception"


def test_doc_apis(es, escluster):
    created = es.index(index="a", id="1", document={"x": 1})
    assert created["result"] == "created" and created.meta.status == 201
    updated = es.index(index="a", id="1", document={"x": 2})
    assert updated["result"] == "updated" and updated["_version"] == 2
    assert es.exists(index="a", id="1")
    got = es.get(index="a", id="1")
    assert {"_index", "_id", "_version", "_seq_no", "_primary_term", "found", "_source"} <= set(got.body)
    with pytest.raises(ConflictError):
        es.create(index="a", id="1", document={"x": 3})
    auto = es.index(index="a", document={"x": 4})
    assert len(auto["_id"]) == 20
    missing = call(escluster.url, "GET", "/a/_doc/zzz")
    assert missing.status == 404 and missing.body == {"_index": "a", "_id": "zzz", "found": False}
    assert es.delete(index="a", id="1")["result"] == "deleted"
    with pytest.raises(NotFoundError):
        es.delete(index="a", id="1")
    assert es.update(index="a", id=auto["_id"], doc={"y": 1})["result"] == "updated"
    assert es.update(index="a", id=auto["_id"], doc={"y": 1})["result"] == "noop"
    with pytest.raises(ConflictError):
        es.index(index="a", id=auto["_id"], document={}, if_seq_no=0, if_primary_term=1)


def test_helpers_bulk_thousand_vectors(es):
    es.indices.create(index="img", mappings={"properties": {"v": {"type": "dense_vector", "dims": 512}}})
    actions = ({"_index": "img", "_id": str(i), "v": [random.uniform(-1, 1) for _ in range(512)]} for i in range(1000))
    ok, errors = helpers.bulk(es, actions, chunk_size=500, refresh=True)
    assert (ok, errors) == (1000, [])
    assert es.count(index="img")["count"] == 1000


def test_streaming_bulk_retries_injected_item_429s(es, escluster):
    call(escluster.url, "POST", "/_test/faults", {"bulk_429_items": 7})
    actions = ({"_index": "a", "_id": str(i), "n": i} for i in range(40))
    # The client retries item-level 429s only with raise_on_error=False (it raises on the chunk otherwise).
    results = list(
        helpers.streaming_bulk(es, actions, chunk_size=10, max_retries=5, initial_backoff=0.01, raise_on_error=False)
    )
    assert all(ok for ok, _ in results) and len(results) == 40
    es.indices.refresh(index="a")
    assert es.count(index="a")["count"] == 40
    assert call(escluster.url, "GET", "/_test/faults").body["bulk_429_items"] == 0


def test_injected_item_429_shape(escluster):
    call(escluster.url, "POST", "/_test/faults", {"bulk_429_items": 1})
    r = call(
        escluster.url,
        "POST",
        "/_bulk",
        ndjson({"index": {"_index": "a", "_id": "1"}}, {"x": 1}, {"index": {"_index": "a", "_id": "2"}}, {"x": 2}),
        ndjson=True,
    )
    assert r.status == 200 and r.body["errors"] is True
    first, second = (i["index"] for i in r.body["items"])
    assert first["status"] == 429 and first["error"]["type"] == "es_rejected_execution_exception"
    assert second["status"] == 201


def test_whole_bulk_request_429_and_client_retry(escluster, es):
    call(escluster.url, "POST", "/_test/faults", {"bulk_429_requests": 1})
    r = call(escluster.url, "POST", "/_bulk", ndjson({"index": {"_index": "a"}}, {"x": 1}), ndjson=True)
    assert r.status == 429 and r.body["error"]["type"] == "es_rejected_execution_exception"
    call(escluster.url, "POST", "/_test/faults", {"bulk_429_requests": 2})
    results = list(
        helpers.streaming_bulk(es, ({"_index": "a", "x": i} for i in range(3)), max_retries=5, initial_backoff=0.01)
    )
    assert len(results) == 3 and all(ok for ok, _ in results)


def test_fail_requests_by_prefix_then_recover(escluster):
    call(escluster.url, "POST", "/_test/faults", {"fail_requests": 2, "status": 503, "path_prefix": "/_bulk"})
    assert call(escluster.url, "GET", "/").status == 200  # other paths unaffected
    body = ndjson({"index": {"_index": "a"}}, {"x": 1})
    first = call(escluster.url, "POST", "/_bulk", body, ndjson=True)
    assert first.status == 503 and first.body["status"] == 503
    assert first.headers["x-elastic-product"] == "Elasticsearch"
    assert call(escluster.url, "POST", "/_bulk", body, ndjson=True).status == 503
    assert call(escluster.url, "POST", "/_bulk", body, ndjson=True).status == 200


def test_drop_connections_and_latency(escluster):
    call(escluster.url, "POST", "/_test/faults", {"drop_connections": 1})
    client = Elasticsearch(escluster.url, max_retries=0)
    with pytest.raises(ConnectionError):
        client.info()
    assert client.info()["tagline"]
    call(escluster.url, "POST", "/_test/faults", {"latency_ms": 30})
    assert call(escluster.url, "GET", "/_test/faults").body["latency_ms"] == 30
    assert call(escluster.url, "GET", "/").status == 200
    call(escluster.url, "DELETE", "/_test/faults")
    assert call(escluster.url, "GET", "/_test/faults").body == {
        "bulk_429_items": 0,
        "bulk_429_requests": 0,
        "fail_requests": [],
        "drop_connections": [],
        "latency_ms": 0.0,
    }


def test_unknown_fault_key_is_rejected(escluster):
    r = call(escluster.url, "POST", "/_test/faults", {"explode": 1})
    assert r.status == 400


def test_client_surfaces_fail_requests_as_api_error(escluster):
    call(
        escluster.url,
        "POST",
        "/_test/faults",
        {"fail_requests": 1, "status": 500, "path_prefix": "/_license"},
    )
    with pytest.raises(ApiError) as info:
        Elasticsearch(escluster.url, max_retries=0).license.get()
    assert info.value.meta.status == 500


def test_empty_action_line(escluster):
    body = '{"index": {"_index": "t", "_id": "1"}}\n{"f1": "v1"}\n{}\n'
    r = call(escluster.url, "POST", "/_bulk", body, headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert r.body["error"]["reason"] == "Malformed action/metadata line [3], expected FIELD_NAME but found [END_OBJECT]"


def test_empty_id_fails_item(escluster):
    body = ndjson({"index": {"_index": "t", "_id": ""}}, {"f": 1}, {"index": {"_index": "t"}}, {"f": 2})
    items = call(escluster.url, "POST", "/_bulk", body, ndjson=True).body["items"]
    assert items[0]["index"]["status"] == 400
    assert items[0]["index"]["error"]["reason"] == "if _id is specified it must not be empty"
    assert items[1]["index"]["result"] == "created"
