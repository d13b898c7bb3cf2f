"""Trained-model lifecycle of the test cluster pinned to Elasticsearch 9.x source: status, error type, reason.

Each test names the ES class it follows (x-pack/plugin/ml/src/main/java/org/elasticsearch/xpack/ml/action/
unless said otherwise). The store is called directly, with the ingest pipelines and the clock settable, so
no test waits on time; the last tests go over HTTP with the official client against the whole cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from tests.escluster.ml import MLStore
from tests.escluster.tests.scripted_model import VOCAB, DirectML, definition_part, deploy_with_client, mean_embedding

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms
MINUTE = 60_000


@pytest.fixture(scope="module")
def definition() -> bytes:
    return mean_embedding()


class Store(DirectML):
    """The ML store with settable license, ingest pipelines and clock."""

    def __init__(self) -> None:
        self.license = "trial"
        self.pipelines: dict[str, Any] = {}
        self.now = T0
        self.ml = MLStore(
            license_type=lambda: self.license,
            ml_nodes=lambda: 1,
            ml_memory_bytes=lambda: 8 << 30,
            pipelines=lambda: self.pipelines,
            clock=lambda: self.now,
        )

    def put_model(self, model_id: str) -> None:
        self(
            "PUT",
            f"trained_models/{model_id}",
            {
                "model_type": "pytorch",
                "input": {"field_names": ["text_field"]},
                "inference_config": {"text_embedding": {"tokenization": {"bert": {"max_sequence_length": 16}}}},
            },
        )

    def part(self, model_id: str, num: int, data: bytes, total_length: int, total_parts: int) -> Any:
        body = definition_part(data, total_length, total_parts)
        return self("PUT", f"trained_models/{model_id}/definition/{num}", body)

    def upload(self, model_id: str, data: bytes) -> None:
        self.put_model(model_id)
        half = len(data) // 2
        self.part(model_id, 0, data[:half], len(data), 2)
        self.part(model_id, 1, data[half:], len(data), 2)
        self("PUT", f"trained_models/{model_id}/vocabulary", {"vocabulary": VOCAB})

    def stats(self, some_id: str) -> list[dict[str, Any]]:
        return list(self("GET", f"trained_models/{some_id}/_stats")["trained_model_stats"])


def inference_pipeline(model_id: str) -> dict[str, Any]:
    return {
        "processors": [
            {"inference": {"model_id": model_id, "input_output": [{"input_field": "c", "output_field": "v"}]}}
        ]
    }


@pytest.fixture
def s() -> Store:
    return Store()


@pytest.fixture
def deployed(s: Store, definition: bytes) -> Store:
    s.upload("tiny", definition)
    s("POST", "trained_models/tiny/deployment/_start")
    return s


# --------------------------------------------------------------- stop (TransportStopTrainedModelDeploymentAction)
def test_stop_of_a_deployment_that_a_pipeline_uses_is_409_until_forced(deployed: Store) -> None:
    deployed.pipelines["captions"] = inference_pipeline("tiny")
    err = deployed.error("POST", "trained_models/tiny/deployment/_stop")
    assert (err.status, err.type) == (409, "status_exception")
    assert err.reason == (
        "Cannot stop deployment [tiny] as it is referenced by ingest processors; use force to stop the deployment"
    )
    assert deployed.stats("tiny")[0]["deployment_stats"]["state"] == "started"  # nothing was stopped
    assert deployed("POST", "trained_models/tiny/deployment/_stop", force="true") == {"stopped": True}
    assert "deployment_stats" not in deployed.stats("tiny")[0]


@pytest.mark.parametrize(
    "processors",
    [
        [{"foreach": {"field": "xs", "processor": {"inference": {"model_id": "tiny"}}}}],
        [{"set": {"field": "a", "value": 1, "on_failure": [{"inference": {"model_id": "tiny"}}]}}],
    ],
    ids=["inside foreach", "in a processor's on_failure"],
)
def test_nested_inference_processors_also_block_the_stop(deployed: Store, processors: list[Any]) -> None:
    # InferenceProcessorInfoExtractor.addModelsAndPipelines recurses into foreach and on_failure
    deployed.pipelines["nested"] = {"processors": processors}
    assert deployed.error("POST", "trained_models/tiny/deployment/_stop").status == 409


def test_a_pipeline_level_on_failure_is_not_searched(deployed: Store) -> None:
    deployed.pipelines["p"] = {"processors": [], "on_failure": [{"inference": {"model_id": "tiny"}}]}
    assert deployed("POST", "trained_models/tiny/deployment/_stop") == {"stopped": True}


def test_stop_looks_up_deployment_ids_only(s: Store, definition: bytes) -> None:
    s.upload("tiny", definition)
    s("POST", "trained_models/tiny/deployment/_start", deployment_id="tiny-search")
    # The model id is not a deployment id: "stopped" (allow_no_match defaults to true), nothing stopped.
    assert s("POST", "trained_models/tiny/deployment/_stop") == {"stopped": True}
    assert s.stats("tiny")[0]["deployment_stats"]["deployment_id"] == "tiny-search"
    err = s.error("POST", "trained_models/tiny/deployment/_stop", allow_no_match="false")
    assert (err.status, err.type, err.reason) == (
        404,
        "resource_not_found_exception",
        "No known model deployment with id [tiny]",
    )
    # no wildcard expansion either
    assert s("POST", "trained_models/_all/deployment/_stop") == {"stopped": True}
    assert s("POST", "trained_models/tiny-*/deployment/_stop") == {"stopped": True}
    assert s.stats("tiny")[0]["deployment_stats"]["state"] == "started"
    assert s("POST", "trained_models/tiny-search/deployment/_stop") == {"stopped": True}
    assert "deployment_stats" not in s.stats("tiny")[0]


def test_a_pipeline_naming_the_model_does_not_block_a_deployment_under_another_id(s: Store, definition: bytes) -> None:
    # referencedModels.contains(request.getId()): the check is on the deployment id
    s.upload("tiny", definition)
    s("POST", "trained_models/tiny/deployment/_start", deployment_id="tiny-search")
    s.pipelines["p"] = inference_pipeline("tiny")
    assert s("POST", "trained_models/tiny-search/deployment/_stop") == {"stopped": True}


def test_stop_of_a_model_that_was_never_started(s: Store) -> None:
    s.put_model("tiny")
    assert s("POST", "trained_models/tiny/deployment/_stop") == {"stopped": True}
    err = s.error("POST", "trained_models/tiny/deployment/_stop", {"allow_no_match": False})
    assert (err.status, err.reason) == (404, "No known model deployment with id [tiny]")


@pytest.mark.parametrize(
    ("body", "status", "error_type", "reason"),
    [
        (
            {"timeout": "1s"},
            400,
            "x_content_parse_exception",
            "[1:2] [cluster:admin/xpack/ml/trained_models/deployment/stop] unknown field [timeout]",
        ),
        (
            {"model_id": "other"},
            400,
            "illegal_argument_exception",
            "Inconsistent model_id; 'other' specified in the body differs from 'tiny' specified as a URL argument",
        ),
    ],
)
def test_stop_body_is_parsed_as_es_parses_it(
    deployed: Store, body: dict[str, Any], status: int, error_type: str, reason: str
) -> None:
    # StopTrainedModelDeploymentAction.Request.parseRequest
    err = deployed.error("POST", "trained_models/tiny/deployment/_stop", body)
    assert (err.status, err.type, err.reason) == (status, error_type, reason)


@pytest.mark.parametrize("force", [True, "true"])
def test_force_in_the_body_stops_a_referenced_deployment(deployed: Store, force: Any) -> None:
    deployed.pipelines["p"] = inference_pipeline("tiny")
    assert deployed.error("POST", "trained_models/tiny/deployment/_stop", {"force": False}).status == 409
    assert deployed("POST", "trained_models/tiny/deployment/_stop", {"force": force}) == {"stopped": True}


def test_a_part_number_beyond_an_int_is_a_parse_error(s: Store) -> None:
    s.put_model("tiny")
    body = {"definition": "AAAA", "total_definition_length": 3, "total_parts": 1}
    err = s.error("PUT", "trained_models/tiny/definition/4294967296", body)
    assert (err.status, err.type, err.reason) == (
        400,
        "illegal_argument_exception",
        "Failed to parse int parameter [part] with value [4294967296]",
    )


def test_stop_needs_no_ml_license(deployed: Store) -> None:
    deployed.license = "basic"
    assert deployed("POST", "trained_models/tiny/deployment/_stop") == {"stopped": True}


# ------------------------------------------------------------------ delete (TransportDeleteTrainedModelAction)
def test_delete_of_a_model_a_pipeline_uses_is_409_until_forced(s: Store) -> None:
    s.put_model("tiny")
    s.pipelines["captions"] = inference_pipeline("tiny")
    err = s.error("DELETE", "trained_models/tiny")
    assert (err.status, err.type) == (409, "status_exception")
    assert err.reason == (
        "Cannot delete model [tiny] as it is still referenced by ingest processors; use force to delete the model"
    )
    assert s("DELETE", "trained_models/tiny", force="true") == {"acknowledged": True}
    assert s.error("GET", "trained_models/tiny").status == 404


def test_the_pipeline_check_comes_before_the_model_lookup(s: Store) -> None:
    s.pipelines["p"] = inference_pipeline("ghost")
    err = s.error("DELETE", "trained_models/ghost")
    assert (err.status, err.type) == (409, "status_exception")
    err = s.error("DELETE", "trained_models/ghost", force="true")
    assert (err.status, err.type, err.reason) == (
        404,
        "resource_not_found_exception",
        "Could not find trained model [ghost]",
    )


def test_delete_of_a_deployed_model(deployed: Store) -> None:
    err = deployed.error("DELETE", "trained_models/tiny")
    assert (err.status, err.type, err.reason) == (
        409,
        "status_exception",
        "Cannot delete model [tiny] as it is currently deployed; use force to delete the model",
    )
    assert deployed("DELETE", "trained_models/tiny", force="true") == {"acknowledged": True}
    assert deployed.error("GET", "trained_models/tiny").status == 404
    # the forced delete stopped the deployment named like the model
    assert deployed.error("POST", "trained_models/tiny/deployment/_stop", allow_no_match="false").status == 404


def test_forced_delete_stops_only_the_deployment_named_like_the_model(s: Store, definition: bytes) -> None:
    # forceStopDeployment(request.getId()): the stop request carries the model id as the deployment id
    s.upload("tiny", definition)
    s("POST", "trained_models/tiny/deployment/_start", deployment_id="tiny-search")
    assert s.error("DELETE", "trained_models/tiny").status == 409
    assert s("DELETE", "trained_models/tiny", force="true") == {"acknowledged": True}
    assert s.error("GET", "trained_models/tiny").status == 404
    # the deployment under its own id was not stopped
    assert s("POST", "trained_models/tiny-search/deployment/_stop", allow_no_match="false") == {"stopped": True}


@pytest.mark.parametrize("model_id", ["*", "_all", "tiny,other"])
def test_delete_takes_one_literal_id(s: Store, model_id: str) -> None:
    # TrainedModelProvider.deleteTrainedModel: a term query on model_id that deletes nothing
    s.put_model("tiny")
    err = s.error("DELETE", f"trained_models/{model_id}")
    assert (err.status, err.type, err.reason) == (
        404,
        "resource_not_found_exception",
        f"Could not find trained model [{model_id}]",
    )
    assert s("GET", "trained_models/tiny")["count"] == 1


def test_the_built_in_model_cannot_be_deleted(s: Store) -> None:
    err = s.error("DELETE", "trained_models/lang_ident_model_1")
    assert (err.status, err.type, err.reason) == (
        400,
        "status_exception",
        "Unable to delete model [lang_ident_model_1] as it is required by machine learning",
    )


# ------------------------------------------ definition parts (TransportPutTrainedModelDefinitionPartAction)
def test_the_same_part_twice(s: Store) -> None:
    # TrainedModelProvider.storeTrainedModelDefinitionDoc + Messages.INFERENCE_TRAINED_MODEL_DOC_EXISTS
    s.put_model("tiny")
    s.part("tiny", 0, b"abc", 6, 2)
    err = s.error(
        "PUT",
        "trained_models/tiny/definition/0",
        {"definition": "AAAA", "total_definition_length": 6, "total_parts": 2},
    )
    assert (err.status, err.type, err.reason) == (
        400,
        "resource_already_exists_exception",
        "Trained machine learning model chunked doc [tiny][0] already exists",
    )


def test_parts_disagreeing_on_the_total_length_cannot_be_deployed(s: Store, definition: bytes) -> None:
    # TransportStartTrainedModelDeploymentAction.step3VerifyModelPartsArePresent
    s.put_model("tiny")
    half = len(definition) // 2
    s.part("tiny", 0, definition[:half], len(definition), 2)
    s.part("tiny", 1, definition[half:], len(definition) + 5, 2)
    s("PUT", "trained_models/tiny/vocabulary", {"vocabulary": VOCAB})
    err = s.error("POST", "trained_models/tiny/deployment/_start")
    assert (err.status, err.type) == (400, "status_exception")
    assert err.reason.startswith(
        f"[tiny] [total_definition_length] must be the same in all model definition parts. The value "
        f"[{len(definition) + 5}] in model definition part [1] does not match the value [{len(definition)}] "
        "in part [0]. "
    )
    assert "deployment_stats" not in s.stats("tiny")[0]


def test_parts_disagreeing_only_on_total_parts_still_deploy(s: Store, definition: bytes) -> None:
    # ES sums the part lengths against total_definition_length; total_parts is not compared
    s.put_model("tiny")
    half = len(definition) // 2
    s.part("tiny", 0, definition[:half], len(definition), 2)
    s.part("tiny", 1, definition[half:], len(definition), 7)
    s("PUT", "trained_models/tiny/vocabulary", {"vocabulary": VOCAB})
    out = s("POST", "trained_models/tiny/deployment/_start")
    assert out["assignment"]["assignment_state"] == "started"


def test_part_index_out_of_range_and_missing_definition(s: Store) -> None:
    s.put_model("tiny")
    err = s.error(
        "PUT",
        "trained_models/tiny/definition/2",
        {"definition": "AAAA", "total_definition_length": 3, "total_parts": 2},
    )
    assert (err.status, err.type, err.reason) == (
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: [part] must be less than total_parts;",
    )
    # Request's constructor: ExceptionsHelper.requireNonNull(definition, "definition")
    err = s.error("PUT", "trained_models/tiny/definition/0", {"total_definition_length": 3, "total_parts": 1})
    assert (err.status, err.type, err.reason) == (400, "illegal_argument_exception", "[definition] must not be null.")


def test_part_validation_comes_before_the_license_check(s: Store) -> None:
    # TransportAction.execute validates the request before doExecute checks the license
    s.put_model("tiny")
    s.license = "basic"
    body = {"definition": "AAAA", "total_definition_length": 3, "total_parts": 1}
    assert s.error("PUT", "trained_models/tiny/definition/1", body).type == "action_request_validation_exception"
    assert s.error("PUT", "trained_models/tiny/definition/0", body).status == 403


# ------------------------------------------------------ start (TransportStartTrainedModelDeploymentAction)
def test_an_existing_deployment_id_is_refused_before_the_model_is_looked_up(deployed: Store) -> None:
    err = deployed.error("POST", "trained_models/nope/deployment/_start", deployment_id="tiny")
    assert (err.status, err.type, err.reason) == (
        400,
        "status_exception",
        "Could not start model deployment because an existing deployment with the same id [tiny] exist",
    )


def test_wait_for_values(s: Store, definition: bytes) -> None:
    # RestStartTrainedModelDeploymentAction: AllocationStatus.State.fromString (upper-cased valueOf)
    s.upload("tiny", definition)
    err = s.error("POST", "trained_models/tiny/deployment/_start", wait_for="ready")
    assert (err.status, err.type, err.reason) == (
        400,
        "illegal_argument_exception",
        "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.AllocationStatus.State.READY",
    )
    out = s("POST", "trained_models/tiny/deployment/_start", wait_for="FULLY_ALLOCATED")
    assert out["assignment"]["assignment_state"] == "started"


# ------------------------------------------------------- stats (AssignmentStats, GetTrainedModelsStatsAction)
def test_stats_before_any_inference(deployed: Store) -> None:
    entry = deployed.stats("tiny")[0]
    dep, node = entry["deployment_stats"], entry["deployment_stats"]["nodes"][0]
    # counters that are 0 are left out at deployment level; a started node reports inference_count 0
    for absent in ("inference_count", "error_count", "rejected_execution_count", "timeout_count"):
        assert absent not in dep
    assert node["inference_count"] == 0
    for absent in ("average_inference_time_ms", "last_access", "error_count"):
        assert absent not in node
    assert (dep["peak_throughput_per_minute"], node["throughput_last_minute"]) == (0, 0)
    assert dep["start_time"] == T0
    assert entry["inference_stats"]["inference_count"] == 0


def test_stats_after_inferences_count_each_text_and_per_minute_peaks(deployed: Store) -> None:
    deployed.now = T0 + 5_000
    deployed.ml.infer("tiny", ["dog", "cat", "snow"])  # ingest and query_vector_builder go through here
    deployed.now = T0 + 20_000
    deployed("POST", "trained_models/tiny/_infer", {"docs": [{"text_field": "dog"}, {"text_field": "cat"}]})
    entry = deployed.stats("tiny")[0]
    dep, node = entry["deployment_stats"], entry["deployment_stats"]["nodes"][0]
    assert (dep["inference_count"], node["inference_count"]) == (5, 5)
    assert entry["inference_stats"]["inference_count"] == 5
    assert entry["inference_stats"]["failure_count"] == 0
    assert node["last_access"] == T0 + 20_000
    assert node["average_inference_time_ms"] >= 0
    # PyTorchResultProcessor: throughput is counted per whole minute since the start
    assert (dep["peak_throughput_per_minute"], node["throughput_last_minute"]) == (0, 0)
    deployed.now = T0 + MINUTE + 1
    node = deployed.stats("tiny")[0]["deployment_stats"]["nodes"][0]
    assert (node["peak_throughput_per_minute"], node["throughput_last_minute"]) == (5, 5)
    assert "average_inference_time_ms_last_minute" in node
    deployed.now = T0 + 4 * MINUTE
    deployed.ml.infer("tiny", ["dog"])
    node = deployed.stats("tiny")[0]["deployment_stats"]["nodes"][0]
    assert (node["inference_count"], node["peak_throughput_per_minute"], node["throughput_last_minute"]) == (6, 5, 0)


def test_pipeline_count_and_stats_by_deployment_id(s: Store, definition: bytes) -> None:
    s.upload("tiny", definition)
    s("POST", "trained_models/tiny/deployment/_start", deployment_id="tiny-a")
    s("POST", "trained_models/tiny/deployment/_start", deployment_id="tiny-b")
    s.pipelines["by-model"] = inference_pipeline("tiny")
    s.pipelines["by-a-1"] = inference_pipeline("tiny-a")
    s.pipelines["by-a-2"] = inference_pipeline("tiny-a")
    # the model id matches both deployments; their pipelines are looked up by model id only
    by_model = s.stats("tiny")
    assert [(e["deployment_stats"]["deployment_id"], e["pipeline_count"]) for e in by_model] == [
        ("tiny-a", 1),
        ("tiny-b", 1),
    ]
    # a deployment id selects that deployment alone, with the pipelines that name it
    by_deployment = s.stats("tiny-a")
    assert [(e["deployment_stats"]["deployment_id"], e["pipeline_count"]) for e in by_deployment] == [("tiny-a", 2)]
    assert "ingest" not in by_deployment[0]  # per-pipeline ingest counters are not emulated


def test_an_undeployed_model_has_no_inference_stats(s: Store) -> None:
    s.put_model("tiny")
    entry = s.stats("tiny")[0]
    assert "inference_stats" not in entry and "deployment_stats" not in entry
    assert entry["pipeline_count"] == 0


# ------------------------------------------------------------------------- over HTTP with the official client
def test_undeploying_a_model_an_ingest_pipeline_uses(escluster: Any, definition: bytes) -> None:
    es = Elasticsearch(escluster.url)
    deploy_with_client(es, definition)
    es.ingest.put_pipeline(id="captions", processors=inference_pipeline("tiny")["processors"])
    for i, text in enumerate(["dog", "cat snow"]):
        es.index(index="docs", id=str(i), document={"c": text}, pipeline="captions")
    stats = es.ml.get_trained_models_stats(model_id="tiny")["trained_model_stats"][0]
    assert stats["deployment_stats"]["nodes"][0]["inference_count"] == 2
    assert stats["pipeline_count"] == 1

    with pytest.raises(ConflictError) as info:
        es.ml.stop_trained_model_deployment(model_id="tiny")
    assert info.value.meta.status == 409
    assert info.value.body["error"]["type"] == "status_exception"
    assert info.value.body["error"]["reason"] == (
        "Cannot stop deployment [tiny] as it is referenced by ingest processors; use force to stop the deployment"
    )
    with pytest.raises(ConflictError) as info:
        es.ml.delete_trained_model(model_id="tiny")
    assert "still referenced by ingest processors" in info.value.body["error"]["reason"]

    assert es.ml.stop_trained_model_deployment(model_id="tiny", force=True)["stopped"] is True
    es.ingest.delete_pipeline(id="captions")
    assert es.ml.delete_trained_model(model_id="tiny")["acknowledged"] is True
    with pytest.raises(NotFoundError):
        es.ml.stop_trained_model_deployment(model_id="tiny", allow_no_match=False)
