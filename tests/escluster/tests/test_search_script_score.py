"""``script_score`` with vector functions in the test cluster (the exact search ``toolkit eval`` sends).

Scores follow ``ScriptScoreQuery`` and ``VectorScoreScriptUtils``; other scripts are refused as a
script that does not compile (Painless is not emulated).
"""

from __future__ import annotations

import math

import pytest

from tests.escluster.errors import ESError
from tests.escluster.tests.test_search_knn import DOCS, ids, run, scores, unit

COSINE = "cosineSimilarity(params.query_vector, 'v') + 1.0"


def exact(source: str = COSINE, *, query=None, vector=None, **extra) -> dict:
    return {"query": {"script_score": {
        "query": query or {"exists": {"field": "v"}},
        "script": {"source": source, "params": {"query_vector": vector or unit(0)}}, **extra}}}


def test_cosine_plus_one_scores_every_matching_document_in_order():
    resp = run({**exact(), "size": 10})
    assert ids(resp) == ["a", "b", "c", "d", "e"]
    for doc_id, deg in (("a", 0), ("b", 30), ("c", 60), ("d", 90), ("e", 180)):
        assert scores(resp)[doc_id] == pytest.approx(math.cos(math.radians(deg)) + 1.0, abs=1e-6)
    # A query vector that is not unit length is normalized first (the cosine does not change).
    again = run({**exact(vector=[3.0, 0.0]), "size": 10})
    assert scores(again) == pytest.approx(scores(resp), abs=1e-6)


def test_the_inner_query_filters_and_min_score_and_boost_apply():
    tag_x = {"bool": {"filter": [{"term": {"tag": "x"}}, {"exists": {"field": "v"}}]}}
    resp = run({**exact(query=tag_x, min_score=1.0, boost=2.0), "size": 10})
    assert ids(resp) == ["a", "c"]  # e (180 degrees) scores 0.0 < min_score; b, d have tag y
    assert scores(resp)["a"] == pytest.approx(4.0, abs=1e-6)


def test_dot_product_and_distances():
    dot = run({**exact("dotProduct(params.query_vector, 'v') + 1", vector=[2.0, 0.0],
                     query={"ids": {"values": ["a"]}}), "size": 1})
    assert scores(dot)["a"] == pytest.approx(3.0)
    l2 = run({**exact("l2norm(params.query_vector, 'v')", query={"ids": {"values": ["e"]}}), "size": 1})
    assert scores(l2)["e"] == pytest.approx(2.0)


def shard_reason(body) -> dict:
    with pytest.raises(ESError) as info:
        run(body)
    err = info.value.body()["error"]
    assert info.value.status == 400 and err["type"] == "search_phase_execution_exception"
    return err["root_cause"][0] | {"caused_by": err["caused_by"].get("caused_by")}


def test_negative_scores_fail_the_shard_as_elasticsearch_does():
    reason = shard_reason(exact("cosineSimilarity(params.query_vector, 'v')"))
    assert reason["type"] == "illegal_argument_exception"
    assert reason["reason"].startswith("script_score script returned an invalid score [-1.0] for doc [")
    assert reason["reason"].endswith("]. Must be a non-negative score!")


def test_wrong_dims_and_missing_vectors_are_runtime_errors():
    reason = shard_reason(exact(vector=[1.0, 0.0, 0.0]))
    assert reason["type"] == "script_exception" and reason["reason"] == "runtime error"
    assert reason["caused_by"]["reason"] == ("The query vector has a different number of dimensions [3] than "
                                             "the document vectors [2].")
    missing = shard_reason(exact(query={"match_all": {}}))
    assert missing["caused_by"]["reason"] == "A document doesn't have a value for a vector field!"
    assert "novec" in DOCS


def test_other_scripts_are_refused_naming_the_emulated_forms():
    reason = shard_reason(exact("doc['v'].size() == 0 ? 0 : cosineSimilarity(params.query_vector, 'v')"))
    assert reason["type"] == "script_exception" and reason["reason"] == "compile error"
    assert "Painless is not emulated" in reason["caused_by"]["reason"]


@pytest.mark.parametrize("body, reason", [
    ({"script": {"source": COSINE}}, "Required [query]"),
    ({"query": {"match_all": {}}}, "Required [script]"),
    ({"query": {"match_all": {}}, "script": {"source": COSINE}, "size": 3}, "[script_score] unknown field [size]"),
])
def test_parse_errors(body, reason):
    with pytest.raises(ESError) as info:
        run({"query": {"script_score": body}})
    assert info.value.status == 400 and info.value.reason == reason
