"""A new text model: a new pipeline version, captions re-embedded by ``_reindex`` through it.

The test cluster's ``inference`` processor is the real one's shape (``InferenceResults.setOrAppendValue``:
an existing output field is appended to). Its model is replaced by a fake per model id, so no torch
model has to be traced: ``text-a`` and ``text-b`` give different 8-dim vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.lib.ingest_helpers import CountingEmbedder, good_images, make_settings, setup_index
from toolkit import migrate
from toolkit.cluster import make_client
from toolkit.devtools import Request, send
from toolkit.errors import CheckFailed, RequestFailed, ValidationError
from toolkit.images.sources import SourceItem
from toolkit.ingest import ingest

N = 6
DIMS = 8
MODELS = {"text-a": 1.0, "text-b": -1.0}


def fake_infer(model_id: str, texts: list[Any]) -> list[list[float]]:
    from tests.escluster.errors import ESError

    if model_id not in MODELS:
        raise ESError(404, "status_exception", f"[{model_id}] is not an inference service model or a deployed ml model")
    return [[MODELS[model_id]] + [float(len(str(t)) % 7 + 1)] * (DIMS - 1) for t in texts]


def settings_for(url: str, model: str, pipeline: str = "toolkit-caption-embedding") -> Any:
    return make_settings(url, **{"index.caption_dims": DIMS, "text_model.model_id": model, "index.pipeline": pipeline})


@pytest.fixture
def env(escluster: Any, tmp_path: Path) -> Any:
    escluster.state.infer = fake_infer
    settings = settings_for(escluster.url, "text-a")
    client = make_client(settings)
    setup_index(client, settings, plain_pipeline=False)  # the real caption pipeline, model text-a
    items = [SourceItem(location=str(p), id=f"doc{i}", caption=f"caption {'x' * i}")
             for i, p in enumerate(good_images(tmp_path / "imgs", N))]
    assert ingest(client, settings, source=items, embedder=CountingEmbedder(),
                  failures_file=tmp_path / "f.jsonl").indexed == N
    return client


def _docs(client: Any, index: str = "images") -> list[dict[str, Any]]:
    send(client, Request("POST", f"{index}/_refresh"))
    body = send(client, Request("POST", f"{index}/_search", body={"size": 50, "_source": {"exclude_vectors": False}}))
    return [h["_source"] for h in body["hits"]["hits"]]


def test_captions_are_embedded_again_by_the_new_pipeline_and_the_old_index_keeps_the_old_model(
        env: Any, escluster: Any, tmp_path: Path) -> None:
    assert {d["caption_model"] for d in _docs(env)} == {"text-a"}
    new = settings_for(escluster.url, "text-b", "toolkit-caption-embedding-2")
    plan = migrate.make_plan(migrate.read_current(env, new), new, image_model="fake-clip")
    assert plan.recaption and not plan.reembed_images
    assert "text model: text-a -> text-b (pipeline toolkit-caption-embedding-2)" in plan.changes
    report = migrate.run_migration(env, new, plan, failures_dir=tmp_path)
    assert report.switched and report.new_count == N and report.pipeline_errors == 0
    docs = _docs(env)
    assert {d["caption_model"] for d in docs} == {"text-b"}
    assert all(d["caption_embedding"][0] == -1.0 and len(d["caption_embedding"]) == DIMS for d in docs)
    assert all(len(d["image_embedding"]) == 64 for d in docs)  # image vectors copied as they were
    # The old index still embeds with the old model: rollback gives a working installation back.
    assert {d["caption_model"] for d in _docs(env, "images-000001")} == {"text-a"}
    pipelines = send(env, Request("GET", "_ingest/pipeline/toolkit-caption-embedding*"))
    assert set(pipelines) == {"toolkit-caption-embedding", "toolkit-caption-embedding-2"}
    # --cleanup: the old index, the pipeline only it used, and the model only that pipeline ran.
    send(env, Request("PUT", "_ml/trained_models/text-a", body={
        "model_type": "pytorch", "input": {"field_names": ["text_field"]},
        "inference_config": {"text_embedding": {"embedding_size": DIMS}}}))
    done = migrate.cleanup(env, new)
    assert done.indices == ("images-000001",) and done.pipelines == ("toolkit-caption-embedding",)
    assert done.models == ("text-a",)
    pipelines = send(env, Request("GET", "_ingest/pipeline/toolkit-caption-embedding*"))
    assert set(pipelines) == {"toolkit-caption-embedding-2"}
    assert {d["caption_model"] for d in _docs(env)} == {"text-b"}


def test_a_copy_that_kept_the_old_caption_vector_would_fail_every_document(env: Any, escluster: Any) -> None:
    """Why the plan leaves the caption vector out: the inference processor appends to it."""
    new = settings_for(escluster.url, "text-b", "toolkit-caption-embedding-2")
    plan = migrate.make_plan(migrate.read_current(env, new), new, image_model="fake-clip")
    for asset in plan.assets:
        send(env, asset.request)
    send(env, Request("PUT", plan.target, body={}))
    keep_all = plan.copy_request()
    keep_all.body["source"].pop("_source")
    with pytest.raises(RequestFailed, match="caption_embedding"):
        migrate._reindex(env, keep_all)


def test_the_old_pipeline_name_is_refused_for_a_new_text_model(env: Any, escluster: Any) -> None:
    same_name = settings_for(escluster.url, "text-b")
    with pytest.raises(ValidationError, match="index.pipeline is still 'toolkit-caption-embedding'") as info:
        migrate.make_plan(migrate.read_current(env, same_name), same_name, image_model="fake-clip")
    assert "toolkit-caption-embedding-2" in (info.value.hint or "")


def test_a_text_model_that_is_not_deployed_blocks_the_switch(env: Any, escluster: Any, tmp_path: Path) -> None:
    new = settings_for(escluster.url, "text-missing", "toolkit-caption-embedding-2")
    plan = migrate.make_plan(migrate.read_current(env, new), new, image_model="fake-clip")
    with pytest.raises(CheckFailed, match="pipeline error"):
        migrate.run_migration(env, new, plan, failures_dir=tmp_path)
    assert sorted(env.indices.get_alias(name="images").body) == ["images-000001"]


def test_the_new_text_model_must_be_uploaded_before_the_copy(env: Any, escluster: Any) -> None:
    from toolkit.errors import NotFound

    new = settings_for(escluster.url, "text-b", "toolkit-caption-embedding-2")
    with pytest.raises(NotFound, match="'text-b' is not in the cluster") as info:
        migrate.check_text_model(env, new)
    assert "toolkit deploy-model" in (info.value.hint or "")
    send(env, Request("PUT", "_ml/trained_models/text-b", body={
        "model_type": "pytorch", "input": {"field_names": ["text_field"]},
        "inference_config": {"text_embedding": {"embedding_size": 16}}}))
    from toolkit.errors import DimsMismatch

    with pytest.raises(DimsMismatch, match="outputs 16 dims but index.caption_dims is 8"):
        migrate.check_text_model(env, new)


def test_both_models_at_once_re_embed_images_and_captions(env: Any, escluster: Any, tmp_path: Path) -> None:
    from tests.lib.test_migrate import SmallerEmbedder

    both = make_settings(escluster.url, **{"index.caption_dims": DIMS, "text_model.model_id": "text-b",
                                           "index.pipeline": "toolkit-caption-embedding-2", "index.image_dims": 32})
    plan = migrate.make_plan(migrate.read_current(env, both), both, image_model="fake-clip-v2")
    assert plan.kind == "re-embed images + re-embed captions"
    assert plan.copy_dest["pipeline"] == "_none"  # the re-embedding writes through the new pipeline
    report = migrate.run_migration(env, both, plan, embedder=SmallerEmbedder(), failures_dir=tmp_path)
    assert report.switched and report.new_count == N
    docs = _docs(env)
    assert {d["caption_model"] for d in docs} == {"text-b"} and {d["image_model"] for d in docs} == {"fake-clip-v2"}
    assert all(len(d["image_embedding"]) == 32 and d["caption_embedding"][0] == -1.0 for d in docs)
