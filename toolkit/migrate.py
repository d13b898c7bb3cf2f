"""``toolkit migrate``: change index settings, the image model or the text model under a live alias.

Plan (pure, printable) -> new index -> fill (``_reindex``, re-embed) -> catch-up -> verify -> one alias
action. Searchers keep using the alias (``images``); it points at the old index until one atomic
``POST _aliases`` (remove + add, write index moved) points it at a new, complete one.

What each kind of change does:

- **settings / mappings** (``index_options``, shards, a new field): a new ``<alias>-00000N`` from the
  templates rendered with the current settings, filled by ``_reindex`` with ``dest.pipeline: _none``
  (the caption vectors are copied, not embedded again). Vectors are copied even on 9.2, whose indices
  leave them out of ``_source``: reindex's search asks for them (``exclude_vectors: false``,
  ``AbstractAsyncBulkByScrollAction.prepareSearchRequest``).
- **a new image model**: ``_reindex`` copies every document without its image vector, then the ingest
  engine re-embeds each one from its stored ``path`` / ``url`` (pages of documents that still lack a
  vector: a second run resumes where the first stopped; failures go to a failures file).
- **a new text model** (already deployed beside the old one with ``toolkit deploy-model``): a new
  pipeline version (``index.pipeline`` must name a new pipeline), and ``_reindex`` through it. The copy
  leaves out the old caption vector and ``caption_model``: the inference processor appends to an
  existing output field (``InferenceResults.setOrAppendValue``), so a kept old vector would make two.

Writes that land in the old index while this runs are caught up before the switch (documents whose
``ingested_at`` is after the migration began, copied again; then the ids of both indices are compared:
documents written without ``ingested_at`` are copied by id, deleted ones removed from the new index)
and once more right after it (documents written between the last catch-up and the switch,
``op_type: create``).

Example::

    current = read_current(client, settings)
    the_plan = make_plan(current, settings, image_model="clip-ViT-B-32")
    print(render_plan(the_plan))
    report = run_migration(client, settings, the_plan)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import assets as asset_mod
from toolkit.devtools import Request, path, render, send
from toolkit.errors import CheckFailed, ClusterError, DimsMismatch, NotFound, RequestFailed, ValidationError
from toolkit.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from toolkit.images.embedder import ImageEmbedder
    from toolkit.ingest import IngestReport

#: Documents per ``_reindex`` batch (the scroll size).
REINDEX_BATCH = 1000
#: Documents re-embedded per ingest run (each page is one run of the ingest engine).
REEMBED_PAGE = 2000
#: How far before the new index's creation a write counts as "during the migration" (clock skew, slow bulks).
CATCH_UP_MARGIN = timedelta(minutes=5)
#: At most this many document ids are compared when counts differ.
MAX_LISTED_IDS = 10000
#: Sample documents whose neighbours are compared between the old and the new index.
SAMPLES = 5
#: Fields the re-embedding writes again (left out of the copy).
IMAGE_FIELDS = ("image_model", "image_precision")
#: Fields the caption pipeline writes (left out of the copy when the text model changes).
CAPTION_FIELDS = ("caption_model", "caption_truncated", "ingest_error")
_NUMBERED = re.compile(r"^(?P<alias>.+)-(?P<n>\d{6})$")


# ------------------------------------------------------------------------------------------- facts

@dataclass(frozen=True)
class Current:
    """What the cluster holds now, read by :func:`read_current`."""

    alias: str
    indices: tuple[str, ...]
    """The indices behind the alias; the write index first."""
    existing: tuple[str, ...]
    """Every ``<alias>-NNNNNN`` index, behind the alias or not."""
    properties: dict[str, Any]
    shards: int
    default_pipeline: str | None
    text_model: str | None
    """The model the default pipeline's inference processor runs (None without one)."""
    image_models: tuple[str, ...]
    count: int
    target_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Mapping properties of existing indices that are not behind the alias (a resumable target)."""
    target_shards: dict[str, int] = field(default_factory=dict)
    """Shard counts of those indices."""

    @property
    def index(self) -> str:
        return self.indices[0]


def number_of(index: str, alias: str) -> int | None:
    """``images-000007`` -> 7 for alias ``images``; None for other names."""
    m = _NUMBERED.match(index)
    return int(m.group("n")) if m and m.group("alias") == alias else None


def _alias_indices(client: Elasticsearch, alias: str) -> tuple[str, ...]:
    try:
        body = send(client, Request("GET", f"_alias/{path(alias)}"), doing=f"reading alias {alias}")
    except NotFound as exc:
        raise NotFound(f"alias '{alias}' does not exist", what="alias", name=alias,
                       hint="run `toolkit setup` first (or pass the right --index)") from exc
    writers = [name for name, spec in body.items()
               if (spec.get("aliases") or {}).get(alias, {}).get("is_write_index") is True]
    others = sorted(name for name in body if name not in writers)
    names = tuple(writers + others)
    if not names:
        raise NotFound(f"alias '{alias}' points at no index", what="alias", name=alias,
                       hint="run `toolkit setup` (or `toolkit migrate --rollback`)")
    return names


def _pipeline_model(client: Elasticsearch, pipeline: str | None) -> str | None:
    if not pipeline:
        return None
    try:
        body = send(client, Request("GET", f"_ingest/pipeline/{path(pipeline)}"), doing=f"reading pipeline {pipeline}")
    except NotFound:
        return None
    for proc in (body.get(pipeline) or {}).get("processors") or []:
        if isinstance(proc, dict) and isinstance(proc.get("inference"), dict):
            return str(proc["inference"].get("model_id") or "") or None
    return None


def read_current(client: Elasticsearch, settings: Settings) -> Current:
    """Read the alias, its indices' mapping and settings, the pipeline's model and the image models used.

    Raises NotFound (hint: ``toolkit setup``) when the alias does not exist.
    """
    alias = settings.index.alias
    indices = _alias_indices(client, alias)
    index = indices[0]
    flat = send(client, Request("GET", f"{path(settings.index.pattern)}/_settings", params={"flat_settings": True}),
                doing=f"reading the settings of {settings.index.pattern}")
    existing = tuple(sorted(n for n in flat if number_of(n, alias) is not None))
    own = (flat.get(index) or {}).get("settings") or {}
    if not own:
        own = (send(client, Request("GET", f"{path(index)}/_settings", params={"flat_settings": True}),
                    doing=f"reading the settings of {index}").get(index) or {}).get("settings") or {}
    mapping = send(client, Request("GET", f"{path(','.join(sorted(set(indices) | set(existing))))}/_mapping"),
                   doing=f"reading the mapping of {alias}")
    props = ((mapping.get(index) or {}).get("mappings") or {}).get("properties") or {}
    targets = {n: ((mapping.get(n) or {}).get("mappings") or {}).get("properties") or {}
               for n in existing if n not in indices}
    pipeline = own.get("index.default_pipeline")
    pipeline = None if pipeline in (None, "_none") else str(pipeline)
    aggs = send(client, Request("POST", f"{path(alias)}/_search", body={
        "size": 0, "track_total_hits": True,
        "aggs": {"models": {"terms": {"field": "image_model", "size": 20}}}}), doing=f"reading {alias}")
    buckets = ((aggs.get("aggregations") or {}).get("models") or {}).get("buckets") or []
    total = (aggs.get("hits") or {}).get("total") or {}
    return Current(alias=alias, indices=indices, existing=existing, properties=props,
                   shards=int(own.get("index.number_of_shards", 1)), default_pipeline=pipeline,
                   text_model=_pipeline_model(client, pipeline),
                   image_models=tuple(str(b["key"]) for b in buckets),
                   count=int(total.get("value", 0)) if isinstance(total, dict) else int(total or 0),
                   target_properties=targets,
                   target_shards={n: int(((flat.get(n) or {}).get("settings") or {}).get("index.number_of_shards", 1))
                                  for n in targets})


# -------------------------------------------------------------------------------------------- plan

def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, dict | list) else str(value)


def mapping_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two mappings' properties, as lines (only keys the new mapping sets count).

    Example::

        mapping_changes({"v": {"type": "dense_vector", "index_options": {"type": "int8_hnsw", "m": 16}}},
                        {"v": {"type": "dense_vector", "index_options": {"type": "bbq_hnsw"}}})
        # ['v.index_options.type: int8_hnsw -> bbq_hnsw']
    """
    lines: list[str] = []

    def walk(prefix: str, a: Any, b: Any) -> None:
        if isinstance(b, dict) and isinstance(a, dict):
            for key, value in b.items():
                walk(f"{prefix}.{key}", a.get(key), value)
        elif _compact(a) != _compact(b):
            lines.append(f"{prefix}: {'(none)' if a is None else _compact(a)} -> {_compact(b)}")

    for name, spec in new.items():
        if name not in old:
            lines.append(f"{name}: new field ({_compact(spec)})")
        else:
            walk(name, old[name], spec)
    return lines


