"""Query DSL of the test cluster: matching, BM25 scores, filters, errors (no server needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from tests.escluster.errors import ESError
from tests.escluster.fields import standard_tokens
from tests.escluster.search import count, search


@dataclass
class FakeIndex:
    name: str
    mappings: dict
    docs: dict
    settings: dict = field(default_factory=dict)


MAPPINGS = {
    "properties": {
        "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "tag": {"type": "keyword"},
        "price": {"type": "long"},
        "rating": {"type": "float"},
        "sold": {"type": "boolean"},
        "created": {"type": "date"},
        "meta": {"properties": {"color": {"type": "keyword"}}},
    }
}

DOCS = {
    "1": {"title": "Red car", "tag": ["car", "red"], "price": 100, "rating": 4.5, "sold": True,
          "created": "2024-01-01", "meta": {"color": "red"}},
    "2": {"title": "Blue car with a red stripe", "tag": "car", "price": 250, "rating": 3.0, "sold": False,
          "created": "2024-02-15T10:00:00Z"},
    "3": {"title": "Red red apple", "tag": "fruit", "price": 2, "created": "2023-12-31"},
    "4": {"title": "Смородина и 東京", "tag": "misc", "price": 7, "meta": {"color": "black"}},
}


def run(body=None, params=None, *, docs=DOCS, mappings=MAPPINGS, license_type="basic"):
    index = FakeIndex("shop", mappings, docs)
    return search([index], body, params or {}, license_type=license_type, embed_text=None)


def ids(resp) -> list[str]:
    return [h["_id"] for h in resp["hits"]["hits"]]


def error_of(body=None, params=None, **kw) -> ESError:
    with pytest.raises(ESError) as info:
        run(body, params, **kw)
    return info.value


def bm25(freq: float, dl: int, avgdl: float, n_docs: int, df: int, boost: float = 1.0) -> float:
    idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    return boost * idf * freq / (freq + 1.2 * (0.25 + 0.75 * dl / avgdl))


def test_match_all_shape_and_scores():
    resp = run({"query": {"match_all": {}}})
    assert resp["timed_out"] is False
    assert resp["_shards"] == {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
    assert resp["hits"]["total"] == {"value": 4, "relation": "eq"}
    assert resp["hits"]["max_score"] == 1.0
    assert ids(resp) == ["1", "2", "3", "4"]
    hit = resp["hits"]["hits"][0]
    assert hit["_index"] == "shop" and hit["_score"] == 1.0 and hit["_source"] == DOCS["1"]


def test_no_body_is_match_all():
    assert run(None)["hits"]["total"]["value"] == 4


def test_standard_tokens_are_unicode_aware():
    assert standard_tokens("Hello, Wörld! don't 東京 Смородина") == ["hello", "wörld", "don't", "東", "京",
                                                                   "смородина"]


def test_match_single_doc_score_is_es_value():
    resp = run({"query": {"match": {"title": "hello"}}}, docs={"a": {"title": "hello"}})
    # The score every ES 8/9 user has seen for a one-document index.
    assert resp["hits"]["hits"][0]["_score"] == pytest.approx(0.13076457, abs=1e-7)


def test_match_bm25_matches_formula_and_ranks_by_tf_and_length():
    resp = run({"query": {"match": {"title": "red"}}})
    scores = {h["_id"]: h["_score"] for h in resp["hits"]["hits"]}
    assert set(scores) == {"1", "2", "3"}
    lengths = {"1": 2, "2": 6, "3": 3, "4": 4}
    avgdl = sum(lengths.values()) / 4
    assert scores["1"] == pytest.approx(bm25(1, 2, avgdl, 4, 3), rel=1e-5)
    assert scores["3"] == pytest.approx(bm25(2, 3, avgdl, 4, 3), rel=1e-5)
    assert ids(resp) == ["3", "1", "2"]  # two occurrences beat one; a short field beats a long one


def test_match_operator_and_and_minimum_should_match():
    assert set(ids(run({"query": {"match": {"title": "red car"}}}))) == {"1", "2", "3"}
    both = {"query": {"match": {"title": {"query": "red car", "operator": "and"}}}}
    assert set(ids(run(both))) == {"1", "2"}
    body = {"query": {"match": {"title": {"query": "red car apple", "minimum_should_match": 2}}}}
    assert set(ids(run(body))) == {"1", "2", "3"}
    body = {"query": {"match": {"title": {"query": "red car apple", "minimum_should_match": "100%"}}}}
    assert ids(run(body)) == []


def test_match_unicode_text():
    assert ids(run({"query": {"match": {"title": "СМОРОДИНА"}}})) == ["4"]
    assert ids(run({"query": {"match": {"title": "京"}}})) == ["4"]


def test_term_on_keyword_scores_like_es():
    resp = run({"query": {"term": {"tag": "fruit"}}})
    assert ids(resp) == ["3"]
    # keyword fields have no norms (dl = 1) and no freqs; avgdl counts values: 5 tags over 4 docs
    assert resp["hits"]["hits"][0]["_score"] == pytest.approx(bm25(1, 1, 5 / 4, 4, 1), rel=1e-5)


def test_term_on_text_is_not_analyzed_and_on_multi_field():
    assert ids(run({"query": {"term": {"title": "Red"}}})) == []
    assert set(ids(run({"query": {"term": {"title": "red"}}}))) == {"1", "2", "3"}
    assert ids(run({"query": {"term": {"title.raw": "Red car"}}})) == ["1"]


def test_term_numeric_boolean_and_object_fields():
    assert ids(run({"query": {"term": {"price": 250}}})) == ["2"]
    assert ids(run({"query": {"term": {"price": "7"}}})) == ["4"]
    assert ids(run({"query": {"term": {"sold": True}}})) == ["1"]
    assert ids(run({"query": {"term": {"sold": "false"}}})) == ["2"]
    assert ids(run({"query": {"term": {"meta.color": {"value": "black", "boost": 2}}}})) == ["4"]
    assert run({"query": {"term": {"price": 2}}})["hits"]["hits"][0]["_score"] == 1.0


def test_terms_and_ids_are_constant_score():
    resp = run({"query": {"terms": {"tag": ["fruit", "misc"], "boost": 3}}})
    assert ids(resp) == ["3", "4"] and {h["_score"] for h in resp["hits"]["hits"]} == {3.0}
    assert ids(run({"query": {"ids": {"values": ["4", "2", "nope"]}}})) == ["2", "4"]
    assert ids(run({"query": {"term": {"_id": "3"}}})) == ["3"]


def test_bool_clauses():
    body = {"query": {"bool": {"must": [{"match": {"title": "red"}}], "filter": [{"term": {"tag": "car"}}],
                               "must_not": [{"term": {"price": 250}}]}}}
    assert ids(run(body)) == ["1"]
    filtered = run({"query": {"bool": {"filter": {"term": {"tag": "car"}}}}})
    assert set(ids(filtered)) == {"1", "2"} and {h["_score"] for h in filtered["hits"]["hits"]} == {0.0}
    should = {"query": {"bool": {"should": [{"term": {"tag": "fruit"}}, {"term": {"tag": "misc"}},
                                            {"term": {"price": 2}}], "minimum_should_match": 2}}}
    assert ids(run(should)) == ["3"]
    only_not = run({"query": {"bool": {"must_not": {"term": {"tag": "car"}}}}})
    assert set(ids(only_not)) == {"3", "4"}


def test_bool_boost_and_filter_does_not_score():
    plain = run({"query": {"bool": {"must": {"match": {"title": "apple"}}}}})["hits"]["hits"][0]["_score"]
    boosted = run({"query": {"bool": {"must": {"match": {"title": "apple"}}, "boost": 2.0,
                                      "filter": {"term": {"tag": "fruit"}}}}})
    assert boosted["hits"]["hits"][0]["_score"] == pytest.approx(2 * plain, rel=1e-6)


def test_range_numbers_and_dates():
    assert ids(run({"query": {"range": {"price": {"gte": 7, "lt": 250}}}})) == ["1", "4"]
    assert ids(run({"query": {"range": {"price": {"gt": 100}}}})) == ["2"]
    assert ids(run({"query": {"range": {"created": {"gte": "2024-01-01"}}}})) == ["1", "2"]
    assert ids(run({"query": {"range": {"created": {"lte": "2024-01-01"}}}})) == ["1", "3"]
    assert ids(run({"query": {"range": {"created": {"gt": "2024-01-01T00:00:00Z", "lt": "now"}}}})) == ["2"]
    assert ids(run({"query": {"range": {"rating": {"gte": 4}}}})) == ["1"]


def test_exists_prefix_constant_score_wildcard():
    assert ids(run({"query": {"exists": {"field": "rating"}}})) == ["1", "2"]
    assert ids(run({"query": {"exists": {"field": "meta"}}})) == ["1", "4"]
    assert ids(run({"query": {"prefix": {"tag": "fr"}}})) == ["3"]
    resp = run({"query": {"constant_score": {"filter": {"term": {"tag": "car"}}, "boost": 1.5}}})
    assert {h["_score"] for h in resp["hits"]["hits"]} == {1.5}
    assert ids(run({"query": {"wildcard": {"tag": {"value": "f*t"}}}})) == ["3"]


def test_multi_match_best_fields():
    resp = run({"query": {"multi_match": {"query": "apple fruit", "fields": ["title", "tag"]}}})
    assert ids(resp) == ["3"]


def test_unmapped_field_matches_nothing():
    for q in ({"term": {"nope": "x"}}, {"match": {"nope": "x"}}, {"range": {"nope": {"gte": 1}}},
              {"exists": {"field": "nope"}}):
        assert run({"query": q})["hits"]["total"]["value"] == 0


def test_unknown_query_is_parsing_exception():
    err = error_of({"query": {"foo": {}}})
    assert (err.status, err.type, err.reason) == (400, "parsing_exception", "unknown query [foo]")
    assert err.body()["error"]["root_cause"][0]["type"] == "parsing_exception"


def test_malformed_queries():
    assert error_of({"query": {"term": {"a": 1, "b": 2}}}).type == "parsing_exception"
    err = error_of({"query": {"bool": {"must": [], "nope": 1}}})
    assert err.reason == "[bool] query does not support [nope]"
    assert error_of({"query": {"match_all": {}, "term": {"a": 1}}}).type == "parsing_exception"


def test_numeric_term_with_text_value_is_shard_failure():
    err = error_of({"query": {"term": {"price": "abc"}}})
    assert err.status == 400 and err.type == "search_phase_execution_exception"
    assert err.body()["error"]["root_cause"][0]["type"] == "query_shard_exception"


def test_count():
    index = FakeIndex("shop", MAPPINGS, DOCS)
    assert count([index], None) == 4
    assert count([index], {"query": {"term": {"tag": "car"}}}) == 2
    with pytest.raises(ESError) as info:
        count([index], {"query": {"nope": {}}})
    assert info.value.type == "parsing_exception"


def test_query_string_param():
    assert ids(run(None, {"q": "tag:fruit"})) == ["3"]
    assert set(ids(run(None, {"q": "stripe apple"}))) == {"2", "3"}


def test_named_queries_are_reported():
    body = {"query": {"bool": {"should": [{"term": {"tag": {"value": "fruit", "_name": "is_fruit"}}},
                                          {"range": {"price": {"lt": 5, "_name": "cheap"}}}]}}}
    hit = run(body)["hits"]["hits"][0]
    assert hit["_id"] == "3" and hit["matched_queries"] == ["is_fruit", "cheap"]


def test_terms_aggregation():
    resp = run({"size": 0, "aggs": {"tags": {"terms": {"field": "tag"}}, "top": {"max": {"field": "price"}}}})
    assert resp["hits"]["hits"] == [] and resp["hits"]["max_score"] is None
    buckets = resp["aggregations"]["tags"]["buckets"]
    assert buckets[0] == {"key": "car", "doc_count": 2}
    assert resp["aggregations"]["top"] == {"value": 250.0}
