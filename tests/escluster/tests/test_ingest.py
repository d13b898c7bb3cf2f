"""Ingest pipelines of the test cluster: validation, execution rules, on_failure, inference, _simulate."""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import Elasticsearch

from tests.escluster.errors import ESError
from tests.escluster.ml import InferenceVector
from tests.escluster.testing import call


class FakeML:
    """Stands in for the ML store: counts calls, embeds a text as [len, 1.0], fails on demand.

    Like ``MLStore.infer``: strings are text inputs; a dict is a document map read at the model's input
    field (``text_field`` here, as eland writes it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.fail_with: ESError | None = None

    def infer(self, model_id: str, inputs: list[Any]) -> list[InferenceVector]:
        self.calls.append((model_id, inputs))
        if self.fail_with is not None:
            raise self.fail_with
        texts = [i["text_field"] if isinstance(i, dict) else i for i in inputs]
        return [
            InferenceVector(
                [float(len(t)), 1.0],
                is_truncated=False,
                results_field="predicted_value",
                task="text_embedding",
                model_id=model_id,
            )
            for t in texts
        ]

    def handle(self, method, parts, params, body):
        return 200, {}


@pytest.fixture
def es(escluster):
    return Elasticsearch(escluster.url)


@pytest.fixture
def fake_ml(escluster):
    fake = FakeML()
    escluster.state.ml = fake
    return fake


def put(url, pid, body):
    return call(url, "PUT", f"/_ingest/pipeline/{pid}", body)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"description": "no processors"}, "[processors] required property is missing"),
        ({"processors": [{"nope": {}}]}, "No processor type exists with name [nope]"),
        ({"processors": [{"set": {"value": 1}}]}, "[field] required property is missing"),
        ({"processors": [{"set": {"field": "a"}}]}, "[value] required property is missing"),
        ({"processors": [{"rename": {"field": "a"}}]}, "[target_field] required property is missing"),
        ({"processors": [{"convert": {"field": "a", "type": "color"}}]}, "not supported"),
        ({"processors": [{"set": {"field": "a", "value": 1, "bogus": 2}}]}, "doesn't support one or more"),
        (
            {
                "processors": [
                    {
                        "inference": {
                            "model_id": "m",
                            "input_output": [{"input_field": "a", "output_field": "b"}],
                            "target_field": "t",
                        }
                    }
                ]
            },
            "[target_field] option is incompatible",
        ),
        (
            {
                "processors": [
                    {
                        "inference": {
                            "model_id": "m",
                            "input_output": [{"input_field": "a", "output_field": "b"}],
                            "field_map": {"a": "text_field"},
                        }
                    }
                ]
            },
            # InferenceProcessor.Factory leaves field_map unread with input_output: ConfigurationUtils refuses it
            "processor [inference] doesn't support one or more provided configuration parameters [field_map]",
        ),
        ({"processors": [{"set": {"field": "a", "value": 1, "on_failure": []}}]}, "cannot be empty"),
    ],
)
def test_put_pipeline_validation(escluster, body, fragment):
    r = put(escluster.url, "p", body)
    assert r.status == 400, r.body
    assert r.body["error"]["type"] == "parse_exception"
    assert fragment in r.body["error"]["reason"]


def test_pipeline_get_delete(es, escluster):
    body = {"description": "d", "processors": [{"set": {"field": "a", "value": 1}}], "version": 2}
    assert put(escluster.url, "p", body).body == {"acknowledged": True}
    assert es.ingest.get_pipeline(id="p").body == {"p": body}
    missing = call(escluster.url, "GET", "/_ingest/pipeline/nope")
    assert missing.status == 404 and missing.body == {}
    es.ingest.delete_pipeline(id="p")
    gone = call(escluster.url, "DELETE", "/_ingest/pipeline/p")
    assert gone.status == 404 and gone.body["error"]["type"] == "resource_not_found_exception"


def test_default_pipeline_none_and_request_pipeline(es, escluster):
    put(escluster.url, "default", {"processors": [{"set": {"field": "by", "value": "default"}}]})
    put(escluster.url, "other", {"processors": [{"set": {"field": "by", "value": "other"}}]})
    es.indices.create(index="a", settings={"index.default_pipeline": "default"})
    es.index(index="a", id="1", document={})
    es.index(index="a", id="2", document={}, pipeline="_none")
    es.index(index="a", id="3", document={}, pipeline="other")
    assert es.get(index="a", id="1")["_source"] == {"by": "default"}
    assert es.get(index="a", id="2")["_source"] == {}
    assert es.get(index="a", id="3")["_source"] == {"by": "other"}


def test_item_pipeline_replaces_request_pipeline(es, escluster):
    put(escluster.url, "req", {"processors": [{"set": {"field": "req", "value": True}}]})
    put(escluster.url, "item", {"processors": [{"set": {"field": "item", "value": True}}]})
    res = es.bulk(
        pipeline="req",
        operations=[
            {"index": {"_index": "a", "_id": "1"}},
            {},
            {"index": {"_index": "a", "_id": "2", "pipeline": "item"}},
            {},
            {"index": {"_index": "a", "_id": "3", "pipeline": "_none"}},
            {},
        ],
    )
    assert res["errors"] is False
    assert es.get(index="a", id="1")["_source"] == {"req": True}
    assert es.get(index="a", id="2")["_source"] == {"item": True}
    assert es.get(index="a", id="3")["_source"] == {}


def test_missing_pipeline_fails_the_write(escluster):
    r = call(escluster.url, "PUT", "/a/_doc/1?pipeline=ghost", {"x": 1})
    assert r.status == 400
    assert r.body["error"]["reason"] == "pipeline with id [ghost] does not exist"


def test_processors_and_templates(es, escluster):
    put(
        escluster.url,
        "p",
        {
            "processors": [
                {"set": {"field": "greeting", "value": "hi {{{name}}} & {{name}}"}},
                {"set": {"field": "copy", "copy_from": "name"}},
                {"set": {"field": "name", "value": "zzz", "override": False}},
                {"rename": {"field": "old", "target_field": "new"}},
                {"remove": {"field": ["junk", "absent"], "ignore_missing": True}},
                {"append": {"field": "tags", "value": ["b", "c"]}},
                {"lowercase": {"field": "upper"}},
                {"trim": {"field": "padded"}},
                {"convert": {"field": "num", "type": "integer"}},
                {"set": {"field": "nested.deep", "value": "{{_ingest.timestamp}}"}},
            ]
        },
    )
    es.index(
        index="a",
        id="1",
        pipeline="p",
        document={
            "name": 'A<b>"',
            "old": 1,
            "junk": 2,
            "tags": "a",
            "upper": "ABC",
            "padded": "  x ",
            "num": "42",
        },
    )
    src = es.get(index="a", id="1")["_source"]
    assert src["greeting"] == 'hi A<b>" & A<b>\\"'
    assert src["copy"] == 'A<b>"' and src["name"] == 'A<b>"'
    assert "old" not in src and src["new"] == 1 and "junk" not in src
    assert src["tags"] == ["a", "b", "c"]
    assert (src["upper"], src["padded"], src["num"]) == ("abc", "x", 42)
    assert src["nested"]["deep"].endswith("Z")


def test_processor_error_fails_the_item_with_its_status(es, escluster):
    put(escluster.url, "p", {"processors": [{"rename": {"field": "missing", "target_field": "x"}}]})
    put(escluster.url, "f", {"processors": [{"fail": {"message": "no {{who}}"}}]})
    res = es.bulk(
        operations=[
            {"index": {"_index": "a", "_id": "1", "pipeline": "p"}},
            {"k": 1},
            {"index": {"_index": "a", "_id": "2", "pipeline": "f"}},
            {"who": "way"},
            {"index": {"_index": "a", "_id": "3"}},
            {"k": 3},
        ]
    )
    assert res["errors"] is True
    first, second, third = (item["index"] for item in res["items"])
    assert first["status"] == 400 and first["error"]["type"] == "illegal_argument_exception"
    assert first["error"]["reason"] == "field [missing] doesn't exist"
    assert second["status"] == 500 and second["error"] == {
        "type": "fail_processor_exception",
        "reason": "no way",
    }
    assert third["status"] == 201


def test_processor_on_failure_continues_pipeline(es, escluster):
    put(
        escluster.url,
        "p",
        {
            "processors": [
                {
                    "rename": {
                        "field": "missing",
                        "target_field": "x",
                        "tag": "ren",
                        "on_failure": [
                            {"set": {"field": "err", "value": "{{ _ingest.on_failure_message }}"}},
                            {"set": {"field": "err_type", "value": "{{_ingest.on_failure_processor_type}}"}},
                            {"set": {"field": "err_tag", "value": "{{_ingest.on_failure_processor_tag}}"}},
                        ],
                    }
                },
                {"set": {"field": "after", "value": True}},
                {"remove": {"field": "nothing", "ignore_failure": True}},
            ]
        },
    )
    es.index(index="a", id="1", pipeline="p", document={})
    src = es.get(index="a", id="1")["_source"]
    assert src == {
        "err": "field [missing] doesn't exist",
        "err_type": "rename",
        "err_tag": "ren",
        "after": True,
    }


def test_pipeline_on_failure_ends_pipeline(es, escluster):
    put(
        escluster.url,
        "p",
        {
            "processors": [
                {"fail": {"message": "boom", "tag": "f1"}},
                {"set": {"field": "after", "value": True}},
            ],
            "on_failure": [
                {"set": {"field": "error", "value": "{{{_ingest.on_failure_message}}}"}},
                {"set": {"field": "_index", "value": "failed"}},
            ],
        },
    )
    res = es.index(index="a", id="1", pipeline="p", document={"x": 1})
    assert res["_index"] == "failed"  # on_failure can reroute the document
    assert es.get(index="failed", id="1")["_source"] == {"x": 1, "error": "boom"}


def test_nested_pipeline_and_drop(es, escluster):
    put(escluster.url, "inner", {"processors": [{"set": {"field": "inner", "value": 1}}]})
    put(
        escluster.url,
        "outer",
        {"processors": [{"pipeline": {"name": "inner"}}, {"set": {"field": "outer", "value": 1}}]},
    )
    put(escluster.url, "dropper", {"processors": [{"drop": {}}]})
    es.index(index="a", id="1", pipeline="outer", document={})
    assert es.get(index="a", id="1")["_source"] == {"inner": 1, "outer": 1}
    res = es.bulk(operations=[{"index": {"_index": "a", "_id": "2", "pipeline": "dropper"}}, {}])
    assert res["errors"] is False
    assert call(escluster.url, "GET", "/a/_doc/2").status == 404
    put(escluster.url, "loop", {"processors": [{"pipeline": {"name": "loop"}}]})
    r = call(escluster.url, "PUT", "/a/_doc/3?pipeline=loop", {})
    assert r.status >= 400 and "Cycle detected" in r.body["error"]["reason"]


def test_inference_input_output_shape(es, escluster, fake_ml):
    put(
        escluster.url,
        "emb",
        {
            "processors": [
                {
                    "inference": {
                        "model_id": "clip",
                        "input_output": [{"input_field": "caption", "output_field": "caption_embedding"}],
                        "ignore_missing": True,
                    }
                }
            ]
        },
    )
    es.index(index="a", id="1", pipeline="emb", document={"caption": "abc"})
    es.index(index="a", id="2", pipeline="emb", document={"other": 1})
    # writeResultToField: no dot in output_field, so the first input's model_id lands at the root
    assert es.get(index="a", id="1", source_exclude_vectors=False)["_source"] == {
        "caption": "abc",
        "caption_embedding": [3.0, 1.0],
        "model_id": "clip",
    }
    assert es.get(index="a", id="2")["_source"] == {"other": 1}
    assert fake_ml.calls == [("clip", ["abc"])]


def test_inference_legacy_shape(es, escluster, fake_ml):
    put(
        escluster.url,
        "emb",
        {
            "processors": [
                {
                    "inference": {
                        "model_id": "clip",
                        "target_field": "t",
                        "field_map": {"caption": "text_field"},
                    }
                }
            ]
        },
    )
    es.index(index="a", id="1", pipeline="emb", document={"caption": "hello"})
    src = es.get(index="a", id="1")["_source"]
    assert src["t"] == {"predicted_value": [5.0, 1.0], "model_id": "clip"}
    # the internal path gets the document map with field_map applied (LocalModel.mapFieldsIfNecessary)
    (model_id, (fields,)), = fake_ml.calls
    assert (model_id, fields["text_field"], fields["caption"]) == ("clip", "hello", "hello")


def test_inference_errors_fail_item_or_run_on_failure(es, escluster, fake_ml):
    fake_ml.fail_with = ESError(
        404, "status_exception", "[clip] is not an inference service model or a deployed ml model"
    )
    put(
        escluster.url,
        "emb",
        {
            "processors": [
                {
                    "inference": {
                        "model_id": "clip",
                        "input_output": [{"input_field": "caption", "output_field": "v"}],
                    }
                }
            ]
        },
    )
    put(
        escluster.url,
        "emb2",
        {
            "processors": [
                {
                    "inference": {
                        "model_id": "clip",
                        "input_output": [{"input_field": "caption", "output_field": "v"}],
                        "on_failure": [{"set": {"field": "failed", "value": "{{_ingest.on_failure_message}}"}}],
                    }
                }
            ]
        },
    )
    res = es.bulk(
        operations=[
            {"index": {"_index": "a", "_id": "1", "pipeline": "emb"}},
            {"caption": "x"},
            {"index": {"_index": "a", "_id": "2", "pipeline": "emb2"}},
            {"caption": "x"},
            {"index": {"_index": "a", "_id": "3", "pipeline": "emb"}},
            {"no_caption": 1},
        ]
    )
    first, second, third = (i["index"] for i in res["items"])
    assert first["status"] == 404 and first["error"]["type"] == "status_exception"
    assert second["status"] == 201
    assert es.get(index="a", id="2")["_source"]["failed"] == (
        "[clip] is not an inference service model or a deployed ml model"
    )
    # missing input field without ignore_missing: IngestDocument.getFieldValue's own message
    assert (third["status"], third["error"]["type"]) == (400, "illegal_argument_exception")
    assert third["error"]["reason"] == "field [caption] not present as part of path [caption]"


def test_simulate_by_id_and_inline(es, escluster):
    put(escluster.url, "p", {"processors": [{"uppercase": {"field": "a"}}]})
    res = es.ingest.simulate(id="p", docs=[{"_source": {"a": "x"}}, {"_index": "i", "_id": "7", "_source": {"a": 1}}])
    ok, bad = res["docs"]
    doc = ok["doc"]
    assert doc["_source"] == {"a": "X"}
    assert doc["_index"] == "_index" and doc["_id"] == "_id" and doc["_version"] == "-3"
    assert "timestamp" in doc["_ingest"]
    assert bad["error"]["type"] == "illegal_argument_exception"
    assert bad["error"]["root_cause"][0]["type"] == "illegal_argument_exception"
    inline = es.ingest.simulate(pipeline={"processors": [{"set": {"field": "b", "value": 2}}]}, docs=[{"_source": {}}])
    assert inline["docs"][0]["doc"]["_source"] == {"b": 2}
    r = call(escluster.url, "POST", "/_ingest/pipeline/_simulate", {"pipeline": {"processors": []}})
    assert r.status == 400 and r.body["error"]["type"] == "parse_exception"


def test_empty_pipeline_on_failure_names_the_pipeline(escluster):
    r = put(escluster.url, "my_pipeline", {"processors": [{"set": {"field": "a", "value": 1}}], "on_failure": []})
    assert r.status == 400
    assert r.body["error"]["reason"] == "pipeline [my_pipeline] cannot have an empty on_failure option defined"
    r = put(escluster.url, "p", {"processors": [{"set": {"tag": "fritag"}}]})
    root = r.body["error"]["root_cause"][0]
    assert (root["processor_tag"], root["processor_type"], root["property_name"]) == ("fritag", "set", "field")


def test_if_conditions(es, escluster):
    put(
        escluster.url,
        "p",
        {
            "processors": [
                {"set": {"field": "photo", "value": True, "if": "ctx.kind == 'photo'"}},
                {
                    "set": {
                        "field": "has_url",
                        "value": True,
                        "if": "ctx?.meta?.url != null && !ctx.containsKey('skip')",
                    }
                },
                {"set": {"field": "never", "value": True, "if": "ctx.kind == 'video' || ctx.n > 5"}},
            ]
        },
    )
    es.index(index="a", id="1", pipeline="p", document={"kind": "photo", "meta": {"url": "u"}, "n": 1})
    es.index(index="a", id="2", pipeline="p", document={"kind": "text", "skip": 1, "meta": {"url": "u"}, "n": 2})
    assert es.get(index="a", id="1")["_source"]["photo"] is True
    assert es.get(index="a", id="1")["_source"]["has_url"] is True
    assert "never" not in es.get(index="a", id="1")["_source"]
    assert set(es.get(index="a", id="2")["_source"]) == {"kind", "skip", "meta", "n"}


def test_date_processor_and_pipeline_on_failure(es, escluster):
    put(
        escluster.url,
        "p",
        {
            "processors": [
                {"set": {"field": "_executed", "value": True}},
                {"date": {"field": "date", "target_field": "date", "formats": ["yyyy"]}},
                {"uppercase": {"field": "field1"}},
            ],
            "on_failure": [{"set": {"field": "_failed", "value": True}}],
        },
    )
    es.index(index="t", id="1", pipeline="p", document={"field1": "value1"})
    assert es.get(index="t", id="1")["_source"] == {"field1": "value1", "_executed": True, "_failed": True}
    es.index(index="t", id="2", pipeline="p", document={"field1": "v", "date": "2016"})
    assert es.get(index="t", id="2")["_source"]["date"] == "2016-01-01T00:00:00.000Z"
    put(escluster.url, "iso", {"processors": [{"date": {"field": "d", "formats": ["ISO8601", "UNIX"]}}]})
    es.index(index="t", id="3", pipeline="iso", document={"d": 0})
    assert es.get(index="t", id="3")["_source"]["@timestamp"] == "1970-01-01T00:00:00.000Z"


def test_simulate_verbose(es, escluster):
    res = es.ingest.simulate(
        verbose=True,
        pipeline={
            "processors": [
                {"set": {"tag": "s0", "field": "f2.value", "value": "_value"}},
                {"uppercase": {"field": "f2.value"}},
                {
                    "rename": {
                        "field": "missing",
                        "target_field": "x",
                        "on_failure": [{"set": {"field": "r", "value": 1}}],
                    }
                },
                {"fail": {"message": "m", "ignore_failure": True}},
            ]
        },
        docs=[{"_index": "index", "_id": "id", "_source": {"foo": "bar"}}],
    )
    results = res["docs"][0]["processor_results"]
    assert [(r["processor_type"], r["status"]) for r in results] == [
        ("set", "success"),
        ("uppercase", "success"),
        ("rename", "error"),
        ("set", "success"),
        ("fail", "error_ignored"),
    ]
    assert results[0]["tag"] == "s0"
    assert results[1]["doc"]["_source"] == {"foo": "bar", "f2": {"value": "_VALUE"}}
    assert results[1]["doc"]["_ingest"]["pipeline"] == "_simulate_pipeline"
    assert set(results[1]["doc"]["_ingest"]) == {"pipeline", "timestamp"}
    assert results[2]["error"]["type"] == "illegal_argument_exception"


def test_bulk_reports_ingest_took_and_upsert_runs_pipeline(es, escluster):
    put(escluster.url, "lower", {"processors": [{"lowercase": {"field": "my_field"}}]})
    res = es.bulk(
        refresh=True,
        operations=[
            {"update": {"_id": "1", "_index": "t", "pipeline": "lower"}},
            {"upsert": {"my_field": "UPPER"}, "script": {"source": "ctx._source.my_field = 'x'"}},
            {"index": {"_index": "t", "_id": "2", "pipeline": "lower", "skip_pipeline": True}},
            {"my_field": "KEEP"},
        ],
    )
    assert res["errors"] is False and res["ingest_took"] >= 0
    assert res["items"][0]["update"]["result"] == "created"
    assert es.get(index="t", id="1")["_source"] == {"my_field": "upper"}
    assert es.get(index="t", id="2")["_source"] == {"my_field": "KEEP"}
