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

# ``infer(model_id, inputs)``: strings take the coordinated path, document maps the internal one (as
# TransportCoordinatedInferenceAction.doExecute); each result is a list, optionally with ``is_truncated``
# and ``results_field`` attributes (tests.escluster.ml.InferenceVector).
Infer = Callable[[str, list[Any]], list[Any]]

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
        {"input_output", "target_field", "field_map", "field_mappings", "inference_config", "ignore_missing"},
    ),
    "script": (set(), {"source", "id", "lang", "params"}),
    "date": ({"field", "formats"}, {"target_field", "timezone", "locale", "output_format"}),
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


def validate_pipeline(body: Any, pipeline_id: str = "_simulate_pipeline") -> None:
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
                raise config_error(f"pipeline [{pipeline_id}] cannot have an empty on_failure option defined")
            for proc in procs:
                validate_processor(proc)


def validate_processor(proc: Any) -> None:
    """Check one ``{"type": {config}}`` processor entry (recursing into its ``on_failure``)."""
    if not isinstance(proc, dict) or len(proc) != 1:
        raise config_error(
            "Expected a single processor per entry but found " + str(len(proc) if isinstance(proc, dict) else 0)
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
        raise config_error(f"[type] type [{cfg['type']}] not supported, cannot convert field.", ptype, "type", tag)
    if ptype == "inference":
        _validate_inference(cfg, tag)
    if "on_failure" in cfg:
        handlers = cfg["on_failure"]
        if not isinstance(handlers, list) or not handlers:
            raise config_error("[on_failure] processors list cannot be empty", ptype, "on_failure", tag)
        for handler in handlers:
            validate_processor(handler)


_INFERENCE_TYPES = (
    "classification",
    "regression",
    "fill_mask",
    "ner",
    "pass_through",
    "question_answering",
    "text_classification",
    "text_embedding",
    "text_expansion",
    "text_similarity",
    "zero_shot_classification",
)


def _validate_inference(cfg: dict[str, Any], tag: str | None) -> None:
    """``InferenceProcessor.Factory.create`` (x-pack/plugin/ml/.../inference/ingest/InferenceProcessor.java),
    in its order: ``model_id``; ``inference_config`` (``inferenceConfigUpdateFromMap``: one task mapped to
    an object, else 400 ``status_exception``); then either ``input_output`` (``readOptionalInputOutPutConfig``,
    ``parseInputFields``, ``ignore_missing`` read as a strict boolean, ``target_field`` and
    ``inference_config.results_field`` refused) or the legacy ``target_field`` / ``field_map`` form. Keys a
    form does not read are left over and refused as ``ConfigurationUtils.readProcessor`` does: ``field_map``
    with ``input_output``, ``ignore_missing`` with the legacy form.
    """

    def fail(reason: str, prop: str | None) -> ESError:
        return config_error(f"[{prop}] {reason}" if prop else reason, "inference", prop, tag)

    def leftover(keys: list[str]) -> ESError:
        listed = ", ".join(keys)
        return config_error(
            f"processor [inference] doesn't support one or more provided configuration parameters [{listed}]",
            "inference",
            None,
            tag,
        )

    if not isinstance(cfg["model_id"], str):
        raise fail(f"property isn't a string, but of type [{_java_type(cfg['model_id'])}]", "model_id")
    update = cfg.get("inference_config")
    results_field = None
    if update is not None:
        if not isinstance(update, dict):
            raise fail(f"property isn't a map, but of type [{_java_type(update)}]", "inference_config")
        if len(update) != 1 or not isinstance(next(iter(update.values())), dict):
            raise ESError(
                400,
                "status_exception",
                "inference_config must be an object with one inference type mapped to an object.",
            )
        kind, options = next(iter(update.items()))
        if kind not in _INFERENCE_TYPES:
            raise ESError(
                400,
                "status_exception",
                f"unrecognized inference configuration type [{kind}]. Supported types [{', '.join(_INFERENCE_TYPES)}]",
            )
        results_field = options.get("results_field")
    if "input_output" not in cfg or cfg["input_output"] is None:
        for key in ("target_field",):
            if key in cfg and not isinstance(cfg[key], str):
                raise fail(f"property isn't a string, but of type [{_java_type(cfg[key])}]", key)
        for key in ("field_map", "field_mappings"):
            if cfg.get(key) is not None and not isinstance(cfg[key], dict):
                raise fail(f"property isn't a map, but of type [{_java_type(cfg[key])}]", key)
        if "ignore_missing" in cfg:
            raise leftover(["ignore_missing"])
        return
    io = cfg["input_output"]
    if isinstance(io, list):
        if io and not all(isinstance(item, dict) for item in io):
            raise fail("property isn't a list of maps", "input_output")
        items = io
    elif isinstance(io, dict):
        items = [io]
    else:
        raise fail("property isn't a map or list of maps", "input_output")
    if not items:
        raise fail("property cannot be empty at least one is required", "input_output")
    seen: dict[str, set[str]] = {"input_field": set(), "output_field": set()}
    for item in items:
        for key in ("input_field", "output_field"):
            if item.get(key) is None:
                raise fail("required property is missing", key)
            if not isinstance(item[key], str):
                raise fail(f"property isn't a string, but of type [{_java_type(item[key])}]", key)
        for key in ("input_field", "output_field"):
            if item[key] in seen[key]:
                raise fail(f"names must be unique but [{item[key]}] is repeated", key)
            seen[key].add(item[key])
    ignore_missing = cfg.get("ignore_missing")
    if ignore_missing is not None and not isinstance(ignore_missing, bool):
        # ConfigurationUtils.readBooleanProperty: only a JSON boolean, not "true"
        raise fail(f"property isn't a boolean, but of type [{_java_type(ignore_missing)}]", "ignore_missing")
    if cfg.get("target_field") is not None:
        raise fail(
            "option is incompatible with [input_output]. Use the [output_field] option to specify where to "
            "write the inference results to.",
            "target_field",
        )
    if results_field is not None:
        raise fail(
            "The [inference_config.results_field] setting is incompatible with using [input_output]. Prefer to "
            "use the [input_output.output_field] option to specify where to write the inference results to.",
            None,
        )
    unread = [key for key in ("field_map", "field_mappings") if key in cfg]
    if unread:
        raise leftover(unread)


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
        self.ingest: dict[str, Any] = {"timestamp": now.isoformat(timespec="microseconds").replace("+00:00", "Z")}
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
                raise ESError(400, "illegal_argument_exception", f"field [{part}] not present as part of path [{path}]")
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
                f"cannot set [{last}] with parent object of type [{_java_type(node)}] as part of path [{path}]",
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
                raise ESError(400, "illegal_argument_exception", f"field [{part}] not present as part of path [{path}]")
        last = parts[-1]
        if isinstance(parent, dict) and last in parent:
            del parent[last]
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            del parent[int(last)]
        else:
            raise ESError(400, "illegal_argument_exception", f"field [{last}] not present as part of path [{path}]")

    def source_view(self) -> dict[str, Any]:
        """What Painless sees as ``ctx``: the source plus ``_index``, ``_id``... and ``_ingest``."""
        return {**self.source, **{k: v for k, v in self.meta.items() if v is not None}, "_ingest": self.ingest}

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
    pipelines: Mapping[str, dict[str, Any]],
    pipeline_id: str,
    doc: IngestDocument,
    *,
    infer: Infer | None,
    trace: list[dict[str, Any]] | None = None,
) -> bool:
    """Run pipeline ``pipeline_id`` on ``doc`` in place; returns False when a ``drop`` processor dropped it.

    Raises ``ESError`` (the failing processor's error) when a failure is not handled by ``on_failure``
    or ``ignore_failure``. ``trace`` collects ``_simulate?verbose`` processor results.

    Example::

        run_pipeline(pipelines, "my-pipeline", doc, infer=ml.infer)
    """
    runner = _Runner(pipelines, infer, trace)
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
    trace: list[dict[str, Any]] | None = None,
) -> bool:
    """Like :func:`run_pipeline` for a pipeline body not stored under an id (``_simulate``)."""
    return run_pipeline({**pipelines, pipeline_id: pipeline}, pipeline_id, doc, infer=infer, trace=trace)