@dataclass(frozen=True)
class Plan:
    """What a migration will do; built by :func:`make_plan` without sending anything."""

    alias: str
    sources: tuple[str, ...]
    target: str
    resume: bool
    changes: tuple[str, ...]
    reembed_images: bool
    recaption: bool
    image_model: str
    assets: tuple[asset_mod.Asset, ...]
    copy_source: dict[str, Any]
    copy_dest: dict[str, Any]

    @property
    def kind(self) -> str:
        kinds = ["re-embed images" if self.reembed_images else "reindex"]
        if self.recaption:
            kinds.append("re-embed captions")
        return " + ".join(kinds)

    def copy_request(self, query: dict[str, Any] | None = None, *, op_type: str = "create") -> Request:
        """The ``_reindex`` request (async: its task is polled), optionally for the documents of ``query``."""
        source = dict(self.copy_source)
        if query is not None:
            source["query"] = query
        return Request("POST", "_reindex", params={"wait_for_completion": False, "refresh": True},
                       body={"conflicts": "proceed", "source": source, "dest": {**self.copy_dest, "op_type": op_type}})

    def switch_request(self) -> Request:
        return switch_request(self.alias, self.sources, self.target)

    def as_json(self) -> dict[str, Any]:
        return {"alias": self.alias, "from": list(self.sources), "to": self.target, "resume": self.resume,
                "kind": self.kind, "changes": list(self.changes), "reembed_images": self.reembed_images,
                "recaption": self.recaption, "image_model": self.image_model}


