"""Mappings as Elasticsearch 9.x validates, normalizes, merges and applies them to documents.

Three jobs:

* :func:`normalize_mappings` checks a mapping from a request (index creation, a template, ``PUT _mapping``)
  and returns the form ``GET _mapping`` shows (``dense_vector`` defaults filled in as 9.2 does).
* :func:`merge_mappings` lays one mapping over another (templates in order, then the request; or a
  ``PUT _mapping`` over the live one), refusing type changes like ES.
* :func:`parse_document` checks a document against a mapping and returns the new fields that dynamic
  mapping would add (or raises the ``document_parsing_exception`` / ``strict_dynamic_mapping_exception``
  ES answers).

Example::

    m = normalize_mappings({"properties": {"v": {"type": "dense_vector", "dims": 3}}})
    m["properties"]["v"]["index_options"]   # {"type": "int8_hnsw", "m": 16, "ef_construction": 100}
"""

from __future__ import annotations

import copy
import math
import operator
import re
from typing import Any

from .errors import ESError

MAX_DIMS = 4096
DYNAMIC_VECTOR_MIN_DIMS = 128
SIMILARITIES = ("l2_norm", "cosine", "dot_product", "max_inner_product")
ELEMENT_TYPES = ("float", "byte", "bit")
HNSW_TYPES = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw")
FLAT_TYPES = ("flat", "int8_flat", "int4_flat", "bbq_flat")
QUANTIZED_TYPES = ("int8_hnsw", "int4_hnsw", "bbq_hnsw", "int8_flat", "int4_flat", "bbq_flat", "bbq_disk")
INDEX_OPTION_TYPES = HNSW_TYPES + FLAT_TYPES + ("bbq_disk",)
INTEGER_RANGES = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-128, 127),
}
FLOAT_TYPES = ("double", "float", "half_float", "scaled_float")

_COMMON = {"type", "fields", "meta", "copy_to", "store", "index", "doc_values", "boost"}
_SCRIPTED = {"script", "on_script_error"}
_PARAMS: dict[str, set[str]] = {
    "keyword": _COMMON
    | _SCRIPTED
    | {
        "ignore_above",
        "normalizer",
        "eager_global_ordinals",
        "null_value",
        "similarity",
        "split_queries_on_whitespace",
        "index_options",
        "norms",
        "time_series_dimension",
    },
    "text": _COMMON
    | {
        "analyzer",
        "search_analyzer",
        "search_quote_analyzer",
        "fielddata",
        "fielddata_frequency_filter",
        "index_phrases",
        "index_prefixes",
        "index_options",
        "norms",
        "position_increment_gap",
        "similarity",
        "term_vector",
        "eager_global_ordinals",
    },
    "boolean": _COMMON | _SCRIPTED | {"null_value", "ignore_malformed"},
    "date": _COMMON | _SCRIPTED | {"format", "locale", "null_value", "ignore_malformed", "print_format"},
    "date_nanos": _COMMON | _SCRIPTED | {"format", "locale", "null_value", "ignore_malformed"},
    "dense_vector": {"type", "dims", "element_type", "index", "similarity", "index_options", "meta"},
    "object": {"type", "properties", "dynamic", "enabled", "subobjects"},
    "nested": {"type", "properties", "dynamic", "enabled", "include_in_parent", "include_in_root"},
}
for _t in tuple(INTEGER_RANGES) + FLOAT_TYPES + ("unsigned_long",):
    _PARAMS[_t] = (
        _COMMON
        | _SCRIPTED
        | {
            "coerce",
            "ignore_malformed",
            "null_value",
            "time_series_metric",
            "time_series_dimension",
            "scaling_factor",
        }
    )
