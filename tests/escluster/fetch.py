"""Fetch phase: ``_source`` filtering (with 9.2's vector exclusion), ``fields`` and ``docvalue_fields``."""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from tests.escluster.errors import ESError
from tests.escluster.fields import (
    DATE_TYPES,
    INTEGER_TYPES,
    KEYWORD_TYPES,
    NUMERIC_TYPES,
    TEXT_TYPES,
    VECTOR_TYPES,
    CoercionError,
    f32,
    format_date,
    keyword_value,
    parse_date,
    source_values,
    to_bool,
    to_number,
)


@dataclass
class SourceSpec:
    """What ``_source`` asks for: enabled, includes/excludes patterns, and whether vectors are left out."""

    enabled: bool = True
    includes: list[str] = dc_field(default_factory=list)
    excludes: list[str] = dc_field(default_factory=list)
    exclude_vectors: bool | None = None  # None: the index default (excluded from 9.2)


def _csv(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value).split(",") if v]


def parse_source_spec(value: Any, params: dict[str, str]) -> SourceSpec:
    """Parse the body's ``_source`` plus the ``_source*`` URL parameters (which win).

    Example::

        parse_source_spec({"includes": ["a*"], "exclude_vectors": False}, {})
    """
    spec = SourceSpec()
    if value is None or value is True:
        pass
    elif value is False:
        spec.enabled = False
    elif isinstance(value, (str, list)):
        spec.includes = _csv(value)
    elif isinstance(value, dict):
        for key, val in value.items():
            if key in ("includes", "include"):
                spec.includes = _csv(val)
            elif key in ("excludes", "exclude"):
                spec.excludes = _csv(val)
            elif key == "exclude_vectors":
                spec.exclude_vectors = bool(val)
            elif key == "include_vectors":
                spec.exclude_vectors = not bool(val)
            else:
                raise ESError(400, "parsing_exception", f"Unknown key for a VALUE_STRING in [{key}].")
    else:
        raise ESError(400, "parsing_exception",
                      "Expected one of [VALUE_BOOLEAN, START_OBJECT] but found [VALUE_NUMBER]")
    if "_source" in params:
        raw = params["_source"]
        if raw in ("false", "true"):
            spec.enabled = raw == "true"
        else:
            spec.includes = _csv(raw)
    if "_source_includes" in params:
        spec.includes = _csv(params["_source_includes"])
    if "_source_excludes" in params:
        spec.excludes = _csv(params["_source_excludes"])
    if "_source_exclude_vectors" in params:
        spec.exclude_vectors = params["_source_exclude_vectors"] == "true"
    return spec


def _literal_prefix(pattern: str) -> str:
    return pattern.split("*", 1)[0]


def _may_match_below(path: str, includes: list[str]) -> bool:
    base = path + "."
    for pattern in includes:
        prefix = _literal_prefix(pattern)
        if "*" in pattern:
            if prefix.startswith(base) or base.startswith(prefix):
                return True
        elif pattern.startswith(base):
            return True
    return False


def filter_source(source: Any, includes: list[str], excludes: list[str], prefix: str = "",
                  included: bool = False) -> Any:
    """Keep the parts of ``source`` selected by include/exclude patterns on dotted paths.

    Example::

        filter_source({"a": {"b": 1, "c": 2}, "d": 3}, ["a.*"], ["a.c"])   # {"a": {"b": 1}}
    """
    out: dict = {}
    for key, value in source.items():
        path = prefix + key
        if any(fnmatch.fnmatchcase(path, e) for e in excludes):
            continue
        inc = included or not includes or any(fnmatch.fnmatchcase(path, i) for i in includes)
        descend = inc or _may_match_below(path, includes)
        if isinstance(value, dict):
            if descend:
                sub = filter_source(value, includes, excludes, path + ".", inc)
                if sub or (inc and not value):
                    out[key] = sub
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            if descend:
                items = []
                for item in value:
                    if isinstance(item, dict):
                        sub = filter_source(item, includes, excludes, path + ".", inc)
                        if sub or (inc and not item):
                            items.append(sub)
                    elif inc:
                        items.append(item)
                if items or (inc and not value):
                    out[key] = items
        elif inc:
            out[key] = value
    return out


def render_source(source: dict, spec: SourceSpec, field_map: dict[str, dict], index_settings: dict) -> Any:
    """The ``_source`` of a hit after filtering, or None when ``_source`` is disabled."""
    if not spec.enabled:
        return None
    exclude_vectors = spec.exclude_vectors
    if exclude_vectors is None:
        setting = _setting(index_settings, "mapping.exclude_source_vectors")
        exclude_vectors = str(setting).lower() != "false"
    excludes = list(spec.excludes)
    if exclude_vectors:
        excludes += [p for p, s in field_map.items() if s.get("type") in VECTOR_TYPES]
    if not spec.includes and not excludes:
        return source
    return filter_source(source, spec.includes, excludes)


