"""The JSON assets in ``index-templates/`` and ``ingest-pipelines/``: loading, rendering, installing.

Files are plain request bodies a Kibana user recognizes, with ``${VARIABLES}`` filled from settings. A
string that is exactly ``"${NAME}"`` becomes the variable's typed value (a number stays a number, an
object stays an object); anywhere else (inside strings, in keys) variables are text.

Which file is which:
- ``index-templates/components/<name>.json`` -> component template ``<template_name>-<name>``
- ``index-templates/<name>.json`` -> the index template ``<template_name>`` (one file)
- ``ingest-pipelines/caption-embedding.json`` -> the pipeline ``<index.pipeline>``

Each rendered body carries ``_meta.toolkit_hash`` (a hash of the rest of the body), so a second
``toolkit setup`` can tell created / updated / unchanged without comparing normalized bodies.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from toolkit.devtools import Request, exists, path, send
from toolkit.errors import ConfigError, DimsMismatch, NotFound
from toolkit.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
Kind = Literal["component_template", "index_template", "pipeline", "index"]
Outcome = Literal["created", "updated", "unchanged"]


def default_assets_dir() -> Path:
    """The folder holding ``index-templates/`` and ``ingest-pipelines/``.

    The source checkout (editable installs), else ``<prefix>/share/toolkit`` where a wheel puts them.
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "index-templates").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "toolkit"


def variables(settings: Settings) -> dict[str, Any]:
    """Every variable the asset files may use, from settings."""
    idx, f = settings.index, settings.fields
    return {
        "INDEX_PATTERN": idx.pattern,
        "ALIAS": idx.alias,
        "TEMPLATE_NAME": idx.template_name,
        "PIPELINE": idx.pipeline,
        "SHARDS": idx.shards,
        "REPLICAS": idx.replicas,
        "REFRESH_INTERVAL": idx.refresh_interval,
        "IMAGE_DIMS": idx.image_dims,
        "CAPTION_DIMS": idx.caption_dims,
        "SIMILARITY": idx.similarity,
        "INDEX_OPTIONS": idx.index_options.as_mapping(),
        "TEXT_MODEL_ID": settings.text_model.cluster_deployment_id,
        "FIELD_IMAGE_VECTOR": f.image_vector,
        "FIELD_CAPTION": f.caption,
        "FIELD_CAPTION_VECTOR": f.caption_vector,
        "FIELD_PATH": f.path,
        "FIELD_URL": f.url,
        "FIELD_LABEL": f.label,
        "FIELD_RELATION_ID": f.relation_id,
        "FIELD_METADATA": f.metadata,
        # Where the inference processor puts the model id and the truncation flag: next to the vector
        # (InferenceResults.writeResultToField: the document root when the output field has no dot).
        "CAPTION_RESULT_MODEL_ID": beside(f.caption_vector, "model_id"),
        "CAPTION_RESULT_TRUNCATED": beside(f.caption_vector, "is_truncated"),
    }


def beside(output_field: str, name: str) -> str:
    """The path of ``name`` next to ``output_field`` (``a.b`` -> ``a.name``; ``b`` -> ``name``)."""
    base, dot, _ = output_field.rpartition(".")
    return f"{base}.{name}" if dot else name


