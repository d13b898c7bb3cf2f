"""Mappings as Elasticsearch 9.x validates, normalizes, merges and applies them to documents.

Three jobs:

* :func:`normalize_mappings` checks a mapping from a request (index creation, a template, ``PUT _mapping``)
  and returns the form ``GET _mapping`` shows (``dense_vector`` defaults filled in as the cluster's
  version, 9.0, 9.1 or 9.2, does).
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
SIMILARITIES = ("l2_norm", "cosine", "dot_product", "max_inner_product")  # VectorSimilarity declaration order
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


def normalize_mappings(mappings: Any, *, version: str = "9.2.0") -> dict[str, Any]:
    """Validate a request's ``mappings`` object and return it as ``GET _mapping`` shows it.

    ES: ``MapperService.parseMapping`` (errors become ``Failed to parse mapping: ...``) and each type's
    ``Mapper.TypeParser``; ``dense_vector`` follows ``DenseVectorFieldMapper.Builder`` (see
    :func:`_normalize_dense_vector`).

    Args:
        mappings: the ``mappings`` value of a request (``{"properties": ..., "dynamic": ...}``).
        version: the cluster version (``dense_vector`` defaults and checks move between 9.0, 9.1 and 9.2).

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
            out["properties"] = _normalize_properties(value, "", version)
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


def _normalize_properties(props: Any, prefix: str, version: str = "9.2.0") -> dict[str, Any]:
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
            nested = _normalize_properties({rest: spec}, f"{prefix}{head}.", version)
            out[head].setdefault("properties", {}).update(nested)
            continue
        out[name] = normalize_field(full, spec, version=version)
    return out


def normalize_field(
    full_name: str, spec: dict[str, Any], *, multi: bool = False, version: str = "9.2.0"
) -> dict[str, Any]:
    """Validate one field definition and return its normalized form (raises ``mapper_parsing_exception``).

    ES: ``FieldMapper.Builder.parse`` ("unknown parameter [...] on mapper [...] of type [...]") and
    ``TypeParser.notInMultiFields`` for ``dense_vector`` below ``fields``.
    """
    name = full_name.rsplit(".", 1)[-1]
    ftype = spec.get("type")
    if ftype is None:
        ftype = "object"
    if not isinstance(ftype, str):
        raise mapping_error(f"No type specified for field [{name}]", "mapper_parsing_exception")
    if ftype in ("object", "nested"):
        if multi:
            raise mapping_error(f"Type [{ftype}] cannot be used in multi field", "mapper_parsing_exception")
        return _normalize_object(full_name, ftype, spec, version)
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
        if multi:
            # DenseVectorFieldMapper.PARSER is built with TypeParser.notInMultiFields.
            raise mapping_error(
                f"Field [{name}] of type [dense_vector] can't be used in multifields", "mapper_parsing_exception"
            )
        return _normalize_dense_vector(name, spec, version)
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


def _normalize_object(full_name: str, ftype: str, spec: dict[str, Any], version: str = "9.2.0") -> dict[str, Any]:
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
            out["properties"] = _normalize_properties(value, f"{full_name}.", version)
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


# ----------------------------------------------------------------------------------------- dense_vector
#
# Everything below follows server/src/main/java/org/elasticsearch/index/mapper/vectors/DenseVectorFieldMapper.java
# as released in 9.0, 9.1 and 9.2. What moved between those versions is keyed on the cluster version:
#
# * 9.1 (IndexVersions.DEFAULT_DENSE_VECTOR_TO_BBQ_HNSW, ES PR #129825): float vectors of 384+ dims default to
#   bbq_hnsw, and the default is chosen only once dims are known (Builder.defaultIndexOptions).
# * 9.1 (IndexVersions.DEFAULT_OVERSAMPLE_VALUE_FOR_BBQ, 9_024_0_00 on Lucene 10.2.1, ES PR #127134): bbq_hnsw and
#   bbq_flat get rescore_vector.oversample 3.0 when none is given (VectorIndexType.BBQ_HNSW.parseIndexOptions).
# * 9.1 (ES PR #128291): int8/int4/hnsw index options can be updated to bbq_hnsw, the *_flat ones to bbq_flat too.
# * 9.2 (ES PR #135299): the bbq_disk index type leaves its feature flag.
# * 9.3 (PRs #137072, #138492): base64 vectors and element_type bfloat16; 9.0-9.2 reject both.

BBQ_MIN_DIMS = 64  # DenseVectorFieldMapper.BBQ_MIN_DIMS
BBQ_DIMS_DEFAULT_THRESHOLD = 384  # DenseVectorFieldMapper.BBQ_DIMS_DEFAULT_THRESHOLD (9.1+)
DEFAULT_OVERSAMPLE = 3.0  # DenseVectorFieldMapper.DEFAULT_OVERSAMPLE
_RESCORE_TYPES = ("int8_hnsw", "int4_hnsw", "bbq_hnsw", "int8_flat", "int4_flat", "bbq_flat", "bbq_disk")
_F32_OVERFLOW = 3.4028235677973366e38  # doubles from here up round to float +Infinity
_F32_MAX = 3.4028234663852886e38
_F32_ZERO_SQUARE = 7.006492321624086e-46  # float32 products below half the smallest subnormal round to 0


def version_tuple(version: str) -> tuple[int, int]:
    """``"9.2.0"`` / ``"9.2.0-SNAPSHOT"`` -> ``(9, 2)``; anything unparsable counts as 9.2."""
    try:
        major, minor = version.split("-")[0].split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return (9, 2)