def switch_request(alias: str, sources: tuple[str, ...] | list[str], target: str) -> Request:
    """One atomic ``POST _aliases``: the alias leaves ``sources`` and points at ``target`` (its write index)."""
    actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": alias}} for name in sources]
    actions.append({"add": {"index": target, "alias": alias, "is_write_index": True}})
    return Request("POST", "_aliases", body={"actions": actions})


def _next_index(current: Current) -> str:
    numbers = [n for n in (number_of(i, current.alias) for i in (*current.existing, *current.indices)) if n]
    return f"{current.alias}-{max(numbers, default=0) + 1:06d}"


def make_plan(current: Current, settings: Settings, *, image_model: str | None = None,
              reembed_images: bool = False, assets_dir: Path | None = None) -> Plan:
    """The migration from what the cluster holds (``current``) to what ``settings`` describe. Pure.

    Args:
        image_model: the model documents will be embedded with (default ``settings.image_model.name``);
            a model no document was embedded with means re-embedding every image.
        reembed_images: re-embed even when the model name is the same (new weights under one name).

    Raises ValidationError when the text model changes but ``index.pipeline`` still names the old
    pipeline (documents written to the old index until the switch must keep the old model).
    """
    f = settings.fields
    model = image_model or settings.image_model.name
    assets = asset_mod.load_assets(settings, assets_dir)
    wanted = asset_mod.template_properties(assets)
    changes = mapping_changes(current.properties, wanted)
    if settings.index.shards != current.shards:
        changes.append(f"number_of_shards: {current.shards} -> {settings.index.shards}")
    old_dims = (current.properties.get(f.image_vector) or {}).get("dims")
    # Any document embedded with another model: all are re-embedded (one vector space per index).
    new_model = bool(set(current.image_models) - {model})
    reembed = reembed_images or new_model or (old_dims is not None and old_dims != settings.index.image_dims)
    if new_model:
        changes.append(f"image model: {', '.join(current.image_models)} -> {model}")
    elif reembed_images:
        changes.append(f"image model: {model} (re-embedding every image as asked)")
    new_text = settings.text_model.cluster_deployment_id
    recaption = current.text_model is not None and current.text_model != new_text
    if recaption:
        if settings.index.pipeline == current.default_pipeline:
            raise ValidationError(
                f"the text model changes ({current.text_model} -> {new_text}) but index.pipeline is still "
                f"'{settings.index.pipeline}', which the live index uses",
                hint=f"set index.pipeline to a new version (e.g. {settings.index.pipeline}-2) in toolkit.yaml")
        changes.append(f"text model: {current.text_model} -> {new_text} (pipeline {settings.index.pipeline})")
    elif current.default_pipeline and current.default_pipeline != settings.index.pipeline:
        changes.append(f"default_pipeline: {current.default_pipeline} -> {settings.index.pipeline}")
    # The pipeline is installed only when the new index names another one: the live one stays as it is.
    new_pipeline = recaption or settings.index.pipeline != current.default_pipeline
    install = tuple(a for a in assets if a.kind in ("component_template", "index_template")
                    or (a.kind == "pipeline" and new_pipeline))
    target = next((name for name, props in sorted(current.target_properties.items(), reverse=True)
                   if (number_of(name, current.alias) or 0) > max(number_of(i, current.alias) or 0
                                                                  for i in current.indices)
                   and not mapping_changes(props, wanted)
                   and current.target_shards.get(name, settings.index.shards) == settings.index.shards), None)
    excludes: list[str] = []
    if reembed:
        excludes += [f.image_vector, *IMAGE_FIELDS]
    if recaption:
        excludes += [f.caption_vector, *CAPTION_FIELDS]
    source: dict[str, Any] = {"index": list(current.indices), "size": REINDEX_BATCH}
    if excludes:
        source["_source"] = {"excludes": excludes}
    # Through the new pipeline only for captions; otherwise the vectors are copied as they are.
    dest = {"index": target or _next_index(current),
            "pipeline": settings.index.pipeline if recaption and not reembed else "_none"}
    return Plan(alias=current.alias, sources=current.indices, target=str(dest["index"]), resume=target is not None,
                changes=tuple(changes), reembed_images=reembed, recaption=recaption, image_model=model,
                assets=install, copy_source=source, copy_dest=dest)


def plan_requests(plan: Plan, settings: Settings) -> list[tuple[str, Request]]:
    """The plan as requests with a comment each (what ``--dry-run`` prints)."""
    steps: list[tuple[str, Request]] = [(f"install {a.kind.replace('_', ' ')} {a.name}", a.request)
                                        for a in plan.assets]
    if not plan.resume:
        steps.append((f"create the new index {plan.target} from the templates (not behind the alias yet)",
                      Request("PUT", path(plan.target), body={})))
    steps.append((f"copy every document of {', '.join(plan.sources)}"
                  + (" without its image vector" if plan.reembed_images else "")
                  + (" without its caption vector (the new pipeline embeds it)" if plan.recaption else "")
                  + "; then poll GET _tasks/<task>", plan.copy_request()))
    if plan.reembed_images:
        steps.append((f"re-embed with {plan.image_model}, page by page, each document still without a vector "
                      "(read from its path/url, written by the ingest engine)",
                      reembed_page_request(plan.target, settings, [])))
    steps.append(("catch up: documents written to the old index since the migration began (copied again)",
                  plan.copy_request(_since_query("<migration start - 5 min>"), op_type="index")))
    steps.append(("verify: equal counts (else the differing ids), sample queries' overlap@10",
                  Request("GET", f"{path(plan.target)}/_count")))
    steps.append((f"switch {plan.alias} to {plan.target} in one atomic action (write index moved)",
                  plan.switch_request()))
    steps.append(("catch up once more: documents written between the last catch-up and the switch",
                  plan.copy_request(_since_query("<last catch-up - 5 min>"))))
    return steps


