"""toolkit.textmodel: request builders, start options, parity maths, tracing, upload/start/parity."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from tests.models import tiny_text_model
from tests.models.text import build_tiny_text_model
from toolkit.cluster import make_client
from toolkit.errors import ModelError, NotFound, ParityError, ValidationError
from toolkit.settings import load_settings
from toolkit.textmodel import (
    StartOptions,
    compare,
    deployment,
    get_model,
    load_traced,
    parity,
    start,
    start_options,
    start_request,
    torch_warning,
    trace,
    upload,
    validate_id,
)
from toolkit.textmodel.requests import definition_part_request, delete_request, infer_request, stop_request
from toolkit.textmodel.source import dir_revision, resolve_source, st_max_seq_length, weight_bytes


def settings_with(**overrides):
    return load_settings(overrides=overrides, environ={})


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """The tiny dense model traced once for the module (tracing is the slow part)."""
    return trace(str(tiny_text_model()), tmp_path_factory.mktemp("traced"))


# -- pure request builders -----------------------------------------------------------------------


def test_start_request_fixed_allocations_are_query_parameters():
    req = start_request("m", StartOptions(deployment_id="d", number_of_allocations=2, threads_per_allocation=4,
                                          queue_capacity=100, priority="normal"))
    assert req.method == "POST" and req.path == "_ml/trained_models/m/deployment/_start"
    assert req.body is None
    assert dict(req.params) == {"number_of_allocations": 2, "deployment_id": "d", "threads_per_allocation": 4,
                                "queue_capacity": 100, "priority": "normal", "wait_for": "starting"}


def test_start_request_adaptive_goes_in_the_body_without_number_of_allocations():
    req = start_request("m", StartOptions(deployment_id="m", adaptive_min=0, adaptive_max=3))
    assert "number_of_allocations" not in req.params
    assert req.body == {"adaptive_allocations": {"enabled": True, "min_number_of_allocations": 0,
                                                 "max_number_of_allocations": 3}}


def test_definition_part_is_base64_of_the_chunk():
    req = definition_part_request("m", 3, b"\x00\x01abc", total_length=100, total_parts=20)
    assert req.path == "_ml/trained_models/m/definition/3"
    assert base64.b64decode(req.body["definition"]) == b"\x00\x01abc"
    assert req.body["total_definition_length"] == 100 and req.body["total_parts"] == 20


def test_stop_and_delete_send_force_only_when_asked():
    assert dict(stop_request("d").params) == {}
    assert stop_request("d", force=True).query_string == "force=true"
    assert delete_request("m", force=True).query_string == "force=true"


def test_infer_request_uses_text_field():
    assert infer_request("d", ["x", "y"]).body == {"docs": [{"text_field": "x"}, {"text_field": "y"}]}


# -- start options and ids -----------------------------------------------------------------------


def test_start_options_from_settings():
    opts = start_options(settings_with(**{"text_model.model_id": "m", "text_model.threads_per_allocation": 2,
                                          "text_model.number_of_allocations": 3}))
    assert (opts.deployment_id, opts.threads_per_allocation, opts.number_of_allocations) == ("m", 2, 3)
    assert not opts.adaptive


@pytest.mark.parametrize(("overrides", "words"), [
    ({"text_model.priority": "low", "text_model.threads_per_allocation": 2}, "priority 'low'"),
    ({"text_model.adaptive_allocations.enabled": True,
      "text_model.adaptive_allocations.min_number_of_allocations": 5,
      "text_model.adaptive_allocations.max_number_of_allocations": 2}, "min 5 is above max 2"),
    ({"text_model.adaptive_allocations.enabled": True, "text_model.number_of_allocations": 2},
     "cannot be combined"),
    ({"text_model.hub_id": "/models/My Model!"}, "not a valid deployment id"),
])
def test_start_options_refuse_what_elasticsearch_would_refuse(overrides, words):
    with pytest.raises(ValidationError, match=words):
        start_options(settings_with(**overrides))


def test_validate_id():
    assert validate_id("sentence-transformers__clip-vit-b-32-multilingual-v1")
    for bad in ("Upper", "-start", "end.", "a" * 65, "has space"):
        with pytest.raises(ValidationError):
            validate_id(bad)


@pytest.mark.parametrize(("local", "libtorch", "warns"), [
    ("2.13.0", "2.7.1", True), ("2.7.1", "2.7.1", False), ("2.5.1", "2.7.1", False), ("2.7.0", None, True),
])
def test_torch_warning(local, libtorch, warns):
    warning = torch_warning(local, libtorch)
    assert (warning is not None) == warns
    if warns and libtorch:
        assert f"torch=={libtorch}" in warning


# -- model files ---------------------------------------------------------------------------------


def test_dir_revision_follows_file_contents(tmp_path):
    model = tmp_path / "m"
    (model / "2_Dense").mkdir(parents=True)
    (model / "modules.json").write_text("[]")
    (model / "2_Dense" / "model.safetensors").write_bytes(b"weights")
    before = dir_revision(model)
    assert before == dir_revision(model)
    (model / "2_Dense" / "model.safetensors").write_bytes(b"other weights")
    assert dir_revision(model) != before


def test_weight_bytes_and_max_seq_length_without_torch():
    model = tiny_text_model()
    size = weight_bytes(model)
    safetensors = sum(p.stat().st_size for p in model.rglob("*.safetensors"))
    assert size == safetensors > 0
    assert st_max_seq_length(model) == 128


def test_resolve_source_rejects_a_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_source(str(tmp_path / "nope" / "model"))


def test_trace_refuses_a_clip_image_model_before_eland(tmp_path):
    model = tmp_path / "clip"
    model.mkdir()
    (model / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]))
    with pytest.raises(ModelError, match="CLIP image\\+text model") as info:
        trace(str(model), tmp_path / "out")
    assert "clip-ViT-B-32-multilingual-v1" in (info.value.hint or "")


# -- parity maths ---------------------------------------------------------------------------------

PROBES2 = [("en", "a"), ("de", "b")]


def test_compare_identical_passes():
    report = compare([[1.0, 2.0], [3.0, 1.0]], [[1.0, 2.0], [3.0, 1.0]], PROBES2, template_dims=2)
    assert report.passed and report.min_cosine == pytest.approx(1.0) and report.max_abs_diff == 0.0


@pytest.mark.parametrize("order", [0, 1])
def test_compare_fails_when_the_cluster_returns_nan(order):
    nan = float("nan")
    cluster = [[nan, nan], [1.0, 2.0]] if order == 0 else [[1.0, 2.0], [nan, nan]]
    report = compare(cluster, [[1.0, 2.0], [1.0, 2.0]], PROBES2, template_dims=2)
    assert not report.passed
    assert "min cosine nan" in report.problems[0]


def test_compare_names_a_missing_dense_layer():
    report = compare([[1.0] * 32] * 2, [[1.0] * 512] * 2, PROBES2, template_dims=512)
    assert not report.passed
    assert "cluster returns 32 dims but the local model 512" in report.problems[0]
    assert "Dense" in report.problems[0]
    assert "template maps the caption vector with 512 dims" in report.problems[1]


def test_compare_low_cosine_names_likely_causes():
    report = compare([[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.9, 0.1]], PROBES2, template_dims=None)
    assert not report.passed
    assert "worst probe 'de'" in report.problems[0] and "tokenization" in report.problems[0]


# -- tracing and the cluster ----------------------------------------------------------------------


def test_trace_uses_the_sentence_transformers_max_length_and_records_provenance(traced):
    assert traced.max_sequence_length == 128  # the tokenizer says 512
    assert traced.embedding_size == 512
    assert traced.source == str(tiny_text_model().resolve())
    assert traced.revision == dir_revision(tiny_text_model())
    again = load_traced(traced.model_path.parent)
    assert again.config == traced.config
    assert json.loads(again.vocab_path.read_text())["vocabulary"][:3] == ["[PAD]", "[UNK]", "[CLS]"]


def test_upload_in_parts_start_and_parity(escluster, traced):
    client = make_client(settings_with(**{"elasticsearch.url": escluster.url}))
    seen = []
    parts = upload(client, traced, "tiny", chunk_size=64 * 1024,
                   progress=lambda stage, done, total, detail: seen.append((stage, done, total)))
    assert parts == traced.file_bytes // (64 * 1024) + 1 > 1
    assert seen[-1] == ("upload", parts, parts)
    assert get_model(client, "tiny")["metadata"]["toolkit"]["revision"] == traced.revision

    state = start(client, "tiny", StartOptions(deployment_id="tiny-dep", threads_per_allocation=2,
                                               adaptive_min=1, adaptive_max=3))
    assert state.ready and state.deployment_id == "tiny-dep"
    stats = deployment(client, "tiny", "tiny-dep")
    assert stats.threads_per_allocation == 2
    assert stats.adaptive_allocations["max_number_of_allocations"] == 3

    report = parity(client, "tiny-dep", tiny_text_model(), template_dims=512)
    assert report.passed and report.min_cosine >= 0.9999 and report.dims == 512
    assert {p.language for p in report.probes} >= {"en", "zh", "de", "ru", "ar", "ja"}

    with pytest.raises(ParityError, match="cluster returns 512 dims but the local model 32") as info:
        parity(client, "tiny-dep", tiny_text_model(dense=False))
    assert info.value.report.local_dims == 32


def test_parity_fails_for_other_weights(escluster, traced, tmp_path):
    client = make_client(settings_with(**{"elasticsearch.url": escluster.url}))
    upload(client, traced, "tiny")
    start(client, "tiny", StartOptions(deployment_id="tiny"))
    other = build_tiny_text_model(tmp_path / "other", seed=7)
    with pytest.raises(ParityError, match="min cosine .* < 0.9999"):
        parity(client, "tiny", other, template_dims=512)


def test_start_without_definition_says_replace(escluster, traced):
    client = make_client(settings_with(**{"elasticsearch.url": escluster.url}))
    from toolkit.devtools import send
    from toolkit.textmodel.requests import put_config_request

    send(client, put_config_request("half", traced.config))
    with pytest.raises(NotFound) as info:
        start(client, "half", StartOptions(deployment_id="half"))
    assert "--replace" in info.value.hint


def test_a_model_the_cluster_cannot_load_fails_to_start_with_a_hint(escluster, traced, tmp_path):
    client = make_client(settings_with(**{"elasticsearch.url": escluster.url}))
    folder = tmp_path / "broken"
    shutil.copytree(traced.model_path.parent, folder)
    broken = load_traced(folder)
    broken.model_path.write_bytes(b"not TorchScript" * 100)
    upload(client, broken, "broken")
    # start sends wait_for=starting, so ES answers before the load fails; the failure shows in _stats
    # (TransportStartTrainedModelDeploymentAction.DeploymentStartedPredicate)
    with pytest.raises(ModelError) as info:
        start(client, "broken", StartOptions(deployment_id="broken"), timeout=10)
    assert info.value.hint is not None
    assert "torch" in info.value.hint and "--replace" in info.value.hint
