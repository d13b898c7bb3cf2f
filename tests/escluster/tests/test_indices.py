"""Indices, settings, mappings, aliases, templates and refresh visibility of the test cluster."""

from __future__ import annotations

import time

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from tests.escluster.testing import call


@pytest.fixture
def es(escluster):
    return Elasticsearch(escluster.url)


def test_create_get_exists_delete(es):
    created = es.indices.create(
        index="images",
        settings={"number_of_shards": 1},
        mappings={"properties": {"caption": {"type": "text"}}},
    )
    assert created.body == {"acknowledged": True, "shards_acknowledged": True, "index": "images"}
    assert es.indices.exists(index="images")
    got = es.indices.get(index="images")["images"]
    assert got["mappings"] == {"properties": {"caption": {"type": "text"}}}
    settings = got["settings"]["index"]
    assert settings["number_of_shards"] == "1" and settings["number_of_replicas"] == "1"
    assert settings["provided_name"] == "images" and "uuid" in settings and "creation_date" in settings
    assert es.indices.delete(index="images").body == {"acknowledged": True}
    assert not es.indices.exists(index="images")


def test_existing_index_is_resource_already_exists(es):
    es.indices.create(index="a")
    with pytest.raises(BadRequestError) as info:
        es.indices.create(index="a")
    assert info.value.error == "resource_already_exists_exception"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Upper", "must be lowercase"),
        ("_under", "must not start with '_', '-', or '+'"),
        ("-dash", "must not start with '_', '-', or '+'"),
        ("a*b", "must not contain the following characters"),
        ("a b", "must not contain the following characters"),
        ("..", "must not be '.' or '..'"),
        ("x" * 256, "index name is too long"),
    ],
)
def test_invalid_index_names(escluster, name, reason):
    r = call(escluster.url, "PUT", f"/{name.replace(' ', '%20').replace('*', '%2A')}")
    assert r.status == 400
    assert r.body["error"]["type"] == "invalid_index_name_exception"
    assert reason in r.body["error"]["reason"]


def test_missing_index_operations_are_404(es):
    for call_ in (
        lambda: es.indices.get(index="nope"),
        lambda: es.indices.delete(index="nope"),
        lambda: es.indices.get_mapping(index="nope"),
        lambda: es.get(index="nope", id="1"),
        lambda: es.indices.refresh(index="nope"),
    ):
        with pytest.raises(NotFoundError) as info:
            call_()
        assert info.value.error == "index_not_found_exception"


def test_wildcard_delete_is_refused(escluster):
    call(escluster.url, "PUT", "/logs-1")
    r = call(escluster.url, "DELETE", "/logs-*")
    assert r.status == 400 and r.body["error"]["type"] == "illegal_argument_exception"


def test_unknown_setting_and_bad_shards(escluster):
    r = call(escluster.url, "PUT", "/a", {"settings": {"index": {"knn": True}}})
    assert r.status == 400 and "unknown setting [index.knn]" in r.body["error"]["reason"]
    r = call(escluster.url, "PUT", "/a", {"settings": {"number_of_shards": 0}})
    assert r.status == 400 and r.body["error"]["type"] == "illegal_argument_exception"
    r = call(escluster.url, "PUT", "/a", {"setting": {}})
    assert r.status == 400 and r.body["error"]["type"] == "parse_exception"


def test_settings_get_and_update(es):
    es.indices.create(index="a", settings={"index.default_pipeline": "p", "refresh_interval": "-1"})
    settings = es.indices.get_settings(index="a")["a"]["settings"]["index"]
    assert settings["default_pipeline"] == "p" and settings["refresh_interval"] == "-1"
    es.indices.put_settings(index="a", settings={"index": {"refresh_interval": "1s"}})
    assert es.indices.get_settings(index="a")["a"]["settings"]["index"]["refresh_interval"] == "1s"
    with pytest.raises(BadRequestError):
        es.indices.put_settings(index="a", settings={"index": {"number_of_shards": 2}})


def test_put_mapping_adds_fields_and_refuses_type_change(es):
    es.indices.create(index="a", mappings={"properties": {"k": {"type": "keyword"}}})
    es.indices.put_mapping(index="a", properties={"n": {"type": "long"}})
    props = es.indices.get_mapping(index="a")["a"]["mappings"]["properties"]
    assert props == {"k": {"type": "keyword"}, "n": {"type": "long"}}
    with pytest.raises(BadRequestError) as info:
        es.indices.put_mapping(index="a", properties={"k": {"type": "text"}})
    assert info.value.error == "illegal_argument_exception"
    assert "cannot be changed from type [keyword] to [text]" in str(info.value)


def test_refresh_visibility(es):
    es.indices.create(index="a", settings={"refresh_interval": "-1"})
    es.index(index="a", id="1", document={"x": 1})
    assert es.get(index="a", id="1")["_source"] == {"x": 1}  # realtime get
    assert es.count(index="a")["count"] == 0  # not refreshed yet
    es.indices.refresh(index="a")
    assert es.count(index="a")["count"] == 1
    es.index(index="a", id="2", document={"x": 2}, refresh="wait_for")
    assert es.count(index="a")["count"] == 2
    es.bulk(operations=[{"index": {"_index": "a", "_id": "3"}}, {"x": 3}], refresh=True)
    assert es.count(index="a")["count"] == 3


