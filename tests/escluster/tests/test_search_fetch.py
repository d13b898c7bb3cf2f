"""Fetch phase, paging, sorting and request validation of the test cluster's search."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.escluster.errors import ESError
from tests.escluster.search import search


@dataclass
class FakeIndex:
    name: str
    mappings: dict
    docs: dict
    settings: dict = field(default_factory=dict)


MAPPINGS = {"properties": {
    "name": {"type": "keyword"},
    "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
    "n": {"type": "long"},
    "f": {"type": "float"},
    "day": {"type": "date"},
    "vec": {"type": "dense_vector", "dims": 2, "similarity": "cosine"},
    "obj": {"properties": {"a": {"type": "keyword"}, "b": {"type": "long"}}},
}}

DOCS = {
    "1": {"name": "cow", "title": "Brown cow", "n": 3, "f": 1.1, "day": "2024-03-01", "vec": [1.0, 0.0],
          "obj": {"a": "x", "b": 1}},
    "2": {"name": "moose", "title": "Big moose", "n": 1, "vec": [0.0, 1.0], "obj": {"a": "y", "b": 2}},
    "3": {"name": "rabbit", "title": "White rabbit", "n": 2, "day": 1700000000000},
    "4": {"name": "ant", "title": "Tiny ant"},
}


def run(body=None, params=None, *, docs=DOCS, settings=None):
    index = FakeIndex("zoo", MAPPINGS, docs, settings or {})
    return search([index], body, params or {}, license_type="basic", embed_text=None)


def ids(resp) -> list[str]:
    return [h["_id"] for h in resp["hits"]["hits"]]


def error_of(body=None, params=None) -> ESError:
    with pytest.raises(ESError) as info:
        run(body, params)
    return info.value


# ------------------------------------------------------------------------------------------ _source

def test_vectors_left_out_of_source_by_default():
    hit = run({"query": {"ids": {"values": ["1"]}}})["hits"]["hits"][0]
    assert "vec" not in hit["_source"] and hit["_source"]["name"] == "cow"


def test_exclude_vectors_false_and_include_vectors_bring_them_back():
    for spec in ({"exclude_vectors": False}, {"include_vectors": True}):
        hit = run({"query": {"ids": {"values": ["1"]}}, "_source": spec})["hits"]["hits"][0]
        assert hit["_source"]["vec"] == [1.0, 0.0]


def test_index_setting_can_keep_vectors():
    hit = run({"size": 1}, settings={"index.mapping.exclude_source_vectors": "false"})["hits"]["hits"][0]
    assert hit["_source"]["vec"] == [1.0, 0.0]


def test_fields_returns_vectors_even_when_excluded_from_source():
    hit = run({"query": {"ids": {"values": ["1"]}}, "fields": ["vec"]})["hits"]["hits"][0]
    assert hit["fields"]["vec"] == pytest.approx([1.0, 0.0])
    assert "vec" not in hit["_source"]


def test_source_false_string_list_and_patterns():
    first = {"query": {"ids": {"values": ["1"]}}}
    assert "_source" not in run({**first, "_source": False})["hits"]["hits"][0]
    assert run({**first, "_source": "name"})["hits"]["hits"][0]["_source"] == {"name": "cow"}
    assert run({**first, "_source": ["name", "obj.a"]})["hits"]["hits"][0]["_source"] == {
        "name": "cow", "obj": {"a": "x"}}
    src = run({**first, "_source": {"includes": ["obj*", "n*"], "excludes": ["obj.b"]}})["hits"]["hits"][0]
    assert src["_source"] == {"obj": {"a": "x"}, "name": "cow", "n": 3}
    src = run({**first, "_source": {"excludes": ["title", "obj"]}})["hits"]["hits"][0]["_source"]
    assert set(src) == {"name", "n", "f", "day"}


def test_source_url_parameters():
    hit = run({"query": {"ids": {"values": ["2"]}}}, {"_source_includes": "name,n"})["hits"]["hits"][0]
    assert hit["_source"] == {"name": "moose", "n": 1}
    assert "_source" not in run({"size": 1}, {"_source": "false"})["hits"]["hits"][0]


def test_stored_fields_none_drops_source_and_id():
    hit = run({"size": 1, "stored_fields": "_none_"})["hits"]["hits"][0]
    assert "_source" not in hit and "_id" not in hit and hit["_index"] == "zoo"


# ------------------------------------------------------------------------------------------ fields

def test_fields_formats_values_by_type():
    hit = run({"query": {"ids": {"values": ["1"]}}, "fields": ["name", "n", "f", "day", "title.raw", "obj.*"]}
              )["hits"]["hits"][0]
    assert hit["fields"]["name"] == ["cow"]
    assert hit["fields"]["n"] == [3]
    assert hit["fields"]["f"] == [pytest.approx(1.1, rel=1e-6)]
    assert hit["fields"]["day"] == ["2024-03-01T00:00:00.000Z"]
    assert hit["fields"]["title.raw"] == ["Brown cow"]
    assert hit["fields"]["obj.a"] == ["x"] and hit["fields"]["obj.b"] == [1]


def test_fields_patterns_objects_and_missing():
    hit = run({"query": {"ids": {"values": ["3"]}}, "fields": [{"field": "day", "format": "epoch_millis"},
                                                                "nope", "ti*"]})["hits"]["hits"][0]
    assert hit["fields"]["day"] == ["1700000000000"]
    assert hit["fields"]["title"] == ["White rabbit"]
    assert "nope" not in hit["fields"] and "vec" not in hit["fields"]
    plain = run({"query": {"ids": {"values": ["4"]}}, "fields": ["n"]})["hits"]["hits"][0]
    assert "fields" not in plain


# ------------------------------------------------------------------------------------------ paging

def test_from_and_size_from_body_and_params():
    assert ids(run({"size": 2})) == ["1", "2"]
    assert ids(run({"size": 2, "from": 1})) == ["2", "3"]
    assert ids(run(None, {"size": "1", "from": "3"})) == ["4"]
    resp = run({"size": 0})
    assert resp["hits"]["hits"] == [] and resp["hits"]["total"]["value"] == 4


def test_negative_size_and_from():
    err = error_of({"size": -1})
    assert (err.status, err.type, err.reason) == (400, "illegal_argument_exception",
                                                   "[size] parameter cannot be negative, found [-1]")
    assert error_of({"from": -2}).status == 400


def test_result_window_too_large():
    err = error_of({"from": 9995, "size": 10})
    body = err.body()
    assert err.status == 400 and body["error"]["type"] == "search_phase_execution_exception"
    root = body["error"]["root_cause"][0]
    assert root["type"] == "illegal_argument_exception"
    assert root["reason"].startswith("Result window is too large, from + size must be less than or equal to: "
                                     "[10000] but was [10005].")


def test_unknown_top_level_key():
    err = error_of({"qurey": {"match_all": {}}})
    assert (err.status, err.type, err.reason) == (400, "parsing_exception",
                                                   "Unknown key for a START_OBJECT in [qurey].")
    assert error_of({"sizee": 3}).reason == "Unknown key for a VALUE_NUMBER in [sizee]."


def test_min_score():
    body = {"query": {"match": {"title": "brown big moose"}}}
    all_scores = sorted(h["_score"] for h in run(body)["hits"]["hits"])
    assert len(all_scores) == 2
    resp = run({**body, "min_score": all_scores[1]})
    assert len(resp["hits"]["hits"]) == 1 and resp["hits"]["total"]["value"] == 1


def test_track_total_hits_variants():
    assert "total" not in run({"track_total_hits": False})["hits"]
    assert run({"track_total_hits": 2})["hits"]["total"] == {"value": 2, "relation": "gte"}
    assert run({"track_total_hits": True})["hits"]["total"] == {"value": 4, "relation": "eq"}
    assert run(None, {"rest_total_hits_as_int": "true"})["hits"]["total"] == 4


def test_post_filter_narrows_hits_not_aggs():
    resp = run({"post_filter": {"term": {"name": "cow"}}, "aggs": {"names": {"terms": {"field": "name"}}}})
    assert ids(resp) == ["1"] and resp["hits"]["total"]["value"] == 1
    assert len(resp["aggregations"]["names"]["buckets"]) == 4


# ------------------------------------------------------------------------------------------ sort

def test_sort_by_field_asc_desc_and_scores_null():
    resp = run({"sort": [{"n": "desc"}]})
    assert ids(resp) == ["1", "3", "2", "4"]  # missing values last
    assert [h["sort"] for h in resp["hits"]["hits"]][:3] == [[3], [2], [1]]
    assert all(h["_score"] is None for h in resp["hits"]["hits"]) and resp["hits"]["max_score"] is None
    asc = run({"sort": ["name"]})
    assert ids(asc) == ["4", "1", "2", "3"] and asc["hits"]["hits"][0]["sort"] == ["ant"]


def test_sort_missing_first_track_scores_and_score_sort():
    resp = run({"sort": [{"n": {"order": "asc", "missing": "_first"}}]})
    assert ids(resp) == ["4", "2", "3", "1"]
    tracked = run({"query": {"match": {"title": "cow"}}, "sort": ["name"], "track_scores": True})
    assert tracked["hits"]["hits"][0]["_score"] > 0 and tracked["hits"]["max_score"] > 0
    by_score = run({"query": {"match": {"title": "cow moose"}}, "sort": ["_score", {"name": "asc"}]})
    assert by_score["hits"]["hits"][0]["sort"][0] == by_score["hits"]["hits"][0]["_score"]


def test_sort_by_date_gives_epoch_millis_and_search_after():
    resp = run({"sort": [{"day": "asc"}], "query": {"exists": {"field": "day"}}})
    assert ids(resp) == ["3", "1"] and resp["hits"]["hits"][0]["sort"] == [1700000000000]
    after = run({"sort": [{"n": "asc"}], "query": {"exists": {"field": "n"}}, "search_after": [1]})
    assert ids(after) == ["3", "1"]


def test_sort_errors():
    err = error_of({"sort": ["title"]})
    assert err.type == "search_phase_execution_exception"
    assert err.body()["error"]["root_cause"][0]["reason"].startswith("Text fields are not optimised")
    err = error_of({"sort": ["nope"]})
    assert err.body()["error"]["root_cause"][0]["reason"] == "No mapping found for [nope] in order to sort on"
    assert len(run({"sort": [{"nope": {"unmapped_type": "long"}}]})["hits"]["hits"]) == 4


def test_search_type_with_knn():
    body = {"knn": {"field": "vec", "query_vector": [1, 0], "k": 1}}
    err = error_of(body, {"search_type": "query_then_fetch"})
    assert err.reason == ("cannot set [search_type] when using [knn] search, since the search type is "
                          "determined automatically")
    assert ids(run(body, {"search_type": "dfs_query_then_fetch"})) == ["1"]