def _element_types(version: str) -> tuple[str, ...]:
    # ElementType / namesToElementType: BFLOAT16 arrives in 9.3 (ES PR #138492).
    return ELEMENT_TYPES + (("bfloat16",) if version_tuple(version) >= (9, 3) else ())


def _index_option_types(version: str) -> tuple[str, ...]:
    # VectorIndexType: bbq_disk is behind the IVF feature flag until 9.2 (ES PR #135299).
    plain = HNSW_TYPES + FLAT_TYPES
    return plain + (("bbq_disk",) if version_tuple(version) >= (9, 2) else ())


def _java_value(value: Any) -> str:
    """A JSON value as Java's ``toString`` prints it inside ES messages (``true``, ``3.0``, ``{a=1}``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_java_value(v) for v in value) + "]"
    return str(value)


def _java_number_text(digits: str, point: int, negative: bool) -> str:
    """Java's ``Float/Double.toString`` layout for the decimal ``0.<digits> x 10^point``."""
    value = abs(float(f"0.{digits}e{point}"))
    if 1e-3 <= value < 1e7:
        if point <= 0:
            text = "0." + "0" * (-point) + digits
        elif point >= len(digits):
            text = digits + "0" * (point - len(digits)) + ".0"
        else:
            text = digits[:point] + "." + digits[point:]
    else:
        text = f"{digits[0]}.{digits[1:] or '0'}E{point - 1}"
    return ("-" if negative else "") + text


def _java_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    from decimal import Decimal

    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    return _java_number_text(text, len(text) + int(exp), bool(sign))


def _java_float(value: float) -> str:
    """``Float.toString`` of a float32 value (shortest digits that read back as the same float)."""
    import struct
    from decimal import Decimal

    if math.isnan(value) or math.isinf(value) or value == 0:
        return _java_double(value)
    for precision in range(1, 10):
        candidate = f"{value:.{precision}g}"
        if struct.unpack("f", struct.pack("f", float(candidate)))[0] == value:
            break
    sign, digits, exp = Decimal(candidate).normalize().as_tuple()
    text = "".join(map(str, digits))
    return _java_number_text(text, len(text) + int(exp), bool(sign))


def _vector_int_param(name: str, key: str, value: Any) -> int:
    """``XContentMapValues.nodeIntegerValue``: numbers are truncated, strings go through Integer.parseInt."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise mapping_error(f'For input string: "{_java_value(value)}"', "number_format_exception")
    if isinstance(value, str):
        try:
            return int(value.strip() if value.strip().lstrip("+-").isdigit() else "x")
        except ValueError:
            raise mapping_error(f'For input string: "{value}"', "number_format_exception") from None
    return int(value)


def _vector_float_param(key: str, value: Any) -> float:
    """``XContentMapValues.nodeDoubleValue``: numbers as they are, strings through Double.parseDouble."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise mapping_error(f'For input string: "{_java_value(value)}"', "number_format_exception")
    try:
        return float(value)
    except ValueError:
        raise mapping_error(f'For input string: "{value}"', "number_format_exception") from None


def _normalize_dense_vector(name: str, spec: dict[str, Any], version: str = "9.2.0") -> dict[str, Any]:
    """A ``dense_vector`` definition checked and printed as ``DenseVectorFieldMapper.Builder`` does.

    ES: server/.../index/mapper/vectors/DenseVectorFieldMapper.java, ``Builder`` (its parameters' parsers
    first, in the order the request lists them, then the validators in parameter order: element_type, dims,
    index, similarity, index_options) and ``FieldMapper.Builder.parse`` (a ``null`` value for a parameter that
    does not accept one). Failures become ``Failed to parse mapping: <reason>`` (``MapperService``), with the
    validators' IllegalArgumentExceptions as ``illegal_argument_exception`` causes.
    """
    for key in ("element_type", "dims", "index"):
        if key in spec and spec[key] is None:
            raise mapping_error(
                f"[{key}] on mapper [{name}] of type [dense_vector] must not have a [null] value",
                "mapper_parsing_exception",
            )
    element = "float"
    if "element_type" in spec:
        # Builder.elementType's parser. Java prints Map.of(...).keySet(), whose order varies between JVMs.
        element = spec["element_type"]
        allowed = _element_types(version)
        if not isinstance(element, str) or element not in allowed:
            raise mapping_error(
                f"invalid element_type [{_java_value(element)}]; available types are [{', '.join(allowed)}]",
                "mapper_parsing_exception",
            )
    dims: int | None = None
    if "dims" in spec:
        raw = spec["dims"]
        # Builder.dims's parser: `o instanceof Integer == false` (a JSON 3.0, "3", or a long is refused).
        if isinstance(raw, bool) or not isinstance(raw, int) or not -(2**31) <= raw < 2**31:
            raise mapping_error(
                f"Property [dims] on field [{name}] must be an integer but got [{_java_value(raw)}]",
                "mapper_parsing_exception",
            )
        dims = raw
    indexed = spec.get("index", True)
    if not _is_boolish(indexed):
        raise mapping_error(f"Failed to parse value [{_java_value(indexed)}] as only [true] or [false] are allowed.")
    indexed = indexed in (True, "true")
    similarity: str | None = None
    if "similarity" in spec:
        similarity = spec["similarity"]
        if similarity is not None and similarity not in SIMILARITIES:
            raise mapping_error(
                f"Unknown value [{_java_value(similarity)}] for field [similarity] - accepted values are "
                f"[{', '.join(SIMILARITIES)}]",
                "mapper_parsing_exception",
            )
    elif indexed:
        # The similarity default: l2_norm for bit vectors, cosine otherwise, none when not indexed.
        similarity = "l2_norm" if element == "bit" else "cosine"
    options_given = "index_options" in spec and spec["index_options"] is not None
    options = _parse_index_options(name, spec["index_options"], version) if options_given else None
    # Validators, in parameter order.
    if dims is not None:
        _check_dims_range(dims, element)
    if indexed and similarity is None:
        raise mapping_error("Field [index] requires field [similarity] to be configured and not null")
    if not indexed:
        if "similarity" in spec and similarity is not None:
            raise mapping_error(
                "Field [similarity] can only be specified for a field of type [dense_vector] when it is indexed"
            )
        if options_given:
            raise mapping_error(
                "Field [index_options] can only be specified for a field of type [dense_vector] when it is indexed"
            )
    if element == "bit" and similarity is not None and similarity != "l2_norm":
        raise mapping_error("The [l2_norm] similarity is the only supported similarity for bit vectors")
    if options is not None:
        problem = _index_options_problem(options, element, dims)
        if problem:
            raise mapping_error(problem)
    out: dict[str, Any] = {"type": "dense_vector"}
    if "element_type" in spec:
        out["element_type"] = element
    if dims is not None:
        out["dims"] = dims
    out["index"] = indexed
    if similarity is not None:
        out["similarity"] = similarity
    if options is None and not ("index_options" in spec and spec["index_options"] is None) and indexed:
        options = default_index_options(element, dims, version)
    if options is not None:
        out["index_options"] = options
    return _with_meta(out, spec)


