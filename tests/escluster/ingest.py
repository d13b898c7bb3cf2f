"""Ingest pipelines: validation on ``PUT _ingest/pipeline/<id>`` and execution on writes and ``_simulate``.

Supported processors: ``set``, ``remove``, ``rename``, ``append``, ``lowercase``, ``uppercase``, ``trim``,
``convert``, ``json``, ``split``, ``join``, ``fail``, ``drop``, ``pipeline``, ``inference`` (both the
``input_output`` and the legacy ``target_field`` + ``field_map`` shapes) and ``script`` (accepted, fails
when run). Every processor takes ``tag``, ``description``, ``ignore_failure``, ``on_failure``; ``if`` is
accepted and ignored (no Painless here: the processor always runs). Mustache ``{{x}}`` / ``{{{x}}}``
templates work in field names, ``set`` values and ``fail`` messages (``{{x}}`` escapes ``"`` and ``\\``
as ES's default JSON encoder does).

Example::

    doc = IngestDocument({"a": "X"}, index="i", doc_id="1")
    run_pipeline({"p": {"processors": [{"lowercase": {"field": "a"}}]}}, "p", doc, infer=None)
    doc.source   # {"a": "x"}
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ESError

Infer = Callable[[str, list[str]], list[list[float]]]

_COMMON = {"tag", "description", "if", "ignore_failure", "on_failure"}
_PROCESSORS: dict[str, tuple[set[str], set[str]]] = {
    # name: (required, optional)
    "set": ({"field"}, {"value", "copy_from", "override", "ignore_empty_value", "media_type"}),
    "remove": (set(), {"field", "keep", "ignore_missing"}),
    "rename": ({"field", "target_field"}, {"ignore_missing", "override"}),
    "append": ({"field", "value"}, {"allow_duplicates", "media_type"}),
    "lowercase": ({"field"}, {"target_field", "ignore_missing"}),
    "uppercase": ({"field"}, {"target_field", "ignore_missing"}),
    "trim": ({"field"}, {"target_field", "ignore_missing"}),
    "convert": ({"field", "type"}, {"target_field", "ignore_missing"}),
    "json": (
        {"field"},
        {
            "target_field",
            "add_to_root",
            "add_to_root_conflict_strategy",
            "allow_duplicate_keys",
            "strict_json_parsing",
        },
    ),
    "split": ({"field", "separator"}, {"target_field", "ignore_missing", "preserve_trailing"}),
    "join": ({"field", "separator"}, {"target_field"}),
    "fail": ({"message"}, set()),
    "drop": (set(), set()),
    "pipeline": ({"name"}, {"ignore_missing_pipeline"}),
    "inference": (
        {"model_id"},
        {"input_output", "target_field", "field_map", "inference_config", "ignore_missing"},
    ),
    "script": (set(), {"source", "id", "lang", "params"}),
}
_CONVERT_TYPES = ("integer", "long", "float", "double", "boolean", "string", "auto", "ip")
_TEMPLATE = re.compile(r"\{\{\{\s*([^}]+?)\s*\}\}\}|\{\{\s*([^}]+?)\s*\}\}")
_META = (
    "_index",
    "_id",
    "_routing",
    "_version",
    "_version_type",
    "_if_seq_no",
    "_if_primary_term",
    "_dynamic_templates",
)


def config_error(
    reason: str, processor_type: str | None = None, property_name: str | None = None, tag: str | None = None
) -> ESError:
    """A 400 ``parse_exception`` with the headers ES adds to pipeline configuration errors."""
    extra: dict[str, Any] = {}
    if tag is not None:
        extra["processor_tag"] = tag
    if processor_type is not None:
        extra["processor_type"] = processor_type
    if property_name is not None:
        extra["property_name"] = property_name
    return ESError(400, "parse_exception", reason, **extra)


# ------------------------------------------------------------------------------------------ validation


def validate_pipeline(body: Any) -> None:
    """Check a pipeline definition as ``PUT _ingest/pipeline/<id>`` does; raises 400 ``parse_exception``.

    Example::

        validate_pipeline({"processors": [{"set": {"field": "a", "value": 1}}]})
    """
    if not isinstance(body, dict):
        raise config_error("request body is required")
    if "processors" not in body:
        raise config_error("[processors] required property is missing", property_name="processors")
    for key in ("processors", "on_failure"):
        if key in body:
            procs = body[key]
            if not isinstance(procs, list):
                raise config_error(
                    f"[{key}] property isn't a list, but of type [{type(procs).__name__}]", property_name=key
                )
            if key == "on_failure" and not procs:
                raise config_error(
                    "pipeline [on_failure] processors list cannot be empty", property_name="on_failure"
                )
            for proc in procs:
                validate_processor(proc)


def validate_processor(proc: Any) -> None:
    """Check one ``{"type": {config}}`` processor entry (recursing into its ``on_failure``)."""
    if not isinstance(proc, dict) or len(proc) != 1:
        raise config_error(
            "Expected a single processor per entry but found "
            + str(len(proc) if isinstance(proc, dict) else 0)
        )
    ptype, cfg = next(iter(proc.items()))
    if ptype not in _PROCESSORS:
        raise config_error(f"No processor type exists with name [{ptype}]", processor_type=ptype)
    if not isinstance(cfg, dict):
        raise config_error(f"[{ptype}] processor config must be an object", processor_type=ptype)
    tag = cfg.get("tag")
    required, optional = _PROCESSORS[ptype]
    for name in sorted(required):
        if name not in cfg:
            raise config_error(f"[{name}] required property is missing", ptype, name, tag)
    unknown = sorted(k for k in cfg if k not in required | optional | _COMMON)
    if unknown:
        listed = ", ".join(unknown)
        raise config_error(
            f"processor [{ptype}] doesn't support one or more provided configuration parameters [{listed}]",
            ptype,
            None,
            tag,
        )
    if ptype == "set":
        if "value" in cfg and "copy_from" in cfg:
            raise config_error(
                "[copy_from] cannot set both `copy_from` and `value` in the same processor",
                ptype,
                "copy_from",
                tag,
            )
        if "value" not in cfg and "copy_from" not in cfg:
            raise config_error("[value] required property is missing", ptype, "value", tag)
    if ptype == "remove" and "field" not in cfg and "keep" not in cfg:
        raise config_error("[keep] or [field] must be specified", ptype, "keep", tag)
    if ptype == "convert" and cfg["type"] not in _CONVERT_TYPES:
        raise config_error(
            f"[type] type [{cfg['type']}] not supported, cannot convert field.", ptype, "type", tag
        )
    if ptype == "inference":
        _validate_inference(cfg, tag)
    if "on_failure" in cfg:
        handlers = cfg["on_failure"]
        if not isinstance(handlers, list) or not handlers:
            raise config_error("[on_failure] processors list cannot be empty", ptype, "on_failure", tag)
        for handler in handlers:
            validate_processor(handler)


def _validate_inference(cfg: dict[str, Any], tag: str | None) -> None:
    if "input_output" not in cfg:
        return
    if "target_field" in cfg:
        raise config_error(
            "[target_field] option is incompatible with [input_output]. Use the [output_field] "
            "option to specify where to write the inference results to.",
            "inference",
            "target_field",
            tag,
        )
    if "field_map" in cfg:
        raise config_error(
            "[field_map] option is incompatible with [input_output]. Use the [input_field] "
            "option to specify the field to read the inference input from.",
            "inference",
            "field_map",
            tag,
        )
    io = cfg["input_output"]
    items = io if isinstance(io, list) else [io]
    if not items:
        raise config_error(
            "[input_output] property cannot be empty at least one is required",
            "inference",
            "input_output",
            tag,
        )
    for item in items:
        if not isinstance(item, dict) or "input_field" not in item:
            raise config_error("[input_field] required property is missing", "inference", "input_field", tag)
        if "output_field" not in item:
            raise config_error(
                "[output_field] required property is missing", "inference", "output_field", tag
            )


# ------------------------------------------------------------------------------------------- documents


class IngestDocument:
    """A document in a pipeline: ``source``, metadata (``_index``, ``_id``...) and ``_ingest``."""

    def __init__(
        self,
        source: dict[str, Any],
        *,
        index: str | None,
        doc_id: str | None,
        version: Any = None,
        routing: str | None = None,
    ) -> None:
        self.source = source
        self.meta: dict[str, Any] = {"_index": index, "_id": doc_id}
        if version is not None:
            self.meta["_version"] = version
        if routing is not None:
            self.meta["_routing"] = routing
        now = _dt.datetime.now(_dt.UTC)
        self.ingest: dict[str, Any] = {
            "timestamp": now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        }
        self.executed: list[str] = []

    # -- paths
    def _root_and_path(self, path: str) -> tuple[dict[str, Any], list[str]]:
        if path in _META:
            return self.meta, [path]
        if path.startswith("_ingest."):
            return self.ingest, path[len("_ingest.") :].split(".")
        if path == "_ingest":
            return {"_ingest": self.ingest}, ["_ingest"]
        if path.startswith("_source."):
            path = path[len("_source.") :]
        return self.source, path.split(".")

    def has(self, path: str) -> bool:
        try:
            self.get(path)
            return True
        except ESError:
            return False

    def get(self, path: str) -> Any:
        root, parts = self._root_and_path(path)
        node: Any = root
        for part in parts:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise ESError(
                    400, "illegal_argument_exception", f"field [{part}] not present as part of path [{path}]"
                )
        return node

    def set(self, path: str, value: Any) -> None:
        root, parts = self._root_and_path(path)
        node: Any = root
        for part in parts[:-1]:
            if isinstance(node, dict):
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"cannot set [{parts[-1]}] with parent object of type [{_java_type(node)}] as "
                    f"part of path [{path}]",
                )
        last = parts[-1]
        if isinstance(node, dict):
            node[last] = value
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        else:
            raise ESError(
                400,
                "illegal_argument_exception",
                f"cannot set [{last}] with parent object of type [{_java_type(node)}] as part of "
                f"path [{path}]",
            )

    def remove(self, path: str) -> None:
        root, parts = self._root_and_path(path)
        parent: Any = root
        for part in parts[:-1]:
            if isinstance(parent, dict) and part in parent:
                parent = parent[part]
            elif isinstance(parent, list) and part.isdigit() and int(part) < len(parent):
                parent = parent[int(part)]
            else:
                raise ESError(
                    400, "illegal_argument_exception", f"field [{part}] not present as part of path [{path}]"
                )
        last = parts[-1]
        if isinstance(parent, dict) and last in parent:
            del parent[last]
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            del parent[int(last)]
        else:
            raise ESError(
                400, "illegal_argument_exception", f"field [{last}] not present as part of path [{path}]"
            )

    def render(self, template: Any) -> Any:
        """Mustache-render a string (``{{x}}`` JSON-string-escaped, ``{{{x}}}`` raw); other values recurse."""
        if isinstance(template, dict):
            return {self.render(k): self.render(v) for k, v in template.items()}
        if isinstance(template, list):
            return [self.render(v) for v in template]
        if not isinstance(template, str) or "{{" not in template:
            return template

        def repl(match: re.Match[str]) -> str:
            raw, escaped = match.group(1), match.group(2)
            name = (raw or escaped or "").strip()
            try:
                value = (
                    self.get(name)
                    if name not in ("_source", "_ingest")
                    else (self.source if name == "_source" else self.ingest)
                )
            except ESError:
                return ""
            text = _to_text(value)
            # {{x}} escapes like ES's default application/json template encoder; {{{x}}} is raw.
            return text if raw is not None else json.dumps(text, ensure_ascii=False)[1:-1]

        return _TEMPLATE.sub(repl, template)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _java_type(value: Any) -> str:
    return {
        bool: "java.lang.Boolean",
        int: "java.lang.Integer",
        float: "java.lang.Double",
        str: "java.lang.String",
        list: "java.util.ArrayList",
        dict: "java.util.HashMap",
    }.get(type(value), "null" if value is None else "java.lang.Object")


# ------------------------------------------------------------------------------------------- execution


class _Dropped(Exception):
    """Raised to stop everything when a ``drop`` processor runs."""


class ProcessorFailure(Exception):
    """A processor failed and nothing handled it; ``error`` is what the write answers with."""

    def __init__(self, error: ESError, processor_type: str, tag: str | None, pipeline: str) -> None:
        super().__init__(error.reason)
        self.error = error
        self.processor_type = processor_type
        self.tag = tag
        self.pipeline = pipeline


def run_pipeline(
    pipelines: Mapping[str, dict[str, Any]], pipeline_id: str, doc: IngestDocument, *, infer: Infer | None
) -> bool:
    """Run pipeline ``pipeline_id`` on ``doc`` in place; returns False when a ``drop`` processor dropped it.

    Raises ``ESError`` (the failing processor's error) when a failure is not handled by ``on_failure``
    or ``ignore_failure``.

    Example::

        run_pipeline(pipelines, "my-pipeline", doc, infer=ml.infer)
    """
    runner = _Runner(pipelines, infer)
    try:
        runner.pipeline(pipeline_id, doc, [])
    except _Dropped:
        return False
    except ProcessorFailure as failure:
        raise failure.error from None
    return True


def run_inline(
    pipeline: dict[str, Any],
    doc: IngestDocument,
    *,
    pipelines: Mapping[str, dict[str, Any]],
    infer: Infer | None,
    pipeline_id: str = "_simulate_pipeline",
) -> bool:
    """Like :func:`run_pipeline` for a pipeline body not stored under an id (``_simulate``)."""
    runner = _Runner({**pipelines, pipeline_id: pipeline}, infer)
    try:
        runner.pipeline(pipeline_id, doc, [])
    except _Dropped:
        return False
    except ProcessorFailure as failure:
        raise failure.error from None
    return True


class _Runner:
    def __init__(self, pipelines: Mapping[str, dict[str, Any]], infer: Infer | None) -> None:
        self.pipelines = pipelines
        self.infer = infer

    def pipeline(self, pipeline_id: str, doc: IngestDocument, stack: list[str]) -> None:
        if pipeline_id in stack:
            raise ESError(500, "illegal_state_exception", f"Cycle detected for pipeline: {pipeline_id}")
        body = self.pipelines.get(pipeline_id)
        if body is None:
            raise ESError(
                400, "illegal_argument_exception", f"pipeline with id [{pipeline_id}] does not exist"
            )
        stack = stack + [pipeline_id]
        doc.executed.append(pipeline_id)
        try:
            for proc in body.get("processors", []):
                self.processor(proc, doc, stack)
        except ProcessorFailure as failure:
            handlers = body.get("on_failure")
            if not handlers:
                raise
            # Pipeline-level on_failure ends the pipeline after the handlers ran.
            self.with_failure_metadata(doc, failure, handlers, stack)

    def with_failure_metadata(
        self, doc: IngestDocument, failure: ProcessorFailure, handlers: list[dict[str, Any]], stack: list[str]
    ) -> None:
        saved = {
            k: doc.ingest.get(k)
            for k in (
                "on_failure_message",
                "on_failure_processor_type",
                "on_failure_processor_tag",
                "on_failure_pipeline",
            )
        }
        doc.ingest["on_failure_message"] = failure.error.reason
        doc.ingest["on_failure_processor_type"] = failure.processor_type
        doc.ingest["on_failure_processor_tag"] = failure.tag
        doc.ingest["on_failure_pipeline"] = failure.pipeline
        try:
            for handler in handlers:
                self.processor(handler, doc, stack)
        finally:
            for key, value in saved.items():
                if value is None:
                    doc.ingest.pop(key, None)
                else:
                    doc.ingest[key] = value

    def processor(self, proc: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        ptype, cfg = next(iter(proc.items()))
        try:
            getattr(self, f"p_{ptype}")(cfg, doc, stack)
        except _Dropped:
            raise
        except (ESError, ProcessorFailure) as exc:
            if cfg.get("ignore_failure") in (True, "true"):
                return
            if isinstance(exc, ProcessorFailure):
                # A nested pipeline failed: the inner processor's metadata is what ES reports.
                failure = exc
            else:
                failure = ProcessorFailure(exc, ptype, cfg.get("tag"), stack[-1])
            handlers = cfg.get("on_failure")
            if not handlers:
                raise failure from None
            # Processor-level on_failure handles it; the pipeline goes on.
            self.with_failure_metadata(doc, failure, handlers, stack)

    # -- processors
    def p_set(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field = doc.render(cfg["field"])
        if cfg.get("override", True) in (False, "false") and doc.has(field) and doc.get(field) is not None:
            return
        if "copy_from" in cfg:
            value = copy.deepcopy(doc.get(doc.render(cfg["copy_from"])))
        else:
            value = doc.render(copy.deepcopy(cfg["value"]))
        if cfg.get("ignore_empty_value") in (True, "true") and (value is None or value == ""):
            return
        doc.set(field, value)

    def p_remove(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        if "keep" in cfg:
            keep = cfg["keep"] if isinstance(cfg["keep"], list) else [cfg["keep"]]
            keep = [doc.render(k) for k in keep]
            for key in list(doc.source):
                if not any(k == key or k.startswith(key + ".") for k in keep):
                    del doc.source[key]
            return
        fields = cfg["field"] if isinstance(cfg["field"], list) else [cfg["field"]]
        for field in fields:
            field = doc.render(field)
            if cfg.get("ignore_missing") in (True, "true") and not doc.has(field):
                continue
            doc.remove(field)

    def p_rename(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field, target = doc.render(cfg["field"]), doc.render(cfg["target_field"])
        if not doc.has(field):
            if cfg.get("ignore_missing") in (True, "true"):
                return
            raise ESError(400, "illegal_argument_exception", f"field [{field}] doesn't exist")
        if doc.has(target) and cfg.get("override") not in (True, "true"):
            raise ESError(400, "illegal_argument_exception", f"field [{target}] already exists")
        value = doc.get(field)
        doc.remove(field)
        doc.set(target, value)

    def p_append(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field = doc.render(cfg["field"])
        values = doc.render(copy.deepcopy(cfg["value"]))
        values = values if isinstance(values, list) else [values]
        current = doc.get(field) if doc.has(field) else None
        items = [] if current is None else (list(current) if isinstance(current, list) else [current])
        for value in values:
            if cfg.get("allow_duplicates", True) in (False, "false") and value in items:
                continue
            items.append(value)
        doc.set(field, items)

    def _string_op(
        self, cfg: dict[str, Any], doc: IngestDocument, ptype: str, op: Callable[[str], str]
    ) -> None:
        field = doc.render(cfg["field"])
        if not doc.has(field) or doc.get(field) is None:
            if cfg.get("ignore_missing") in (True, "true"):
                return
            if not doc.has(field):
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"field [{field.split('.')[-1]}] not present as part of path [{field}]",
                )
            raise ESError(400, "illegal_argument_exception", f"field [{field}] is null, cannot process it.")
        value = doc.get(field)
        if isinstance(value, list):
            out = []
            for item in value:
                if not isinstance(item, str):
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"value [{_to_text(item)}] of type [{_java_type(item)}] in list field [{field}] "
                        f"cannot be cast to [java.lang.String]",
                    )
                out.append(op(item))
            result: Any = out
        elif isinstance(value, str):
            result = op(value)
        else:
            raise ESError(
                400,
                "illegal_argument_exception",
                f"field [{field}] of type [{_java_type(value)}] cannot be cast to [java.lang.String]",
            )
        doc.set(doc.render(cfg.get("target_field", field)), result)

    def p_lowercase(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        self._string_op(cfg, doc, "lowercase", str.lower)

    def p_uppercase(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        self._string_op(cfg, doc, "uppercase", str.upper)

    def p_trim(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        self._string_op(cfg, doc, "trim", str.strip)

    def p_convert(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field = doc.render(cfg["field"])
        if not doc.has(field) or doc.get(field) is None:
            if cfg.get("ignore_missing") in (True, "true"):
                return
            if doc.has(field):
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"Field [{field}] is null, cannot be converted to type [{cfg['type']}]",
                )
            raise ESError(
                400,
                "illegal_argument_exception",
                f"field [{field.split('.')[-1]}] not present as part of path [{field}]",
            )
        value = doc.get(field)
        kind = cfg["type"]
        result = [_convert(v, kind) for v in value] if isinstance(value, list) else _convert(value, kind)
        doc.set(doc.render(cfg.get("target_field", field)), result)

    def p_json(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field = doc.render(cfg["field"])
        raw = doc.get(field)
        try:
            parsed = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise ESError(
                400, "illegal_argument_exception", f"com.fasterxml.jackson.core.JsonParseException: {exc}"
            ) from None
        if cfg.get("add_to_root") in (True, "true"):
            if not isinstance(parsed, dict):
                raise ESError(
                    400, "illegal_argument_exception", "cannot add non-map fields to root of document"
                )
            doc.source.update(parsed)
        else:
            doc.set(doc.render(cfg.get("target_field", field)), parsed)

    def p_split(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field = doc.render(cfg["field"])
        if not doc.has(field) or doc.get(field) is None:
            if cfg.get("ignore_missing") in (True, "true"):
                return
            raise ESError(400, "illegal_argument_exception", f"field [{field}] is null, cannot split.")
        value = doc.get(field)
        if not isinstance(value, str):
            raise ESError(
                400,
                "illegal_argument_exception",
                f"field [{field}] of type [{_java_type(value)}] cannot be cast to [java.lang.String]",
            )
        parts = re.split(cfg["separator"], value)
        if cfg.get("preserve_trailing") not in (True, "true"):
            while parts and parts[-1] == "":
                parts.pop()
        doc.set(doc.render(cfg.get("target_field", field)), parts)

    def p_join(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field = doc.render(cfg["field"])
        value = doc.get(field)
        if not isinstance(value, list):
            raise ESError(
                400,
                "illegal_argument_exception",
                f"field [{field}] of type [{_java_type(value)}] cannot be cast to [java.util.List]",
            )
        doc.set(doc.render(cfg.get("target_field", field)), cfg["separator"].join(_to_text(v) for v in value))

    def p_fail(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        raise ESError(500, "fail_processor_exception", doc.render(cfg["message"]))

    def p_drop(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        raise _Dropped()

    def p_script(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        raise ESError(500, "illegal_state_exception", "the test cluster does not run Painless scripts")

    def p_pipeline(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        name = doc.render(cfg["name"])
        if name not in self.pipelines:
            if cfg.get("ignore_missing_pipeline") in (True, "true"):
                return
            raise ESError(
                400,
                "illegal_argument_exception",
                f"Pipeline processor configured for non-existent pipeline [{name}]",
            )
        self.pipeline(name, doc, stack)

    def p_inference(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        if self.infer is None:
            raise ESError(500, "illegal_state_exception", "no ML store configured")
        model_id = cfg["model_id"]
        ignore_missing = cfg.get("ignore_missing") in (True, "true")
        if "input_output" in cfg:
            io = cfg["input_output"] if isinstance(cfg["input_output"], list) else [cfg["input_output"]]
            todo: list[tuple[str, str]] = []
            for item in io:
                source = item["input_field"]
                if not doc.has(source) or doc.get(source) is None:
                    if ignore_missing:
                        continue
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"input field [{source}] does not exist in the source document",
                    )
                value = doc.get(source)
                if not isinstance(value, str):
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"input value [{_to_text(value)}] of type [{_java_type(value)}] is not a string",
                    )
                todo.append((value, item["output_field"]))
            if not todo:
                return
            vectors = self.infer(model_id, [text for text, _ in todo])
            for (_, target), vector in zip(todo, vectors, strict=True):
                doc.set(target, vector)
            return
        target = cfg.get("target_field") or ("ml.inference" + (f".{cfg['tag']}" if cfg.get("tag") else ""))
        field_map = cfg.get("field_map") or {}
        text = None
        for doc_field in list(field_map) + ["text_field"]:
            if doc.has(doc_field) and doc.get(doc_field) is not None:
                text = doc.get(doc_field)
                break
        if text is None:
            if ignore_missing:
                return
            wanted = next(iter(field_map), "text_field")
            raise ESError(
                400,
                "status_exception",
                f"Input field [{field_map.get(wanted, 'text_field')}] does not exist in the source document",
            )
        vector = self.infer(model_id, [_to_text(text)])[0]
        doc.set(f"{target}.predicted_value", vector)
        doc.set(f"{target}.model_id", model_id)


def _convert(value: Any, kind: str) -> Any:
    text = _to_text(value) if not isinstance(value, str) else value
    try:
        if kind in ("integer", "long"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            stripped = text.strip()
            return int(stripped, 16) if stripped.lower().startswith("0x") else int(stripped)
        if kind in ("float", "double"):
            if isinstance(value, bool):
                raise ValueError
            return float(text)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise ESError(
                400,
                "illegal_argument_exception",
                f"[{text}] is not a boolean value, cannot convert to boolean",
            )
        if kind in ("string", "ip"):
            return text
        if kind == "auto":
            if not isinstance(value, str):
                return value
            for conv in (int, float):
                try:
                    return conv(value)
                except ValueError:
                    pass
            if value.lower() in ("true", "false"):
                return value.lower() == "true"
            return value
    except ValueError:
        raise ESError(400, "illegal_argument_exception", f"unable to convert [{text}] to {kind}") from None
    return value