# Types accepted as they come: nothing in the toolkit indexes them, but templates may declare them.
_LOOSE_TYPES = {
    "ip",
    "geo_point",
    "geo_shape",
    "flattened",
    "wildcard",
    "constant_keyword",
    "binary",
    "match_only_text",
    "alias",
    "sparse_vector",
    "rank_feature",
    "rank_features",
    "search_as_you_type",
    "token_count",
    "semantic_text",
    "version",
    "histogram",
    "integer_range",
    "long_range",
    "float_range",
    "double_range",
    "date_range",
    "ip_range",
    "completion",
    "percolator",
    "join",
    "point",
    "shape",
    "counted_keyword",
    "rank_vectors",
}
_ROOT_PARAMS = {
    "properties",
    "dynamic",
    "_source",
    "_meta",
    "dynamic_templates",
    "date_detection",
    "numeric_detection",
    "runtime",
    "_routing",
    "enabled",
    "subobjects",
    "dynamic_date_formats",
    "_field_names",
    "_data_stream_timestamp",
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}(:\d{2}(:\d{2}([.,]\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$")
_SLASH_DATE_RE = re.compile(r"^\d{4}/\d{2}/\d{2}( \d{2}:\d{2}:\d{2})?$")


class MappingError(ESError):
    """ "Failed to parse mapping: ..." wrapping a cause; ES lists the innermost ES exception as root cause."""

    def body(self) -> dict[str, Any]:
        out = super().body()
        cause = self.extra.get("caused_by")
        # ES's root_cause is the deepest ElasticsearchException: the inner mapper_parsing_exception when
        # there is one, the outer exception when the cause is a plain Java exception.
        if cause and cause.get("type") == "mapper_parsing_exception":
            out["error"]["root_cause"] = [dict(cause)]
        return out


def mapping_error(reason: str, cause_type: str = "illegal_argument_exception") -> ESError:
    """A 400 ``mapper_parsing_exception`` "Failed to parse mapping: ..." as ES reports bad mappings."""
    full = f"Failed to parse mapping: {reason}"
    return MappingError(
        400,
        "mapper_parsing_exception",
        full,
        caused_by={"type": cause_type if cause_type else "mapper_parsing_exception", "reason": reason},
    )


def _plain_error(reason: str) -> ESError:
    return ESError(400, "mapper_parsing_exception", reason)


# --------------------------------------------------------------------------------------------- normalize


def normalize_mappings(mappings: Any) -> dict[str, Any]:
    """Validate a request's ``mappings`` object and return it as ``GET _mapping`` shows it.

    Args:
        mappings: the ``mappings`` value of a request (``{"properties": ..., "dynamic": ...}``).

    Example::

        normalize_mappings({"dynamic": "strict", "properties": {"k": {"type": "keyword"}}})
    """
    if mappings is None:
        return {}
    if not isinstance(mappings, dict):
        raise mapping_error(
            "Expected map for property [mappings] but got a " + type(mappings).__name__,
            "mapper_parsing_exception",
        )
    if "_doc" in mappings and isinstance(mappings["_doc"], dict) and len(mappings) == 1:
        # Typeless APIs still accept the single `_doc` wrapper in a few places; unwrap it.
        mappings = mappings["_doc"]
    unknown = [k for k in mappings if k not in _ROOT_PARAMS]
    if unknown:
        listed = ", ".join(f"{k} : {_short(mappings[k])}" for k in unknown)
        raise mapping_error(
            f"Root mapping definition has unsupported parameters:  [{listed}]", "mapper_parsing_exception"
        )
    out: dict[str, Any] = {}
    for key, value in mappings.items():
        if key == "properties":
            out["properties"] = _normalize_properties(value, "")
        elif key == "dynamic":
            out["dynamic"] = _normalize_dynamic(value, "_doc")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def _normalize_dynamic(value: Any, where: str) -> Any:
    text = str(value).lower() if not isinstance(value, bool) else ("true" if value else "false")
    if text not in ("true", "false", "strict", "runtime"):
        raise mapping_error(f"Could not convert [{where}.dynamic] to boolean", "mapper_parsing_exception")
    # GET _mapping prints dynamic as a string ("false", "strict") whatever the request sent.
    return text


def _normalize_properties(props: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(props, dict):
        raise mapping_error(
            f"Expected map for property [properties] on field [{prefix or '_doc'}]",
            "mapper_parsing_exception",
        )
    out = {}
    for name, spec in props.items():
        full = f"{prefix}{name}"
        if not name or name.strip() == "":
            raise mapping_error("field name cannot be an empty string")
        if not isinstance(spec, dict):
            raise mapping_error(
                f"Expected map for property [fields] on field [{name}] but got a class java.lang.String",
                "mapper_parsing_exception",
            )
        if "." in name:
            # `a.b` in properties is shorthand for nested objects.
            head, rest = name.split(".", 1)
            out.setdefault(head, {"properties": {}})
            nested = _normalize_properties({rest: spec}, f"{prefix}{head}.")
            out[head].setdefault("properties", {}).update(nested)
            continue
        out[name] = normalize_field(full, spec)
    return out


def normalize_field(full_name: str, spec: dict[str, Any], *, multi: bool = False) -> dict[str, Any]:
    """Validate one field definition and return its normalized form (raises ``mapper_parsing_exception``)."""
    name = full_name.rsplit(".", 1)[-1]
    ftype = spec.get("type")
    if ftype is None:
        ftype = "object"
    if not isinstance(ftype, str):
        raise mapping_error(f"No type specified for field [{name}]", "mapper_parsing_exception")
    if ftype in ("object", "nested"):
        if multi:
            raise mapping_error(f"Type [{ftype}] cannot be used in multi field", "mapper_parsing_exception")
        return _normalize_object(full_name, ftype, spec)
    if ftype in _LOOSE_TYPES:
        return copy.deepcopy(spec)
    if ftype not in _PARAMS:
        raise mapping_error(f"No handler for type [{ftype}] declared on field [{name}]", "mapper_parsing_exception")
    allowed = _PARAMS[ftype]
    for key in spec:
        if key not in allowed:
            raise mapping_error(
                f"unknown parameter [{key}] on mapper [{name}] of type [{ftype}]", "mapper_parsing_exception"
            )
    if ftype == "dense_vector":
        return _normalize_dense_vector(name, spec)
    if ftype == "scaled_float" and "scaling_factor" not in spec:
        raise mapping_error(f"Field [scaling_factor] is required for field [{name}]", "mapper_parsing_exception")
    out = copy.deepcopy(spec)
    if "fields" in spec:
        if not isinstance(spec["fields"], dict):
            raise mapping_error(f"Expected map for property [fields] on field [{name}]", "mapper_parsing_exception")
        out["fields"] = {
            sub: normalize_field(f"{full_name}.{sub}", sub_spec if isinstance(sub_spec, dict) else {}, multi=True)
            for sub, sub_spec in spec["fields"].items()
        }
    for flag in ("index", "store", "doc_values", "coerce", "ignore_malformed", "fielddata"):
        if flag in spec and not _is_boolish(spec[flag]):
            raise mapping_error(
                f"Failed to parse value [{spec[flag]}] as only [true] or [false] are allowed.",
                "illegal_argument_exception",
            )
    if ftype == "keyword" and "ignore_above" in spec:
        if not isinstance(spec["ignore_above"], int) or spec["ignore_above"] < 0:
            raise mapping_error(f"[ignore_above] must be positive, got [{spec['ignore_above']}]")
    return out


def _is_boolish(v: Any) -> bool:
    return isinstance(v, bool) or v in ("true", "false")


def _normalize_object(full_name: str, ftype: str, spec: dict[str, Any]) -> dict[str, Any]:
    name = full_name.rsplit(".", 1)[-1]
    for key in spec:
        if key not in _PARAMS[ftype]:
            raise mapping_error(
                f"Mapping definition for [{name}] has unsupported parameters:  [{key} : {_short(spec[key])}]",
                "mapper_parsing_exception",
            )
    out: dict[str, Any] = {}
    if ftype == "nested":
        out["type"] = "nested"
    for key, value in spec.items():
        if key == "type":
            continue
        if key == "properties":
            out["properties"] = _normalize_properties(value, f"{full_name}.")
        elif key == "dynamic":
            out["dynamic"] = _normalize_dynamic(value, full_name)
        else:
            out[key] = copy.deepcopy(value)
    if ftype == "object" and not out:
        out["type"] = "object"
    return out


def _int_param(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise mapping_error(f"Failed to parse [{key}] for field [{name}]")
    try:
        number = int(value)
    except ValueError:
        raise mapping_error(f'For input string: "{value}"', "number_format_exception") from None
    if isinstance(value, float) and not value.is_integer():
        raise mapping_error(f"Value [{value}] has a decimal part")
    return number


def _normalize_dense_vector(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    element = spec.get("element_type", "float")
    if element not in ELEMENT_TYPES:
        raise mapping_error(
            f"Unknown value [{element}] for field [element_type] - accepted values are [{', '.join(ELEMENT_TYPES)}]",
            "mapper_parsing_exception",
        )
    out: dict[str, Any] = {"type": "dense_vector"}
    if "dims" in spec and spec["dims"] is not None:
        dims = _int_param(name, "dims", spec["dims"])
        max_dims = MAX_DIMS * 8 if element == "bit" else MAX_DIMS
        min_dims = 8 if element == "bit" else 1
        if dims < min_dims or dims > max_dims:
            raise mapping_error(
                f"The number of dimensions should be in the range [{min_dims}, {max_dims}] but was [{dims}]",
                "mapper_parsing_exception",
            )
        if element == "bit" and dims % 8 != 0:
            raise mapping_error(
                f"The number of dimensions for should be a multiple of 8 but was [{dims}]", "mapper_parsing_exception"
            )
        out["dims"] = dims
    else:
        dims = None
    if "element_type" in spec:
        out["element_type"] = element
    indexed = spec.get("index", True)
    if not _is_boolish(indexed):
        raise mapping_error(f"Failed to parse value [{indexed}] as only [true] or [false] are allowed.")
    indexed = indexed in (True, "true")
    out["index"] = indexed
    if not indexed:
        if "similarity" in spec:
            raise mapping_error(
                "Field [similarity] can only be specified for a field of type [dense_vector] when it is indexed"
            )
        if "index_options" in spec:
            raise mapping_error(
                "Field [index_options] can only be specified for a field of type [dense_vector] when it is indexed"
            )
        return _with_meta(out, spec)
    similarity = spec.get("similarity")
    if similarity is None:
        similarity = "l2_norm" if element == "bit" else "cosine"
    if similarity not in SIMILARITIES:
        raise mapping_error(
            f"Unknown value [{similarity}] for field [similarity] - accepted values are [{', '.join(SIMILARITIES)}]",
            "mapper_parsing_exception",
        )
    if element == "bit" and similarity != "l2_norm":
        raise mapping_error(f"The [{similarity}] similarity is not supported for element type [bit]; only [l2_norm] is")
    out["similarity"] = similarity
    if "index_options" in spec:
        out["index_options"] = _normalize_index_options(name, spec["index_options"], element, dims)
    elif dims is not None:
        out["index_options"] = default_index_options(element, dims)
    return _with_meta(out, spec)


def _with_meta(out: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    if "meta" in spec:
        out["meta"] = copy.deepcopy(spec["meta"])
    return out


def default_index_options(element: str, dims: int) -> dict[str, Any]:
    """The ``index_options`` 9.2 picks when a mapping does not pin them (bbq_hnsw from 384 dims)."""
    if element != "float":
        return {"type": "hnsw", "m": 16, "ef_construction": 100}
    if dims >= 384:
        return {"type": "bbq_hnsw", "m": 16, "ef_construction": 100, "rescore_vector": {"oversample": 3.0}}
    return {"type": "int8_hnsw", "m": 16, "ef_construction": 100}


def _normalize_index_options(name: str, opts: Any, element: str, dims: int | None) -> dict[str, Any]:
    if not isinstance(opts, dict):
        raise mapping_error(f"Expected map for property [index_options] on field [{name}]", "mapper_parsing_exception")
    kind = opts.get("type")
    if kind is None:
        raise mapping_error("[index_options] requires field [type] to be configured")
    if kind not in INDEX_OPTION_TYPES:
        raise mapping_error(
            f"Unknown vector index options type [{kind}] for field [{name}]", "mapper_parsing_exception"
        )
    allowed = {"type", "rescore_vector"}
    if kind in HNSW_TYPES:
        allowed |= {"m", "ef_construction"}
    if kind in ("int8_hnsw", "int4_hnsw", "int8_flat", "int4_flat"):
        allowed |= {"confidence_interval"}
    if kind == "bbq_disk":
        allowed |= {"cluster_size", "default_visit_percentage"}
    extra = [k for k in opts if k not in allowed]
    if extra:
        listed = ", ".join(f"{k} : {opts[k]}" for k in extra)
        raise mapping_error(
            f"Mapping definition for [{name}] has unsupported parameters:  [{listed}]",
            "mapper_parsing_exception",
        )
    if kind in QUANTIZED_TYPES and element != "float":
        raise mapping_error(f"[element_type] cannot be [{element}] when using index type [{kind}]")
    if kind.startswith("bbq") and dims is not None and dims < 64:
        raise mapping_error(f"The number of dimensions should be at least 64 for index type [{kind}] but was [{dims}]")
    if kind.startswith("int4") and dims is not None and dims % 2 != 0:
        raise mapping_error(f"only even dimensions are supported for int4 quantization, got [{dims}]")
    out: dict[str, Any] = {"type": kind}
    if kind in HNSW_TYPES:
        m = _int_param(name, "m", opts.get("m", 16))
        ef = _int_param(name, "ef_construction", opts.get("ef_construction", 100))
        if m < 1 or m > 512:
            raise mapping_error(
                f"[m] must be between 1 and 512, got [{m}]" if m > 512 else f"[m] must be > 0, got [{m}]"
            )
        if ef < 1 or ef > 3200:
            raise mapping_error(
                f"[ef_construction] must be between 1 and 3200, got [{ef}]"
                if ef > 3200
                else f"[ef_construction] must be > 0, got [{ef}]"
            )
        out["m"] = m
        out["ef_construction"] = ef
    if "confidence_interval" in opts:
        ci = opts["confidence_interval"]
        if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not (ci == 0 or 0.9 <= ci <= 1.0):
            raise mapping_error(f"confidence_interval must be between 0.90 and 1.0 or exactly 0, got [{ci}]")
        out["confidence_interval"] = float(ci)
    if "rescore_vector" in opts:
        rv = opts["rescore_vector"]
        oversample = rv.get("oversample") if isinstance(rv, dict) else None
        if (
            isinstance(oversample, bool)
            or not isinstance(oversample, (int, float))
            or not (oversample == 0 or 1.0 <= oversample <= 10.0)
        ):
            raise mapping_error(f"[oversample] must be between [1.0] and [10.0], or exactly [0], got [{oversample}]")
        out["rescore_vector"] = {"oversample": float(oversample)}
    for key in ("cluster_size", "default_visit_percentage"):
        if key in opts:
            out[key] = opts[key]
    return out


# ------------------------------------------------------------------------------------------------- merge


def merge_mappings(base: dict[str, Any], overlay: dict[str, Any], *, strict_types: bool = True) -> dict[str, Any]:
    """Lay the normalized ``overlay`` over ``base`` (both normalized); returns a new mapping.

    Args:
        base: the mapping so far (a template's, or the live index mapping).
        overlay: the mapping to add on top.
        strict_types: refuse changing a field's type (``PUT _mapping``); templates composing each other
            replace fields instead.

    Example::

        merge_mappings({"properties": {"a": {"type": "keyword"}}}, {"properties": {"b": {"type": "long"}}})
    """
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if key == "properties":
            out["properties"] = _merge_props(out.get("properties", {}), value, "", strict_types)
        elif key == "_meta" and not strict_types and isinstance(out.get("_meta"), dict):
            out["_meta"] = {**out["_meta"], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _expand_dotted(props: Any) -> Any:
    """``{"a.b": spec}`` -> ``{"a": {"properties": {"b": spec}}}`` so layers using either form merge."""
    if not isinstance(props, dict) or not any("." in k for k in props):
        return props
    out: dict[str, Any] = {}
    for name, spec in props.items():
        if "." in name:
            head, rest = name.split(".", 1)
            holder = out.setdefault(head, {"properties": {}})
            holder.setdefault("properties", {})
            holder["properties"] = _merge_props(holder["properties"], {rest: spec}, head + ".", False)
        elif name in out and isinstance(spec, dict):
            out[name] = {
                **spec,
                "properties": _merge_props(
                    spec.get("properties", {}), out[name].get("properties", {}), name + ".", False
                ),
            }
        else:
            out[name] = spec
    return out


def _merge_props(base: dict[str, Any], overlay: dict[str, Any], prefix: str, strict: bool) -> dict[str, Any]:
    out = copy.deepcopy(_expand_dotted(base))
    overlay = _expand_dotted(overlay)
    for name, spec in overlay.items():
        full = prefix + name
        if name not in out:
            out[name] = copy.deepcopy(spec)
            continue
        old = out[name]
        old_type, new_type = field_type(old), field_type(spec)
        if old_type in ("object", "nested") and new_type in ("object", "nested"):
            if strict and old_type != new_type:
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"can't merge a non-nested mapping [{full}] with a nested mapping"
                    if old_type == "object"
                    else f"can't merge a nested mapping [{full}] with a non-nested mapping",
                )
            merged = {k: copy.deepcopy(v) for k, v in {**old, **spec}.items() if k != "properties"}
            props = _merge_props(old.get("properties", {}), spec.get("properties", {}), full + ".", strict)
            if props:
                merged["properties"] = props
                if merged.get("type") == "object":
                    del merged["type"]
            out[name] = merged
            continue
        if strict and old_type != new_type:
            raise ESError(
                400,
                "illegal_argument_exception",
                f"mapper [{full}] cannot be changed from type [{old_type}] to [{new_type}]",
            )
        if strict and old_type == "dense_vector":
            out[name] = _merge_vector(full, old, spec)
            continue
        merged = copy.deepcopy(spec) if not strict else {**copy.deepcopy(old), **copy.deepcopy(spec)}
        if strict and "fields" in old and "fields" in spec:
            merged["fields"] = _merge_props(old["fields"], spec["fields"], full + ".", strict)
        out[name] = merged
    return out


def _merge_vector(full: str, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for key in ("dims", "element_type", "similarity", "index"):
        if key in old and key in new and old[key] != new[key] and not (key == "dims" and "dims" not in old):
            raise ESError(
                400,
                "illegal_argument_exception",
                f"Mapper for [{full}] conflicts with existing mapper:\n\tCannot update parameter "
                f"[{key}] from [{old[key]}] to [{new[key]}]",
            )
    merged = {**old, **new}
    return merged


def field_type(spec: dict[str, Any]) -> str:
    """A field's type, ``object`` when a definition has only properties (as ES prints objects)."""
    return spec.get("type", "object")


# ------------------------------------------------------------------------------------------- documents


def parse_document(
    mappings: dict[str, Any],
    source: dict[str, Any],
    doc_id: str | None,
) -> dict[str, Any] | None:
    """Check ``source`` against ``mappings``; return the dynamic mapping update (``{"properties":...}``).

    Returns ``None`` when the document adds no field. Raises ``ESError`` as ES rejects the document
    (400 ``document_parsing_exception``, ``strict_dynamic_mapping_exception``).

    Example::

        parse_document({"properties": {}}, {"n": 1}, "1")   # {"properties": {"n": {"type": "long"}}}
    """
    ctx = _DocCtx(doc_id, mappings)
    root_dynamic = mappings.get("dynamic", True)
    new_props = ctx.parse_object(source, mappings.get("properties", {}), "", root_dynamic, "_doc")
    return {"properties": new_props} if new_props else None


class _DocCtx:
    def __init__(self, doc_id: str | None, mappings: dict[str, Any]) -> None:
        self.doc_id = doc_id
        self.date_detection = mappings.get("date_detection", True) not in (False, "false")
        self.numeric_detection = mappings.get("numeric_detection", False) in (True, "true")

    @property
    def doc_desc(self) -> str:
        return f"document with id '{self.doc_id}'" if self.doc_id is not None else "document"

    def fail(
        self,
        field: str,
        ftype: str,
        value: Any,
        cause: str | None = None,
        cause_type: str = "illegal_argument_exception",
    ) -> ESError:
        preview = _preview(value)
        reason = (
            f"[1:2] failed to parse field [{field}] of type [{ftype}] in {self.doc_desc}. "
            f"Preview of field's value: '{preview}'"
        )
        extra: dict[str, Any] = {}
        if cause:
            extra["caused_by"] = {"type": cause_type, "reason": cause}
        return ESError(400, "document_parsing_exception", reason, **extra)

    def parse_object(
        self, obj: dict[str, Any], props: dict[str, Any], prefix: str, dynamic: Any, parent: str
    ) -> dict[str, Any]:
        new: dict[str, Any] = {}
        for key, value in obj.items():
            if key == "":
                raise ESError(
                    400,
                    "document_parsing_exception",
                    f"[1:2] Field name cannot contain only whitespace: [{prefix}]",
                )
            if "." in key and key not in props:
                # `{"a.b": 1}` is the object path a -> b.
                head, rest = key.split(".", 1)
                value, key = {rest: value}, head
            full = prefix + key
            spec = props.get(key)
            if spec is None:
                added = self.dynamic_field(full, key, value, dynamic, parent)
                if added is not None:
                    new[key] = added
                continue
            update = self.parse_value(full, spec, value, dynamic)
            if update:
                new[key] = update
        return new

    def dynamic_field(self, full: str, key: str, value: Any, dynamic: Any, parent: str) -> dict[str, Any] | None:
        mode = str(dynamic).lower()
        if mode == "false":
            return None
        if mode == "strict":
            raise ESError(
                400,
                "strict_dynamic_mapping_exception",
                f"[1:2] mapping set to strict, dynamic introduction of [{key}] within [{parent}] is not allowed",
            )
        if value is None:
            return None
        if isinstance(value, list):
            if _dynamic_vector(value):
                return {
                    "type": "dense_vector",
                    "dims": len(value),
                    "index": True,
                    "similarity": "cosine",
                    "index_options": default_index_options("float", len(value)),
                }
            first = next((v for v in value if v is not None), None)
            if first is None:
                return None
            spec = self.dynamic_field(full, key, first, dynamic, parent)
            if spec is None:
                return None
            # Check the other elements against what the first one created.
            for item in value:
                more = self.parse_value(full, spec, item, dynamic)
                if more:
                    spec = merge_mappings({"properties": {"x": spec}}, {"properties": {"x": more}}, strict_types=False)[
                        "properties"
                    ]["x"]
            return spec
        if isinstance(value, dict):
            props = self.parse_object(value, {}, full + ".", dynamic, full)
            return {"properties": props} if props else {"type": "object"}
        if isinstance(value, bool):
            return {"type": "boolean"}
        if isinstance(value, int):
            return {"type": "long"}
        if isinstance(value, float):
            return {"type": "float"}
        text = str(value)
        if self.date_detection:
            if _DATE_RE.match(text):
                return {"type": "date"}
            if _SLASH_DATE_RE.match(text):
                return {"type": "date", "format": "yyyy/MM/dd HH:mm:ss||yyyy/MM/dd||epoch_millis"}
        if self.numeric_detection:
            try:
                int(text)
                return {"type": "long"}
            except ValueError:
                try:
                    float(text)
                    return {"type": "float"}
                except ValueError:
                    pass
        return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}

    def parse_value(self, full: str, spec: dict[str, Any], value: Any, dynamic: Any) -> dict[str, Any] | None:
        ftype = field_type(spec)
        if ftype in ("object", "nested"):
            if value is None:
                return None
            child_dynamic = spec.get("dynamic", dynamic)
            items = value if isinstance(value, list) else [value]
            update: dict[str, Any] = {}
            for item in items:
                if item is None:
                    continue
                if not isinstance(item, dict):
                    raise ESError(
                        400,
                        "document_parsing_exception",
                        f"[1:2] object mapping for [{full}] tried to parse field [{full.rsplit('.', 1)[-1]}] "
                        f"as object, but found a concrete value",
                    )
                if spec.get("enabled", True) in (False, "false"):
                    continue
                props = (
                    merge_mappings(
                        {"properties": spec.get("properties", {})}, {"properties": update}, strict_types=False
                    )["properties"]
                    if update
                    else spec.get("properties", {})
                )
                more = self.parse_object(item, props, full + ".", child_dynamic, full)
                for k, v in more.items():
                    update[k] = v
            return {"properties": update} if update else None
        if ftype == "dense_vector":
            return self.check_vector(full, spec, value)
        if value is None:
            return None
        if isinstance(value, list):
            for item in value:
                if isinstance(item, list):
                    for inner in item:
                        self.check_leaf(full, ftype, spec, inner)
                else:
                    self.check_leaf(full, ftype, spec, item)
            return None
        self.check_leaf(full, ftype, spec, value)
        return None

    def check_leaf(self, full: str, ftype: str, spec: dict[str, Any], value: Any) -> None:
        if value is None:
            return
        ignore_malformed = spec.get("ignore_malformed") in (True, "true")
        if isinstance(value, dict):
            if ftype in _LOOSE_TYPES:
                return
            raise self.fail(full, ftype, value, "Can't get text on a START_OBJECT at 1:2", "illegal_state_exception")
        if ftype in INTEGER_RANGES or ftype in FLOAT_TYPES or ftype == "unsigned_long":
            try:
                number = _to_number(value)
            except ValueError:
                if ignore_malformed:
                    return
                raise self.fail(full, ftype, value, f'For input string: "{value}"', "number_format_exception") from None
            if ftype in INTEGER_RANGES:
                lo, hi = INTEGER_RANGES[ftype]
                if math.isinf(number) or math.isnan(number) or not lo <= number <= hi:
                    if ignore_malformed:
                        return
                    raise self.fail(
                        full,
                        ftype,
                        value,
                        f"Value [{value}] is out of range for {'an integer' if ftype == 'integer' else 'a ' + ftype}",
                    )
            elif math.isinf(number) or math.isnan(number):
                if ignore_malformed:
                    return
                raise self.fail(full, ftype, value, f"[{ftype}] supports only finite values, but got [{value}]")
        elif ftype == "boolean":
            if not (isinstance(value, bool) or value in ("true", "false", "")):
                if ignore_malformed:
                    return
                raise self.fail(
                    full,
                    ftype,
                    value,
                    f"Failed to parse value [{value}] as only [true] or [false] are allowed.",
                )
        elif ftype in ("date", "date_nanos"):
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise self.fail(full, ftype, value, "failed to parse date field", "illegal_argument_exception")
            if isinstance(value, str) and not (
                _DATE_RE.match(value) or _SLASH_DATE_RE.match(value) or value.lstrip("-").isdigit() or "format" in spec
            ):
                if ignore_malformed:
                    return
                raise self.fail(
                    full,
                    ftype,
                    value,
                    f"failed to parse date field [{value}] with format [strict_date_optional_time||epoch_millis]",
                    "illegal_argument_exception",
                )

    def check_vector(self, full: str, spec: dict[str, Any], value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        element = spec.get("element_type", "float")
        if isinstance(value, str):
            value = _decode_vector_string(value, element)
            if value is None:
                raise self.fail(
                    full,
                    "dense_vector",
                    value,
                    "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [VALUE_STRING]",
                    "parsing_exception",
                )
        # Type checks with map(type) and one pass of sum-of-squares: 1000 x 512-dim docs must stay fast.
        if not isinstance(value, list) or not set(map(type, value)) <= {int, float}:
            raise self.fail(
                full,
                "dense_vector",
                value,
                "Failed to parse object: expecting token of type [VALUE_NUMBER] but found [START_OBJECT]",
                "parsing_exception",
            )
        got = len(value) * (8 if element == "bit" else 1)
        dims = spec.get("dims")
        if dims is not None and got != dims:
            msg = (
                f"The [dense_vector] field [{full}] in doc [{self.doc_desc}] has a different number of "
                f"dimensions [{got}] than defined in the mapping [{dims}]"
            )
            raise ESError(
                400,
                "document_parsing_exception",
                f"[1:2] failed to parse: {msg}",
                caused_by={"type": "illegal_argument_exception", "reason": msg},
            )
        norm_sq = math.fsum(map(operator.mul, value, value)) if value else 0.0
        if element in ("byte", "bit"):
            for i, v in enumerate(value):
                if isinstance(v, float) and not v.is_integer():
                    raise self.vector_error(
                        full,
                        f"element_type [{element}] vectors only support non-decimal "
                        f"values but found decimal value [{v}] at dim [{i}];",
                    )
                if not -128 <= v <= 127:
                    raise self.vector_error(
                        full,
                        f"element_type [{element}] vectors only support integers between "
                        f"[-128, 127] but found [{v}] at dim [{i}];",
                    )
        elif not math.isfinite(norm_sq):
            for i, v in enumerate(value):
                if math.isnan(v) or math.isinf(v):
                    raise self.vector_error(
                        full,
                        f"element_type [float] vectors do not support NaN or Infinity but found [{v}] at dim [{i}];",
                    )
        similarity = spec.get("similarity")
        if spec.get("index", True) and element != "bit":
            if similarity == "cosine" and norm_sq == 0.0:
                raise self.vector_error(
                    full,
                    "The [cosine] similarity does not support vectors with zero "
                    f"magnitude. Preview of invalid vector: {_vector_preview(value)}",
                )
            if similarity == "dot_product" and element == "float" and abs(math.sqrt(norm_sq) - 1.0) > 1e-4:
                raise self.vector_error(
                    full,
                    "The [dot_product] similarity can only be used with unit-length "
                    f"vectors. Preview of invalid vector: {_vector_preview(value)}",
                )
        if dims is None:
            # The first document sets the dims of a vector field mapped without them.
            filled = dict(spec)
            filled["dims"] = got
            if spec.get("index", True) and "index_options" not in spec:
                filled["index_options"] = default_index_options(element, got)
            return filled
        return None

    def vector_error(self, full: str, msg: str) -> ESError:
        return ESError(
            400,
            "document_parsing_exception",
            f"[1:2] failed to parse field [{full}] of type [dense_vector] in {self.doc_desc}. "
            f"Preview of field's value: '{msg.split('Preview of invalid vector: ')[-1]}'",
            caused_by={"type": "illegal_argument_exception", "reason": msg},
        )


def _to_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return float(value.strip()) if value.strip() else float("x")
    raise ValueError(value)


def _dynamic_vector(value: list[Any]) -> bool:
    return DYNAMIC_VECTOR_MIN_DIMS <= len(value) <= MAX_DIMS and all(isinstance(v, float) for v in value)


def _decode_vector_string(text: str, element: str) -> list[int | float] | None:
    """Hex (byte/bit) or base64 (any element type) encoded vectors, as 8.14+/9.x accept them."""
    import base64
    import struct

    if element in ("byte", "bit"):
        try:
            return [b - 256 if b > 127 else b for b in bytes.fromhex(text)]
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if element == "float":
        if len(raw) % 4:
            return None
        return list(struct.unpack(f">{len(raw) // 4}f", raw))
    return [b - 256 if b > 127 else b for b in raw]


def _preview(value: Any) -> str:
    if isinstance(value, list):
        return _vector_preview(value)
    return str(value)


def _vector_preview(value: list[Any]) -> str:
    shown = ", ".join(
        str(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v) for v in value[:10]
    )
    return f"[{shown}{', ...' if len(value) > 10 else ''}]"


def mapped_vector_fields(mappings: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """All ``dense_vector`` fields of a mapping by dotted name (to hide vectors from ``_source``)."""
    found: dict[str, dict[str, Any]] = {}
    for name, spec in mappings.get("properties", {}).items():
        if spec.get("type") == "dense_vector":
            found[prefix + name] = spec
        elif "properties" in spec:
            found.update(mapped_vector_fields(spec, f"{prefix}{name}."))
    return found