def _check_dims_range(dims: int, element: str) -> None:
    """``Builder.dims`` validator: [1, 4096], bit vectors [8, 32768] and a multiple of 8 (MapperParsingException)."""
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


def _index_options_problem(options: dict[str, Any], element: str, dims: int | None) -> str | None:
    """``IndexOptions.validateDimension`` then ``validateElementType`` (both IllegalArgumentException)."""
    kind = options["type"]
    if dims is not None:
        if kind in ("int4_hnsw", "int4_flat") and dims % 2 != 0:
            return f"{kind} only supports even dimensions; provided={dims}"
        if kind in ("bbq_hnsw", "bbq_flat") and dims < BBQ_MIN_DIMS:
            return f"{kind} does not support dimensions fewer than {BBQ_MIN_DIMS}; provided={dims}"
    if kind in QUANTIZED_TYPES and element not in ("float", "bfloat16"):
        return f"[element_type] cannot be [{element}] when using index type [{kind}]"
    return None


def _with_meta(out: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    if "meta" in spec:
        out["meta"] = copy.deepcopy(spec["meta"])
    return out


def default_index_options(element: str, dims: int | None, version: str = "9.2.0") -> dict[str, Any] | None:
    """The ``index_options`` ES picks when a mapping names none (``None``: none, shown as no key).

    ES: ``DenseVectorFieldMapper.Builder`` ``index_options`` default (9.0: ``defaultInt8Hnsw`` for float
    vectors) and ``Builder.defaultIndexOptions`` (9.1+: nothing until dims are known, then bbq_hnsw from 384
    dims, int8_hnsw below). byte and bit vectors get none (Lucene's plain HNSW format is used, unseen).

    Example::

        default_index_options("float", 512, "9.0.0")   # {"type": "int8_hnsw", "m": 16, "ef_construction": 100}
    """
    if element not in ("float", "bfloat16"):
        return None
    if version_tuple(version) >= (9, 1):
        if dims is None:
            return None
        if dims >= BBQ_DIMS_DEFAULT_THRESHOLD:
            return {"type": "bbq_hnsw", "m": 16, "ef_construction": 100, "rescore_vector": {"oversample": 3.0}}
    return {"type": "int8_hnsw", "m": 16, "ef_construction": 100}


def _parse_index_options(name: str, opts: Any, version: str) -> dict[str, Any]:
    """``DenseVectorFieldMapper.parseIndexOptions`` and ``VectorIndexType.<TYPE>.parseIndexOptions``.

    Returns the options as the type's ``toXContent`` prints them (9.0-9.2: no ``early_exit`` or
    ``on_disk_rescore``). ``m``, ``ef_construction`` and ``confidence_interval`` are not range-checked here:
    ES leaves that to the Lucene format's constructor (see :func:`index_options_format_error`).
    """
    if not isinstance(opts, dict):
        # Guess: ES casts the node to a Map and fails with a ClassCastException message.
        raise mapping_error(f"Expected map for property [index_options] on field [{name}]", "mapper_parsing_exception")
    rest = dict(opts)
    kind = rest.pop("type", None)
    if kind is None:
        raise mapping_error("[index_options] requires field [type] to be configured", "mapper_parsing_exception")
    kind = _java_value(kind)
    if kind not in _index_option_types(version):
        raise mapping_error(
            f"Unknown vector index options type [{kind}] for field [{name}]", "mapper_parsing_exception"
        )
    out: dict[str, Any] = {"type": kind}
    if kind in HNSW_TYPES:
        m = rest.pop("m", None)
        ef = rest.pop("ef_construction", None)
        out["m"] = 16 if m is None else _vector_int_param(name, "m", m)
        out["ef_construction"] = 100 if ef is None else _vector_int_param(name, "ef_construction", ef)
    ci = rest.pop("confidence_interval", None) if kind in ("int8_hnsw", "int4_hnsw", "int8_flat", "int4_flat") else None
    if ci is not None:
        out["confidence_interval"] = _vector_float_param("confidence_interval", ci)
    elif kind in ("int4_hnsw", "int4_flat"):
        out["confidence_interval"] = 0.0  # Int4*IndexOptions: dynamic quantiles unless given
    if kind == "bbq_disk":
        # VectorIndexType.BBQ_DISK.parseIndexOptions and BBQIVFIndexOptions.toXContent as in the 9.3 source
        # (ES920DiskBBQVectorsFormat: 384 vectors per cluster by default, 64..65536); 9.2's copy was not read.
        size = rest.pop("cluster_size", None)
        out["cluster_size"] = 384 if size is None else _vector_int_param(name, "cluster_size", size)
        if not 64 <= out["cluster_size"] <= 65536:
            raise mapping_error(f"cluster_size must be between 64 and 65536, got: {out['cluster_size']}")
        visit = rest.pop("default_visit_percentage", None)
        out["default_visit_percentage"] = 0.0 if visit is None else _vector_float_param("visit", visit)
        if not 0.0 <= out["default_visit_percentage"] <= 100.0:
            raise mapping_error(
                "default_visit_percentage must be between 0.0 and 100.0, got: "
                f"{_java_double(out['default_visit_percentage'])} for field [{name}]"
            )
    if kind in _RESCORE_TYPES:
        rescore = _parse_rescore_vector(rest.pop("rescore_vector", None))
        if rescore is None and kind in ("bbq_hnsw", "bbq_flat", "bbq_disk") and version_tuple(version) >= (9, 1):
            rescore = DEFAULT_OVERSAMPLE
        if rescore is not None:
            out["rescore_vector"] = {"oversample": rescore}
    if rest:
        # MappingParser.checkNoRemainingFields
        listed = "".join(f" [{k} : {_java_value(v)}]" for k, v in rest.items())
        raise mapping_error(
            f"Mapping definition for [{name}] has unsupported parameters: {listed}", "mapper_parsing_exception"
        )
    return out


def _parse_rescore_vector(node: Any) -> float | None:
    """``RescoreVector.fromIndexOptions`` (0 allowed from IndexVersions.RESCORE_PARAMS_ALLOW_ZERO, in 9.0)."""
    if node is None:
        return None
    if not isinstance(node, dict):
        # Guess: XContentMapValues.nodeMapValue's message.
        raise mapping_error(f"[rescore_vector] should be a map but was of type: {type(node).__name__}")
    if node.get("oversample") is None:
        raise mapping_error("Invalid rescore_vector value. Missing required field oversample")
    oversample = _vector_float_param("oversample", node["oversample"])
    if oversample < 1 and oversample != 0:
        raise mapping_error("oversample must be greater than 1 or exactly 0")
    if oversample > 10:
        raise mapping_error("oversample must be less than or equal to 10")
    return oversample


def index_options_format_error(options: dict[str, Any] | None) -> str | None:
    """The IllegalArgumentException the Lucene vectors format throws for these options, if any.

    ES builds the format (``IndexOptions.getVectorsFormat``: Lucene99HnswVectorsFormat,
    ES814HnswScalarQuantizedVectorsFormat, ES813Int8FlatVectorFormat) only when it writes vectors, so a
    mapping with ``m: 0`` or ``confidence_interval: 0.5`` is accepted and the first document fails. The
    messages are the constructors'; how ES reports that failure to the client is a guess (a 400 for the
    document with ``illegal_argument_exception`` as the cause).
    """
    if not options:
        return None
    m = options.get("m")
    if m is not None and not 0 < m <= 512:
        return f"maxConn must be positive and less than or equal to 512; maxConn={m}"
    ef = options.get("ef_construction")
    if ef is not None and not 0 < ef <= 3200:
        return f"beamWidth must be positive and less than or equal to 3200; beamWidth={ef}"
    ci = options.get("confidence_interval")
    if ci is not None and ci != 0 and not 0.9 <= ci <= 1.0:
        return f"confidenceInterval must be between 0.9 and 1.0; confidenceInterval={_java_float(ci)}"
    return None


def _options_to_string(options: dict[str, Any] | None) -> str:
    """``IndexOptions.toString`` as conflict messages print it.

    Hnsw/Int8Hnsw/Int4Hnsw/Int4Flat override ``toString``; the other types print Java's default
    ``Class@hash`` form, which cannot be reproduced, so those are rendered in the same ``{type=...}`` style.
    """
    if options is None:
        return "null"
    kind = options["type"]
    rescore = options.get("rescore_vector")
    rescore_text = f"RescoreVector[oversample={_java_double(rescore['oversample'])}]" if rescore else None
    parts = [f"type={kind}"]
    if "m" in options:
        parts += [f"m={options['m']}", f"ef_construction={options['ef_construction']}"]
    if kind in ("int8_hnsw", "int4_hnsw", "int8_flat", "int4_flat"):
        ci = options.get("confidence_interval")
        parts.append(f"confidence_interval={'null' if ci is None else _java_float(ci)}")
    if kind in ("int8_hnsw", "int4_hnsw"):
        parts.append(f"rescore_vector={rescore_text or 'none'}")
    elif kind in _RESCORE_TYPES:
        parts.append(f"rescore_vector={rescore_text or 'null'}")
    return "{" + ", ".join(parts) + "}"


def _options_updatable(old: dict[str, Any], new: dict[str, Any], version: str) -> bool:
    """``IndexOptions.updatableTo`` per type (9.0), plus the bbq targets 9.1 allows (ES PR #128291).

    The bbq targets and their ``m`` never-shrinks condition are as in the 9.3 source; that 9.1 and 9.2 have
    the same rules is a guess (their copies were not read).
    """
    src, dst = old["type"], new["type"]
    bbq = version_tuple(version) >= (9, 1)
    m_ok = new.get("m", 0) >= old.get("m", 0)
    if src == "flat":
        return True
    if src == "int8_flat":
        return dst in ("int8_flat", "hnsw", "int8_hnsw", "int4_hnsw", "int4_flat") or (
            bbq and dst in ("bbq_flat", "bbq_hnsw")
        )
    if src == "int4_flat":
        return dst in ("int4_flat", "hnsw", "int8_hnsw", "int4_hnsw") or (bbq and dst in ("bbq_flat", "bbq_hnsw"))
    if src == "hnsw":
        return dst in ("hnsw", "int8_hnsw", "int4_hnsw") and m_ok or (bbq and dst == "bbq_hnsw" and m_ok)
    if src == "int8_hnsw":
        if dst == "int8_hnsw":
            ci = old.get("confidence_interval")
            return m_ok and (ci is None or ci == new.get("confidence_interval"))
        return dst == "int4_hnsw" and m_ok or (bbq and dst == "bbq_hnsw" and m_ok)
    if src == "int4_hnsw":
        if dst == "int4_hnsw":
            return m_ok and bool(old.get("confidence_interval") == new.get("confidence_interval"))
        return bbq and dst == "bbq_hnsw" and m_ok
    if src == "bbq_flat":
        return dst == "bbq_flat" or (bbq and dst == "bbq_hnsw")
    if src == "bbq_hnsw":
        # 9.0: any bbq_hnsw; the 9.3 source also requires m never to shrink (taken from 9.1 on: guess).
        return dst == "bbq_hnsw" and (m_ok or not bbq)
    return dst == src  # bbq_disk


# ------------------------------------------------------------------------------------------------- merge


def merge_mappings(
    base: dict[str, Any], overlay: dict[str, Any], *, strict_types: bool = True, version: str = "9.2.0"
) -> dict[str, Any]:
    """Lay the normalized ``overlay`` over ``base`` (both normalized); returns a new mapping.

    ES: ``MapperService.merge`` / ``ObjectMapper.merge`` / ``FieldMapper.merge`` (conflicts reported by
    ``FieldMapper.Conflicts.check``); ``dense_vector`` updates follow :func:`_merge_vector`.

    Args:
        base: the mapping so far (a template's, or the live index mapping).
        overlay: the mapping to add on top.
        strict_types: refuse changing a field's type (``PUT _mapping``); templates composing each other
            replace fields instead.
        version: the cluster version (which ``dense_vector`` index_options updates are allowed).

    Example::

        merge_mappings({"properties": {"a": {"type": "keyword"}}}, {"properties": {"b": {"type": "long"}}})
    """
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if key == "properties":
            out["properties"] = _merge_props(out.get("properties", {}), value, "", strict_types, version)
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


def _merge_props(
    base: dict[str, Any], overlay: dict[str, Any], prefix: str, strict: bool, version: str = "9.2.0"
) -> dict[str, Any]:
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
            props = _merge_props(old.get("properties", {}), spec.get("properties", {}), full + ".", strict, version)
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
            out[name] = _merge_vector(full, old, spec, version)
            continue
        merged = copy.deepcopy(spec) if not strict else {**copy.deepcopy(old), **copy.deepcopy(spec)}
        if strict and "fields" in old and "fields" in spec:
            merged["fields"] = _merge_props(old["fields"], spec["fields"], full + ".", strict, version)
        out[name] = merged
    return out


def _merge_vector(full: str, old: dict[str, Any], new: dict[str, Any], version: str = "9.2.0") -> dict[str, Any]:
    """``PUT _mapping`` over an existing ``dense_vector`` (both normalized, defaults filled in).

    ES: ``FieldMapper.Builder.merge`` / ``Parameter.merge`` with ``DenseVectorFieldMapper.Builder``'s merge
    validators: element_type, index and similarity cannot change; dims only from unset to a value;
    index_options when either side is null, they are equal, or ``IndexOptions.updatableTo`` allows it. All
    conflicts are reported together by ``FieldMapper.Conflicts.check`` as one illegal_argument_exception. The
    merged field is validated again (``Builder.validate``: a bbq type on fewer than 64 dims fails).
    """
    conflicts = []

    def effective(spec: dict[str, Any], key: str) -> Any:
        return spec.get(key, "float" if key == "element_type" else None)

    for key in ("element_type", "dims", "index", "similarity"):
        before, after = effective(old, key), effective(new, key)
        if before == after or (key == "dims" and before is None):
            continue
        conflicts.append(f"Cannot update parameter [{key}] from [{_java_value(before)}] to [{_java_value(after)}]")
    before_opts, after_opts = old.get("index_options"), new.get("index_options")
    if not (
        before_opts is None
        or after_opts is None
        or before_opts == after_opts
        or _options_updatable(before_opts, after_opts, version)
    ):
        conflicts.append(
            f"Cannot update parameter [index_options] from [{_options_to_string(before_opts)}] "
            f"to [{_options_to_string(after_opts)}]"
        )
    if conflicts:
        raise ESError(
            400,
            "illegal_argument_exception",
            f"Mapper for [{full}] conflicts with existing mapper:\n\t" + "\n\t".join(conflicts),
        )
    merged = {**old, **new}
    if "dims" not in new and "dims" in old:
        merged["dims"] = old["dims"]
    if after_opts is None and "index_options" in merged:
        del merged["index_options"]
    if merged.get("index", True) and "index_options" not in merged and before_opts is None:
        filled = default_index_options(merged.get("element_type", "float"), merged.get("dims"), version)
        if filled is not None:
            merged["index_options"] = filled
    if merged.get("index_options") is not None:
        problem = _index_options_problem(
            merged["index_options"], merged.get("element_type", "float"), merged.get("dims")
        )
        if problem:
            raise ESError(400, "illegal_argument_exception", problem)
    return merged


def field_type(spec: dict[str, Any]) -> str:
    """A field's type, ``object`` when a definition has only properties (as ES prints objects)."""
    return spec.get("type", "object")


# ------------------------------------------------------------------------------------------- documents


def parse_document(
    mappings: dict[str, Any],
    source: dict[str, Any],
    doc_id: str | None,
    *,
    version: str = "9.2.0",
) -> dict[str, Any] | None:
    """Check ``source`` against ``mappings``; return the dynamic mapping update (``{"properties":...}``).

    ``version`` is the cluster version (``dense_vector`` parsing and defaults move between 9.0 and 9.3).
    ES: ``DocumentParser.parseDocument`` (dynamic fields: ``DynamicFieldsBuilder``; ``dense_vector``:
    :meth:`_DocCtx.check_vector`).

    Returns ``None`` when the document adds no field. Raises ``ESError`` as ES rejects the document
    (400 ``document_parsing_exception``, ``strict_dynamic_mapping_exception``).

    Example::

        parse_document({"properties": {}}, {"n": 1}, "1")   # {"properties": {"n": {"type": "long"}}}
    """
    ctx = _DocCtx(doc_id, mappings, version)
    root_dynamic = mappings.get("dynamic", True)
    new_props = ctx.parse_object(source, mappings.get("properties", {}), "", root_dynamic, "_doc")
    return {"properties": new_props} if new_props else None


class _DocCtx:
    def __init__(self, doc_id: str | None, mappings: dict[str, Any], version: str = "9.2.0") -> None:
        self.doc_id = doc_id
        self.version = version
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
        last = len(obj) - 1
        for position, (key, value) in enumerate(obj.items()):
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
            # The token after this value is what a float dense_vector mapper trips over (check_vector).
            following = "END_OBJECT" if position == last else "FIELD_NAME"
            update = self.parse_value(full, spec, value, dynamic, following)
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
                    **(
                        {"index_options": opts}
                        if (opts := default_index_options("float", len(value), self.version))
                        else {}
                    ),
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

    def parse_value(
        self, full: str, spec: dict[str, Any], value: Any, dynamic: Any, following: str = "END_OBJECT"
    ) -> dict[str, Any] | None:
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
            return self.check_vector(full, spec, value, following)
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

    def check_vector(
        self, full: str, spec: dict[str, Any], value: Any, following: str = "END_OBJECT"
    ) -> dict[str, Any] | None:
        """Parse one ``dense_vector`` value as ``DenseVectorFieldMapper.parse`` does; returns a mapping update.

        ES: ``DenseVectorFieldMapper.parse`` (``null`` is skipped; a field mapped without dims takes them from
        the first document: ``parseDimensionCount`` then a dynamic mapper update), ``ElementType.FLOAT/BYTE/BIT
        .parseKnnVectorAndIndex`` / ``parseKnnVector`` (9.0-9.2: float vectors must be JSON arrays, byte and
        bit vectors arrays or hex strings; base64 only from 9.3), ``checkDimensionExceeded`` /
        ``checkDimensionMatches``, ``checkVectorBounds``, ``checkVectorMagnitude``. The mapper overrides
        ``parse``, so every failure reaches the client through ``DocumentParser.wrapInDocumentParsingException``:
        ``failed to parse: <message>`` with the original exception as the cause. The ``[line:col]`` prefix is
        not computed (always ``[1:2]``).

        Not emulated: ES applies the dims learned from a first document even when that document then fails
        its value checks (the update is made before the retried parse); here a failing document changes nothing.
        """
        if value is None:
            return None
        element = spec.get("element_type", "float")
        dims = spec.get("dims")
        if dims is None:
            return self._first_vector(full, spec, value, element, following)
        self._parse_vector(full, spec, value, element, dims, following)
        problem = index_options_format_error(spec.get("index_options"))
        if problem:
            # Guess: how the Lucene format constructor's failure reaches the client (see index_options_format_error).
            raise ESError(400, "illegal_argument_exception", problem)
        return None

    def vector_failure(self, message: str, cause_type: str = "illegal_argument_exception") -> ESError:
        """``DocumentParser.wrapInDocumentParsingException`` around an exception from the vector mapper."""
        return ESError(
            400,
            "document_parsing_exception",
            f"[1:2] failed to parse: {message}",
            caused_by={"type": cause_type, "reason": message},
        )

    def _first_vector(
        self, full: str, spec: dict[str, Any], value: Any, element: str, following: str
    ) -> dict[str, Any]:
        """dims unset: ``ElementType.parseDimensionCount``, then the update's ``Builder`` validation."""
        if isinstance(value, list):
            got = len(value)
        elif isinstance(value, str) and element in ("byte", "bit"):
            got = len(self._hex_bytes(value))
        else:
            # Guess for float: ES's count loop would run past the value; it fails as the indexing path does.
            raise self._not_an_array(value, element, following)
        if element == "bit":
            got *= 8
        try:
            _check_dims_range(got, element)
        except ESError as exc:
            raise self.vector_failure(exc.extra["caused_by"]["reason"], "mapper_parsing_exception") from None
        problem = _index_options_problem(spec["index_options"], element, got) if spec.get("index_options") else None
        if problem:
            raise self.vector_failure(problem)
        filled = dict(spec)
        filled["dims"] = got
        if spec.get("index", True) and "index_options" not in spec:
            default = default_index_options(element, got, self.version)
            if default is not None:
                filled["index_options"] = default
        # ES retries the document against the updated mapping; its values are checked then.
        self.check_vector(full, filled, value, following)
        return filled

    def _not_an_array(self, value: Any, element: str, following: str) -> ESError:
        if element == "float":
            # FLOAT.parseKnnVectorAndIndex reads the next token and ensureExpectedToken(VALUE_NUMBER, ...) fails.
            after = ("FIELD_NAME" if value else "END_OBJECT") if isinstance(value, dict) else following
            return self._expecting_number(after)
        token = _json_token(value)
        text = "{" if isinstance(value, dict) else _json_text(value)
        return self.vector_failure(f"Unsupported type [{token}] for provided value [{text}]", "parsing_exception")

    def _hex_bytes(self, text: str) -> list[int]:
        """``HexFormat.of().parseHex`` (JDK): the messages are the JDK's (guess from memory, not read)."""
        if len(text) % 2:
            raise self.vector_failure(f"string length not even: {len(text)}")
        for ch in text:
            if ch not in "0123456789abcdefABCDEF":
                raise self.vector_failure(f'not a hexadecimal digit: "{ch}" = {ord(ch)}', "number_format_exception")
        return [b - 256 if b > 127 else b for b in bytes.fromhex(text)]

    def _parse_vector(
        self, full: str, spec: dict[str, Any], value: Any, element: str, dims: int, following: str
    ) -> None:
        newer = version_tuple(self.version) >= (9, 3)
        if isinstance(value, str) and newer and element in ("float", "bfloat16"):
            value = decode_base64_vector(value, dims, self.vector_failure)
        elif isinstance(value, str) and newer:
            decoded = _decode_vector_string(value, element)
            if decoded is None:
                raise self.vector_failure(f"Illegal base64 character in [{value[:20]}]")  # guess
            value = decoded
        per_dim = 8 if element == "bit" else 1
        if isinstance(value, str) and element in ("byte", "bit"):
            numbers: list[Any] = self._hex_bytes(value)
            self._dims_match(full, len(numbers) * per_dim, dims)
        elif not isinstance(value, list):
            raise self._not_an_array(value, element, following)
        elif element in ("float", "bfloat16"):
            numbers = self._float_array(full, value, dims)
        else:
            numbers = self._byte_array(full, value, dims, element)
        similarity = spec.get("similarity") if spec.get("index", True) not in (False, "false") else None
        if element in ("float", "bfloat16"):
            self._check_float_values(numbers, similarity)
        elif element == "byte" and similarity == "cosine" and not any(numbers):
            # BYTE.checkVectorMagnitude
            raise self.vector_failure(
                "The [cosine] similarity does not support vectors with zero magnitude." + _java_preview(numbers, False)
            )

    def _expecting_number(self, found: str) -> ESError:
        """``XContentParserUtils.ensureExpectedToken(VALUE_NUMBER, ...)`` failing on the token ``found``."""
        return self.vector_failure(
            f"Failed to parse object: expecting token of type [VALUE_NUMBER] but found [{found}]",
            "parsing_exception",
        )

    def _check_element(self, full: str, read: int, item: Any, dims: int) -> None:
        """The checks each array element gets before its value (FLOAT and BYTE/BIT ``parseVectorArray``):
        the ``read`` dimensions before it must leave room under ``dims``, then it must be a number token."""
        if read >= dims:
            raise self._more_dims(full, dims)
        token = _json_token(item)
        if token != "VALUE_NUMBER":
            raise self._expecting_number(token)

    def _more_dims(self, full: str, dims: int) -> ESError:
        return self.vector_failure(
            f"The [dense_vector] field [{full}] in doc [{self.doc_desc}] has more dimensions than defined in the "
            f"mapping [{dims}]"
        )

    def _dims_match(self, full: str, got: int, dims: int) -> None:
        if got != dims:
            raise self.vector_failure(
                f"The [dense_vector] field [{full}] in doc [{self.doc_desc}] has a different number of dimensions "
                f"[{got}] than defined in the mapping [{dims}]"
            )

    def _float_array(self, full: str, value: list[Any], dims: int) -> list[float]:
        """FLOAT's token loop: dims exceeded, then VALUE_NUMBER, per element; then the count."""
        from array import array

        # Fast path (1000 x 512-dim documents must stay quick): the common all-numbers, right-length case.
        if len(value) == dims and set(map(type, value)) <= {int, float}:
            try:
                return list(array("f", value))
            except OverflowError:
                pass
        for i, item in enumerate(value):
            self._check_element(full, i, item, dims)
        self._dims_match(full, len(value), dims)
        return [_to_float32(v) for v in value]

    def _byte_array(self, full: str, value: list[Any], dims: int, element: str) -> list[int]:
        """BYTE/BIT ``parseVectorArray``: per element dims, token, decimal part, then the [-128, 127] range."""
        per_dim = 8 if element == "bit" else 1
        out: list[int] = []
        for i, item in enumerate(value):
            self._check_element(full, i * per_dim, item, dims)
            if isinstance(item, int) and -(2**31) <= item < 2**31:
                number = item
            else:
                as_float = _to_float32(item)
                if not math.isfinite(as_float) or as_float % 1.0 != 0.0:
                    raise self.vector_failure(
                        f"element_type [{element}] vectors only support non-decimal values but found decimal "
                        f"value [{_java_float(as_float)}] at dim [{i}];"
                    )
                number = max(-(2**31), min(2**31 - 1, int(as_float)))  # Java's (int) cast saturates
            if not -128 <= number <= 127:
                raise self.vector_failure(
                    f"element_type [{element}] vectors only support integers between [-128, 127] but found "
                    f"[{number}] at dim [{i}];"
                )
            out.append(number)
        self._dims_match(full, len(value) * per_dim, dims)
        return out

    def _check_float_values(self, values: list[float], similarity: str | None) -> None:
        """``checkVectorBounds`` (NaN / infinite element) then FLOAT ``checkVectorMagnitude``.

        The squared magnitude is summed in double precision; ES sums in float32, so a vector within float
        rounding of the dot_product tolerance (|m^2 - 1| > 1e-3) may be judged differently.
        """
        total = sum(values)
        if not math.isfinite(total):
            for i, v in enumerate(values):
                if math.isnan(v):
                    raise self.vector_failure(
                        f"element_type [float] vectors do not support NaN values but found [NaN] at dim [{i}];"
                        + _java_preview(values, True)
                    )
                if math.isinf(v):
                    raise self.vector_failure(
                        f"element_type [float] vectors do not support infinite values but found "
                        f"[{_java_float(v)}] at dim [{i}];" + _java_preview(values, True)
                    )
        squared = math.fsum(map(operator.mul, values, values))
        if squared > _F32_MAX:
            raise self.vector_failure(
                "NaN or Infinite magnitude detected, this usually means the vector values are too extreme to fit "
                "within a float." + _java_preview(values, True)
            )
        if similarity == "dot_product" and abs(squared - 1.0) > 1e-3:
            raise self.vector_failure(
                "The [dot_product] similarity can only be used with unit-length vectors." + _java_preview(values, True)
            )
        if similarity == "cosine" and not any(v * v >= _F32_ZERO_SQUARE for v in values):
            raise self.vector_failure(
                "The [cosine] similarity does not support vectors with zero magnitude." + _java_preview(values, True)
            )


def _json_token(value: Any) -> str:
    """The XContent token a JSON value starts with."""
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, (int, float)):
        return "VALUE_NUMBER"
    if isinstance(value, str):
        return "VALUE_STRING"
    if value is None:
        return "VALUE_NULL"
    return "START_ARRAY" if isinstance(value, list) else "START_OBJECT"