def render_plan(plan: Plan, settings: Settings) -> str:
    """The plan in Kibana Dev Tools console form: ``# comments`` and requests, ready to paste."""
    head = [f"# toolkit migrate: {plan.alias} {', '.join(plan.sources)} -> {plan.target}"
            + (" (resuming)" if plan.resume else "") + f" [{plan.kind}]"]
    head += [f"#   {line}" for line in plan.changes] or ["#   nothing differs: nothing to migrate"]
    body = [f"# {comment}\n{render(request)}" for comment, request in plan_requests(plan, settings)]
    return "\n\n".join(["\n".join(head), *body]) + "\n"


def _since_query(since: str) -> dict[str, Any]:
    return {"range": {"ingested_at": {"gte": since}}}


def reembed_page_request(target: str, settings: Settings, failed: list[str], size: int = REEMBED_PAGE) -> Request:
    """The next page of documents in ``target`` that still have no image vector (``failed`` left out)."""
    f = settings.fields
    query: dict[str, Any] = {"bool": {"must_not": [{"exists": {"field": f.image_vector}}]}}
    if failed:
        query["bool"]["must_not"].append({"ids": {"values": failed}})
    return Request("POST", f"{path(target)}/_search", body={
        "size": size, "query": query,
        "_source": [f.path, f.url, f.caption, f.label, f.relation_id, f.metadata]})


# ------------------------------------------------------------------------------------------ report