def test_periodic_refresh_makes_docs_visible(es):
    es.indices.create(index="a", settings={"refresh_interval": "200ms"})
    es.index(index="a", id="1", document={"x": 1})
    deadline = time.monotonic() + 5
    while es.count(index="a")["count"] == 0:
        assert time.monotonic() < deadline, "periodic refresh never happened"
        time.sleep(0.05)


def test_aliases_add_remove_write_index(es, escluster):
    es.indices.create(index="v1")
    es.indices.create(index="v2")
    r = es.indices.update_aliases(
        actions=[
            {"add": {"index": "v1", "alias": "cur"}},
            {"add": {"index": "v2", "alias": "cur", "is_write_index": True}},
        ]
    )
    assert r.body == {"acknowledged": True, "errors": False}
    got = es.indices.get_alias(name="cur").body
    assert got == {"v1": {"aliases": {"cur": {}}}, "v2": {"aliases": {"cur": {"is_write_index": True}}}}
    assert es.indices.exists_alias(name="cur")
    written = es.index(index="cur", id="1", document={"a": 1}, refresh=True)
    assert written["_index"] == "v2"
    assert es.count(index="cur")["count"] == 1
    es.indices.update_aliases(actions=[{"remove": {"index": "v2", "alias": "cur"}}])
    assert list(es.indices.get_alias(name="cur").body) == ["v1"]
    missing = call(escluster.url, "GET", "/_alias/nope")
    assert missing.status == 404 and missing.body == {"error": "alias [nope] missing", "status": 404}
    assert not es.indices.exists_alias(name="nope")


def test_alias_without_write_index_refuses_writes(es):
    es.indices.create(index="v1", aliases={"both": {}})
    es.indices.create(index="v2", aliases={"both": {}})
    with pytest.raises(BadRequestError) as info:
        es.index(index="both", document={"a": 1})
    assert "no write index is defined for alias [both]" in str(info.value)


def test_alias_name_clashes_with_index(escluster):
    call(escluster.url, "PUT", "/a")
    call(escluster.url, "PUT", "/b")
    r = call(escluster.url, "POST", "/_aliases", {"actions": [{"add": {"index": "b", "alias": "a"}}]})
    assert r.status == 400 and r.body["error"]["type"] == "invalid_alias_name_exception"
    r = call(escluster.url, "POST", "/_aliases", {"actions": [{"remove": {"index": "b", "alias": "zz"}}]})
    assert r.status == 404 and r.body["error"]["type"] == "aliases_not_found_exception"


def test_index_template_with_components_and_priority(es):
    es.cluster.put_component_template(
        name="base",
        template={
            "settings": {"number_of_replicas": 0},
            "mappings": {"properties": {"caption": {"type": "text"}, "tag": {"type": "keyword"}}},
        },
    )
    es.cluster.put_component_template(
        name="vectors",
        template={
            "mappings": {
                "properties": {
                    "v": {
                        "type": "dense_vector",
                        "dims": 4,
                        "similarity": "dot_product",
                        "index_options": {"type": "hnsw"},
                    }
                }
            }
        },
    )
    es.indices.put_index_template(
        name="low", index_patterns=["img-*"], priority=1, template={"settings": {"number_of_shards": 3}}
    )
    es.indices.put_index_template(
        name="high",
        index_patterns=["img-*"],
        priority=10,
        composed_of=["base", "vectors"],
        template={"mappings": {"properties": {"tag": {"type": "text"}}}, "aliases": {"images": {}}},
    )
    es.indices.create(index="img-1", mappings={"properties": {"extra": {"type": "long"}}})
    got = es.indices.get(index="img-1")["img-1"]
    props = got["mappings"]["properties"]
    assert props["caption"] == {"type": "text"}
    assert props["tag"] == {"type": "text"}  # the template beats its components
    assert props["extra"] == {"type": "long"}  # the request beats the template
    assert props["v"]["index_options"] == {"type": "hnsw", "m": 16, "ef_construction": 100}
    assert got["settings"]["index"]["number_of_replicas"] == "0"
    assert got["settings"]["index"]["number_of_shards"] == "1"  # "low" lost on priority
    assert got["aliases"] == {"images": {}}
    # Auto-created indices get templates too.
    es.index(index="img-2", document={"tag": "x"})
    assert es.indices.get_mapping(index="img-2")["img-2"]["mappings"]["properties"]["caption"] == {"type": "text"}


