"""kNN search, retrievers (rrf) and collapse in the test cluster's search (no server needed)."""

from __future__ import annotations

import math
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


def vec_mapping(similarity: str, dims: int = 2, **extra) -> dict:
    return {"properties": {
        "v": {"type": "dense_vector", "dims": dims, "index": True, "similarity": similarity, **extra},
        "tag": {"type": "keyword"},
        "group": {"type": "keyword"},
        "caption": {"type": "text"},
    }}


# Unit vectors at 0, 30, 60, 90 and 180 degrees.
def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


DOCS = {
    "a": {"v": unit(0), "tag": "x", "group": "g1", "caption": "a red car"},
    "b": {"v": unit(30), "tag": "y", "group": "g1", "caption": "a blue car"},
    "c": {"v": unit(60), "tag": "x", "group": "g2", "caption": "green apple"},
    "d": {"v": unit(90), "tag": "y", "group": "g2", "caption": "red apple"},
    "e": {"v": unit(180), "tag": "x", "group": "g3", "caption": "yellow banana"},
    "novec": {"tag": "x", "caption": "no vector red"},
}


def run(body, params=None, *, similarity="cosine", docs=DOCS, license_type="basic", embed_text=None,
        mappings=None):
    index = FakeIndex("imgs", mappings or vec_mapping(similarity), docs)
    return search([index], body, params or {}, license_type=license_type, embed_text=embed_text)


def ids(resp) -> list[str]:
    return [h["_id"] for h in resp["hits"]["hits"]]


def scores(resp) -> dict[str, float]:
    return {h["_id"]: h["_score"] for h in resp["hits"]["hits"]}


def error_of(body, **kw) -> ESError:
    with pytest.raises(ESError) as info:
        run(body, **kw)
    return info.value


def knn(**kw) -> dict:
    return {"knn": {"field": "v", "query_vector": unit(0), **kw}}


# ------------------------------------------------------------------------------------------ scores

def test_cosine_scores():
    resp = run(knn(k=5, num_candidates=10))
    assert ids(resp) == ["a", "b", "c", "d", "e"]
    for doc_id, deg in (("a", 0), ("b", 30), ("c", 60), ("d", 90), ("e", 180)):
        assert scores(resp)[doc_id] == pytest.approx((1 + math.cos(math.radians(deg))) / 2, abs=1e-6)
    assert resp["hits"]["total"] == {"value": 5, "relation": "eq"}
    assert resp["hits"]["max_score"] == pytest.approx(1.0)


def test_cosine_ignores_magnitude():
    docs = {"a": {"v": [10.0, 0.0]}, "b": {"v": [0.0, 0.5]}}
    resp = run({"knn": {"field": "v", "query_vector": [3.0, 0.0], "k": 2}}, docs=docs)
    assert scores(resp) == pytest.approx({"a": 1.0, "b": 0.5})


def test_dot_product_scores():
    resp = run(knn(k=3), similarity="dot_product")
    assert scores(resp)["b"] == pytest.approx((1 + math.cos(math.radians(30))) / 2, abs=1e-6)
    assert scores(resp)["c"] == pytest.approx(0.75, abs=1e-6)


def test_l2_norm_scores_and_distance_floor():
    docs = {"a": {"v": [0.0, 0.0]}, "b": {"v": [3.0, 4.0]}, "c": {"v": [1.0, 0.0]}}
    resp = run({"knn": {"field": "v", "query_vector": [0.0, 0.0], "k": 3}}, similarity="l2_norm", docs=docs)
    assert ids(resp) == ["a", "c", "b"]
    assert scores(resp) == pytest.approx({"a": 1.0, "c": 0.5, "b": 1 / 26})
    # similarity for l2_norm is a maximum distance, not a score
    floored = run({"knn": {"field": "v", "query_vector": [0.0, 0.0], "k": 3, "similarity": 1.0}},
                  similarity="l2_norm", docs=docs)
    assert ids(floored) == ["a", "c"]


def test_max_inner_product_scores():
    docs = {"pos": {"v": [2.0, 1.0]}, "neg": {"v": [-3.0, 0.0]}}
    resp = run({"knn": {"field": "v", "query_vector": [1.0, 0.0], "k": 2}}, similarity="max_inner_product",
               docs=docs)
    assert scores(resp) == pytest.approx({"pos": 3.0, "neg": 0.25})