def _json_text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def _to_float32(value: Any) -> float:
    """``parser.floatValue()``: the nearest float32, +-Infinity beyond its range."""
    import struct

    try:
        number = float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    if not math.isfinite(number):
        return number
    if abs(number) >= _F32_OVERFLOW:
        return math.copysign(math.inf, number)
    return float(struct.unpack("f", struct.pack("f", number))[0])


def _java_preview(values: list[Any], floats: bool) -> str:
    """``ElementType.appendErrorElements``: the first five values, ``, ...`` when there are five or more."""
    shown = ", ".join(_java_float(v) if floats else str(v) for v in values[:5])
    return f" Preview of invalid vector: [{shown}{', ...' if len(values) >= 5 else ''}]"


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


def decode_base64_vector(text: str, dims: int, fail: Any) -> list[float]:
    """A ``float`` / ``bfloat16`` vector sent as a base64 string (9.3+), decoded as Elasticsearch does.

    ES (PR #137072): ``DenseVectorFieldMapper.FloatElement.parseBase64EncodedVector`` (``BFloat16Element``
    inherits it): ``Base64.getDecoder().decode`` (the JDK's basic decoder: padding optional), then the
    bytes are read BIG_ENDIAN: ``dims * 4`` bytes as float32, ``dims * 2`` bytes as bfloat16 (whatever the
    mapping's element type), any other length a ``ParsingException`` "Failed to parse object: Base64
    decoded vector byte length [N] does not match the expected length of [4d] or [2d] for dimension count
    [d]". The caller then runs the usual bounds and magnitude checks (``checkVectorBounds``,
    ``checkVectorMagnitude``). Below 9.3 ``FLOAT.parseKnnVectorAndIndex`` expects an array and a string
    fails with "expecting token of type [VALUE_NUMBER]" (``_not_an_array``).
    The JDK decoder's own messages ("Illegal base64 character 2d", "Last unit does not have enough valid
    bits") are from memory of ``java.util.Base64.Decoder``: guess.

    ``fail(message, cause_type)`` builds the document error (``DocumentParser`` wraps the mapper's exception).
    """
    import base64
    import binascii
    import struct

    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    body = text.rstrip("=")
    for ch in body:
        if ch not in alphabet:
            raise fail(f"Illegal base64 character {ord(ch):x}", "illegal_argument_exception")
    if len(text) - len(body) > 2 or len(body) % 4 == 1:
        raise fail("Last unit does not have enough valid bits", "illegal_argument_exception")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error as exc:  # cannot happen after the checks above; kept as a guess, not a crash
        raise fail(str(exc), "illegal_argument_exception") from None
    if len(raw) == dims * 4:
        return list(struct.unpack(f">{dims}f", raw))
    if len(raw) == dims * 2:
        return [struct.unpack(">f", struct.pack(">I", half << 16))[0] for half in struct.unpack(f">{dims}H", raw)]
    raise fail(
        f"Failed to parse object: Base64 decoded vector byte length [{len(raw)}] does not match the expected "
        f"length of [{dims * 4}] or [{dims * 2}] for dimension count [{dims}]",
        "parsing_exception",
    )


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