def test_template_get_exists_delete(es, escluster):
    es.cluster.put_component_template(name="c", template={"settings": {"number_of_replicas": 0}})
    es.indices.put_index_template(name="t", index_patterns="x-*", composed_of=["c"], version=3, _meta={"by": "toolkit"})
    got = es.indices.get_index_template(name="t")["index_templates"][0]
    assert got["name"] == "t"
    assert got["index_template"]["index_patterns"] == ["x-*"]
    assert got["index_template"]["composed_of"] == ["c"]
    assert got["index_template"]["version"] == 3 and got["index_template"]["_meta"] == {"by": "toolkit"}
    comp = es.cluster.get_component_template(name="c")["component_templates"][0]
    assert comp["component_template"]["template"]["settings"] == {"index": {"number_of_replicas": "0"}}
    assert es.indices.exists_index_template(name="t")
    in_use = call(escluster.url, "DELETE", "/_component_template/c")
    assert in_use.status == 400 and in_use.body["error"]["type"] == "illegal_argument_exception"
    es.indices.delete_index_template(name="t")
    assert not es.indices.exists_index_template(name="t")
    missing = call(escluster.url, "GET", "/_index_template/t")
    assert missing.status == 404 and missing.body["error"]["type"] == "resource_not_found_exception"
    missing = call(escluster.url, "GET", "/_component_template/zz")
    assert missing.status == 404 and missing.body["error"]["type"] == "resource_not_found_exception"


def test_template_validation(escluster):
    r = call(escluster.url, "PUT", "/_index_template/t", {"index_patterns": ["a*"], "composed_of": ["missing"]})
    assert r.status == 400 and r.body["error"]["type"] == "invalid_index_template_exception"
    r = call(escluster.url, "PUT", "/_index_template/t", {"template": {}})
    assert r.status == 400 and r.body["error"]["type"] == "action_request_validation_exception"
    r = call(
        escluster.url,
        "PUT",
        "/_index_template/t",
        {
            "index_patterns": ["a*"],
            "template": {"mappings": {"properties": {"v": {"type": "dense_vector", "dims": 0}}}},
        },
    )
    assert r.status == 400 and r.body["error"]["type"] == "mapper_parsing_exception"
    assert call(escluster.url, "PUT", "/_index_template/t1", {"index_patterns": ["a*"]}).status == 200
    same = call(escluster.url, "PUT", "/_index_template/t2", {"index_patterns": ["ab*"]})
    assert same.status == 400 and "same priority" in same.body["error"]["reason"]
    assert call(escluster.url, "PUT", "/_index_template/t2", {"index_patterns": ["ab*"], "priority": 5}).status == 200
    r = call(escluster.url, "PUT", "/_index_template/t3", {"index_patterns": ["q*"], "bogus": 1})
    assert r.status == 400 and r.body["error"]["type"] == "x_content_parse_exception"


def test_count_with_query_is_delegated(es):
    es.indices.create(index="a", mappings={"properties": {"tag": {"type": "keyword"}}})
    es.bulk(
        operations=[{"index": {"_index": "a"}}, {"tag": "x"}, {"index": {"_index": "a"}}, {"tag": "y"}],
        refresh=True,
    )
    assert es.count(index="a")["count"] == 2
    assert es.count(index="a", query={"term": {"tag": "x"}})["count"] == 1


def test_cat_stats_mget_delete_by_query(es):
    es.indices.create(
        index="a", settings={"number_of_replicas": 0}, mappings={"properties": {"t": {"type": "keyword"}}}
    )
    es.bulk(
        refresh=True,
        operations=[
            {"index": {"_index": "a", "_id": "1"}},
            {"t": "x"},
            {"index": {"_index": "a", "_id": "2"}},
            {"t": "y"},
        ],
    )
    rows = es.cat.indices(index="a", format="json").body
    assert rows[0]["index"] == "a" and rows[0]["docs.count"] == "2" and rows[0]["health"] == "green"
    assert es.cat.indices(index="a", v=True).body.splitlines()[0].split()[:3] == ["health", "status", "index"]
    assert es.indices.stats(index="a")["indices"]["a"]["primaries"]["docs"]["count"] == 2
    docs = es.mget(index="a", ids=["1", "9"])["docs"]
    assert docs[0]["_source"] == {"t": "x"} and docs[1] == {"_index": "a", "_id": "9", "found": False}
    res = es.delete_by_query(index="a", query={"term": {"t": "x"}}, refresh=True)
    assert (res["total"], res["deleted"], res["failures"]) == (1, 1, [])
    assert es.count(index="a")["count"] == 1


def test_health_levels_and_closed_indices(es, escluster):
    es.indices.create(index="index-1", settings={"number_of_replicas": 0})
    es.indices.create(index="index-2", settings={"number_of_replicas": 50})
    assert es.cluster.health(index="index-1")["status"] == "green"
    assert es.cluster.health(index="index-*")["status"] == "yellow"
    shards = es.cluster.health(level="shards")["indices"]["index-1"]["shards"]
    assert shards["0"]["primary_active"] is True
    assert "shards" not in es.cluster.health(level="indices")["indices"]["index-1"]
    assert es.indices.close(index="index-1")["indices"] == {"index-1": {"closed": True}}
    closed = call(escluster.url, "PUT", "/index-1/_doc/1", {"a": 1})
    assert closed.status == 400 and closed.body["error"]["type"] == "index_closed_exception"
    es.indices.open(index="index-1")
    assert es.index(index="index-1", id="1", document={"a": 1})["result"] == "created"
