"""Asset files render from settings, carry a content hash, and dims are checked against models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit import assets
from toolkit.errors import ConfigError, DimsMismatch
from toolkit.settings import load_settings


def test_render_keeps_types_and_substitutes_keys() -> None:
    values = {"N": 3, "OPTS": {"type": "hnsw"}, "F": "vec"}
    body = {"${F}": {"dims": "${N}", "index_options": "${OPTS}", "note": "dims=${N} field=${F}"}}
    assert assets.render_value(body, values, file="x.json") == {
        "vec": {"dims": 3, "index_options": {"type": "hnsw"}, "note": "dims=3 field=vec"}}


def test_unknown_variable_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"x\.json.*unknown variable \$\{NOPE\}"):
        assets.render_value({"a": "${NOPE}"}, {}, file="x.json")


def test_assets_follow_settings() -> None:
    settings = load_settings(environ={}, overrides={"index.alias": "photos", "index.image_dims": 64,
                                                    "index.index_options.type": "hnsw",
                                                    "text_model.model_id": "my-model"})
    planned = assets.load_assets(settings)
    kinds = [(a.kind, a.name) for a in planned]
    assert kinds == [("pipeline", "toolkit-caption-embedding"),
                     ("component_template", "toolkit-images-mappings"),
                     ("component_template", "toolkit-images-settings"),
                     ("index_template", "toolkit-images"),
                     ("index", "photos-000001")]
    mappings = planned[1].body["template"]["mappings"]["properties"]
    assert mappings["image_embedding"]["dims"] == 64
    assert mappings["image_embedding"]["index_options"]["type"] == "hnsw"  # pinned explicitly
    assert planned[3].body["index_patterns"] == ["photos-*"]
    processor = planned[0].body["processors"][0]["inference"]
    assert processor["model_id"] == "my-model"
    assert processor["input_output"] == [{"input_field": "caption", "output_field": "caption_embedding"}]
    assert processor["on_failure"], "pipeline must record failures instead of dropping documents"
    assert planned[4].body == {"aliases": {"photos": {"is_write_index": True}}}


def test_hash_changes_with_content_only() -> None:
    a = assets.load_assets(load_settings(environ={}))
    b = assets.load_assets(load_settings(environ={}))
    c = assets.load_assets(load_settings(environ={}, overrides={"index.replicas": 2}))
    hashes = lambda xs: [x.body.get("_meta", {}).get("toolkit_hash") for x in xs]  # noqa: E731
    assert hashes(a) == hashes(b)
    assert hashes(a)[2] != hashes(c)[2]  # the settings component changed
    assert hashes(a)[1] == hashes(c)[1]  # the mappings did not


def test_dims_check_refuses_mismatches() -> None:
    settings = load_settings(environ={})
    planned = assets.load_assets(settings)
    assets.check_dims(planned, settings, image_dims=512, caption_dims=512)
    assets.check_dims(planned, settings, image_dims=None, caption_dims=None)
    with pytest.raises(DimsMismatch, match="image_embedding.*512.*768") as info:
        assets.check_dims(planned, settings, image_dims=768, caption_dims=512)
    assert "index.image_dims: 768" in (info.value.hint or "")
    with pytest.raises(DimsMismatch, match="caption_embedding"):
        assets.check_dims(planned, settings, image_dims=512, caption_dims=384)


def test_asset_folder_with_bad_json_is_reported(tmp_path: Path) -> None:
    (tmp_path / "index-templates" / "components").mkdir(parents=True)
    (tmp_path / "ingest-pipelines").mkdir()
    (tmp_path / "ingest-pipelines" / "caption-embedding.json").write_text('{"processors": [}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        assets.load_assets(load_settings(environ={}), tmp_path)


def test_asset_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    (tmp_path / "index-templates" / "components").mkdir(parents=True)
    (tmp_path / "ingest-pipelines").mkdir()
    (tmp_path / "ingest-pipelines" / "caption-embedding.json").write_bytes(b'\xff{"processors": []}')
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        assets.load_assets(load_settings(environ={}), tmp_path)
    assert "caption-embedding.json" in info.value.message


def test_shipped_assets_are_plain_json() -> None:
    root = assets.default_assets_dir()
    files = list((root / "index-templates").rglob("*.json")) + list((root / "ingest-pipelines").glob("*.json"))
    assert len(files) >= 4
    for f in files:
        assert isinstance(json.loads(f.read_text()), dict)


def test_pipeline_written_fields_follow_what_the_inference_processor_writes() -> None:
    """model_id beside the first output only, is_truncated beside each; a dotted output puts them under
    its parent; renames/removes later in the pipeline move or drop them (the shipped pipeline's case)."""
    from toolkit.provision import pipeline_written_fields

    two = {"processors": [{"inference": {"model_id": "m", "input_output": [
        {"input_field": "a", "output_field": "va"}, {"input_field": "b", "output_field": "x.vb"}]}}]}
    assert pipeline_written_fields(two) == ["va", "model_id", "is_truncated", "x.vb", "x.is_truncated"]
    legacy = {"processors": [{"inference": {"model_id": "m", "tag": "t", "field_map": {"c": "text_field"}}}]}
    assert pipeline_written_fields(legacy) == ["ml.inference.t"]
    shipped = {"processors": [
        {"inference": {"model_id": "m", "input_output": [{"input_field": "c", "output_field": "cv"}],
                       "on_failure": [{"set": {"field": "ingest_error.message", "value": "x"}}]}},
        {"rename": {"field": "model_id", "target_field": "caption_model", "ignore_missing": True}},
        {"rename": {"field": "is_truncated", "target_field": "caption_truncated", "ignore_missing": True}}]}
    assert pipeline_written_fields(shipped) == ["cv", "ingest_error.message", "caption_model", "caption_truncated"]


def test_the_shipped_pipeline_renames_what_es_writes_beside_a_dotted_caption_vector(tmp_path) -> None:
    """With fields.caption_vector 'caption.vector' ES writes caption.model_id: the rename follows it."""
    from toolkit.assets import load_assets
    from toolkit.settings import load_settings

    settings = load_settings(environ={}, overrides={"fields.caption_vector": "emb.caption"}, cwd=tmp_path)
    (pipeline,) = [a for a in load_assets(settings) if a.kind == "pipeline"]
    renames = {p["rename"]["field"]: p["rename"]["target_field"] for p in pipeline.body["processors"] if "rename" in p}
    assert renames == {"emb.model_id": "caption_model", "emb.is_truncated": "caption_truncated"}
