"""``toolkit setup``: render the assets, check their dims against the models, install them.

Example::

    report = setup(client, settings)
    [(r.kind, r.name, r.outcome) for r in report.results]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import assets as asset_mod
from toolkit.cluster import cluster_facts
from toolkit.devtools import Request, path, send
from toolkit.errors import ModelError, NotFound
from toolkit.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


@dataclass
class SetupReport:
    results: list[asset_mod.AssetResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(r.outcome != "unchanged" for r in self.results)


def plan(settings: Settings, assets_dir: Path | None = None) -> list[asset_mod.Asset]:
    """The assets setup would install, rendered (what ``--dry-run`` prints). Sends nothing."""
    return asset_mod.load_assets(settings, assets_dir)


def deployed_embedding_size(client: Elasticsearch, model_id: str) -> int | None:
    """``embedding_size`` of an uploaded text_embedding model; None when the model is not uploaded."""
    try:
        body = send(client, Request("GET", f"_ml/trained_models/{path(model_id)}"),
                    doing=f"reading trained model {model_id}")
    except NotFound:
        return None
    configs = body.get("trained_model_configs") or []
    if not configs:
        return None
    te = configs[0].get("inference_config", {}).get("text_embedding", {})
    size = te.get("embedding_size")
    return int(size) if size else None


def image_model_dims(settings: Settings) -> int | None:
    """Output dims of the configured image model, or None when they cannot be read."""
    from toolkit.modelinfo import output_dims

    try:
        return output_dims(settings.image_model.name)
    except ModelError:
        return None


def setup(client: Elasticsearch, settings: Settings, *, assets_dir: Path | None = None,
          on_result: Callable[[asset_mod.AssetResult], None] | None = None) -> SetupReport:
    """Install pipelines, component templates, the index template and the first index (idempotent).

    Refuses (DimsMismatch) when the template's vector dims differ from the image model's output or
    from the deployed text model's ``embedding_size``.
    """
    report = SetupReport()
    assets = plan(settings, assets_dir)
    # First a request that says whether Elasticsearch answers at all (not a web server or Kibana's port).
    cluster_facts(client)
    image_dims = image_model_dims(settings)
    if image_dims is None:
        report.warnings.append(f"could not read the output dims of image model "
                               f"'{settings.image_model.name}'; image dims not checked")
    caption_dims = deployed_embedding_size(client, settings.text_model.cluster_model_id)
    if caption_dims is None:
        report.warnings.append(f"text model '{settings.text_model.cluster_model_id}' is not in the cluster "
                               "yet: captions are embedded once `toolkit deploy-model` has run")
    asset_mod.check_dims(assets, settings, image_dims=image_dims, caption_dims=caption_dims)
    for result in asset_mod.install(client, assets):
        report.results.append(result)
        if on_result:
            on_result(result)
    return report


def pipeline_written_fields(pipeline: dict[str, Any]) -> list[str]:
    """Top-level fields a pipeline adds to a document, in order, following what Elasticsearch writes.

    The ``inference`` processor with ``input_output`` writes each output field and, next to the first
    one, ``model_id``; next to each, ``is_truncated`` when the input was cut at the model's max sequence
    length (``InferenceProcessor.mutateDocument``, ``InferenceResults.writeResultToField``,
    ``NlpInferenceResults.addSupportingFieldsToMap``). The ``target_field`` form writes one object
    (``ml.inference.<tag>`` by default). ``rename`` / ``remove`` / ``set`` move, drop and add fields.
    Processors' own ``on_failure`` blocks count too (they run on a failure, and their fields stay).

    Example::

        pipeline_written_fields({"processors": [{"inference": {"model_id": "m", "input_output":
            [{"input_field": "caption", "output_field": "v"}]}}]})   # ['v', 'model_id', 'is_truncated']
    """
    from toolkit.assets import beside

    fields: list[str] = []

    def add(name: str) -> None:
        if name not in fields:
            fields.append(name)

    def walk(processors: list[Any]) -> None:
        for proc in processors:
            if not isinstance(proc, dict) or len(proc) != 1:
                continue
            (kind, cfg), = proc.items()
            if not isinstance(cfg, dict):
                continue
            if kind == "inference":
                if cfg.get("input_output"):
                    for i, io in enumerate(cfg["input_output"]):
                        out = str(io.get("output_field") or "")
                        add(out)
                        if i == 0:
                            add(beside(out, "model_id"))
                        add(beside(out, "is_truncated"))
                else:
                    add(str(cfg.get("target_field") or (f"ml.inference.{cfg['tag']}" if cfg.get("tag")
                                                        else "ml.inference")))
            elif kind == "rename":
                if cfg.get("field") in fields:
                    fields.remove(cfg["field"])
                add(str(cfg.get("target_field")))
            elif kind == "remove":
                names = cfg.get("field")
                for name in names if isinstance(names, list) else [names]:
                    if name in fields:
                        fields.remove(name)
            elif kind == "set":
                add(str(cfg.get("field")))
            walk(cfg.get("on_failure") or [])

    walk(pipeline.get("processors") or [])
    return fields


def unmapped_pipeline_fields(client: Elasticsearch, settings: Settings) -> list[str]:
    """Problems: fields the installed caption pipeline writes that an index behind the alias does not map.

    Under ``"dynamic": "strict"`` each such field fails every captioned document at indexing, after the
    pipeline ran (its ``on_failure`` cannot see it). An installation made by an older toolkit had
    exactly this: ``model_id`` next to the caption vector. Empty when the pipeline or the alias is
    missing (other checks report those).
    """
    name, alias = settings.index.pipeline, settings.index.alias
    try:
        stored = send(client, Request("GET", f"_ingest/pipeline/{path(name)}"), doing=f"reading pipeline {name}")
        mapping = send(client, Request("GET", f"{path(alias)}/_mapping"), doing=f"reading the mapping of {alias}")
    except NotFound:
        return []
    written = {f.split(".", 1)[0] for f in pipeline_written_fields(stored.get(name) or {}) if f}
    problems = []
    for index_name, body in sorted(mapping.items()):
        mappings = body.get("mappings") or {}
        if str(mappings.get("dynamic", "true")) != "strict":
            continue
        lacking = sorted(written - set(mappings.get("properties") or {}))
        if lacking:
            problems.append(f"pipeline '{name}' writes {', '.join(lacking)}, which index {index_name} does not "
                            "map: its strict mapping rejects every document with a caption")
    return problems
