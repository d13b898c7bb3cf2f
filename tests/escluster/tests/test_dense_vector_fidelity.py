"""``dense_vector`` mappings and documents as Elasticsearch 9.0, 9.1 and 9.2 answer them.

Source: server/src/main/java/org/elasticsearch/index/mapper/vectors/DenseVectorFieldMapper.java (Builder,
its parameters' validators, ``defaultIndexOptions``, ``VectorIndexType.parseIndexOptions``,
``IndexOptions.updatableTo``, ``ElementType.parseKnnVector*``, ``checkDimension*``), wrapped by
``MapperService`` ("Failed to parse mapping: ...") and ``DocumentParser.wrapInDocumentParsingException``
("failed to parse: ..."). Every case pins the status, the error type and the reason; version columns differ
only where the source does.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.escluster.testing import call

VERSIONS = ("9.0.0", "9.1.0", "9.2.0")
INT8 = {"type": "int8_hnsw", "m": 16, "ef_construction": 100}
BBQ = {"type": "bbq_hnsw", "m": 16, "ef_construction": 100, "rescore_vector": {"oversample": 3.0}}
# The [line:col] prefix of a document_parsing_exception is not emulated; the rest of the reason is.
LOCATION = r"^\[\d+:\d+\] failed to parse: "


@pytest.fixture(params=VERSIONS)
def cluster(request, escluster_factory):
    return escluster_factory(version=request.param)


def at(escluster_factory, version):
    return escluster_factory(version=version)


def create(url, field, name="v"):
    return call(url, "PUT", "/idx", {"mappings": {"properties": {name: field}}})


def mapped(url, name="v"):
    return call(url, "GET", "/idx/_mapping").body["idx"]["mappings"]["properties"][name]


def put_doc(url, doc, doc_id="1"):
    return call(url, "PUT", f"/idx/_doc/{doc_id}", doc)


def assert_mapping_error(reply, reason, cause_type):
    assert reply.status == 400, reply.body
    error = reply.body["error"]
    assert error["type"] == "mapper_parsing_exception"
    assert error["reason"] == f"Failed to parse mapping: {reason}"
    assert error["caused_by"] == {"type": cause_type, "reason": reason}


def assert_document_error(reply, reason, cause_type="illegal_argument_exception"):
    assert reply.status == 400, reply.body
    error = reply.body["error"]
    assert error["type"] == "document_parsing_exception"
    assert re.match(LOCATION + re.escape(reason) + "$", error["reason"]), error["reason"]
    # (ES adds line/col to a parsing_exception cause; only its type and reason are compared.)
    assert (error["caused_by"]["type"], error["caused_by"]["reason"]) == (cause_type, reason)


# ------------------------------------------------------------------------------------------ defaults


@pytest.mark.parametrize(
    ("version", "dims", "expected"),
    [
        ("9.0.0", 128, INT8),
        ("9.0.0", 384, INT8),
        ("9.0.0", 512, INT8),
        ("9.1.0", 383, INT8),
        ("9.1.0", 384, BBQ),
        ("9.2.0", 128, INT8),
        ("9.2.0", 512, BBQ),
    ],
)
def test_default_index_options_per_version(escluster_factory, version, dims, expected):
    es = at(escluster_factory, version)
    assert create(es.url, {"type": "dense_vector", "dims": dims}).status == 200
    assert mapped(es.url) == {
        "type": "dense_vector",
        "dims": dims,
        "index": True,
        "similarity": "cosine",
        "index_options": expected,
    }


@pytest.mark.parametrize(
    ("version", "before", "after"), [("9.0.0", INT8, INT8), ("9.1.0", None, BBQ), ("9.2.0", None, BBQ)]
)
def test_default_without_dims_waits_for_the_first_document_from_91(escluster_factory, version, before, after):
    # 9.0 picks int8_hnsw at once; 9.1+ (Builder.defaultIndexOptions) waits for dims, then picks by dims.
    es = at(escluster_factory, version)
    create(es.url, {"type": "dense_vector"})
    assert mapped(es.url).get("index_options") == before
    assert put_doc(es.url, {"v": [0.1] * 512}).status == 201
    field = mapped(es.url)
    assert field["dims"] == 512 and field["index_options"] == after


@pytest.mark.parametrize(("version", "expected"), [("9.0.0", INT8), ("9.1.0", BBQ), ("9.2.0", BBQ)])
def test_dynamic_float_arrays_map_to_dense_vector_with_the_version_default(escluster_factory, version, expected):
    es = at(escluster_factory, version)
    assert call(es.url, "PUT", "/dyn/_doc/1", {"emb": [0.25] * 512}).status == 201
    field = call(es.url, "GET", "/dyn/_mapping").body["dyn"]["mappings"]["properties"]["emb"]
    assert field == {
        "type": "dense_vector",
        "dims": 512,
        "index": True,
        "similarity": "cosine",
        "index_options": expected,
    }


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            {"type": "dense_vector", "dims": 3, "element_type": "byte"},
            {"type": "dense_vector", "element_type": "byte", "dims": 3, "index": True, "similarity": "cosine"},
        ),
        (
            {"type": "dense_vector", "dims": 16, "element_type": "bit"},
            {"type": "dense_vector", "element_type": "bit", "dims": 16, "index": True, "similarity": "l2_norm"},
        ),
        ({"type": "dense_vector", "dims": 3, "index": False}, {"type": "dense_vector", "dims": 3, "index": False}),
        (
            {"type": "dense_vector", "dims": 4, "index_options": {"type": "int4_hnsw"}},
            {
                "type": "dense_vector",
                "dims": 4,
                "index": True,
                "similarity": "cosine",
                "index_options": {"type": "int4_hnsw", "m": 16, "ef_construction": 100, "confidence_interval": 0.0},
            },
        ),
    ],
)
def test_byte_bit_and_unindexed_vectors_get_no_default_index_options(cluster, field, expected):
    # The index_options default is null unless the element type is float and the field is indexed.
    assert create(cluster.url, field).status == 200
    assert mapped(cluster.url) == expected


@pytest.mark.parametrize(
    ("version", "rescore"), [("9.0.0", None), ("9.1.0", {"oversample": 3.0}), ("9.2.0", {"oversample": 3.0})]
)
@pytest.mark.parametrize("kind", ["bbq_hnsw", "bbq_flat"])
def test_bbq_gets_oversample_3_from_91(escluster_factory, version, rescore, kind):
    # IndexVersions.DEFAULT_OVERSAMPLE_VALUE_FOR_BBQ is on Lucene 10.2.1, i.e. 9.1.
    es = at(escluster_factory, version)
    assert create(es.url, {"type": "dense_vector", "dims": 64, "index_options": {"type": kind}}).status == 200
    options = mapped(es.url)["index_options"]
    assert options.get("rescore_vector") == rescore
    assert options["type"] == kind


def test_explicit_rescore_vector_is_kept(cluster):
    field = {
        "type": "dense_vector",
        "dims": 64,
        "index_options": {"type": "int8_hnsw", "rescore_vector": {"oversample": 2}},
    }
    assert create(cluster.url, field).status == 200
    assert mapped(cluster.url)["index_options"] == {**INT8, "rescore_vector": {"oversample": 2.0}}


@pytest.mark.parametrize(("version", "accepted"), [("9.0.0", False), ("9.1.0", False), ("9.2.0", True)])
def test_bbq_disk_exists_from_92(escluster_factory, version, accepted):
    es = at(escluster_factory, version)
    r = create(es.url, {"type": "dense_vector", "dims": 64, "index_options": {"type": "bbq_disk"}})
    if accepted:
        assert r.status == 200, r.body
        # BBQIVFIndexOptions.toXContent as in the 9.3 source (9.2's copy not read).
        assert mapped(es.url)["index_options"] == {
            "type": "bbq_disk",
            "cluster_size": 384,
            "default_visit_percentage": 0.0,
            "rescore_vector": {"oversample": 3.0},
        }
        bad = {"type": "dense_vector", "dims": 64, "index_options": {"type": "bbq_disk", "cluster_size": 10}}
        call(es.url, "DELETE", "/idx")
        assert_mapping_error(
            create(es.url, bad),
            "cluster_size must be between 64 and 65536, got: 10",
            "illegal_argument_exception",
        )
    else:
        assert_mapping_error(
            r, "Unknown vector index options type [bbq_disk] for field [v]", "mapper_parsing_exception"
        )


def test_bfloat16_is_not_an_element_type_before_93(cluster):
    r = create(cluster.url, {"type": "dense_vector", "dims": 3, "element_type": "bfloat16"})
    assert r.status == 400 and r.body["error"]["type"] == "mapper_parsing_exception"
    # ES lists Map.of(...).keySet(), whose order differs between JVMs: pin the set, not the order.
    found = re.fullmatch(
        r"Failed to parse mapping: invalid element_type \[bfloat16\]; available types are \[(.*)\]",
        r.body["error"]["reason"],
    )
    assert found and set(found.group(1).split(", ")) == {"float", "byte", "bit"}


# ------------------------------------------------------------------------------------ bad mappings

MAPPING_ERRORS = [
    ({"dims": 0}, "The number of dimensions should be in the range [1, 4096] but was [0]", "mapper_parsing_exception"),
    (
        {"dims": 4097},
        "The number of dimensions should be in the range [1, 4096] but was [4097]",
        "mapper_parsing_exception",
    ),
    ({"dims": "3"}, "Property [dims] on field [v] must be an integer but got [3]", "mapper_parsing_exception"),
    ({"dims": 3.0}, "Property [dims] on field [v] must be an integer but got [3.0]", "mapper_parsing_exception"),
    (
        {"dims": None},
        "[dims] on mapper [v] of type [dense_vector] must not have a [null] value",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 12, "element_type": "bit"},
        "The number of dimensions for should be a multiple of 8 but was [12]",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 32776, "element_type": "bit"},
        "The number of dimensions should be in the range [8, 32768] but was [32776]",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 16, "element_type": "bit", "similarity": "cosine"},
        "The [l2_norm] similarity is the only supported similarity for bit vectors",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "similarity": "hamming"},
        "Unknown value [hamming] for field [similarity] - accepted values are "
        "[l2_norm, cosine, dot_product, max_inner_product]",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 3, "similarity": None},
        "Field [index] requires field [similarity] to be configured and not null",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "index": False, "similarity": "cosine"},
        "Field [similarity] can only be specified for a field of type [dense_vector] when it is indexed",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "index": False, "index_options": {"type": "hnsw"}},
        "Field [index_options] can only be specified for a field of type [dense_vector] when it is indexed",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "element_type": "byte", "index_options": {"type": "int8_hnsw"}},
        "[element_type] cannot be [byte] when using index type [int8_hnsw]",
        "illegal_argument_exception",
    ),
    (
        {"dims": 64, "element_type": "bit", "index_options": {"type": "bbq_flat"}},
        "[element_type] cannot be [bit] when using index type [bbq_flat]",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "index_options": {"type": "int4_hnsw"}},
        "int4_hnsw only supports even dimensions; provided=3",
        "illegal_argument_exception",
    ),
    (
        {"dims": 32, "index_options": {"type": "bbq_hnsw"}},
        "bbq_hnsw does not support dimensions fewer than 64; provided=32",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "index_options": {"m": 16}},
        "[index_options] requires field [type] to be configured",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 3, "index_options": {"type": "ivf_magic"}},
        "Unknown vector index options type [ivf_magic] for field [v]",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 3, "index_options": {"type": "hnsw", "rescore_vector": {"oversample": 2.0}}},
        "Mapping definition for [v] has unsupported parameters:  [rescore_vector : {oversample=2.0}]",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 3, "index_options": {"type": "flat", "m": 16, "ef_construction": 100}},
        "Mapping definition for [v] has unsupported parameters:  [m : 16] [ef_construction : 100]",
        "mapper_parsing_exception",
    ),
    (
        {"dims": 3, "index_options": {"type": "int8_hnsw", "rescore_vector": {}}},
        "Invalid rescore_vector value. Missing required field oversample",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "index_options": {"type": "int8_hnsw", "rescore_vector": {"oversample": 0.5}}},
        "oversample must be greater than 1 or exactly 0",
        "illegal_argument_exception",
    ),
    (
        {"dims": 3, "index_options": {"type": "int8_hnsw", "rescore_vector": {"oversample": 11}}},
        "oversample must be less than or equal to 10",
        "illegal_argument_exception",
    ),
]


@pytest.mark.parametrize(("extra", "reason", "cause_type"), MAPPING_ERRORS)
def test_bad_dense_vector_mappings(cluster, extra, reason, cause_type):
    assert_mapping_error(create(cluster.url, {"type": "dense_vector", **extra}), reason, cause_type)


def test_dense_vector_cannot_be_a_multi_field(cluster):
    r = create(cluster.url, {"type": "keyword", "fields": {"vec": {"type": "dense_vector", "dims": 3}}}, name="k")
    assert_mapping_error(
        r, "Field [vec] of type [dense_vector] can't be used in multifields", "mapper_parsing_exception"
    )


def test_oversample_zero_turns_rescoring_off(cluster):
    field = {
        "type": "dense_vector",
        "dims": 64,
        "index_options": {"type": "bbq_hnsw", "rescore_vector": {"oversample": 0}},
    }
    assert create(cluster.url, field).status == 200
    assert mapped(cluster.url)["index_options"]["rescore_vector"] == {"oversample": 0.0}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"type": "hnsw", "m": 0}, "maxConn must be positive and less than or equal to 512; maxConn=0"),
        ({"type": "int8_hnsw", "m": 513}, "maxConn must be positive and less than or equal to 512; maxConn=513"),
        (
            {"type": "hnsw", "ef_construction": -1},
            "beamWidth must be positive and less than or equal to 3200; beamWidth=-1",
        ),
        (
            {"type": "int8_hnsw", "confidence_interval": 0.5},
            "confidenceInterval must be between 0.9 and 1.0; confidenceInterval=0.5",
        ),
    ],
)
def test_hnsw_ranges_are_checked_by_the_vectors_format_at_the_first_document(cluster, options, message):
    # The mapping takes them (ES's own DenseVectorFieldMapperTests map confidence_interval 0.03); the Lucene
    # format's constructor refuses them once a vector is written.
    assert create(cluster.url, {"type": "dense_vector", "dims": 4, "index_options": options}).status == 200
    r = put_doc(cluster.url, {"v": [0.5, 0.5, 0.5, 0.5]})
    assert r.status == 400
    assert r.body["error"]["type"] == "illegal_argument_exception"
    assert r.body["error"]["reason"] == message
    assert call(cluster.url, "GET", "/idx/_doc/1").status == 404


# --------------------------------------------------------------------------------------- documents


def test_fewer_dims_than_mapped(cluster):
    create(cluster.url, {"type": "dense_vector", "dims": 3})
    assert_document_error(
        put_doc(cluster.url, {"v": [1.0, 2.0]}),
        "The [dense_vector] field [v] in doc [document with id '1'] has a different number of dimensions [2] "
        "than defined in the mapping [3]",
    )


def test_more_dims_than_mapped(cluster):
    # checkDimensionExceeded fires inside the token loop, before the count is known.
    create(cluster.url, {"type": "dense_vector", "dims": 3})
    assert_document_error(
        put_doc(cluster.url, {"v": [1.0, 2.0, 3.0, 4.0]}),
        "The [dense_vector] field [v] in doc [document with id '1'] has more dimensions "
        "than defined in the mapping [3]",
    )


def test_nested_field_names_are_full_paths(cluster):
    call(
        cluster.url,
        "PUT",
        "/idx",
        {"mappings": {"properties": {"o": {"properties": {"v": {"type": "dense_vector", "dims": 2}}}}}},
    )
    assert_document_error(
        put_doc(cluster.url, {"o": {"v": [1.0]}}),
        "The [dense_vector] field [o.v] in doc [document with id '1'] has a different number of dimensions [1] "
        "than defined in the mapping [2]",
    )


@pytest.mark.parametrize(
    ("field", "vector", "reason"),
    [
        (
            {"dims": 3},
            [0, 0, 0],
            "The [cosine] similarity does not support vectors with zero magnitude. Preview of invalid vector: "
            "[0.0, 0.0, 0.0]",
        ),
        (
            {"dims": 6},
            [0.0] * 6,
            "The [cosine] similarity does not support vectors with zero magnitude. Preview of invalid vector: "
            "[0.0, 0.0, 0.0, 0.0, 0.0, ...]",
        ),
        (
            {"dims": 2, "similarity": "dot_product"},
            [1.0, 1.0],
            "The [dot_product] similarity can only be used with unit-length vectors. Preview of invalid vector: "
            "[1.0, 1.0]",
        ),
        (
            {"dims": 3, "similarity": "l2_norm"},
            [1e39, 0, 0],
            "element_type [float] vectors do not support infinite values but found [Infinity] at dim [0]; "
            "Preview of invalid vector: [Infinity, 0.0, 0.0]",
        ),
        (
            {"dims": 3, "similarity": "l2_norm"},
            [1e20, 1e20, 1e-5],
            "NaN or Infinite magnitude detected, this usually means the vector values are too extreme to fit "
            "within a float. Preview of invalid vector: [1.0E20, 1.0E20, 1.0E-5]",
        ),
        (
            {"dims": 3, "similarity": "l2_norm"},
            [10**400, 0, 0],
            "element_type [float] vectors do not support infinite values but found [Infinity] at dim [0]; "
            "Preview of invalid vector: [Infinity, 0.0, 0.0]",
        ),
        (
            {"dims": 3, "element_type": "byte"},
            [1e30, 1, 2],
            # A non-integer token is read as a float and cast to int, which saturates.
            "element_type [byte] vectors only support integers between [-128, 127] but found [2147483647] at dim [0];",
        ),
        (
            {"dims": 3, "element_type": "byte"},
            [1, 300, 2],
            "element_type [byte] vectors only support integers between [-128, 127] but found [300] at dim [1];",
        ),
        (
            {"dims": 3, "element_type": "byte"},
            [0.5, 3, 2],
            "element_type [byte] vectors only support non-decimal values but found decimal value [0.5] at dim [0];",
        ),
        (
            {"dims": 3, "element_type": "byte"},
            [0, 0, 0],
            "The [cosine] similarity does not support vectors with zero magnitude. "
            "Preview of invalid vector: [0, 0, 0]",
        ),
        (
            {"dims": 16, "element_type": "bit"},
            [1, 200],
            "element_type [bit] vectors only support integers between [-128, 127] but found [200] at dim [1];",
        ),
        (
            {"dims": 16, "element_type": "bit"},
            [1],
            "The [dense_vector] field [v] in doc [document with id '1'] has a different number of dimensions [8] "
            "than defined in the mapping [16]",
        ),
    ],
)
def test_vector_values_checked_like_es(cluster, field, vector, reason):
    create(cluster.url, {"type": "dense_vector", **field})
    assert_document_error(put_doc(cluster.url, {"v": vector}), reason)
    assert call(cluster.url, "GET", "/idx/_doc/1").status == 404


@pytest.mark.parametrize(
    ("field", "doc", "reason"),
    [
        (
            {"dims": 3},
            {"v": 5},
            "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [END_OBJECT]",
        ),
        (
            {"dims": 3},
            {"v": 5, "k": "x"},
            "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [FIELD_NAME]",
        ),
        (
            {"dims": 3},
            {"v": {"a": 1}},
            "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [FIELD_NAME]",
        ),
        (
            {"dims": 3},
            {"v": ["1.0", 2.0, 3.0]},
            "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [VALUE_STRING]",
        ),
        (
            {"dims": 3},
            {"v": [1.0, None, 3.0]},
            "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [VALUE_NULL]",
        ),
        (
            {"dims": 3},
            {"v": [[1.0, 2.0, 3.0]]},
            "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [START_ARRAY]",
        ),
        # A base64 float vector (big-endian [1.0, 2.0, 3.0]) is a 9.3 feature (ES PR #137072): a string here.
        (
            {"dims": 3},
            {"v": "P4AAAEAAAABAQAAA"},
            "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [END_OBJECT]",
        ),
        ({"dims": 3, "element_type": "byte"}, {"v": 5}, "Unsupported type [VALUE_NUMBER] for provided value [5]"),
        (
            {"dims": 3, "element_type": "byte"},
            {"v": True},
            "Unsupported type [VALUE_BOOLEAN] for provided value [true]",
        ),
    ],
)
def test_values_that_are_not_number_arrays(cluster, field, doc, reason):
    create(cluster.url, {"type": "dense_vector", **field})
    if "k" in doc:
        call(cluster.url, "PUT", "/idx/_mapping", {"properties": {"k": {"type": "keyword"}}})
    assert_document_error(put_doc(cluster.url, doc), reason, "parsing_exception")


def test_byte_vectors_take_hex_strings(cluster):
    create(cluster.url, {"type": "dense_vector", "dims": 3, "element_type": "byte"})
    assert put_doc(cluster.url, {"v": "0a0bff"}).status == 201
    assert_document_error(
        put_doc(cluster.url, {"v": "0a0b"}, "2"),
        "The [dense_vector] field [v] in doc [document with id '2'] has a different number of dimensions [2] "
        "than defined in the mapping [3]",
    )
    # Base64 for byte vectors is 9.3 too: this is not hex, so it fails as HexFormat fails (JDK message).
    r = put_doc(cluster.url, {"v": "AQID"}, "3")
    assert r.status == 400 and r.body["error"]["type"] == "document_parsing_exception"


def test_a_nan_reaching_the_mapper_is_refused(cluster):
    # Real ES refuses a JSON NaN literal in its JSON parser already; the test cluster's HTTP layer accepts it,
    # so it meets the mapper's own check (the one CBOR/SMILE bodies and pipelines hit).
    create(cluster.url, {"type": "dense_vector", "dims": 2, "similarity": "l2_norm"})
    r = call(cluster.url, "PUT", "/idx/_doc/1", '{"v": [NaN, 1.0]}')
    assert_document_error(
        r,
        "element_type [float] vectors do not support NaN values but found [NaN] at dim [0]; "
        "Preview of invalid vector: [NaN, 1.0]",
    )


def test_unit_length_within_tolerance_is_taken(cluster):
    create(cluster.url, {"type": "dense_vector", "dims": 2, "similarity": "dot_product"})
    s = 1 / math.sqrt(2)
    assert put_doc(cluster.url, {"v": [s, s * 1.0004]}).status == 201


def test_first_document_dims_are_validated(cluster):
    create(cluster.url, {"type": "dense_vector"})
    assert_document_error(
        put_doc(cluster.url, {"v": [0.5] * 4097}),
        "The number of dimensions should be in the range [1, 4096] but was [4097]",
        "mapper_parsing_exception",
    )
    assert "dims" not in mapped(cluster.url)


def test_first_document_dims_must_suit_the_index_options(cluster):
    create(cluster.url, {"type": "dense_vector", "index_options": {"type": "int4_hnsw"}})
    assert_document_error(
        put_doc(cluster.url, {"v": [0.5, 0.5, 0.5]}), "int4_hnsw only supports even dimensions; provided=3"
    )


# ---------------------------------------------------------------------------------- mapping updates


def put_mapping(url, field):
    return call(url, "PUT", "/idx/_mapping", {"properties": {"v": field}})


def assert_conflict(reply, *lines):
    assert reply.status == 400, reply.body
    assert reply.body["error"]["type"] == "illegal_argument_exception"
    expected = "Mapper for [v] conflicts with existing mapper:\n\t" + "\n\t".join(lines)
    assert reply.body["error"]["reason"] == expected


@pytest.mark.parametrize(
    ("change", "lines"),
    [
        ({"dims": 4}, ["Cannot update parameter [dims] from [3] to [4]"]),
        ({"similarity": "l2_norm"}, ["Cannot update parameter [similarity] from [cosine] to [l2_norm]"]),
        ({"element_type": "byte"}, ["Cannot update parameter [element_type] from [float] to [byte]"]),
        (
            {"dims": 4, "similarity": "dot_product"},
            [
                "Cannot update parameter [dims] from [3] to [4]",
                "Cannot update parameter [similarity] from [cosine] to [dot_product]",
            ],
        ),
    ],
)
def test_put_mapping_conflicts(cluster, change, lines):
    create(cluster.url, {"type": "dense_vector", "dims": 3})
    assert_conflict(put_mapping(cluster.url, {"type": "dense_vector", "dims": 3, **change}), *lines)
    assert mapped(cluster.url)["dims"] == 3


def test_dims_can_be_set_once_by_put_mapping(cluster):
    create(cluster.url, {"type": "dense_vector"})
    assert put_mapping(cluster.url, {"type": "dense_vector", "dims": 3}).status == 200
    assert mapped(cluster.url)["dims"] == 3


def test_index_options_m_cannot_shrink(cluster):
    create(cluster.url, {"type": "dense_vector", "dims": 3, "index_options": {"type": "hnsw", "m": 32}})
    assert_conflict(
        put_mapping(cluster.url, {"type": "dense_vector", "dims": 3, "index_options": {"type": "hnsw", "m": 16}}),
        "Cannot update parameter [index_options] from [{type=hnsw, m=32, ef_construction=100}] to "
        "[{type=hnsw, m=16, ef_construction=100}]",
    )


def test_hnsw_upgrades_to_int8_hnsw(cluster):
    create(cluster.url, {"type": "dense_vector", "dims": 3, "index_options": {"type": "hnsw"}})
    r = put_mapping(cluster.url, {"type": "dense_vector", "dims": 3, "index_options": {"type": "int8_hnsw"}})
    assert r.status == 200, r.body
    assert mapped(cluster.url)["index_options"] == INT8


@pytest.mark.parametrize(("version", "allowed"), [("9.0.0", False), ("9.1.0", True), ("9.2.0", True)])
def test_int8_hnsw_upgrades_to_bbq_hnsw_from_91(escluster_factory, version, allowed):
    # ES PR #128291 (9.1, 8.19): *_hnsw -> bbq_hnsw and *_flat -> bbq_flat / bbq_hnsw.
    es = at(escluster_factory, version)
    create(es.url, {"type": "dense_vector", "dims": 128})
    r = put_mapping(es.url, {"type": "dense_vector", "dims": 128, "index_options": {"type": "bbq_hnsw"}})
    if allowed:
        assert r.status == 200, r.body
        assert mapped(es.url)["index_options"] == BBQ
    else:
        assert_conflict(
            r,
            "Cannot update parameter [index_options] from "
            "[{type=int8_hnsw, m=16, ef_construction=100, confidence_interval=null, rescore_vector=none}] to "
            "[{type=bbq_hnsw, m=16, ef_construction=100, rescore_vector=null}]",
        )
        assert mapped(es.url)["index_options"] == INT8


def test_bbq_hnsw_does_not_go_back_to_int8(cluster):
    create(cluster.url, {"type": "dense_vector", "dims": 64, "index_options": {"type": "bbq_hnsw"}})
    r = put_mapping(cluster.url, {"type": "dense_vector", "dims": 64, "index_options": {"type": "int8_hnsw"}})
    assert r.status == 400 and r.body["error"]["type"] == "illegal_argument_exception"
    assert r.body["error"]["reason"].startswith(
        "Mapper for [v] conflicts with existing mapper:\n\tCannot update parameter [index_options] from [{type=bbq_hnsw"
    )


def test_put_mapping_without_dims_conflicts_with_mapped_dims(cluster):
    # Builder.dims's merge validator only lets dims go from unset to a value.
    create(cluster.url, {"type": "dense_vector", "dims": 32, "index_options": {"type": "hnsw"}})
    r = put_mapping(cluster.url, {"type": "dense_vector", "index_options": {"type": "hnsw"}})
    assert_conflict(r, "Cannot update parameter [dims] from [32] to [null]")


def test_put_mapping_bbq_on_few_dims_is_a_mapping_error(cluster):
    create(cluster.url, {"type": "dense_vector", "dims": 32, "index_options": {"type": "hnsw"}})
    r = put_mapping(cluster.url, {"type": "dense_vector", "dims": 32, "index_options": {"type": "bbq_hnsw"}})
    assert_mapping_error(
        r, "bbq_hnsw does not support dimensions fewer than 64; provided=32", "illegal_argument_exception"
    )