def test_es_rest_suite_mip_values():
    # Values from Elasticsearch's own 40_knn_search.yml ("Knn search with mip").
    docs = {"1": {"v": [230.0, 300.33, -34.8988, 15.555, -200.0]},
            "2": {"v": [-0.5, 100.0, -13, 14.8, -156.0]},
            "3": {"v": [0.5, 111.3, -13.0, 14.8, -156.0]}}
    resp = run({"knn": {"field": "v", "query_vector": [-0.5, 90.0, -10, 14.8, -156.0], "k": 3,
                        "num_candidates": 3}}, docs=docs, mappings=vec_mapping("max_inner_product", 5))
    assert ids(resp) == ["1", "3", "2"]
    got = [h["_score"] for h in resp["hits"]["hits"]]
    assert got == pytest.approx([58694.902, 34702.79, 33686.29], abs=0.01)


def test_cosine_similarity_floor_is_on_raw_cosine():
    resp = run(knn(k=5, similarity=0.5))  # cos >= 0.5: 0, 30 and 60 degrees
    assert ids(resp) == ["a", "b", "c"]


def test_boost_multiplies_knn_score():
    plain = scores(run(knn(k=2)))
    boosted = scores(run(knn(k=2, boost=3.0)))
    assert boosted["b"] == pytest.approx(3 * plain["b"], rel=1e-6)


def test_byte_vectors_dot_product():
    mappings = vec_mapping("dot_product", element_type="byte")
    docs = {"a": {"v": [10, 20]}, "b": {"v": [-5, 3]}}
    resp = run({"knn": {"field": "v", "query_vector": [1, 2], "k": 2}}, mappings=mappings, docs=docs)
    assert scores(resp)["a"] == pytest.approx(0.5 + 50 / (2 * 32768), abs=1e-7)


# ------------------------------------------------------------------------------------------ k, filters

def test_k_defaults_to_size_and_size_limits_hits():
    assert len(run(knn())["hits"]["hits"]) == 5  # 5 docs with vectors, size 10
    resp = run({**knn(), "size": 2})
    assert ids(resp) == ["a", "b"] and resp["hits"]["total"]["value"] == 2
    resp = run({**knn(k=4), "size": 2})
    assert ids(resp) == ["a", "b"] and resp["hits"]["total"]["value"] == 4


def test_prefilter_keeps_k_filled():
    resp = run(knn(k=2, filter={"term": {"tag": "y"}}))
    assert ids(resp) == ["b", "d"]
    resp = run(knn(k=2, filter=[{"term": {"tag": "x"}}, {"range": {"group": {"gte": "g2"}}}]))
    assert ids(resp) == ["c", "e"]


def test_knn_plus_query_sums_scores_and_unions_docs():
    body = {**knn(k=2), "query": {"match": {"caption": "banana"}}}
    resp = run(body)
    knn_only = scores(run(knn(k=2)))
    query_only = scores(run({"query": {"match": {"caption": "banana"}}}))
    assert set(ids(resp)) == {"a", "b", "e"}
    assert scores(resp)["e"] == pytest.approx(query_only["e"], rel=1e-6)
    both = run({**knn(k=2), "query": {"match": {"caption": "red"}}})
    red = scores(run({"query": {"match": {"caption": "red"}}}))
    assert scores(both)["a"] == pytest.approx(knn_only["a"] + red["a"], rel=1e-6)
    assert set(ids(both)) == {"a", "b", "d", "novec"}
    assert both["hits"]["total"]["value"] == 4


def test_multiple_knn_clauses_sum():
    body = {"knn": [{"field": "v", "query_vector": unit(0), "k": 2},
                    {"field": "v", "query_vector": unit(90), "k": 2, "boost": 2.0}]}
    resp = run(body)
    assert set(ids(resp)) == {"a", "b", "c", "d"}
    single = scores(run({"knn": {"field": "v", "query_vector": unit(90), "k": 2}}))
    assert scores(resp)["d"] == pytest.approx(2 * single["d"], rel=1e-6)


def test_query_vector_builder_uses_embed_text():
    calls = []

    def embed(model_id, text):
        calls.append((model_id, text))
        return unit(90)

    body = {"knn": {"field": "v", "k": 1, "query_vector_builder": {
        "text_embedding": {"model_id": "my-model", "model_text": "a cat"}}}}
    assert ids(run(body, embed_text=embed)) == ["d"]
    assert calls == [("my-model", "a cat")]


