"""Mapping lookup, value extraction from ``_source``, analysis and value coercion per field type.

Shared by the query engine (:mod:`tests.escluster.query`) and the fetch phase
(:mod:`tests.escluster.fetch`). Everything here is pure: no state outlives one search request.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
from typing import Any

NUMERIC_TYPES = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
                 "unsigned_long"}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
KEYWORD_TYPES = {"keyword", "constant_keyword", "wildcard"}
TEXT_TYPES = {"text", "match_only_text"}
DATE_TYPES = {"date", "date_nanos"}
VECTOR_TYPES = {"dense_vector", "sparse_vector"}
OBJECT_TYPES = {"object", "nested"}


def f32(x: float) -> float:
    """Round a Python float to float32 precision, as Lucene computes scores and stores floats."""
    return struct.unpack("f", struct.pack("f", x))[0]


def flatten_mappings(mappings: dict | None) -> dict[str, dict]:
    """Map every field path (objects, leaves and multi-fields) to its mapping.

    Multi-fields get ``"_source_path"`` set to the parent field whose ``_source`` value they index.

    Example::

        flatten_mappings({"properties": {"t": {"type": "text", "fields": {"raw": {"type": "keyword"}}}}})
        # {"t": {...}, "t.raw": {"type": "keyword", "_source_path": "t"}}
    """
    out: dict[str, dict] = {}

    def walk(props: dict, prefix: str) -> None:
        for name, spec in (props or {}).items():
            if not isinstance(spec, dict):
                continue
            path = prefix + name
            ftype = spec.get("type", "object" if "properties" in spec else None)
            if ftype in OBJECT_TYPES or ftype is None:
                out[path] = {**spec, "type": ftype or "object"}
                walk(spec.get("properties", {}), path + ".")
                continue
            out[path] = spec
            for sub, subspec in (spec.get("fields") or {}).items():
                if isinstance(subspec, dict):
                    out[f"{path}.{sub}"] = {**subspec, "_source_path": path}

    walk((mappings or {}).get("properties", {}), "")
    return out


def _extract(obj: Any, parts: list[str], out: list, raw: bool) -> None:
    if isinstance(obj, list) and (parts or not raw):
        for item in obj:
            _extract(item, parts, out, raw)
        return
    if not parts:
        if obj is not None:
            out.append(obj)
        return
    if not isinstance(obj, dict):
        return
    # _source may spell an object path as nested objects or as dotted keys ("a.b": 1); try both.
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in obj:
            _extract(obj[key], parts[i:], out, raw)


def source_values(source: dict, path: str, *, raw: bool = False) -> list:
    """All values at ``path`` in ``source``, arrays flattened (``raw`` keeps the leaf arrays whole).

    Example::

        source_values({"a": [{"b": 1}, {"b": [2, 3]}]}, "a.b")   # [1, 2, 3]
        source_values({"v": [0.1, 0.2]}, "v", raw=True)           # [[0.1, 0.2]]
    """
    out: list = []
    _extract(source, path.split("."), out, raw)
    return out


# ---------------------------------------------------------------------------------------------- analysis

# Ideographic scripts that the standard tokenizer (UAX#29) emits one character at a time.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|(?:[^\W_{_CJK}]|_)+(?:['.:](?:[^\W_{_CJK}]|_)+)*", re.UNICODE)


def standard_tokens(text: str) -> list[str]:
    """Tokens of the ``standard`` analyzer: Unicode word boundaries, lower-cased, CJK per character.

    Example::

        standard_tokens("Hello, Wörld! 東京")   # ["hello", "wörld", "東", "京"]
    """
    return [t.lower() for t in _TOKEN.findall(text) if len(t) <= 255]


def analyze(text: Any, spec: dict, *, search: bool = False) -> list[str]:
    """Tokens for a value of a text (or keyword) field according to its mapping's analyzer."""
    ftype = spec.get("type")
    text = keyword_value(text) if not isinstance(text, str) else text
    if ftype in KEYWORD_TYPES:
        return [normalize_keyword(text, spec)]
    name = (spec.get("search_analyzer") if search else None) or spec.get("analyzer") or "standard"
    if name == "keyword":
        return [text]
    if name == "whitespace":
        return text.split()
    if name in ("simple", "stop"):
        return [t.lower() for t in re.findall(r"[^\W\d_]+", text)]
    return standard_tokens(text)


def normalize_keyword(value: str, spec: dict) -> str:
    # Only the built-in-like "lowercase" normalizer is understood; custom ones need index settings.
    if "lowercase" in str(spec.get("normalizer", "")):
        return value.lower()
    return value


def keyword_value(value: Any) -> str:
    """How ES turns a JSON scalar into a keyword term (``true`` -> ``"true"``, ``5`` -> ``"5"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


# ---------------------------------------------------------------------------------------------- coercion

class CoercionError(ValueError):
    """A value that cannot be turned into the field's type."""


