"""The trained-model APIs of the test cluster: validation rules, status codes and error types as ES has them.

These tests call :class:`MLStore.handle` directly (the HTTP layer only renders what it returns) with a
tiny TorchScript model scripted here, so they run in well under a second each.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.escluster.errors import ESError
from tests.escluster.ml import MLStore
from tests.escluster.tests.scripted_model import DIMS, DirectML, definition_part, mean_embedding

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "dog", "cat", "snow", "##s", "собака", "猫"]


@pytest.fixture(scope="module")
def definition() -> bytes:
    """The shared scripted model over this file's vocabulary, table rows ``(i * DIMS + d) / 10``."""
    return mean_embedding(VOCAB, bias=0.0)


def expected_embedding(token_ids: list[int]) -> list[float]:
    rows = [[(i * DIMS + d) / 10.0 for d in range(DIMS)] for i in token_ids]
    return [sum(r[d] for r in rows) / len(rows) for d in range(DIMS)]


class Cluster(DirectML):
    """The ML store with a settable license, ML node count and ML memory."""

    def __init__(self) -> None:
        self.license = "trial"
        self.nodes = 1
        self.memory = 8 << 30
        self.ml = MLStore(
            license_type=lambda: self.license,
            ml_nodes=lambda: self.nodes,
            ml_memory_bytes=lambda: self.memory,
        )


def config(task: str = "text_embedding", **tokenization: Any) -> dict[str, Any]:
    return {
        "description": "tiny",
        "model_type": "pytorch",
        "input": {"field_names": ["text_field"]},
        "inference_config": {task: {"tokenization": {"bert": {"max_sequence_length": 16, **tokenization}}}},
        "metadata": {"per_deployment_memory_bytes": 1000, "per_allocation_memory_bytes": 1000},
    }