def test_query_vector_builder_errors_propagate():
    def embed(model_id, text):
        raise ESError(404, "status_exception", f"[{model_id}] is not an inference service model or a deployed ml model")

    body = {"knn": {"field": "v", "k": 1, "query_vector_builder": {
        "text_embedding": {"model_id": "missing", "model_text": "x"}}}}
    err = error_of(body, embed_text=embed)
    assert (err.status, err.type) == (404, "status_exception")


def test_knn_as_query_clause():
    resp = run({"query": {"knn": {"field": "v", "query_vector": unit(90), "k": 2}}})
    assert ids(resp) == ["d", "c"]


def test_knn_on_unmapped_field_returns_nothing():
    assert run({"knn": {"field": "nope", "query_vector": [1, 0], "k": 2}})["hits"]["hits"] == []


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("extra, reason", [
    ({"k": 0}, "[k] must be greater than 0"),
    ({"k": 5, "num_candidates": 3}, "[num_candidates] cannot be less than [k]"),
    ({"k": 5, "num_candidates": 10001}, "[num_candidates] cannot exceed [10000]"),
    ({"num_candidates": 2}, "[num_candidates] cannot be less than [k]"),  # k defaults to size 10
])
def test_knn_parameter_validation(extra, reason):
    err = error_of(knn(**extra))
    assert (err.status, err.type, err.reason) == (400, "illegal_argument_exception", reason)


def test_knn_vector_presence_validation():
    err = error_of({"knn": {"field": "v", "k": 1}})
    assert (err.status, err.type) == (400, "illegal_argument_exception")
    assert err.reason == "either [query_vector_builder] or [query_vector] must be provided"
    both = {"knn": {"field": "v", "k": 1, "query_vector": [1, 0], "query_vector_builder": {
        "text_embedding": {"model_id": "m", "model_text": "t"}}}}
    assert error_of(both).reason == "cannot provide both [query_vector_builder] and [query_vector]"


def test_num_candidates_default_is_rounded_1_5k():
    # k=3 -> num_candidates round(4.5) = 5 >= k: valid; k=1 -> 2
    assert len(run(knn(k=3))["hits"]["hits"]) == 3
    assert len(run(knn(k=1))["hits"]["hits"]) == 1


def test_wrong_dims_is_search_phase_execution_exception():
    err = error_of({"knn": {"field": "v", "query_vector": [1.0, 0.0, 0.0], "k": 1}})
    body = err.body()
    assert err.status == 400 and body["error"]["type"] == "search_phase_execution_exception"
    root = body["error"]["root_cause"][0]
    assert root["type"] == "query_shard_exception"
    assert root["reason"] == ("failed to create query: The query vector has a different number of dimensions "
                              "[3] than the document vectors [2].")


def test_knn_on_non_vector_or_unindexed_field():
    err = error_of({"knn": {"field": "tag", "query_vector": [1, 0], "k": 1}})
    assert err.type == "search_phase_execution_exception"
    root = err.body()["error"]["root_cause"][0]
    assert "[knn] queries are only supported on [dense_vector] fields" in root["reason"]
    err = error_of(knn(k=1), mappings=vec_mapping("cosine", index=False))
    assert err.status == 400 and err.type == "search_phase_execution_exception"


def test_unknown_knn_key():
    err = error_of(knn(k=1, foo=1))
    assert (err.status, err.type) == (400, "x_content_parse_exception")


def test_one_bad_index_out_of_two_gives_partial_results():
    good = FakeIndex("good", vec_mapping("cosine"), DOCS)
    bad = FakeIndex("bad", vec_mapping("cosine", dims=3), {"z": {"v": [1.0, 0.0, 0.0]}})
    resp = search([good, bad], knn(k=2), {}, license_type="basic", embed_text=None)
    assert resp["_shards"]["total"] == 2 and resp["_shards"]["failed"] == 1
    assert resp["_shards"]["failures"][0]["index"] == "bad"
    assert ids(resp) == ["a", "b"]


def test_knn_global_top_k_across_indices():
    one = FakeIndex("one", vec_mapping("cosine"), {"a": {"v": unit(0)}, "c": {"v": unit(60)}})
    two = FakeIndex("two", vec_mapping("cosine"), {"b": {"v": unit(30)}, "d": {"v": unit(90)}})
    resp = search([one, two], knn(k=3), {}, license_type="basic", embed_text=None)
    got = [(h["_index"], h["_id"]) for h in resp["hits"]["hits"]]
    assert got == [("one", "a"), ("two", "b"), ("one", "c")]
    assert resp["hits"]["total"]["value"] == 3