def render_value(value: Any, values: dict[str, Any], *, file: str) -> Any:
    """Substitute ``${VARIABLES}`` in a parsed JSON value (see the module docstring)."""

    def text(s: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(1) not in values:
                raise ConfigError(f"unknown variable ${{{m.group(1)}}}", file=file,
                                  hint=f"use one of: {', '.join(sorted(values))}")
            v = values[m.group(1)]
            return v if isinstance(v, str) else json.dumps(v)
        return _VAR.sub(one, s)

    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:
            if whole.group(1) not in values:
                text(value)  # raises with the message
            return values[whole.group(1)]
        return text(value)
    if isinstance(value, list):
        return [render_value(v, values, file=file) for v in value]
    if isinstance(value, dict):
        return {text(k): render_value(v, values, file=file) for k, v in value.items()}
    return value


def content_hash(body: dict[str, Any]) -> str:
    """A stable hash of a body without its ``_meta.toolkit_hash``."""
    clean = json.loads(json.dumps(body))
    meta = clean.get("_meta")
    if isinstance(meta, dict):
        meta.pop("toolkit_hash", None)
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Asset:
    kind: Kind
    name: str
    body: dict[str, Any]
    source: str

    @property
    def request(self) -> Request:
        prefix = {"component_template": "_component_template", "index_template": "_index_template",
                  "pipeline": "_ingest/pipeline"}
        if self.kind == "index":
            return Request("PUT", path(self.name), body=self.body)
        return Request("PUT", f"{prefix[self.kind]}/{path(self.name)}", body=self.body)

    @property
    def get_path(self) -> str:
        return self.request.path


def _load_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", file=str(file), line=exc.lineno,
                          hint="fix the asset file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(file),
                          hint="save the asset file as UTF-8 JSON") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the asset file: {exc.strerror}", file=str(file)) from exc
    if not isinstance(data, dict):
        raise ConfigError("an asset file must hold one JSON object", file=str(file))
    return data


def _with_hash(body: dict[str, Any]) -> dict[str, Any]:
    meta = dict(body.get("_meta") or {})
    meta["toolkit_hash"] = content_hash({**body, "_meta": meta})
    return {**body, "_meta": meta}


def load_assets(settings: Settings, assets_dir: Path | None = None) -> list[Asset]:
    """Render every asset in install order: pipeline, component templates, index template, first index.

    Example::

        [a.request.path for a in load_assets(load_settings())]
        # ['_ingest/pipeline/toolkit-caption-embedding', '_component_template/toolkit-images-mappings', ...]
    """
    root = assets_dir or default_assets_dir()
    templates, pipelines = root / "index-templates", root / "ingest-pipelines"
    for folder in (templates, pipelines):
        if not folder.is_dir():
            raise ConfigError(f"asset folder {folder} is missing",
                              hint="run from the toolkit checkout or pass --assets-dir")
    values = variables(settings)
    assets: list[Asset] = []
    for file in sorted(pipelines.glob("*.json")):
        name = settings.index.pipeline if file.stem == "caption-embedding" else file.stem
        body = render_value(_load_json(file), values, file=str(file))
        assets.append(Asset("pipeline", name, _with_hash(body), str(file)))
    for file in sorted((templates / "components").glob("*.json")):
        body = render_value(_load_json(file), values, file=str(file))
        assets.append(Asset("component_template", f"{settings.index.template_name}-{file.stem}",
                            _with_hash(body), str(file)))
    index_files = sorted(templates.glob("*.json"))
    if len(index_files) != 1:
        raise ConfigError(f"{templates} must hold exactly one index template file, found {len(index_files)}")
    body = render_value(_load_json(index_files[0]), values, file=str(index_files[0]))
    assets.append(Asset("index_template", settings.index.template_name, _with_hash(body), str(index_files[0])))
    assets.append(Asset("index", settings.index.first_index,
                        {"aliases": {settings.index.alias: {"is_write_index": True}}}, "settings"))
    return assets


def template_vector_dims(assets: list[Asset], field: str) -> int | None:
    """The ``dims`` the rendered templates give a vector field (None when no template maps it)."""
    for asset in assets:
        if asset.kind not in ("component_template", "index_template"):
            continue
        props = asset.body.get("template", {}).get("mappings", {}).get("properties", {})
        spec = props.get(field)
        if isinstance(spec, dict) and spec.get("type") == "dense_vector":
            return int(spec["dims"])
    return None


def check_dims(assets: list[Asset], settings: Settings, *, image_dims: int | None,
               caption_dims: int | None) -> None:
    """Refuse templates whose vector dims differ from the models' output dims.

    ``image_dims`` is the image model's output size; ``caption_dims`` the deployed text model's
    ``embedding_size`` (None when unknown: that check is skipped).
    """
    f = settings.fields
    for field, model_dims, what, fix in (
        (f.image_vector, image_dims, f"the image model '{settings.image_model.name}'", "index.image_dims"),
        (f.caption_vector, caption_dims,
         f"the deployed text model '{settings.text_model.cluster_model_id}'", "index.caption_dims"),
    ):
        template_dims = template_vector_dims(assets, field)
        if model_dims is not None and template_dims is not None and template_dims != model_dims:
            raise DimsMismatch(
                f"the index template maps '{field}' with {template_dims} dims but {what} outputs "
                f"{model_dims}", hint=f"set {fix}: {model_dims} in toolkit.yaml (or use the matching model)")