@dataclass
class MigrationReport:
    """What a migration did. ``switched`` says whether the alias now points at ``target``."""

    plan: Plan
    copied: int = 0
    caught_up: int = 0
    reembedded: int = 0
    reembed_failed: int = 0
    failures_files: list[str] = field(default_factory=list)
    old_count: int = 0
    new_count: int = 0
    only_in_old: list[str] = field(default_factory=list)
    only_in_new: list[str] = field(default_factory=list)
    pipeline_errors: int = 0
    overlaps: dict[str, float] = field(default_factory=dict)
    """Per sample document: the share of its 10 nearest neighbours found in both indices."""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Found after the switch (nothing to undo, something to do)."""
    switched: bool = False
    after_switch: int = 0
    removed: int = 0
    """Documents deleted from the old index during the migration, removed from the new one too."""
    seconds: float = 0.0

    @property
    def mean_overlap(self) -> float | None:
        return round(sum(self.overlaps.values()) / len(self.overlaps), 3) if self.overlaps else None

    def as_json(self) -> dict[str, Any]:
        return {"plan": self.plan.as_json(), "copied": self.copied, "caught_up": self.caught_up,
                "reembedded": self.reembedded, "reembed_failed": self.reembed_failed,
                "failures_files": self.failures_files, "counts": {"old": self.old_count, "new": self.new_count},
                "only_in_old": self.only_in_old, "only_in_new": self.only_in_new,
                "pipeline_errors": self.pipeline_errors, "overlap_at_10": self.overlaps,
                "mean_overlap_at_10": self.mean_overlap, "problems": self.problems,
                "warnings": self.warnings, "switched": self.switched,
                "copied_after_switch": self.after_switch, "removed": self.removed, "seconds": round(self.seconds, 3)}


# --------------------------------------------------------------------------------------- execution

def _reindex(client: Elasticsearch, request: Request, *, poll: float = 0.1, max_poll: float = 5.0) -> dict[str, Any]:
    """Start an async ``_reindex``, poll its task until done; the response, failures raised."""
    started = send(client, request, doing="starting _reindex")
    task = str(started.get("task") or "")
    if not task:
        response: dict[str, Any] = started
    else:
        while True:
            state = send(client, Request("GET", f"_tasks/{path(task)}"), doing=f"polling reindex task {task}")
            if state.get("completed"):
                if state.get("error"):
                    err = state["error"]
                    raise RequestFailed(f"the reindex task {task} failed: {err.get('type')}: {err.get('reason')}",
                                        error_type=err.get("type"), reason=err.get("reason"),
                                        hint="fix the cause and run `toolkit migrate` again (it resumes)")
                response = state.get("response") or {}
                break
            time.sleep(poll)
            poll = min(max_poll, poll * 1.5)
    failures = response.get("failures") or []
    if failures:
        first = failures[0]
        cause = first.get("cause") or {}
        raise RequestFailed(
            f"_reindex stopped: {len(failures)} document(s) failed, the first {first.get('id')!r}: "
            f"{cause.get('type')}: {cause.get('reason')}", status=first.get("status"),
            error_type=cause.get("type"), reason=cause.get("reason"),
            hint="fix the cause (the new mapping or pipeline) and run `toolkit migrate` again (it resumes)")
    return response


def _count(client: Elasticsearch, index: str, query: dict[str, Any] | None = None) -> int:
    body = {"query": query} if query else None
    return int(send(client, Request("POST", f"{path(index)}/_count", body=body), doing=f"counting {index}")["count"])


def _refresh(client: Elasticsearch, index: str) -> None:
    send(client, Request("POST", f"{path(index)}/_refresh"), doing=f"refreshing {index}")


def _ids(client: Elasticsearch, index: str, size: int) -> set[str]:
    body = send(client, Request("POST", f"{path(index)}/_search", body={
        "size": size, "_source": False, "query": {"match_all": {}}}), doing=f"listing the ids of {index}")
    return {str(h["_id"]) for h in (body.get("hits") or {}).get("hits") or []}


def _settings_for(settings: Settings, *, target: str, dims: int | None = None) -> Settings:
    """``settings`` writing to (and searching) ``target`` instead of the alias; optionally other dims."""
    index = settings.index.model_copy(update={"alias": target, **({"image_dims": dims} if dims else {})})
    return settings.model_copy(update={"index": index})


def _items(hits: list[dict[str, Any]], settings: Settings) -> Iterator[Any]:
    from toolkit.images.sources import SourceItem
    from toolkit.search import field_value

    f = settings.fields
    for hit in hits:
        src = hit.get("_source") or {}
        location = field_value(src, f.path) or field_value(src, f.url)
        meta = field_value(src, f.metadata)
        yield SourceItem(
            location=str(location or ""), id=str(hit["_id"]), caption=field_value(src, f.caption),
            label=field_value(src, f.label), relation_id=field_value(src, f.relation_id),
            metadata={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
            position=f"{hit.get('_index')}/{hit['_id']}",
            error=None if location else f"document has neither '{f.path}' nor '{f.url}': its image cannot be read")


def reembed(client: Elasticsearch, settings: Settings, target: str, *, embedder: ImageEmbedder | None,
            failures_dir: Path, page_size: int = REEMBED_PAGE,
            on_page: Callable[[IngestReport], None] | None = None) -> tuple[int, int, list[str]]:
    """Re-embed every document of ``target`` that has no image vector, with the ingest engine.

    Pages of ``page_size`` documents that still lack a vector are read, turned into source items (the
    stored ``path``/``url``, caption, label, metadata, same id) and ingested into ``target``; a run
    stopped half-way resumes at the next call. Returns ``(indexed, failed, failures files)``.
    """
    from toolkit.ingest import ingest, load_embedder

    write = _settings_for(settings, target=target)
    model = embedder or load_embedder(settings)
    indexed = failed = 0
    failed_ids: list[str] = []
    attempted: set[str] = set()
    files: list[str] = []
    page = 0
    while True:
        _refresh(client, target)
        body = send(client, reembed_page_request(target, settings, failed_ids, page_size),
                    doing=f"reading documents of {target} to re-embed")
        hits = (body.get("hits") or {}).get("hits") or []
        if not hits:
            return indexed, failed, files
        again = [str(h["_id"]) for h in hits if str(h["_id"]) in attempted]
        if again:
            # Tried once in this call and still without a vector (failed, or a pipeline dropped it):
            # left out from now on, or the same page would come back forever.
            failed_ids += again
            hits = [h for h in hits if str(h["_id"]) not in attempted]
            if not hits:
                continue
        attempted.update(str(h["_id"]) for h in hits)
        page += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        failures_file = failures_dir / f"toolkit-migrate-failures-{target}-{stamp}-{page:05d}.jsonl"
        report = ingest(client, write, source=list(_items(hits, settings)), embedder=model,
                        failures_file=failures_file)
        if on_page is not None:
            on_page(report)
        if report.error is not None:
            raise report.error
        if report.interrupted:
            raise KeyboardInterrupt
        indexed += report.indexed
        failed += report.failed
        if report.failed and report.failures_file:
            files.append(report.failures_file)
            failed_ids += _failed_ids(Path(report.failures_file))


def _failed_ids(file: Path) -> list[str]:
    ids: list[str] = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ids
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("id"):
            ids.append(str(record["id"]))
    return ids


def _creation(client: Elasticsearch, index: str) -> datetime:
    body = send(client, Request("GET", f"{path(index)}/_settings", params={"flat_settings": True}),
                doing=f"reading the settings of {index}")
    ms = int(((body.get(index) or {}).get("settings") or {}).get("index.creation_date", time.time() * 1000))
    return datetime.fromtimestamp(ms / 1000, UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _fill(client: Elasticsearch, settings: Settings, plan: Plan, report: MigrationReport, request: Request, *,
          embedder: ImageEmbedder | None, failures_dir: Path, page_size: int,
          on_page: Callable[[IngestReport], None] | None = None) -> int:
    response = _reindex(client, request)
    moved = int(response.get("created", 0)) + int(response.get("updated", 0))
    if plan.reembed_images:
        done, failed, files = reembed(client, settings, plan.target, embedder=embedder,
                                      failures_dir=failures_dir, page_size=page_size, on_page=on_page)
        report.reembedded += done
        report.reembed_failed += failed
        report.failures_files += files
    return moved


def _overlaps(client: Elasticsearch, settings: Settings, plan: Plan, old_dims: int | None,
              samples: int) -> dict[str, float]:
    """Per sample document: |top-10 neighbours in the old index ∩ in the new| / 10 (its own vector each)."""
    from toolkit.search import SearchOptions, image_query, like_lookup_request, run, vector_from_lookup

    f = settings.fields
    new = _settings_for(settings, target=plan.target)
    old = _settings_for(settings, target=plan.sources[0], dims=old_dims)
    body = send(client, Request("POST", f"{path(plan.target)}/_search", body={
        "size": samples, "query": {"exists": {"field": f.image_vector}}, "_source": False}),
        doing=f"sampling {plan.target}")
    out: dict[str, float] = {}
    options = SearchOptions(k=10, fields=())
    for hit in (body.get("hits") or {}).get("hits") or []:
        doc_id = str(hit["_id"])
        try:
            new_vec = vector_from_lookup(send(client, like_lookup_request(doc_id, new, index=plan.target)), doc_id, new)
            old_vec = vector_from_lookup(send(client, like_lookup_request(doc_id, old, index=",".join(plan.sources))),
                                         doc_id, old)
        except NotFound:
            continue
        new_ids = [h.id for h in run(client, image_query(new_vec, new, options, index=plan.target)).hits]
        old_ids = [h.id for h in run(client, image_query(old_vec, old, options, index=",".join(plan.sources))).hits]
        if old_ids:
            out[doc_id] = round(len(set(new_ids) & set(old_ids)) / min(10, len(old_ids)), 3)
    return out


def differences(client: Elasticsearch, plan: Plan) -> tuple[list[str], list[str]]:
    """Ids only in the old indices and only in the new one (equal counts can hide a delete and a write;
    up to ``MAX_LISTED_IDS`` documents; beyond that only the counts are compared, by :func:`verify`)."""
    sources = ",".join(plan.sources)
    for name in (*plan.sources, plan.target):
        _refresh(client, name)
    old_count, new_count = _count(client, sources), _count(client, plan.target)
    if max(old_count, new_count) > MAX_LISTED_IDS:
        return [], []  # too many to list: verify compares the counts
    old_ids, new_ids = _ids(client, sources, old_count), _ids(client, plan.target, new_count)
    return sorted(old_ids - new_ids), sorted(new_ids - old_ids)


def verify(client: Elasticsearch, settings: Settings, plan: Plan, report: MigrationReport, *,
           old_dims: int | None, samples: int = SAMPLES) -> None:
    """Counts (and, when they differ, the ids only in one index), pipeline errors, overlap@10; fills
    ``report.problems`` with what must block the switch."""
    sources = ",".join(plan.sources)
    for name in (*plan.sources, plan.target):
        _refresh(client, name)
    report.old_count, report.new_count = _count(client, sources), _count(client, plan.target)
    if report.old_count != report.new_count:
        if max(report.old_count, report.new_count) <= MAX_LISTED_IDS:
            old_ids, new_ids = _ids(client, sources, report.old_count), _ids(client, plan.target, report.new_count)
            report.only_in_old, report.only_in_new = sorted(old_ids - new_ids), sorted(new_ids - old_ids)
        report.problems.append(f"{plan.target} holds {report.new_count} documents, {', '.join(plan.sources)} "
                               f"{report.old_count}" + (f" (only in the old: {', '.join(report.only_in_old[:10])};"
                                                        f" only in the new: {', '.join(report.only_in_new[:10])})"
                                                        if report.only_in_old or report.only_in_new else ""))
    errors = {"exists": {"field": "ingest_error.message"}}
    old_errors, new_errors = _count(client, sources, errors), _count(client, plan.target, errors)
    report.pipeline_errors = new_errors
    if new_errors > old_errors:
        report.problems.append(f"{new_errors - old_errors} document(s) in {plan.target} carry a pipeline error "
                               f"(ingest_error.message): the new pipeline failed on them")
    no_vector = {"bool": {"must_not": [{"exists": {"field": settings.fields.image_vector}}]}}
    lacking = _count(client, plan.target, no_vector) - _count(client, sources, no_vector)
    if plan.reembed_images:
        # Documents, not attempts: a document retried by the catch-up counts once.
        report.reembed_failed = max(0, lacking)
    if lacking > 0 and plan.reembed_images:
        report.problems.append(f"{lacking} document(s) could not be re-embedded (listed in "
                               f"{', '.join(report.failures_files)}): they have no image vector in {plan.target}")
    elif lacking > 0:
        report.problems.append(f"{lacking} document(s) in {plan.target} lack the image vector")
    report.overlaps = _overlaps(client, settings, plan, old_dims, samples)
    if not plan.reembed_images:
        # Same vectors in both: each sample must find itself among its neighbours in the new index.
        low = [doc for doc, share in report.overlaps.items() if share == 0]
        if low:
            report.problems.append(f"sample queries found none of the old neighbours in {plan.target} for "
                                   f"{', '.join(low)}")


def check_text_model(client: Elasticsearch, settings: Settings) -> int:
    """Before a text-model migration: the new model is uploaded and outputs ``index.caption_dims``.

    Returns its ``embedding_size``. Raises NotFound (hint: ``toolkit deploy-model``) or DimsMismatch,
    so a copy through a pipeline that cannot embed never starts.
    """
    from toolkit.provision import deployed_embedding_size

    model = settings.text_model.cluster_model_id
    size = deployed_embedding_size(client, model)
    if size is None:
        raise NotFound(f"the new text model '{model}' is not in the cluster", what="model", name=model,
                       hint="deploy it beside the old one first: `toolkit deploy-model` with text_model set to it")
    if size != settings.index.caption_dims:
        raise DimsMismatch(f"text model '{model}' outputs {size} dims but index.caption_dims is "
                           f"{settings.index.caption_dims}", hint=f"set index.caption_dims: {size} in toolkit.yaml")
    return size


def run_migration(client: Elasticsearch, settings: Settings, plan: Plan, *, embedder: ImageEmbedder | None = None,
                  failures_dir: Path | None = None, page_size: int = REEMBED_PAGE, accept: bool = False,
                  samples: int = SAMPLES, on_step: Callable[[str], None] | None = None,
                  on_page: Callable[[IngestReport], None] | None = None) -> MigrationReport:
    """Carry out ``plan``: install, create, fill, catch up, verify, switch, catch up after the switch.

    Args:
        embedder: the image embedder for a re-embedding plan (default: the configured model).
        failures_dir: where re-embedding failures files go (default: the working directory).
        accept: switch even when verification found problems (they stay in the report).
        on_step: called with each step's name before it runs ("install", "create", "copy", "catch-up",
            "verify", "switch", "after-switch").
        on_page: called with the ingest report of each re-embedded page (progress).

    Raises CheckFailed (report attached; the alias untouched) when verification finds problems and
    ``accept`` is false. Running it again resumes into the same new index.
    """
    started = time.monotonic()
    step = on_step or (lambda name: None)
    if plan.reembed_images and embedder is None:
        from toolkit.ingest import load_embedder

        embedder = load_embedder(settings)  # once, before anything changes: a model that cannot load stops here
    if plan.reembed_images and embedder is not None and int(embedder.dims) != settings.index.image_dims:
        raise DimsMismatch(f"image model '{plan.image_model}' outputs {embedder.dims} dims but the new index would "
                           f"map {settings.fields.image_vector} with {settings.index.image_dims}",
                           hint=f"pass --image-dims {embedder.dims} (index.image_dims)")
    report = MigrationReport(plan=plan)
    dirs = failures_dir or Path.cwd()
    step("install")
    for asset in plan.assets:
        send(client, asset.request, doing=f"installing {asset.kind} {asset.name}")
    step("create")
    if not plan.resume:
        send(client, Request("PUT", path(plan.target), body={}), doing=f"creating index {plan.target}")
    began = _creation(client, plan.target) - CATCH_UP_MARGIN
    step("copy")
    report.copied = _fill(client, settings, plan, report, plan.copy_request(), embedder=embedder,
                          failures_dir=dirs, page_size=page_size)
    step("catch-up")
    last = datetime.now(UTC)
    report.caught_up = _fill(client, settings, plan, report, plan.copy_request(_since_query(_iso(began)),
                                                                                op_type="index"),
                             embedder=embedder, failures_dir=dirs, page_size=page_size, on_page=on_page)
    step("verify")
    only_old, only_new = differences(client, plan)
    if only_old:  # written after the catch-up began: copy them by id
        report.caught_up += _fill(client, settings, plan, report,
                                  plan.copy_request({"ids": {"values": only_old}}, op_type="index"),
                                  embedder=embedder, failures_dir=dirs, page_size=page_size, on_page=on_page)
    if only_new:  # deleted from the old index meanwhile: the old index is the truth until the switch
        send(
            client, Request("POST", f"{path(plan.target)}/_delete_by_query", params={"refresh": True},
                            body={"query": {"ids": {"values": only_new}}}),
            doing=f"removing from {plan.target} the documents deleted from {', '.join(plan.sources)}")
        report.removed = len(only_new)
    old_dims = (read_props_dims(client, plan.sources[0], settings))
    verify(client, settings, plan, report, old_dims=old_dims, samples=samples)
    if report.problems and not accept:
        report.seconds = time.monotonic() - started
        raise CheckFailed(f"verification found {len(report.problems)} problem(s); {plan.alias} still points at "
                          f"{', '.join(plan.sources)}: " + "; ".join(report.problems), results=report,
                          hint="fix them and run `toolkit migrate` again (it resumes into "
                               f"{plan.target}), or pass --accept to switch anyway")
    step("switch")
    send(client, plan.switch_request(), doing=f"switching {plan.alias} to {plan.target}")
    report.switched = True
    step("after-switch")
    report.after_switch = _fill(client, settings, plan, report,
                                plan.copy_request(_since_query(_iso(last - CATCH_UP_MARGIN))),
                                embedder=embedder, failures_dir=dirs, page_size=page_size, on_page=on_page)
    _refresh(client, plan.target)
    report.new_count = _count(client, plan.target)
    if plan.reembed_images:
        # An ingest job still on the old model writes old vectors into the new index once the alias moved
        # (with equal dims nothing fails): say so, the next `toolkit migrate` re-embeds them.
        stale = _count(client, plan.target, {"bool": {"must_not": [{"term": {"image_model": plan.image_model}}],
                                                      "filter": [{"exists": {"field": "image_model"}}]}})
        if stale:
            report.warnings.append(f"{stale} document(s) in {plan.target} were written with another image model "
                                   f"than {plan.image_model} after the switch: move every ingest job to the new "
                                   "model, then run `toolkit migrate` again (it re-embeds them)")
    report.seconds = time.monotonic() - started
    return report


def read_props_dims(client: Elasticsearch, index: str, settings: Settings) -> int | None:
    """The ``dims`` of the image vector field in ``index`` (None when unmapped)."""
    body = send(client, Request("GET", f"{path(index)}/_mapping"), doing=f"reading the mapping of {index}")
    props = ((body.get(index) or {}).get("mappings") or {}).get("properties") or {}
    dims = (props.get(settings.fields.image_vector) or {}).get("dims")
    return int(dims) if dims else None


# ------------------------------------------------------------------------------- rollback, cleanup

@dataclass(frozen=True)
class RollbackReport:
    alias: str
    left: tuple[str, ...]
    restored: str
    only_in_left: int
    """Documents more in the index left than in the one restored (written since the switch)."""

    def as_json(self) -> dict[str, Any]:
        return {"alias": self.alias, "from": list(self.left), "to": self.restored,
                "documents_only_in_left_index": self.only_in_left}


def _previous(current: Current) -> str:
    live = min((number_of(i, current.alias) or 0) for i in current.indices)
    older = [i for i in current.existing if i not in current.indices and (number_of(i, current.alias) or 0) < live]
    if not older:
        raise ValidationError(f"there is no older index than {', '.join(current.indices)} to point "
                              f"{current.alias} back at", hint="nothing to roll back (was it cleaned up?)")
    return max(older, key=lambda i: number_of(i, current.alias) or 0)


def rollback(client: Elasticsearch, settings: Settings) -> RollbackReport:
    """Point the alias back at the index before the current one (one atomic ``POST _aliases``).

    The index left keeps its documents (``--cleanup`` is never implied); documents written to it since
    the switch are counted in the report, not copied back.
    """
    current = read_current(client, settings)
    previous = _previous(current)
    send(client, switch_request(current.alias, current.indices, previous),
         doing=f"pointing {current.alias} back at {previous}")
    left = ",".join(current.indices)
    _refresh(client, left)
    _refresh(client, previous)
    extra = max(0, _count(client, left) - _count(client, previous))
    return RollbackReport(alias=current.alias, left=current.indices, restored=previous, only_in_left=extra)


@dataclass(frozen=True)
class CleanupReport:
    """What ``--cleanup`` deleted: old indices, the pipelines only they used, the models only those ran."""

    indices: tuple[str, ...]
    pipelines: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "pipelines": list(self.pipelines), "models": list(self.models),
                "notes": list(self.notes)}


def _pipeline_models(client: Elasticsearch) -> dict[str, str | None]:
    """Every ingest pipeline and the model its first inference processor runs (None without one)."""
    try:
        body = send(client, Request("GET", "_ingest/pipeline"), doing="reading the ingest pipelines")
    except NotFound:
        return {}
    out: dict[str, str | None] = {}
    for name, spec in body.items():
        out[name] = None
        for proc in (spec or {}).get("processors") or []:
            if isinstance(proc, dict) and isinstance(proc.get("inference"), dict):
                out[name] = str(proc["inference"].get("model_id") or "") or None
                break
    return out


def cleanup(client: Elasticsearch, settings: Settings) -> CleanupReport:
    """Delete the ``<alias>-NNNNNN`` indices older than the ones behind the alias, then the pipelines
    no remaining index uses as ``default_pipeline`` (they were the old indices'), then the text models
    no remaining pipeline runs (their deployments stopped first).

    Never an index behind the alias, never a newer one (a migration in progress, or rolled back from),
    never the pipeline or model the settings name.
    """
    from toolkit.textmodel.lifecycle import delete as delete_model
    from toolkit.textmodel.lifecycle import stop

    current = read_current(client, settings)
    live = min((number_of(i, current.alias) or 0) for i in current.indices)
    old = [i for i in current.existing if i not in current.indices and (number_of(i, current.alias) or 0) < live]
    if not old:
        raise ValidationError(f"no index older than {', '.join(current.indices)} to delete",
                              hint="nothing to clean up")
    flat = send(client, Request("GET", f"{path(','.join(old))}/_settings", params={"flat_settings": True}),
                doing="reading the settings of the old indices")
    old_pipelines = {str(s) for s in (((flat.get(n) or {}).get("settings") or {}).get("index.default_pipeline")
                                      for n in old) if s and s != "_none"}
    for name in old:
        try:
            send(client, Request("DELETE", path(name)), doing=f"deleting index {name}")
        except ClusterError as exc:
            raise RequestFailed(f"could not delete {name}: {exc.message}", hint="delete it in Kibana") from exc
    remaining = send(client, Request("GET", "_all/_settings", params={"flat_settings": True}),
                     doing="reading which pipelines the remaining indices use")
    used = {str(((v or {}).get("settings") or {}).get("index.default_pipeline")) for v in remaining.values()}
    used.add(settings.index.pipeline)
    models_before = _pipeline_models(client)
    pipelines = sorted(p for p in old_pipelines - used if p in models_before)
    for name in pipelines:
        send(client, Request("DELETE", f"_ingest/pipeline/{path(name)}"), doing=f"deleting pipeline {name}")
    still = {m for p, m in models_before.items() if p not in pipelines and m}
    keep = {settings.text_model.cluster_model_id, settings.text_model.cluster_deployment_id}
    models, notes = [], []
    for model in sorted({m for p, m in models_before.items() if p in pipelines and m} - still - keep):
        stop(client, model)
        if delete_model(client, model):
            models.append(model)
        else:
            notes.append(f"deployment '{model}' stopped; its model has another id: delete it with `toolkit undeploy`")
    return CleanupReport(indices=tuple(old), pipelines=tuple(pipelines), models=tuple(models), notes=tuple(notes))
