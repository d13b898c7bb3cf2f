"""The test cluster's inference paths, pinned to Elasticsearch 9.x source.

Two paths answer differently for a model that is not deployed:

- coordinated (``TransportCoordinatedInferenceAction.forNlp``): ``input_output`` inference processors and
  ``query_vector_builder``; no deployment for the id (unknown or undeployed alike) is 404 ``status_exception``
  "[id] is not an inference service model or a deployed ml model";
- internal (``TransportInternalInferModelAction``): ``_infer`` and the legacy ``field_map`` processor; unknown
  is 404 ``resource_not_found_exception``, undeployed is 409 "Model [id] must be deployed to use...".

The expected texts are ES's own (its ``CoordinatedInferenceIngestIT`` pins the two ``_simulate`` messages).
Output shape: ``InferenceResults.writeResultToField`` writes the first input's ``model_id`` next to the
vector (at the root when ``output_field`` has no dot) and ``is_truncated: true`` only for a cut input.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.escluster.testing import Handle, call
from tests.escluster.tests.scripted_model import DIMS, VOCAB, definition_part, mean_embedding

MAX_SEQ = 6  # [CLS] + 4 tokens + [SEP]
SHORT = "dog cat"  # 4 tokens with specials
EXACT = "dog cat snow dog"  # 6 with specials: fits, not truncated
LONG = "dog cat snow dog cat snow"  # 8 with specials: cut to 6
NOT_ML = "[{id}] is not an inference service model or a deployed ml model"
MUST_DEPLOY = "Model [{id}] must be deployed to use. Please deploy with the start trained model deployment API."


@pytest.fixture(scope="module")
def definition() -> bytes:
    return mean_embedding()


def ok(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return reply.body


def upload(es: Handle, definition: bytes, model_id: str = "tiny", task: str = "text_embedding") -> None:
    options: dict[str, Any] = {"tokenization": {"bert": {"do_lower_case": True, "max_sequence_length": MAX_SEQ}}}
    if task == "text_embedding":
        options["embedding_size"] = DIMS
    config = {"model_type": "pytorch", "input": {"field_names": ["text_field"]}, "inference_config": {task: options}}
    ok(call(es.url, "PUT", f"/_ml/trained_models/{model_id}", config))
    part = definition_part(definition, len(definition), 1)
    ok(call(es.url, "PUT", f"/_ml/trained_models/{model_id}/definition/0", part))
    ok(call(es.url, "PUT", f"/_ml/trained_models/{model_id}/vocabulary", {"vocabulary": VOCAB}))


def deploy(es: Handle, definition: bytes, model_id: str = "tiny", **params: str) -> None:
    upload(es, definition, model_id, task=params.pop("task", "text_embedding"))
    query = "&".join(f"{k}={v}" for k, v in {"wait_for": "started", **params}.items())
    ok(call(es.url, "POST", f"/_ml/trained_models/{model_id}/deployment/_start?{query}"))


def caption_pipeline(model_id: str = "tiny") -> dict[str, Any]:
    """The shape of ingest-pipelines/caption-embedding.json: input_output caption -> caption_embedding."""
    return {
        "processors": [
            {
                "inference": {
                    "tag": "caption-embedding",
                    "model_id": model_id,
                    "input_output": [{"input_field": "caption", "output_field": "caption_embedding"}],
                    "ignore_missing": True,
                    "on_failure": [
                        {"set": {"field": "ingest_error.message", "value": "{{{_ingest.on_failure_message}}}"}},
                        {
                            "set": {
                                "field": "ingest_error.processor",
                                "value": "{{{_ingest.on_failure_processor_tag}}}",
                            }
                        },
                    ],
                }
            }
        ]
    }


def legacy_pipeline(model_id: str = "tiny") -> dict[str, Any]:
    return {
        "processors": [
            {"inference": {"model_id": model_id, "target_field": "t", "field_map": {"caption": "text_field"}}}
        ]
    }


def io_pipeline(model_id: str = "tiny", **extra: Any) -> dict[str, Any]:
    inference = {"model_id": model_id, "input_output": [{"input_field": "caption", "output_field": "v"}], **extra}
    return {"processors": [{"inference": inference}]}


def simulate(es: Handle, pipeline: dict[str, Any], *sources: dict[str, Any]) -> list[dict[str, Any]]:
    body = {"pipeline": pipeline, "docs": [{"_source": s} for s in sources]}
    docs: list[dict[str, Any]] = ok(call(es.url, "POST", "/_ingest/pipeline/_simulate", body))["docs"]
    return docs


def infer_api(es: Handle, model_id: str, docs: list[Any], **extra: Any) -> Any:
    return call(es.url, "POST", f"/_ml/trained_models/{model_id}/_infer", {"docs": docs, **extra})


def error_of(reply: Any) -> tuple[int, str, str]:
    return reply.status, reply.body["error"]["type"], reply.body["error"]["reason"]


def embedding_of(es: Handle, text: str, model_id: str = "tiny") -> list[float]:
    vector: list[float] = ok(infer_api(es, model_id, [{"text_field": text}]))["inference_results"][0][
        "predicted_value"
    ]
    return vector


# ------------------------------------------------------------------------------------ output shape
def test_caption_pipeline_writes_model_id_at_the_root_and_is_truncated_only_when_cut(
    escluster: Handle, definition: bytes
) -> None:
    deploy(escluster, definition)
    short, exact, long = simulate(escluster, caption_pipeline(), {"caption": SHORT}, {"caption": EXACT},
                                  {"caption": LONG})
    assert short["doc"]["_source"] == {
        "caption": SHORT,
        "caption_embedding": pytest.approx(embedding_of(escluster, SHORT)),
        "model_id": "tiny",
    }
    assert "is_truncated" not in exact["doc"]["_source"]  # exactly max_sequence_length tokens fit
    assert long["doc"]["_source"]["is_truncated"] is True
    assert long["doc"]["_source"]["model_id"] == "tiny"
    assert long["doc"]["_source"]["caption_embedding"] == pytest.approx(embedding_of(escluster, LONG))


def test_caption_pipeline_on_a_real_index_write(escluster: Handle, definition: bytes) -> None:
    deploy(escluster, definition)
    ok(call(escluster.url, "PUT", "/_ingest/pipeline/captions", caption_pipeline()))
    for doc_id, caption in (("short", SHORT), ("long", LONG)):
        reply = call(escluster.url, "PUT", f"/a/_doc/{doc_id}?pipeline=captions&refresh=true", {"caption": caption})
        assert reply.status == 201, reply.body
    short = ok(call(escluster.url, "GET", "/a/_doc/short"))["_source"]
    long = ok(call(escluster.url, "GET", "/a/_doc/long"))["_source"]
    assert (short["model_id"], "is_truncated" in short) == ("tiny", False)
    assert (long["model_id"], long["is_truncated"]) == ("tiny", True)
    mapping = ok(call(escluster.url, "GET", "/a/_mapping"))["a"]["mappings"]["properties"]
    assert mapping["model_id"]["type"] == "text" and mapping["is_truncated"]["type"] == "boolean"


def test_dotted_output_field_puts_model_id_beside_it_and_only_for_the_first_input(
    escluster: Handle, definition: bytes
) -> None:
    deploy(escluster, definition)
    pipeline = {
        "processors": [
            {
                "inference": {
                    "model_id": "tiny",
                    "input_output": [
                        {"input_field": "title", "output_field": "ml.title"},
                        {"input_field": "body", "output_field": "ml.body"},
                    ],
                }
            }
        ]
    }
    (doc,) = simulate(escluster, pipeline, {"title": SHORT, "body": LONG})
    assert sorted(doc["doc"]["_source"]["ml"]) == ["body", "is_truncated", "model_id", "title"]
    assert doc["doc"]["_source"]["ml"]["model_id"] == "tiny"


def test_deployment_id_works_on_both_paths_and_is_the_model_id_written(
    escluster: Handle, definition: bytes
) -> None:
    deploy(escluster, definition, deployment_id="for-search")
    (doc,) = simulate(escluster, caption_pipeline("for-search"), {"caption": SHORT})
    assert doc["doc"]["_source"]["model_id"] == "for-search"
    (legacy,) = simulate(escluster, legacy_pipeline("for-search"), {"caption": SHORT})
    assert legacy["doc"]["_source"]["t"]["model_id"] == "for-search"
    assert legacy["doc"]["_source"]["t"]["predicted_value"] == pytest.approx(embedding_of(escluster, SHORT))
    assert ok(infer_api(escluster, "for-search", [{"text_field": SHORT}]))["inference_results"][0]


def test_legacy_form_writes_predicted_value_model_id_and_is_truncated_under_target_field(
    escluster: Handle, definition: bytes
) -> None:
    deploy(escluster, definition)
    short, long = simulate(escluster, legacy_pipeline(), {"caption": SHORT}, {"caption": LONG})
    assert short["doc"]["_source"]["t"] == {
        "predicted_value": pytest.approx(embedding_of(escluster, SHORT)),
        "model_id": "tiny",
    }
    assert long["doc"]["_source"]["t"]["is_truncated"] is True
    tagged = legacy_pipeline()
    del tagged["processors"][0]["inference"]["target_field"]
    tagged["processors"][0]["inference"]["tag"] = "cap"
    (doc,) = simulate(escluster, tagged, {"caption": SHORT})
    assert doc["doc"]["_source"]["ml"]["inference"]["cap"]["model_id"] == "tiny"


def test_a_document_that_already_has_the_output_gets_it_appended(escluster: Handle, definition: bytes) -> None:
    """setOrAppendValue: re-running the pipeline on its own output doubles the vector and lists model_id."""
    deploy(escluster, definition)
    (first,) = simulate(escluster, caption_pipeline(), {"caption": SHORT})
    (again,) = simulate(escluster, caption_pipeline(), first["doc"]["_source"])
    assert len(again["doc"]["_source"]["caption_embedding"]) == 2 * DIMS
    assert again["doc"]["_source"]["model_id"] == ["tiny", "tiny"]


def test_infer_api_reports_is_truncated(escluster: Handle, definition: bytes) -> None:
    deploy(escluster, definition)
    short, long = ok(infer_api(escluster, "tiny", [{"text_field": SHORT}, {"text_field": LONG}]))["inference_results"]
    assert "is_truncated" not in short and long["is_truncated"] is True


# ------------------------------------------------------------------------- not deployed / unknown
@pytest.mark.parametrize("model_id", ["nope", "tiny"])
def test_input_output_processor_without_a_deployment_is_404_coordinated(
    escluster: Handle, definition: bytes, model_id: str
) -> None:
    upload(escluster, definition)  # "tiny" exists but is not deployed; "nope" does not exist
    (doc,) = simulate(escluster, io_pipeline(model_id), {"caption": SHORT})
    assert (doc["error"]["type"], doc["error"]["reason"]) == ("status_exception", NOT_ML.format(id=model_id))
    ok(call(escluster.url, "PUT", "/_ingest/pipeline/p", io_pipeline(model_id)))
    reply = call(escluster.url, "PUT", "/a/_doc/1?pipeline=p", {"caption": SHORT})
    assert error_of(reply) == (404, "status_exception", NOT_ML.format(id=model_id))


def test_caption_pipeline_on_failure_sees_the_coordinated_message(escluster: Handle, definition: bytes) -> None:
    upload(escluster, definition)
    (doc,) = simulate(escluster, caption_pipeline(), {"caption": SHORT})
    assert doc["doc"]["_source"] == {
        "caption": SHORT,
        "ingest_error": {"message": NOT_ML.format(id="tiny"), "processor": "caption-embedding"},
    }


def test_field_map_processor_uses_the_internal_path(escluster: Handle, definition: bytes) -> None:
    upload(escluster, definition)
    undeployed, unknown = (simulate(escluster, legacy_pipeline(m), {"caption": SHORT})[0] for m in ("tiny", "nope"))
    assert (undeployed["error"]["type"], undeployed["error"]["reason"]) == (
        "status_exception",
        MUST_DEPLOY.format(id="tiny"),
    )
    assert (unknown["error"]["type"], unknown["error"]["reason"]) == (
        "resource_not_found_exception",
        "Could not find trained model [nope]",
    )
    ok(call(escluster.url, "PUT", "/_ingest/pipeline/p", legacy_pipeline("tiny")))
    reply = call(escluster.url, "PUT", "/a/_doc/1?pipeline=p", {"caption": SHORT})
    assert error_of(reply) == (409, "status_exception", MUST_DEPLOY.format(id="tiny"))


def test_field_map_processor_needs_the_models_input_field(escluster: Handle, definition: bytes) -> None:
    deploy(escluster, definition)
    (doc,) = simulate(escluster, legacy_pipeline(), {"title": SHORT})
    assert (doc["error"]["type"], doc["error"]["reason"]) == (
        "status_exception",
        "Input field [text_field] does not exist in the source document",
    )


def test_infer_api_is_the_internal_path(escluster: Handle, definition: bytes) -> None:
    upload(escluster, definition)
    assert error_of(infer_api(escluster, "nope", [{"text_field": "x"}])) == (
        404,
        "resource_not_found_exception",
        "Could not find trained model [nope]",
    )
    assert error_of(infer_api(escluster, "tiny", [{"text_field": "x"}])) == (
        409,
        "status_exception",
        MUST_DEPLOY.format(id="tiny"),
    )


def test_infer_api_input_errors_are_400(escluster: Handle, definition: bytes) -> None:
    deploy(escluster, definition)
    assert error_of(infer_api(escluster, "tiny", [{"text_field": "dog"}, {"other": "x"}])) == (
        400,
        "status_exception",
        "Input field [text_field] does not exist in the source document",
    )
    assert error_of(infer_api(escluster, "tiny", [{"text_field": 42}])) == (
        400,
        "status_exception",
        "Input value [42] for field [text_field] must be a string",
    )
    assert error_of(infer_api(escluster, "tiny", [{"text_field": ["a", 1]}])) == (
        400,
        "status_exception",
        "Input value [[a, 1]] for field [text_field] must be a string",
    )
    assert error_of(infer_api(escluster, "tiny", [{"text_field": "x"}], inference_config={"ner": {}})) == (
        403,
        "status_exception",
        "Trained model [tiny] is configured for task [text_embedding] but called with task [ner]",
    )


def test_failed_and_stopped_deployments(escluster: Handle, definition: bytes) -> None:
    upload(escluster, b"not a TorchScript archive", "broken")
    call(escluster.url, "POST", "/_ml/trained_models/broken/deployment/_start?wait_for=starting")
    # the assignment exists (starting, its route failed): both paths reach inferAgainstAllocatedModel
    not_allocated = (409, "status_exception", "Trained model deployment [broken] is not allocated to any nodes")
    assert error_of(infer_api(escluster, "broken", [{"text_field": "x"}])) == not_allocated
    (doc,) = simulate(escluster, io_pipeline("broken"), {"caption": SHORT})
    assert (doc["error"]["type"], doc["error"]["reason"]) == not_allocated[1:]
    deploy(escluster, definition)
    ok(call(escluster.url, "POST", "/_ml/trained_models/tiny/deployment/_stop"))
    assert error_of(infer_api(escluster, "tiny", [{"text_field": "x"}])) == (
        409,
        "status_exception",
        MUST_DEPLOY.format(id="tiny"),
    )
    (doc,) = simulate(escluster, io_pipeline("tiny"), {"caption": SHORT})
    assert doc["error"]["reason"] == NOT_ML.format(id="tiny")


@pytest.mark.parametrize("form", [io_pipeline, legacy_pipeline])
def test_processor_inference_config_of_another_task_is_403(
    escluster: Handle, definition: bytes, form: Any
) -> None:
    deploy(escluster, definition, deployment_id="dep")
    pipeline = form("dep")
    pipeline["processors"][0]["inference"]["inference_config"] = {"ner": {}}
    (doc,) = simulate(escluster, pipeline, {"caption": SHORT})
    assert (doc["error"]["type"], doc["error"]["reason"]) == (
        "status_exception",
        "Trained model [tiny] is configured for task [text_embedding] but called with task [ner]",
    )


# ------------------------------------------------------------------------------ query_vector_builder
def knn_search(es: Handle, builder: dict[str, Any]) -> Any:
    ok(call(es.url, "PUT", "/v", {"mappings": {"properties": {"v": {"type": "dense_vector", "dims": DIMS}}}}))
    body = {"knn": {"field": "v", "k": 1, "num_candidates": 5, "query_vector_builder": {"text_embedding": builder}}}
    return call(es.url, "POST", "/v/_search", body)


@pytest.mark.parametrize("model_id", ["nope", "tiny"])
def test_query_vector_builder_without_a_deployment_is_404_coordinated(
    escluster: Handle, definition: bytes, model_id: str
) -> None:
    upload(escluster, definition)
    reply = knn_search(escluster, {"model_id": model_id, "model_text": "dog"})
    assert error_of(reply) == (404, "status_exception", NOT_ML.format(id=model_id))


def test_query_vector_builder_refuses_a_model_of_another_task(escluster: Handle, definition: bytes) -> None:
    deploy(escluster, definition, "passthrough", task="pass_through", deployment_id="pt")
    reply = knn_search(escluster, {"model_id": "pt", "model_text": "dog"})
    assert error_of(reply) == (
        403,
        "status_exception",
        "Trained model [passthrough] is configured for task [pass_through] but called with task [text_embedding]",
    )


def test_query_vector_builder_needs_a_model_id(escluster: Handle) -> None:
    reply = knn_search(escluster, {"model_text": "dog"})
    assert error_of(reply) == (400, "illegal_argument_exception", "[model_id] must not be null.")


def test_query_vector_builder_on_a_basic_license(escluster_factory: Any, definition: bytes) -> None:
    es = escluster_factory(license="trial")
    deploy(es, definition)
    es.state.configure({"license": "basic"})
    assert error_of(knn_search(es, {"model_id": "tiny", "model_text": "dog"})) == (
        403,
        "security_exception",
        "current license is non-compliant for [ml]",
    )


# --------------------------------------------------------------------------- processor input rules
def test_input_rules_missing_null_and_non_text(escluster: Handle, definition: bytes) -> None:
    deploy(escluster, definition)
    missing, null, number = simulate(escluster, io_pipeline(), {"other": 1}, {"caption": None}, {"caption": 7})
    assert (missing["error"]["type"], missing["error"]["reason"]) == (
        "illegal_argument_exception",
        "field [caption] not present as part of path [caption]",
    )
    assert null["doc"]["_source"] == {"caption": None}  # a null input counts as absent, even without ignore_missing
    assert (number["error"]["type"], number["error"]["reason"]) == (
        "illegal_argument_exception",
        "input field [caption] cannot be processed because it is not a text field",
    )
    (skipped,) = simulate(escluster, io_pipeline(ignore_missing=True), {"other": 1})
    assert skipped["doc"]["_source"] == {"other": 1}


def test_ignore_missing_sends_an_empty_text_for_a_later_missing_input(escluster: Handle, definition: bytes) -> None:
    deploy(escluster, definition)
    pipeline = {
        "processors": [
            {
                "inference": {
                    "model_id": "tiny",
                    "ignore_missing": True,
                    "input_output": [
                        {"input_field": "a", "output_field": "va"},
                        {"input_field": "b", "output_field": "vb"},
                    ],
                }
            }
        ]
    }
    first_present, first_missing = simulate(escluster, pipeline, {"a": SHORT}, {"b": SHORT})
    assert first_present["doc"]["_source"]["vb"] == pytest.approx(embedding_of(escluster, ""))
    # buildRequest returns "no request" as soon as no input so far is present: b is never embedded
    assert first_missing["doc"]["_source"] == {"b": SHORT}


# ------------------------------------------------------------------------------- factory validation
@pytest.mark.parametrize(
    ("inference", "status", "error_type", "reason"),
    [
        (
            {"target_field": "t", "field_map": {"caption": "text_field"}, "ignore_missing": True},
            400,
            "parse_exception",
            "processor [inference] doesn't support one or more provided configuration parameters [ignore_missing]",
        ),
        (
            {"input_output": {"input_field": "a", "output_field": "b"}, "ignore_missing": "true"},
            400,
            "parse_exception",
            "[ignore_missing] property isn't a boolean, but of type [java.lang.String]",
        ),
        (
            {"input_output": []},
            400,
            "parse_exception",
            "[input_output] property cannot be empty at least one is required",
        ),
        ({"input_output": "caption"}, 400, "parse_exception", "[input_output] property isn't a map or list of maps"),
        (
            {"input_output": [{"input_field": "a", "output_field": "x"}, {"input_field": "a", "output_field": "y"}]},
            400,
            "parse_exception",
            "[input_field] names must be unique but [a] is repeated",
        ),
        (
            {
                "input_output": {"input_field": "a", "output_field": "b"},
                "inference_config": {"text_embedding": {"results_field": "r"}},
            },
            400,
            "parse_exception",
            "The [inference_config.results_field] setting is incompatible with using [input_output]. Prefer to "
            "use the [input_output.output_field] option to specify where to write the inference results to.",
        ),
        (
            {"inference_config": {"text_embedding": {}, "ner": {}}},
            400,
            "status_exception",
            "inference_config must be an object with one inference type mapped to an object.",
        ),
        (
            {"inference_config": {"embedding": {}}},
            400,
            "status_exception",
            "unrecognized inference configuration type [embedding]. Supported types [classification, regression, "
            "fill_mask, ner, pass_through, question_answering, text_classification, text_embedding, "
            "text_expansion, text_similarity, zero_shot_classification]",
        ),
    ],
)
def test_factory_validation(
    escluster: Handle, inference: dict[str, Any], status: int, error_type: str, reason: str
) -> None:
    pipeline = {"processors": [{"inference": {"model_id": "tiny", **inference}}]}
    assert error_of(call(escluster.url, "PUT", "/_ingest/pipeline/p", pipeline)) == (status, error_type, reason)