def to_number(value: Any, ftype: str) -> float | int:
    """Coerce a JSON value to the numeric field type (integers truncate like ES's ``coerce``)."""
    if isinstance(value, bool):
        raise CoercionError(f"Current token (VALUE_{str(value).upper()}) not numeric")
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise CoercionError(f"For input string: \"{value}\"") from None
    if math.isnan(num) or math.isinf(num):
        raise CoercionError(f"[{ftype}] supports only finite values, but got [{value}]")
    if ftype in INTEGER_TYPES:
        return int(num)
    if ftype == "float":
        return f32(num)
    if ftype == "half_float":
        import numpy as np

        return float(np.float16(num))
    return num


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    if value == "":
        return False
    raise CoercionError(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


_DATE_MATH = re.compile(r"([+-])(\d+)([yMwdhHms])|/([yMwdhHms])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "H": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_date(value: Any, *, now_ms: int | None = None, round_up: bool = False) -> int:
    """Epoch milliseconds for a date value: ISO 8601 string, epoch millis, or date math (``now-1d/d``).

    Example::

        parse_date("2020-01-01")            # 1577836800000
        parse_date("2020-01-01||+1d")       # 1577923200000
    """
    if isinstance(value, bool):
        raise CoercionError(f"failed to parse date field [{value}]")
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    math_part = ""
    if text.startswith("now"):
        base = now_ms if now_ms is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        math_part = text[3:]
    else:
        if "||" in text:
            text, math_part = text.split("||", 1)
        base = _parse_date_string(text, round_up=round_up and not math_part)
    if math_part:
        base = _apply_date_math(base, math_part, round_up)
    return base


def _parse_date_string(text: str, *, round_up: bool = False) -> int:
    if re.fullmatch(r"-?\d+", text) and not re.fullmatch(r"\d{4}", text):
        return int(text)
    candidate = text.replace("z", "Z")
    try:
        if re.fullmatch(r"\d{4}", candidate):
            parsed = dt.datetime(int(candidate), 1, 1)
        elif re.fullmatch(r"\d{4}-\d{2}", candidate):
            parsed = dt.datetime.strptime(candidate, "%Y-%m")
        else:
            parsed = dt.datetime.fromisoformat(candidate)
    except ValueError:
        raise CoercionError(f"failed to parse date field [{text}] with format "
                            f"[strict_date_optional_time||epoch_millis]") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    ms = int(round(parsed.timestamp() * 1000))
    if round_up and re.fullmatch(r"\d{4}-\d{2}-\d{2}", candidate):
        # A date without time in an upper bound (lte) covers the whole day, as ES's round-up parser does.
        ms += 86_400_000 - 1
    return ms


def _apply_date_math(ms: int, expr: str, round_up: bool) -> int:
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    pos = 0
    while pos < len(expr):
        m = _DATE_MATH.match(expr, pos)
        if not m:
            raise CoercionError(f"operation [{expr[pos:]}] is not supported")
        pos = m.end()
        if m.group(4):
            when = _round_date(when, m.group(4), round_up)
            continue
        sign = 1 if m.group(1) == "+" else -1
        amount, unit = int(m.group(2)) * sign, m.group(3)
        if unit == "y":
            when = when.replace(year=when.year + amount)
        elif unit == "M":
            month = when.month - 1 + amount
            when = when.replace(year=when.year + month // 12, month=month % 12 + 1)
        else:
            when = when + dt.timedelta(milliseconds=amount * _UNIT_MS[unit])
    return int(round(when.timestamp() * 1000))


def _round_date(when: dt.datetime, unit: str, round_up: bool) -> dt.datetime:
    if unit == "y":
        start = when.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = start.replace(year=start.year + 1)
    elif unit == "M":
        start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    elif unit == "w":
        start = (when - dt.timedelta(days=when.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        nxt = start + dt.timedelta(days=7)
    else:
        step = _UNIT_MS[unit]
        ms = int(when.timestamp() * 1000) // step * step
        start = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
        nxt = start + dt.timedelta(milliseconds=step)
    return nxt - dt.timedelta(milliseconds=1) if round_up else start


def format_date(ms: int) -> str:
    """Epoch millis as ES's default ``strict_date_optional_time`` output: ``2020-01-01T00:00:00.000Z``."""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def doc_values(source: dict, path: str, spec: dict) -> list:
    """The field's values for sorting, ranges, terms and collapse: typed, ``None`` and bad values dropped."""
    ftype = spec.get("type")
    if ftype == "constant_keyword":
        return [spec["value"]] if "value" in spec else []
    raw = source_values(source, spec.get("_source_path", path))
    out: list = []
    for value in raw:
        try:
            if ftype in KEYWORD_TYPES:
                if isinstance(value, (dict, list)):
                    continue
                text = keyword_value(value)
                if "ignore_above" in spec and len(text) > int(spec["ignore_above"]):
                    continue
                out.append(normalize_keyword(text, spec))
            elif ftype in NUMERIC_TYPES:
                out.append(to_number(value, ftype))
            elif ftype in DATE_TYPES:
                out.append(parse_date(value))
            elif ftype == "boolean":
                out.append(to_bool(value))
            else:
                out.append(value)
        except CoercionError:
            continue
    return out


def vector_value(source: dict, path: str) -> list[float] | None:
    """The dense vector stored at ``path`` (one vector per document), or None."""
    values = source_values(source, path, raw=True)
    for value in values:
        if isinstance(value, list) and value and all(isinstance(x, (int, float)) for x in value):
            return [float(x) for x in value]
        if isinstance(value, str):
            try:
                return [float(b if b < 128 else b - 256) for b in bytes.fromhex(value)]
            except ValueError:
                pass
            # A float vector indexed as base64 (9.3+; checked at indexing by mapping.decode_base64_vector):
            # big-endian float32. Guess for byte/bit fields' base64 form, which this does not tell apart.
            try:
                import base64
                import struct

                body = value.rstrip("=")
                raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
            except ValueError:
                return None
            return list(struct.unpack(f">{len(raw) // 4}f", raw)) if raw and len(raw) % 4 == 0 else None
    return None