def _setting(settings: dict, key: str) -> Any:
    """Look an index setting up in nested or flat form (``index.a.b`` / ``{"index": {"a": ...}}``)."""
    if not isinstance(settings, dict):
        return None
    for candidate in (f"index.{key}", key):
        if candidate in settings:
            return settings[candidate]
    node: Any = settings.get("index", settings)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# ---------------------------------------------------------------------------------------------- fields

@dataclass
class FieldRequest:
    pattern: str
    format: str | None = None
    include_unmapped: bool = False


def parse_field_requests(value: Any, key: str = "fields") -> list[FieldRequest]:
    """Parse ``fields`` / ``docvalue_fields``: names, wildcard patterns or ``{"field", "format"}`` objects."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(FieldRequest(item))
        elif isinstance(item, dict) and "field" in item:
            out.append(FieldRequest(item["field"], item.get("format"), bool(item.get("include_unmapped"))))
        else:
            raise ESError(400, "x_content_parse_exception", f"[{key}] failed to parse field [field]")
    return out


_JAVA_DATE = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def _format_date_value(ms: int, fmt: str | None) -> Any:
    if not fmt or fmt in ("strict_date_optional_time", "date_optional_time",
                          "strict_date_optional_time||epoch_millis"):
        return format_date(ms)
    if fmt == "epoch_millis":
        return str(ms)
    if fmt == "epoch_second":
        return str(ms // 1000)
    py = fmt
    for java, pyfmt in _JAVA_DATE:
        py = py.replace(java, pyfmt)
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime(py)


def format_field_value(value: Any, spec: dict, fmt: str | None = None) -> Any:
    """A ``_source`` value as the ``fields`` section shows it for the field's type (None: drop it)."""
    ftype = spec.get("type")
    try:
        if ftype in KEYWORD_TYPES:
            if isinstance(value, (dict, list)):
                return None
            text = keyword_value(value)
            if "ignore_above" in spec and len(text) > int(spec["ignore_above"]):
                return None
            return text
        if ftype in TEXT_TYPES:
            return value if isinstance(value, str) else keyword_value(value)
        if ftype in NUMERIC_TYPES:
            num = to_number(value, ftype)
            if ftype == "scaled_float":
                factor = float(spec.get("scaling_factor", 1))
                num = round(float(num) * factor) / factor
            return int(num) if ftype in INTEGER_TYPES else float(num)
        if ftype in DATE_TYPES:
            return _format_date_value(parse_date(value), fmt)
        if ftype == "boolean":
            return to_bool(value)
    except CoercionError:
        return None
    return value


def _matches(path: str, requests: list[FieldRequest]) -> FieldRequest | None:
    for req in requests:
        if path == req.pattern or ("*" in req.pattern and fnmatch.fnmatchcase(path, req.pattern)):
            return req
    return None


def collect_fields(source: dict, requests: list[FieldRequest], field_map: dict[str, dict],
                   *, docvalues: bool = False) -> dict[str, list]:
    """The ``fields`` object of one hit for the requested fields.

    Example::

        collect_fields({"n": "x"}, [FieldRequest("n")], {"n": {"type": "keyword"}})   # {"n": ["x"]}
    """
    out: dict[str, list] = {}
    for path, spec in field_map.items():
        ftype = spec.get("type")
        if ftype in ("object", "nested"):
            continue
        req = _matches(path, requests)
        if req is None:
            continue
        src_path = spec.get("_source_path", path)
        if ftype == "dense_vector":
            for vector in source_values(source, src_path, raw=True):
                if isinstance(vector, list):
                    out[path] = [f32(float(x)) for x in vector]
                    break
            continue
        if ftype == "sparse_vector":
            values = [v for v in source_values(source, src_path, raw=True) if isinstance(v, dict)]
            if values:
                out[path] = [{k: f32(float(x)) for k, x in v.items()} for v in values]
            continue
        if ftype == "constant_keyword":
            if "value" in spec:
                out[path] = [spec["value"]]
            continue
        values = [format_field_value(v, spec, req.format) for v in source_values(source, src_path)]
        values = [v for v in values if v is not None]
        if docvalues and values:
            if ftype in DATE_TYPES:
                values = [_format_date_value(ms, req.format)
                          for ms in sorted({parse_date(v) for v in source_values(source, src_path)})]
            elif ftype in KEYWORD_TYPES or ftype in NUMERIC_TYPES:
                values = sorted(set(values))
        if values:
            out[path] = values
    for req in requests:
        if req.include_unmapped and "*" not in req.pattern and req.pattern not in field_map:
            values = source_values(source, req.pattern)
            if values:
                out[req.pattern] = values
    return out