# ------------------------------------------------------------------------------------------ retrievers

def rrf_body(**extra) -> dict:
    return {"retriever": {"rrf": {"retrievers": [
        {"standard": {"query": {"match": {"caption": "red"}}}},
        {"knn": {"field": "v", "query_vector": unit(90), "k": 3, "num_candidates": 10}},
    ], **extra}}}


def test_rrf_scores_are_reciprocal_ranks():
    resp = run(rrf_body(), license_type="trial")
    got = scores(resp)
    # standard ranks: "red" -> d (shortest caption), a, novec; knn ranks: d, c, b
    assert ids(resp)[0] == "d"
    assert got["d"] == pytest.approx(2 / 61, rel=1e-6)
    assert got["a"] == pytest.approx(1 / 62, rel=1e-6)
    assert got["c"] == pytest.approx(1 / 62, rel=1e-6)
    assert set(got) == {"a", "b", "c", "d", "novec"}


def test_rrf_rank_constant_and_window():
    resp = run(rrf_body(rank_constant=1, rank_window_size=2), license_type="enterprise", params={"size": 2})
    got = scores(resp)
    assert len(got) == 2
    assert got["d"] == pytest.approx(1 / 2 + 1 / 2, rel=1e-6)


@pytest.mark.parametrize("license_type", ["basic", "platinum"])
def test_rrf_needs_enterprise_or_trial(license_type):
    err = error_of(rrf_body(), license_type=license_type)
    assert (err.status, err.type) == (403, "security_exception")
    assert err.reason == "current license is non-compliant for [Reciprocal Rank Fusion (RRF)]"


def test_rrf_size_above_window_is_rejected():
    err = error_of({**rrf_body(rank_window_size=5), "size": 6}, license_type="trial")
    assert (err.status, err.type) == (400, "action_request_validation_exception")


def test_retriever_with_query_or_knn_is_rejected():
    for extra in ({"query": {"match_all": {}}}, knn(k=1)):
        err = error_of({**rrf_body(), **extra}, license_type="trial")
        assert (err.status, err.type) == (400, "illegal_argument_exception")
        assert err.reason.startswith("cannot specify [retriever] and [")


def test_standard_and_knn_retrievers_alone():
    assert ids(run({"retriever": {"standard": {"query": {"term": {"tag": "y"}}}}})) == ["b", "d"]
    resp = run({"retriever": {"knn": {"field": "v", "query_vector": unit(90), "k": 2, "num_candidates": 5}}})
    assert ids(resp) == ["d", "c"]


def test_rrf_child_filter_and_weights():
    body = {"retriever": {"rrf": {"retrievers": [
        {"retriever": {"knn": {"field": "v", "query_vector": unit(0), "k": 2,
                               "filter": {"term": {"tag": "y"}}}}, "weight": 2.0},
    ]}}}
    got = scores(run(body, license_type="trial"))
    assert got == pytest.approx({"b": 2 / 61, "d": 2 / 62})


# ------------------------------------------------------------------------------------------ collapse

def test_collapse_keeps_best_hit_per_group():
    resp = run({**knn(k=5), "collapse": {"field": "group"}})
    assert ids(resp) == ["a", "c", "e"]
    assert [h["fields"]["group"] for h in resp["hits"]["hits"]] == [["g1"], ["g2"], ["g3"]]
    assert resp["hits"]["total"]["value"] == 5  # total counts hits, not groups


def test_collapse_with_knn_works_within_top_k():
    resp = run({**knn(k=2), "collapse": {"field": "group"}})
    assert ids(resp) == ["a"]


def test_collapse_on_query_and_on_text_field():
    resp = run({"query": {"term": {"tag": "x"}}, "collapse": {"field": "group"}})
    assert [h["fields"]["group"] for h in resp["hits"]["hits"]] == [["g1"], ["g2"], ["g3"], [None]]
    err = error_of({"collapse": {"field": "caption"}})
    assert err.type == "search_phase_execution_exception"
    assert "only keywords and numbers are accepted" in err.body()["error"]["root_cause"][0]["reason"]
