"""Mapping validation, dynamic mapping and document validation of the test cluster."""

from __future__ import annotations

import math

import pytest
from elasticsearch import Elasticsearch

from tests.escluster.testing import call


def create(url, properties, **extra):
    return call(url, "PUT", "/idx", {"mappings": {"properties": properties, **extra}})


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "dense_vector", "dims": 0},
        {"type": "dense_vector", "dims": 4097},
        {"type": "dense_vector", "dims": "many"},
        {"type": "dense_vector", "dims": 3, "similarity": "hamming_ish"},
        {"type": "dense_vector", "dims": 3, "element_type": "double"},
        {"type": "dense_vector", "dims": 3, "index_options": {"type": "ivf_magic"}},
        {"type": "dense_vector", "dims": 3, "index_options": {"m": 16}},
        # m / ef_construction / confidence_interval ranges are checked by the Lucene format, at the first
        # document, not here: see test_dense_vector_fidelity.py.
        {"type": "dense_vector", "dims": 3, "index_options": {"type": "hnsw", "confidence_interval": 0.95}},
        {"type": "dense_vector", "dims": 3, "index": False, "similarity": "cosine"},
        {"type": "dense_vector", "dims": 3, "index": False, "index_options": {"type": "hnsw"}},
        {"type": "dense_vector", "dims": 3, "element_type": "byte", "index_options": {"type": "int8_hnsw"}},
        {"type": "dense_vector", "dims": 12, "element_type": "bit"},
        {"type": "dense_vector", "dims": 32, "index_options": {"type": "bbq_hnsw"}},
        {"type": "dense_vector", "dims": 3, "unknown_param": 1},
        {"type": "no_such_type"},
        {"type": "keyword", "analyzer": "standard"},
    ],
)
def test_bad_mappings_are_mapper_parsing_exception(escluster, spec):
    r = create(escluster.url, {"f": spec})
    assert r.status == 400, r.body
    assert r.body["error"]["type"] == "mapper_parsing_exception"
    assert r.body["error"]["reason"].startswith("Failed to parse mapping: ")


@pytest.mark.parametrize(
    "options",
    [{"type": t} for t in ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "flat", "int8_flat", "int4_flat", "bbq_flat")]
    + [{"type": "int8_hnsw", "m": 32, "ef_construction": 200, "confidence_interval": 0.9}],
)
def test_good_index_options_are_accepted(escluster, options):
    r = create(escluster.url, {"v": {"type": "dense_vector", "dims": 128, "index_options": options}})
    assert r.status == 200, r.body
    mapped = call(escluster.url, "GET", "/idx/_mapping").body["idx"]["mappings"]["properties"]["v"]
    assert mapped["index_options"]["type"] == options["type"]
    if options["type"].endswith("hnsw"):
        assert mapped["index_options"]["m"] == options.get("m", 16)
        assert mapped["index_options"]["ef_construction"] == options.get("ef_construction", 100)


@pytest.mark.parametrize(
    ("dims", "expected"), [(128, "int8_hnsw"), (383, "int8_hnsw"), (384, "bbq_hnsw"), (512, "bbq_hnsw")]
)
def test_default_index_options_follow_92(escluster, dims, expected):
    create(escluster.url, {"v": {"type": "dense_vector", "dims": dims}})
    mapped = call(escluster.url, "GET", "/idx/_mapping").body["idx"]["mappings"]["properties"]["v"]
    assert mapped["index"] is True and mapped["similarity"] == "cosine"
    assert mapped["index_options"]["type"] == expected


def index_doc(url, doc, doc_id="1"):
    return call(url, "PUT", f"/idx/_doc/{doc_id}", doc)


def test_dims_mismatch_is_document_parsing_exception(escluster):
    create(escluster.url, {"v": {"type": "dense_vector", "dims": 3}})
    r = index_doc(escluster.url, {"v": [1.0, 2.0]})
    assert r.status == 400
    assert r.body["error"]["type"] == "document_parsing_exception"
    assert "different number of dimensions [2] than defined in the mapping [3]" in r.body["error"]["reason"]


def test_cosine_rejects_zero_vector(escluster):
    create(escluster.url, {"v": {"type": "dense_vector", "dims": 3, "similarity": "cosine"}})
    r = index_doc(escluster.url, {"v": [0, 0, 0]})
    assert r.status == 400 and r.body["error"]["type"] == "document_parsing_exception"
    assert "zero magnitude" in r.body["error"]["caused_by"]["reason"]
    assert index_doc(escluster.url, {"v": [0, 0, 1]}).status == 201


def test_dot_product_requires_unit_vectors(escluster):
    create(escluster.url, {"v": {"type": "dense_vector", "dims": 2, "similarity": "dot_product"}})
    r = index_doc(escluster.url, {"v": [1.0, 1.0]})
    assert r.status == 400 and r.body["error"]["type"] == "document_parsing_exception"
    assert "unit-length" in r.body["error"]["caused_by"]["reason"]
    s = 1 / math.sqrt(2)
    assert index_doc(escluster.url, {"v": [s, s]}).status == 201


def test_byte_vectors_must_be_small_integers(escluster):
    create(escluster.url, {"v": {"type": "dense_vector", "dims": 2, "element_type": "byte"}})
    assert index_doc(escluster.url, {"v": [1, 300]}).status == 400
    assert index_doc(escluster.url, {"v": [0.5, 3]}).status == 400
    assert index_doc(escluster.url, {"v": [-128, 127]}).status == 201