def upload(c: Cluster, model_id: str, data: bytes, *, parts: int = 2, vocab: bool = True, **cfg: Any) -> None:
    c("PUT", f"trained_models/{model_id}", config(**cfg))
    size = -(-len(data) // parts)
    for i in range(parts):
        chunk = data[i * size : (i + 1) * size]
        c("PUT", f"trained_models/{model_id}/definition/{i}", definition_part(chunk, len(data), parts))
    if vocab:
        c("PUT", f"trained_models/{model_id}/vocabulary", {"vocabulary": VOCAB})


@pytest.fixture
def c() -> Cluster:
    return Cluster()


@pytest.fixture
def deployed(c: Cluster, definition: bytes) -> Cluster:
    upload(c, "tiny", definition)
    c("POST", "trained_models/tiny/deployment/_start", wait_for="started")
    return c


# ------------------------------------------------------------------------------------------ inference
def test_infer_tokenizes_with_the_vocabulary_and_runs_the_model(deployed: Cluster) -> None:
    out = deployed(
        "POST", "trained_models/tiny/_infer", {"docs": [{"text_field": "dogs"}, {"text_field": "猫 x"}]}
    )
    first, second = out["inference_results"]
    # [CLS] dog ##s [SEP] and [CLS] 猫 [UNK] [SEP]: padding must not change the mean
    assert first["predicted_value"] == pytest.approx(expected_embedding([2, 4, 7, 3]))
    assert second["predicted_value"] == pytest.approx(expected_embedding([2, 9, 1, 3]))


def test_infer_for_ingest_and_search_returns_the_same_vectors(deployed: Cluster) -> None:
    vectors = deployed.ml.infer("tiny", ["dog snow", "собака"])
    assert vectors[0] == pytest.approx(expected_embedding([2, 4, 6, 3]))
    assert vectors[1] == pytest.approx(expected_embedding([2, 8, 3]))


def test_sequence_is_truncated_to_max_sequence_length(c: Cluster, definition: bytes) -> None:
    upload(c, "short", definition, max_sequence_length=4)
    c("POST", "trained_models/short/deployment/_start")
    out = c.ml.infer("short", ["dog cat snow dog"])
    assert out[0] == pytest.approx(expected_embedding([2, 4, 5, 3]))


def test_truncate_none_rejects_long_input(c: Cluster, definition: bytes) -> None:
    upload(c, "strict", definition, max_sequence_length=3, truncate="none")
    c("POST", "trained_models/strict/deployment/_start")
    err = c.error("POST", "trained_models/strict/_infer", {"docs": [{"text_field": "dog cat snow"}]})
    assert (err.status, err.type) == (400, "status_exception")
    assert "exceeds the maximum sequence length [3]" in err.reason


def test_deployment_id_and_deprecated_infer_endpoint(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    c("POST", "trained_models/tiny/deployment/_start", deployment_id="for-search")
    out = c("POST", "trained_models/for-search/deployment/_infer", {"docs": [{"text_field": "dog"}]})
    assert out["predicted_value"] == pytest.approx(expected_embedding([2, 4, 3]))
    assert c.ml.infer("tiny", ["dog"]) == c.ml.infer("for-search", ["dog"])


def test_infer_unknown_model_is_404(c: Cluster) -> None:
    err = c.error("POST", "trained_models/nope/_infer", {"docs": [{"text_field": "x"}]})
    assert (err.status, err.type, err.reason) == (
        404,
        "resource_not_found_exception",
        "Could not find trained model [nope]",
    )
    with pytest.raises(ESError) as info:
        c.ml.infer("nope", ["x"])
    assert info.value.status == 404


def test_infer_not_deployed_is_409(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    err = c.error("POST", "trained_models/tiny/_infer", {"docs": [{"text_field": "x"}]})
    assert (err.status, err.type) == (409, "status_exception")
    # Text inputs (input_output processors, query_vector_builder) take the coordinated path: 404 there
    # (TransportCoordinatedInferenceAction.forNlp); tests/escluster/tests/test_inference_fidelity.py pins both.
    with pytest.raises(ESError) as info:
        c.ml.infer("tiny", ["x"])
    assert info.value.status == 404


def test_infer_missing_input_field_is_400(deployed: Cluster) -> None:
    err = deployed.error("POST", "trained_models/tiny/_infer", {"docs": [{"other": "x"}]})
    assert err.status == 400
    assert "Input field [text_field] does not exist" in err.reason


# ------------------------------------------------------------------------------------------- licenses
@pytest.mark.parametrize("action", ["put", "definition", "vocabulary", "start", "infer", "ingest"])
def test_basic_license_forbids_uploading_starting_and_running(
    c: Cluster, definition: bytes, action: str
) -> None:
    upload(c, "tiny", definition)
    c("POST", "trained_models/tiny/deployment/_start")
    c.license = "basic"
    calls = {
        "put": lambda: c("PUT", "trained_models/other", config()),
        "definition": lambda: c(
            "PUT",
            "trained_models/tiny/definition/0",
            {"definition": "AAAA", "total_definition_length": 3, "total_parts": 1},
        ),
        "vocabulary": lambda: c("PUT", "trained_models/tiny/vocabulary", {"vocabulary": VOCAB}),
        "start": lambda: c("POST", "trained_models/tiny/deployment/_start", deployment_id="two"),
        "infer": lambda: c("POST", "trained_models/tiny/_infer", {"docs": [{"text_field": "dog"}]}),
        "ingest": lambda: c.ml.infer("tiny", ["dog"]),
    }
    with pytest.raises(ESError) as info:
        calls[action]()
    assert (info.value.status, info.value.type) == (403, "security_exception")
    assert info.value.reason == "current license is non-compliant for [ml]"


def test_basic_license_still_reads_stops_and_deletes(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    c("POST", "trained_models/tiny/deployment/_start")
    c.license = "basic"
    assert c("GET", "info")["upgrade_mode"] is False
    assert c("GET", "trained_models/tiny")["count"] == 1
    assert c("GET", "trained_models/tiny/_stats")["count"] == 1
    assert c("POST", "trained_models/tiny/deployment/_stop") == {"stopped": True}
    assert c("DELETE", "trained_models/tiny") == {"acknowledged": True}


# ------------------------------------------------------------------------------------- put and get
@pytest.mark.parametrize("model_id", ["Upper", "-dash", "dash-", "under_", "sp ace", "x" * 65, "a.b."])
def test_invalid_model_ids_are_rejected(c: Cluster, model_id: str) -> None:
    err = c.error("PUT", f"trained_models/{model_id}", config())
    assert (err.status, err.type) == (400, "action_request_validation_exception")
    assert err.reason.startswith("Validation Failed: 1: Invalid model_id;")


@pytest.mark.parametrize(
    "model_id", ["a", "a.b-c_d9", "sentence-transformers__clip-vit-b-32-multilingual-v1", "x" * 64]
)
def test_valid_model_ids_are_accepted(c: Cluster, model_id: str) -> None:
    assert c("PUT", f"trained_models/{model_id}", config())["model_id"] == model_id


def test_putting_an_existing_model_is_400(c: Cluster) -> None:
    c("PUT", "trained_models/tiny", config())
    err = c.error("PUT", "trained_models/tiny", config())
    assert (err.status, err.type) == (400, "resource_already_exists_exception")


def test_unknown_config_field_is_a_parse_error(c: Cluster) -> None:
    err = c.error("PUT", "trained_models/tiny", {**config(), "surprise": 1})
    assert (err.status, err.type) == (400, "x_content_parse_exception")


def test_get_shapes_and_expressions(c: Cluster) -> None:
    c("PUT", "trained_models/b-model", config())
    c("PUT", "trained_models/a-model", config())
    out = c("GET", "trained_models/a-model")
    model = out["trained_model_configs"][0]
    assert out["count"] == 1
    assert model["model_type"] == "pytorch"
    assert model["inference_config"]["text_embedding"]["tokenization"]["bert"] == {
        "max_sequence_length": 16,
        "do_lower_case": False,
        "with_special_tokens": True,
        "truncate": "first",
        "span": -1,
    }
    assert {"model_id", "input", "metadata", "description", "create_time", "version", "tags"} <= set(model)
    # the built-in language identification model is always there, as in ES
    assert [m["model_id"] for m in c("GET", "trained_models")["trained_model_configs"]] == [
        "a-model",
        "b-model",
        "lang_ident_model_1",
    ]
    assert c("GET", "trained_models/_all")["count"] == 3
    assert c("GET", "trained_models/*-model")["count"] == 2
    assert c("GET", "trained_models/a-model,b-model")["count"] == 2
    assert c("GET", "trained_models/zz*")["count"] == 0
    err = c.error("GET", "trained_models/zz*", allow_no_match="false")
    assert (err.status, err.type) == (404, "resource_not_found_exception")
    err = c.error("GET", "trained_models/missing")
    assert (err.status, err.type, err.reason) == (
        404,
        "resource_not_found_exception",
        "Could not find trained model [missing]",
    )


def test_definition_status_and_definition_include(c: Cluster, definition: bytes) -> None:
    c("PUT", "trained_models/tiny", config())
    assert (
        c("GET", "trained_models/tiny", include="definition_status")["trained_model_configs"][0][
            "fully_defined"
        ]
        is False
    )
    upload(c, "full", definition)
    out = c("GET", "trained_models/full", include="definition_status")["trained_model_configs"][0]
    assert out["fully_defined"] is True
    assert out["model_size_bytes"] == len(definition)
    err = c.error("GET", "trained_models/full", include="definition")
    assert err.status == 400 and "does not support retrieving the definition" in err.reason


# ------------------------------------------------------------------------------------ definition parts
def test_same_part_twice_is_400(c: Cluster) -> None:
    c("PUT", "trained_models/tiny", config())
    part = {"definition": "AAAA", "total_definition_length": 6, "total_parts": 2}
    c("PUT", "trained_models/tiny/definition/0", part)
    err = c.error("PUT", "trained_models/tiny/definition/0", part)
    assert (err.status, err.type) == (400, "resource_already_exists_exception")


@pytest.mark.parametrize(
    ("part", "body", "message"),
    [
        (2, {"total_definition_length": 3, "total_parts": 2}, "[part] must be less than total_parts"),
        (0, {"total_definition_length": 3, "total_parts": 0}, "[total_parts] must be greater than 0"),
        (
            0,
            {"total_definition_length": 0, "total_parts": 1},
            "[total_definition_length] must be greater than 0",
        ),
        (-1, {"total_definition_length": 3, "total_parts": 1}, "[part] must be greater or equal to 0"),
    ],
)
def test_definition_part_validation(c: Cluster, part: int, body: dict[str, int], message: str) -> None:
    c("PUT", "trained_models/tiny", config())
    err = c.error("PUT", f"trained_models/tiny/definition/{part}", {"definition": "AAAA", **body})
    assert (err.status, err.type) == (400, "action_request_validation_exception")
    assert message in err.reason


def test_parts_for_an_unknown_model_are_404(c: Cluster) -> None:
    err = c.error(
        "PUT",
        "trained_models/nope/definition/0",
        {"definition": "AAAA", "total_definition_length": 3, "total_parts": 1},
    )
    assert (err.status, err.type) == (404, "resource_not_found_exception")
    err = c.error("PUT", "trained_models/nope/vocabulary", {"vocabulary": VOCAB})
    assert (err.status, err.type) == (404, "resource_not_found_exception")


# ---------------------------------------------------------------------------------------- start rules
def test_start_without_definition_is_404(c: Cluster) -> None:
    c("PUT", "trained_models/tiny", config())
    err = c.error("POST", "trained_models/tiny/deployment/_start")
    assert (err.status, err.type) == (404, "resource_not_found_exception")
    assert err.reason == "Could not find trained model definition [tiny]"


def test_start_with_missing_part_is_truncated(c: Cluster, definition: bytes) -> None:
    c("PUT", "trained_models/tiny", config())
    c("PUT", "trained_models/tiny/definition/0", definition_part(definition[:100], len(definition), 2))
    c("PUT", "trained_models/tiny/vocabulary", {"vocabulary": VOCAB})
    err = c.error("POST", "trained_models/tiny/deployment/_start")
    assert (err.status, err.type) == (400, "status_exception")
    assert "Model definition truncated" in err.reason


def test_start_with_lengths_not_adding_up_is_truncated(c: Cluster, definition: bytes) -> None:
    c("PUT", "trained_models/tiny", config())
    c("PUT", "trained_models/tiny/definition/0", definition_part(definition, len(definition) + 2, 1))
    c("PUT", "trained_models/tiny/vocabulary", {"vocabulary": VOCAB})
    err = c.error("POST", "trained_models/tiny/deployment/_start")
    assert (err.status, err.type) == (400, "status_exception")


def test_broken_model_never_becomes_a_started_deployment(c: Cluster) -> None:
    # TransportStartTrainedModelDeploymentAction: a failed route makes the start 500 and
    # deleteFailedDeployment removes the assignment; with wait_for=starting the answer comes first.
    upload(c, "broken", b"this is not a TorchScript archive", parts=1)
    err = c.error("POST", "trained_models/broken/deployment/_start")
    assert (err.status, err.type) == (500, "status_exception")
    assert err.reason.startswith(
        "Could not start trained model deployment, the following nodes failed with errors [{escluster-node-0="
    )
    assert "deployment_stats" not in c("GET", "trained_models/broken/_stats")["trained_model_stats"][0]
    out = c("POST", "trained_models/broken/deployment/_start", wait_for="starting")
    assert out["assignment"]["assignment_state"] == "starting"
    stats = c("GET", "trained_models/broken/_stats")["trained_model_stats"][0]["deployment_stats"]
    assert stats["state"] == "failed"
    assert stats["nodes"][0]["routing_state"]["routing_state"] == "failed"
    assert "inference_count" not in stats["nodes"][0]
    assert c.error("POST", "trained_models/broken/_infer", {"docs": [{"text_field": "x"}]}).status == 409


def test_second_deployment_with_same_id_is_400(deployed: Cluster) -> None:
    err = deployed.error("POST", "trained_models/tiny/deployment/_start")
    assert (err.status, err.type) == (400, "status_exception")
    assert "existing deployment with the same id [tiny]" in err.reason


@pytest.mark.parametrize(
    ("params", "body", "message"),
    [
        (
            {"threads_per_allocation": 3},
            None,
            "[threads_per_allocation] must be a power of 2 less than or equal to 32",
        ),
        (
            {"threads_per_allocation": 64},
            None,
            "[threads_per_allocation] must be a power of 2 less than or equal to 32",
        ),
        ({"number_of_allocations": 0}, None, "[number_of_allocations] must be a positive integer"),
        (
            {"priority": "low", "number_of_allocations": 3},
            None,
            "[number_of_allocations] must be 1 when [priority] is low",
        ),
        (
            {"priority": "low", "threads_per_allocation": 4},
            None,
            "[threads_per_allocation] must be 1 when [priority] is low",
        ),
        (
            {"number_of_allocations": 2},
            {"adaptive_allocations": {"enabled": True, "min_number_of_allocations": 1}},
            "[number_of_allocations] cannot be set if adaptive allocations is enabled",
        ),
        ({"queue_capacity": 0}, None, "[queue_capacity] must be a positive integer"),
    ],
)
def test_start_parameter_validation(
    c: Cluster, definition: bytes, params: dict[str, Any], body: Any, message: str
) -> None:
    upload(c, "tiny", definition)
    err = c.error("POST", "trained_models/tiny/deployment/_start", body, **params)
    assert (err.status, err.type) == (400, "action_request_validation_exception")
    assert message in err.reason


def test_start_parameters_show_in_assignment_and_stats(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    out = c(
        "POST",
        "trained_models/tiny/deployment/_start",
        threads_per_allocation=2,
        number_of_allocations=3,
        queue_capacity=50,
        wait_for="fully_allocated",
    )
    assert out["assignment"]["assignment_state"] == "started"
    assert out["assignment"]["task_parameters"]["threads_per_allocation"] == 2
    stats = c("GET", "trained_models/tiny/_stats")["trained_model_stats"][0]["deployment_stats"]
    assert {
        k: stats[k]
        for k in (
            "model_id",
            "deployment_id",
            "state",
            "threads_per_allocation",
            "number_of_allocations",
            "queue_capacity",
            "priority",
        )
    } == {
        "model_id": "tiny",
        "deployment_id": "tiny",
        "state": "started",
        "threads_per_allocation": 2,
        "number_of_allocations": 3,
        "queue_capacity": 50,
        "priority": "normal",
    }
    assert stats["allocation_status"] == {
        "allocation_count": 3,
        "target_allocation_count": 3,
        "state": "fully_allocated",
    }
    assert stats["nodes"][0]["routing_state"]["routing_state"] == "started"


def test_low_priority_means_one_allocation_one_thread(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    params = c("POST", "trained_models/tiny/deployment/_start", priority="low")["assignment"][
        "task_parameters"
    ]
    assert (params["priority"], params["number_of_allocations"], params["threads_per_allocation"]) == (
        "low",
        1,
        1,
    )


def test_adaptive_allocations_report_min_allocations(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    adaptive = {"enabled": True, "min_number_of_allocations": 2, "max_number_of_allocations": 4}
    c("POST", "trained_models/tiny/deployment/_start", {"adaptive_allocations": adaptive})
    stats = c("GET", "trained_models/tiny/_stats")["trained_model_stats"][0]["deployment_stats"]
    assert stats["number_of_allocations"] == 2
    assert stats["adaptive_allocations"] == adaptive


def test_no_ml_nodes_cannot_start(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    c.nodes = 0
    err = c.error("POST", "trained_models/tiny/deployment/_start", wait_for="started")
    assert (err.status, err.type) == (429, "status_exception")
    assert err.reason == "Could not start deployment because no ML nodes with sufficient capacity were found"
    assert "deployment_stats" not in c("GET", "trained_models/tiny/_stats")["trained_model_stats"][0]


def test_model_too_large_for_ml_memory_cannot_start(c: Cluster, definition: bytes) -> None:
    upload(c, "tiny", definition)
    c.memory = 100 << 20  # below the 240 MB every deployment needs
    err = c.error("POST", "trained_models/tiny/deployment/_start")
    assert (err.status, err.type) == (429, "status_exception")
    assert "insufficient available memory" in err.extra["caused_by"]["reason"]


# ---------------------------------------------------------------------------------- stop and delete
def test_delete_deployed_model_needs_force(deployed: Cluster) -> None:
    err = deployed.error("DELETE", "trained_models/tiny")
    assert (err.status, err.type) == (409, "status_exception")
    assert "as it is currently deployed" in err.reason
    assert deployed("DELETE", "trained_models/tiny", force="true") == {"acknowledged": True}
    assert deployed.error("GET", "trained_models/tiny").status == 404


def test_stop_then_infer_is_409_and_stop_unknown(deployed: Cluster) -> None:
    assert deployed("POST", "trained_models/tiny/deployment/_stop") == {"stopped": True}
    assert deployed.error("POST", "trained_models/tiny/_infer", {"docs": [{"text_field": "x"}]}).status == 409
    assert deployed("POST", "trained_models/tiny/deployment/_stop") == {"stopped": True}
    err = deployed.error("POST", "trained_models/gone/deployment/_stop", allow_no_match="false")
    assert (err.status, err.type) == (404, "resource_not_found_exception")


def test_delete_unknown_model_is_404(c: Cluster) -> None:
    err = c.error("DELETE", "trained_models/nope")
    assert (err.status, err.type) == (404, "resource_not_found_exception")


def test_update_deployment(deployed: Cluster) -> None:
    out = deployed("POST", "trained_models/tiny/deployment/_update", {"number_of_allocations": 2})
    assert out["assignment"]["task_parameters"]["number_of_allocations"] == 2
    err = deployed.error("POST", "trained_models/tiny/deployment/_update", {"number_of_allocations": 0})
    assert (err.status, err.type) == (400, "action_request_validation_exception")


# ------------------------------------------------------------------------------------- info and stats
def test_info_with_and_without_ml_nodes(c: Cluster) -> None:
    info = c("GET", "info")
    assert info["limits"]["total_ml_memory"] == "8192mb"
    assert info["defaults"]["anomaly_detectors"]["model_memory_limit"] == "1gb"
    assert set(info["native_code"]) == {"version", "build_hash"}
    c.nodes = 0
    limits = c("GET", "info")["limits"]
    assert limits["total_ml_memory"] == "0mb"
    assert "effective_max_model_memory_limit" not in limits
    assert "max_single_ml_node_processors" not in limits


def test_stats_for_all_and_counts(deployed: Cluster) -> None:
    deployed.ml.infer("tiny", ["dog", "cat"])
    out = deployed("GET", "trained_models/_stats")
    assert out["count"] == 2
    tiny = next(s for s in out["trained_model_stats"] if s["model_id"] == "tiny")
    assert tiny["deployment_stats"]["nodes"][0]["inference_count"] == 2
    assert tiny["model_size_stats"]["model_size_bytes"] > 0
    err = deployed.error("GET", "trained_models/missing/_stats")
    assert err.status == 404


# ------------------------------------------------------------------------------- pass_through (ES IT)
@pytest.fixture(scope="module")
def ones_definition() -> bytes:
    """Like ES's own "SuperSimple" test model: ``forward`` returns ones of shape [batch, 2]."""
    import torch

    class Ones(torch.nn.Module):
        def forward(
            self, input_ids: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor
        ) -> torch.Tensor:
            return torch.ones((input_ids.size(0), 2), dtype=torch.float64)

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Ones()), buffer)
    return buffer.getvalue()


def test_pass_through_model_with_default_input_field(c: Cluster, ones_definition: bytes) -> None:
    body = {
        "description": "simple model for testing",
        "model_type": "pytorch",
        "inference_config": {"pass_through": {"tokenization": {"bert": {"with_special_tokens": False}}}},
    }
    c("PUT", "trained_models/simple", body)
    c("PUT", "trained_models/simple/definition/0", definition_part(ones_definition, len(ones_definition), 1))
    c("PUT", "trained_models/simple/vocabulary", {"vocabulary": ["[PAD]", "[UNK]", "my", "words"]})
    c("POST", "trained_models/simple/deployment/_start", cache_size="10kb", wait_for="started")
    assert c("POST", "trained_models/simple/deployment/_infer", {"docs": [{"input": "my words"}]}) == {
        "predicted_value": [[1.0, 1.0]]
    }
    out = c("POST", "trained_models/simple/_infer", {"docs": [{"input": "my words"}, {"input": "words"}]})
    assert out == {
        "inference_results": [{"predicted_value": [[1.0, 1.0]]}, {"predicted_value": [[1.0, 1.0]]}]
    }
    node = c("GET", "trained_models/simple/_stats")["trained_model_stats"][0]["deployment_stats"]["nodes"][0]
    assert (node["inference_count"], node["inference_cache_hit_count"]) == (3, 1)
    assert c("POST", "trained_models/simple/deployment/cache/_clear") == {"cleared": True}