@dataclass(frozen=True)
class AssetResult:
    kind: Kind
    name: str
    outcome: Outcome


def stored_hash(client: Elasticsearch, asset: Asset) -> str | None:
    """The stored ``_meta.toolkit_hash`` of an asset; None when absent. '' when it exists without one."""
    try:
        stored = send(client, Request("GET", asset.get_path), doing=f"reading {asset.kind} {asset.name}")
    except NotFound:
        return None
    if asset.kind == "pipeline":
        item = stored.get(asset.name, {})
    elif asset.kind == "component_template":
        items = stored.get("component_templates", [])
        item = items[0]["component_template"] if items else {}
    else:
        items = stored.get("index_templates", [])
        item = items[0]["index_template"] if items else {}
    return str((item.get("_meta") or {}).get("toolkit_hash", ""))


def install(client: Elasticsearch, assets: list[Asset]) -> Iterator[AssetResult]:
    """Install assets in order, yielding created / updated / unchanged for each.

    The first index is created only when the alias does not exist yet.
    """
    for asset in assets:
        if asset.kind == "index":
            alias = next(iter(asset.body["aliases"]))
            if exists(client, path(alias), doing=f"checking alias {alias}"):
                added = add_missing_fields(client, alias, template_properties(assets))
                yield AssetResult("index", asset.name, "updated" if added else "unchanged")
                continue
            send(client, asset.request, doing=f"creating index {asset.name}")
            yield AssetResult("index", asset.name, "created")
            continue
        stored = stored_hash(client, asset)
        if stored == asset.body["_meta"]["toolkit_hash"]:
            yield AssetResult(asset.kind, asset.name, "unchanged")
            continue
        send(client, asset.request, doing=f"installing {asset.kind} {asset.name}")
        yield AssetResult(asset.kind, asset.name, "created" if stored is None else "updated")


def template_properties(assets: list[Asset]) -> dict[str, Any]:
    """The top-level mapping properties the rendered component templates define."""
    props: dict[str, Any] = {}
    for asset in assets:
        if asset.kind == "component_template":
            props.update(asset.body.get("template", {}).get("mappings", {}).get("properties", {}))
    return props


def missing_fields(client: Elasticsearch, alias: str, wanted: dict[str, Any]) -> dict[str, list[str]]:
    """Per index behind ``alias``: the fields of ``wanted`` its mapping lacks (top level).

    An index made by an older toolkit lacks fields the current pipeline writes; under ``"dynamic":
    "strict"`` each such document would fail at indexing.
    """
    mapping = send(client, Request("GET", f"{path(alias)}/_mapping"), doing=f"reading the mapping of {alias}")
    out: dict[str, list[str]] = {}
    for index_name, body in sorted(mapping.items()):
        have = (body.get("mappings") or {}).get("properties") or {}
        lacking = [name for name in wanted if name not in have]
        if lacking:
            out[index_name] = lacking
    return out


def add_missing_fields(client: Elasticsearch, alias: str, wanted: dict[str, Any]) -> list[str]:
    """Add the fields an existing index lacks (``PUT <alias>/_mapping``); the names added.

    Only new fields are added: adding a field to a mapping is always allowed, changing one is not
    (a changed vector field needs a new index, which ``toolkit migrate`` is for).
    """
    lacking = missing_fields(client, alias, wanted)
    names = sorted({name for fields in lacking.values() for name in fields})
    if names:
        send(client, Request("PUT", f"{path(alias)}/_mapping",
                             body={"properties": {name: wanted[name] for name in names}}),
             doing=f"adding {', '.join(names)} to the mapping of {alias}")
    return names