def test_vector_dims_set_by_first_document(escluster):
    create(escluster.url, {"v": {"type": "dense_vector"}})
    assert index_doc(escluster.url, {"v": [0.1, 0.2, 0.3]}).status == 201
    mapped = call(escluster.url, "GET", "/idx/_mapping").body["idx"]["mappings"]["properties"]["v"]
    assert mapped["dims"] == 3
    assert index_doc(escluster.url, {"v": [0.1, 0.2]}, "2").status == 400


def test_strict_dynamic_rejects_unknown_fields(escluster):
    call(
        escluster.url,
        "PUT",
        "/idx",
        {
            "mappings": {
                "dynamic": "strict",
                "properties": {"a": {"type": "keyword"}, "o": {"properties": {"x": {"type": "long"}}}},
            }
        },
    )
    r = index_doc(escluster.url, {"a": "x", "b": 1})
    assert r.status == 400
    assert r.body["error"]["type"] == "strict_dynamic_mapping_exception"
    assert "dynamic introduction of [b] within [_doc] is not allowed" in r.body["error"]["reason"]
    nested = index_doc(escluster.url, {"o": {"y": 1}})
    assert nested.body["error"]["type"] == "strict_dynamic_mapping_exception"
    assert "within [o]" in nested.body["error"]["reason"]
    assert index_doc(escluster.url, {"a": "x", "o": {"x": 2}}).status == 201


def test_dynamic_false_keeps_but_does_not_map(escluster):
    call(
        escluster.url,
        "PUT",
        "/idx",
        {"mappings": {"dynamic": False, "properties": {"a": {"type": "keyword"}}}},
    )
    assert index_doc(escluster.url, {"a": "x", "b": 1}).status == 201
    props = call(escluster.url, "GET", "/idx/_mapping").body["idx"]["mappings"]["properties"]
    assert set(props) == {"a"}
    assert call(escluster.url, "GET", "/idx/_doc/1").body["_source"] == {"a": "x", "b": 1}


def test_dynamic_mapping_infers_types_like_es(escluster):
    vector = [0.5] * 128
    doc = {
        "s": "hello",
        "n": 3,
        "f": 1.5,
        "b": True,
        "o": {"inner": "x"},
        "d": "2024-01-02T03:04:05Z",
        "short_floats": [0.1, 0.2, 0.3],
        "vec": vector,
        "ints": list(range(200)),
    }
    assert call(escluster.url, "PUT", "/idx/_doc/1", doc).status == 201
    props = call(escluster.url, "GET", "/idx/_mapping").body["idx"]["mappings"]["properties"]
    assert props["s"] == {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    assert props["n"] == {"type": "long"}
    assert props["f"] == {"type": "float"}
    assert props["b"] == {"type": "boolean"}
    assert props["o"] == {
        "properties": {"inner": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}}
    }
    assert props["d"] == {"type": "date"}
    assert props["short_floats"] == {"type": "float"}
    assert props["ints"] == {"type": "long"}
    assert props["vec"]["type"] == "dense_vector" and props["vec"]["dims"] == 128
    assert props["vec"]["similarity"] == "cosine" and props["vec"]["index"] is True


def test_type_errors_fail_the_document(escluster):
    create(escluster.url, {"n": {"type": "long"}, "b": {"type": "boolean"}, "k": {"type": "keyword"}})
    for doc in ({"n": "abc"}, {"b": "maybe"}, {"k": {"obj": 1}}, {"n": 2**70}):
        r = index_doc(escluster.url, doc)
        assert r.status == 400 and r.body["error"]["type"] == "document_parsing_exception", doc
    assert index_doc(escluster.url, {"n": "42", "b": "true", "k": 7}).status == 201


def test_object_field_given_a_concrete_value(escluster):
    create(escluster.url, {"o": {"properties": {"x": {"type": "long"}}}})
    r = index_doc(escluster.url, {"o": 5})
    assert r.status == 400 and r.body["error"]["type"] == "document_parsing_exception"


def test_multi_fields_and_get_vectors_hidden_by_default(escluster):
    create(
        escluster.url,
        {
            "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "v": {"type": "dense_vector", "dims": 2},
        },
    )
    index_doc(escluster.url, {"title": "A", "v": [1, 0]})
    es = Elasticsearch(escluster.url)
    assert es.get(index="idx", id="1")["_source"] == {"title": "A"}
    shown = call(escluster.url, "GET", "/idx/_doc/1?_source_exclude_vectors=false").body["_source"]
    assert shown == {"title": "A", "v": [1, 0]}
    assert es.get(index="idx", id="1", source_excludes=["title"])["_source"] == {}


def test_mapping_error_root_cause_is_the_inner_exception(escluster):
    r = create(escluster.url, {"v": {"type": "dense_vector", "dims": 5000}})
    error = r.body["error"]
    assert (
        error["reason"]
        == "Failed to parse mapping: The number of dimensions should be in the range [1, 4096] but was [5000]"
    )
    assert error["root_cause"] == [
        {
            "type": "mapper_parsing_exception",
            "reason": "The number of dimensions should be in the range [1, 4096] but was [5000]",
        }
    ]