def error_body(exc: ESError) -> dict[str, Any]:
    """``{"root_cause": [...], "type", "reason", ...}`` as ES nests an error inside another body."""
    root = exc.error_object()
    return {"root_cause": [dict(root)], **root}


class _Runner:
    def __init__(
        self, pipelines: Mapping[str, dict[str, Any]], infer: Infer | None, trace: list[dict[str, Any]] | None
    ) -> None:
        self.pipelines = pipelines
        self.infer = infer
        self.trace = trace

    def pipeline(self, pipeline_id: str, doc: IngestDocument, stack: list[str]) -> None:
        if pipeline_id in stack:
            raise ESError(500, "illegal_state_exception", f"Cycle detected for pipeline: {pipeline_id}")
        body = self.pipelines.get(pipeline_id)
        if body is None:
            raise ESError(400, "illegal_argument_exception", f"pipeline with id [{pipeline_id}] does not exist")
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
        keys = ("on_failure_message", "on_failure_processor_type", "on_failure_processor_tag", "on_failure_pipeline")
        saved = {k: doc.ingest.get(k) for k in keys}
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

    def record(
        self,
        ptype: str,
        cfg: dict[str, Any],
        status: str,
        doc: IngestDocument | None,
        stack: list[str],
        **extra: Any,
    ) -> None:
        if self.trace is None:
            return
        entry: dict[str, Any] = {"processor_type": ptype, "status": status}
        for key in ("tag", "description"):
            if cfg.get(key) is not None:
                entry[key] = cfg[key]
        entry.update(extra)
        if doc is not None:
            snapshot: dict[str, Any] = {k: v for k, v in doc.meta.items() if v is not None}
            snapshot["_source"] = copy.deepcopy(doc.source)
            snapshot["_ingest"] = {**copy.deepcopy(doc.ingest), "pipeline": stack[-1]}
            entry["doc"] = snapshot
        self.trace.append(entry)

    def processor(self, proc: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        ptype, cfg = next(iter(proc.items()))
        condition = cfg.get("if")
        if condition is not None and not condition_holds(condition, doc):
            self.record(ptype, cfg, "skipped", None, stack, **{"if": {"condition": condition, "result": False}})
            return
        try:
            if ptype == "pipeline":
                self.record(ptype, cfg, "success", None, stack)
            getattr(self, f"p_{ptype}")(cfg, doc, stack)
        except _Dropped:
            self.record(ptype, cfg, "dropped", None, stack)
            raise
        except (ESError, ProcessorFailure) as exc:
            error = exc.error if isinstance(exc, ProcessorFailure) else exc
            if cfg.get("ignore_failure") in (True, "true"):
                self.record(ptype, cfg, "error_ignored", doc, stack, ignored_error={"error": error_body(error)})
                return
            if isinstance(exc, ProcessorFailure):
                # A nested pipeline failed: the inner processor's metadata is what ES reports.
                failure = exc
            else:
                self.record(ptype, cfg, "error", None, stack, error=error_body(error))
                failure = ProcessorFailure(exc, ptype, cfg.get("tag"), stack[-1])
            handlers = cfg.get("on_failure")
            if not handlers:
                raise failure from None
            # Processor-level on_failure handles it; the pipeline goes on.
            self.with_failure_metadata(doc, failure, handlers, stack)
            return
        if ptype != "pipeline":
            self.record(ptype, cfg, "success", doc, stack)

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

    def _string_op(self, cfg: dict[str, Any], doc: IngestDocument, ptype: str, op: Callable[[str], str]) -> None:
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
                raise ESError(400, "illegal_argument_exception", "cannot add non-map fields to root of document")
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

    def p_date(self, cfg: dict[str, Any], doc: IngestDocument, stack: list[str]) -> None:
        field = doc.render(cfg["field"])
        text = _to_text(doc.get(field))
        for fmt in cfg["formats"]:
            parsed = _parse_date(text, fmt, cfg.get("timezone"))
            if parsed is not None:
                out_fmt = cfg.get("output_format", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
                doc.set(doc.render(cfg.get("target_field", "@timestamp")), _format_date(parsed, out_fmt))
                return
        raise ESError(
            400,
            "illegal_argument_exception",
            f"unable to parse date [{text}]",
            caused_by={
                "type": "illegal_argument_exception",
                "reason": f"failed to parse date field [{text}] with format [{cfg['formats'][-1]}]",
            },
        )

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
        """``InferenceProcessor.buildRequest`` + ``mutateDocument``
        (x-pack/plugin/ml/src/main/java/org/elasticsearch/xpack/ml/inference/ingest/InferenceProcessor.java).

        ``input_output``: each input is read with ``getFieldValue(field, String.class, ignore_missing)``: a
        missing field is 400 ``illegal_argument_exception`` "field [f] not present as part of path [f]"
        unless ``ignore_missing``; a present non-string is "input field [f] cannot be processed because it
        is not a text field"; a null value counts as absent even without ``ignore_missing``. Absent inputs
        are sent as "" (so later outputs still line up), and when no input so far is present the processor
        does nothing (ES checks that inside the loop, so a missing first input skips the whole processor).
        Texts go through the coordinated path (``ml.infer`` with strings). Results are written by
        ``InferenceResults.writeResultToField``: ``asMap(output_field)`` (``is_truncated: true`` only when the
        input was cut at ``max_sequence_length``), plus ``model_id`` for the first input only, under the
        output field's parent path, or at the document root when ``output_field`` has no dot.

        Legacy ``target_field`` / ``field_map``: the document map (source, metadata, ``_ingest``) with
        ``field_map`` applied (``LocalModel.mapFieldsIfNecessary``: put-if-absent) goes through the internal
        path (``ml.infer`` with a dict); ``InferenceResults.writeResult`` writes ``{predicted_value (or the
        results_field), is_truncated?, model_id}`` at ``target_field`` (default ``ml.inference[.<tag>]``).
        Both use ``setOrAppendValue``: a field that already exists is appended to, not replaced.
        """
        if self.infer is None:
            raise ESError(500, "illegal_state_exception", "no ML store configured")
        model_id = cfg["model_id"]
        if cfg.get("input_output") is not None:
            io = cfg["input_output"] if isinstance(cfg["input_output"], list) else [cfg["input_output"]]
            ignore_missing = cfg.get("ignore_missing") is True
            texts: list[str] = []
            any_present = False
            for item in io:
                field = item["input_field"]
                if not doc.has(field):
                    if not ignore_missing:
                        doc.get(field)  # raises "field [x] not present as part of path [...]"
                    value = None
                else:
                    value = doc.get(field)
                    if value is not None and not isinstance(value, str):
                        raise ESError(
                            400,
                            "illegal_argument_exception",
                            f"input field [{field}] cannot be processed because it is not a text field",
                        )
                any_present = any_present or value is not None
                texts.append(value if value is not None else "")
                if not any_present:
                    return
            results = self.infer(model_id, texts)
            _check_update_task(cfg, results[0])
            for i, (item, result) in enumerate(zip(io, results, strict=True)):
                output = item["output_field"]
                base, _, last = output.rpartition(".")
                entries: dict[str, Any] = {}
                if getattr(result, "is_truncated", False):
                    entries["is_truncated"] = True
                entries[last] = list(result)
                if i == 0:
                    entries["model_id"] = model_id
                for key, value in entries.items():
                    _set_or_append(doc, f"{base}.{key}" if base else key, value)
            return
        target = cfg.get("target_field") or ("ml.inference" + (f".{cfg['tag']}" if cfg.get("tag") else ""))
        fields = copy.deepcopy(doc.source_view())
        field_map = cfg.get("field_map") or cfg.get("field_mappings") or {}
        for src, dest in field_map.items():
            value = _dig(fields, src)
            if value is not None:
                fields.setdefault(dest, value)
        result = self.infer(model_id, [fields])[0]
        _check_update_task(cfg, result)
        update = cfg.get("inference_config") or {}
        update_options = next(iter(update.values()), None) if isinstance(update, dict) else None
        results_field = (update_options or {}).get("results_field") or getattr(
            result, "results_field", "predicted_value"
        )
        written: dict[str, Any] = {results_field: list(result)}
        if getattr(result, "is_truncated", False):
            written["is_truncated"] = True
        written["model_id"] = model_id
        _set_or_append(doc, target, written)


def _check_update_task(cfg: dict[str, Any], result: Any) -> None:
    """A processor's ``inference_config`` of another task than the model's is refused by the deployment:
    403 ``status_exception`` (``TrainedModelDeploymentTask.infer``, ``update.isSupported(config) == false``).
    Checked here on the result, which carries the model's task and id; the outcome is the same."""
    update = cfg.get("inference_config")
    task = getattr(result, "task", None)
    if not isinstance(update, dict) or not update or task is None:
        return
    wanted = next(iter(update))
    if wanted != task:
        raise ESError(
            403,
            "status_exception",
            f"Trained model [{getattr(result, 'model_id', cfg['model_id'])}] is configured for task [{task}] "
            f"but called with task [{wanted}]",
        )


def _dig(fields: dict[str, Any], path: str) -> Any:
    """``MapHelper.dig``: the value at a dotted path (a literal dotted key also matches), else None."""
    if path in fields:
        return fields[path]
    node: Any = fields
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set_or_append(doc: IngestDocument, path: str, value: Any) -> None:
    """``InferenceResults.setOrAppendValue``: ``appendFieldValue`` when the field exists (a scalar becomes a
    list; a list value is appended element by element), else ``setFieldValue``."""
    if not doc.has(path):
        doc.set(path, value)
        return
    current = doc.get(path)
    items = list(current) if isinstance(current, list) else [current]
    items.extend(value if isinstance(value, list) else [value])
    doc.set(path, items)


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


# ------------------------------------------------------------------------------------------------ dates

_JAVA_TOKENS = [
    ("yyyy", "%Y"),
    ("uuuu", "%Y"),
    ("yy", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("hh", "%I"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("SSSSSS", "%f"),
    ("SSS", "%f"),
    ("EEEE", "%A"),
    ("EEE", "%a"),
    ("a", "%p"),
    ("XXX", "%z"),
    ("XX", "%z"),
    ("Z", "%z"),
    ("d", "%d"),
    ("M", "%m"),
    ("H", "%H"),
]


def _java_to_strptime(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "'":
            end = pattern.find("'", i + 1)
            end = len(pattern) if end < 0 else end
            out.append(pattern[i + 1 : end].replace("%", "%%") or "'")
            i = end + 1
            continue
        for token, directive in _JAVA_TOKENS:
            if pattern.startswith(token, i):
                out.append(directive)
                i += len(token)
                break
        else:
            out.append("%%" if pattern[i] == "%" else pattern[i])
            i += 1
    return "".join(out)


def _zone(name: str | None) -> _dt.tzinfo:
    if not name or name in ("UTC", "Z"):
        return _dt.UTC
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return _dt.timezone(sign * _dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - an unknown zone name falls back to UTC
        return _dt.UTC


def _parse_date(text: str, fmt: str, timezone: str | None) -> _dt.datetime | None:
    tz = _zone(timezone)
    try:
        if fmt == "UNIX":
            return _dt.datetime.fromtimestamp(float(text), _dt.UTC)
        if fmt == "UNIX_MS":
            return _dt.datetime.fromtimestamp(int(float(text)) / 1000.0, _dt.UTC)
        if fmt == "ISO8601":
            parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            parsed = _dt.datetime.strptime(text, _java_to_strptime(fmt))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _format_date(when: _dt.datetime, fmt: str) -> str:
    if fmt == "yyyy-MM-dd'T'HH:mm:ss.SSSXXX":
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return when.strftime(_java_to_strptime(fmt))


# ------------------------------------------------------------------------------------------- conditions


class _Unsupported(Exception):
    """A Painless construct the small condition evaluator does not know."""


_COND_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<op>\?\.|==|!=|<=|>=|&&|\|\||[()<>!.\[\],])|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)


def condition_holds(expression: Any, doc: IngestDocument) -> bool:
    """Evaluate a processor's ``if`` for common Painless forms (``ctx.a?.b == 'x'``, ``!=``, ``null``,
    ``&&``, ``||``, ``!``, ``containsKey``...). Anything else counts as true: the processor runs.

    Example::

        condition_holds("ctx.kind == 'photo' && ctx?.url != null", doc)
    """
    source = expression.get("source") if isinstance(expression, dict) else expression
    if not isinstance(source, str):
        return True
    try:
        tokens = _tokenize(source)
        parser = _CondParser(tokens, doc)
        value = parser.parse_or()
        if parser.pos != len(tokens):
            raise _Unsupported(source)
    except _Unsupported:
        return True
    return bool(value)


def _tokenize(source: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    text = source.strip().rstrip(";").strip()
    if text.startswith("return "):
        text = text[len("return ") :]
    pos = 0
    while pos < len(text):
        match = _COND_TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise _Unsupported(text)
        pos = match.end()
        if match.group("num") is not None:
            num = match.group("num")
            tokens.append(("lit", float(num) if "." in num else int(num)))
        elif match.group("str") is not None:
            tokens.append(("lit", match.group("str")[1:-1]))
        elif match.group("op") is not None:
            tokens.append(("op", match.group("op")))
        else:
            name = match.group("name")
            if name in ("true", "false", "null"):
                tokens.append(("lit", {"true": True, "false": False, "null": None}[name]))
            else:
                tokens.append(("name", name))
    return tokens


class _CondParser:
    def __init__(self, tokens: list[tuple[str, Any]], doc: IngestDocument) -> None:
        self.tokens = tokens
        self.pos = 0
        self.doc = doc

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise _Unsupported(value)
        self.pos += 1
        return token

    def parse_or(self) -> Any:
        left = self.parse_and()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.parse_and()
            left = bool(left) or bool(right)
        return left

    def parse_and(self) -> Any:
        left = self.parse_not()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.parse_not()
            left = bool(left) and bool(right)
        return left

    def parse_not(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not self.parse_not()
        return self.parse_cmp()

    def parse_cmp(self) -> Any:
        left = self.parse_primary()
        token = self.peek()
        if token and token[0] == "op" and token[1] in ("==", "!=", "<", ">", "<=", ">="):
            self.take()
            right = self.parse_primary()
            op = token[1]
            if op == "==":
                return left == right
            if op == "!=":
                return left != right
            if left is None or right is None:
                raise _Unsupported(op)
            return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
        return left

    def parse_primary(self) -> Any:
        token = self.take()
        if token == ("op", "("):
            value = self.parse_or()
            self.take(")")
            return value
        if token[0] == "lit":
            return token[1]
        if token == ("name", "ctx"):
            return self.parse_path(self.doc.source_view())
        raise _Unsupported(token)

    def parse_path(self, node: Any) -> Any:
        while True:
            token = self.peek()
            if token in (("op", "."), ("op", "?.")):
                self.take()
                name = self.take()
                if name[0] != "name":
                    raise _Unsupported(name)
                if self.peek() == ("op", "("):
                    node = self.call(node, name[1])
                    continue
                node = node.get(name[1]) if isinstance(node, dict) else None
            elif token == ("op", "["):
                self.take()
                key = self.parse_or()
                self.take("]")
                if isinstance(node, dict):
                    node = node.get(key)
                elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                    node = node[key]
                else:
                    node = None
            else:
                return node

    def call(self, node: Any, method: str) -> Any:
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.parse_or())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        if method == "containsKey" and isinstance(node, dict):
            return args[0] in node
        if method == "contains" and isinstance(node, (str, list)):
            return args[0] in node
        if method == "startsWith" and isinstance(node, str):
            return node.startswith(args[0])
        if method == "endsWith" and isinstance(node, str):
            return node.endswith(args[0])
        if method == "equals":
            return node == args[0]
        if method == "isEmpty" and isinstance(node, (str, list, dict)):
            return len(node) == 0
        if method in ("size", "length") and isinstance(node, (str, list, dict)):
            return len(node)
        if method == "toLowerCase" and isinstance(node, str):
            return node.lower()
        if method == "toUpperCase" and isinstance(node, str):
            return node.upper()
        raise _Unsupported(method)
