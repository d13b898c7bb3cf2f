"""``_search`` and ``_count`` of the test cluster, shaped like Elasticsearch 9.x.

The core server calls :func:`search` and :func:`count` with the target indices (objects with
``name``, ``mappings``, ``docs`` and optionally ``settings``). One index is one shard here.

What is covered: ``query`` (see :mod:`tests.escluster.query`), top-level ``knn`` (object or list;
exact brute force, pre-filters, ``similarity`` floors, ``boost``, ``query_vector_builder``),
``retriever`` (``standard``, ``knn``, ``rrf``), ``size``/``from``, ``sort``, ``track_total_hits``,
``track_scores``, ``min_score``, ``post_filter``, ``search_after``, ``collapse``, ``_source``
(including 9.2's ``exclude_vectors``), ``fields``, ``docvalue_fields``, ``stored_fields``, simple
``aggs`` (terms, min, max, avg, sum, value_count, cardinality) and the ``q`` URL parameter.

Errors follow ES: request parsing failures are top-level 400s (``parsing_exception``,
``illegal_argument_exception``, ``x_content_parse_exception``); failures ES hits on a shard (query
vector dims, non-vector knn field, unsortable field, result window) become 400
``search_phase_execution_exception`` ("all shards failed") whose ``root_cause`` is the shard's error.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from tests.escluster import query as query_mod
from tests.escluster.errors import ESError
from tests.escluster.fetch import (
    collect_fields,
    parse_field_requests,
    parse_source_spec,
    render_source,
)
from tests.escluster.fields import (
    DATE_TYPES,
    INTEGER_TYPES,
    KEYWORD_TYPES,
    NUMERIC_TYPES,
    TEXT_TYPES,
    f32,
    format_date,
    vector_value,
)
from tests.escluster.query import (
    Bool,
    IndexContext,
    KnnQuery,
    MatchAll,
    Query,
    ShardError,
    parse_query,
    parse_query_string,
    query_shard_error,
)

DEFAULT_SIZE = 10
MAX_RESULT_WINDOW = 10_000
NUM_CANDS_LIMIT = 10_000
DEFAULT_TRACK_TOTAL_HITS = 10_000
ENTERPRISE_LICENSES = {"enterprise", "trial"}

EmbedText = Callable[[str, str], list]


class SearchPhaseError(ESError):
    """``search_phase_execution_exception``: every shard failed; ``root_cause`` lists the shard errors."""

    def __init__(self, failures: list[dict], phase: str = "query") -> None:
        first = failures[0]["reason"]
        status = 400
        super().__init__(status, "search_phase_execution_exception", "all shards failed", phase=phase,
                         grouped=True, failed_shards=failures, caused_by=first)
        self.root_causes = _unique_root_causes(failures)

    def body(self) -> dict[str, Any]:
        err = {"root_cause": self.root_causes, **self.error_object()}
        return {"error": err, "status": self.status}


def _unique_root_causes(failures: list[dict]) -> list[dict]:
    seen, out = set(), []
    for failure in failures:
        reason = failure["reason"]
        root = {k: v for k, v in reason.items() if k != "caused_by"}
        key = (root["type"], root["reason"])
        if key not in seen:
            seen.add(key)
            out.append(root)
    return out


def _shard_failure(index: str, err: ShardError) -> dict:
    reason: dict[str, Any] = {"type": err.type, "reason": err.reason}
    if err.type == "query_shard_exception":
        reason.update(index_uuid="_na_", index=index)
    if err.cause:
        reason["caused_by"] = err.cause
    return {"shard": 0, "index": index, "node": "escluster-node-0", "reason": reason}


def fielddata_message(field_name: str) -> str:
    """ES's refusal to sort or aggregate on a text field."""
    return ("Text fields are not optimised for operations that require per-document field data like "
            "aggregations and sorting, so these operations are disabled by default. Please use a keyword "
            f"field instead. Alternatively, set fielddata=true on [{field_name}] in order to load field data "
            "by uninverting the inverted index. Note that this can use significant memory.")


def _bad(reason: str, type: str = "illegal_argument_exception") -> ESError:
    return ESError(400, type, reason)


# ---------------------------------------------------------------------------------------------- request

@dataclass
class KnnSpec:
    """One parsed kNN clause (top-level ``knn``, a ``knn`` retriever or the ``knn`` query)."""

    field: str
    vector: list | str | None
    builder: dict | None
    k: int
    num_candidates: int
    filters: list[Query] = dc_field(default_factory=list)
    similarity: float | None = None
    boost: float = 1.0
    name: str | None = None


_KNN_KEYS = {"field", "k", "num_candidates", "query_vector", "query_vector_builder", "similarity", "filter",
             "boost", "_name", "rescore_vector", "inner_hits"}


def parse_knn(obj: Any, size: int | None, where: str = "knn") -> KnnSpec:
    """Validate one knn object like ``KnnSearchBuilder`` (400 ``illegal_argument_exception``).

    Example::

        parse_knn({"field": "v", "query_vector": [1, 0], "k": 3}, None).num_candidates   # 5
    """
    if not isinstance(obj, dict):
        raise _bad(f"[{where}] failed to parse, expected an object", "x_content_parse_exception")
    for key in obj:
        if key not in _KNN_KEYS:
            raise _bad(f"[1:2] [{where}] unknown field [{key}]", "x_content_parse_exception")
    if "field" not in obj:
        raise _bad(f"[{where}] failed to parse object: Required [field]", "x_content_parse_exception")
    k = _int_param(obj, "k", where)
    num_cands = _int_param(obj, "num_candidates", where)
    request_size = DEFAULT_SIZE if size is None or size < 0 else size
    k = request_size if k is None else k
    if num_cands is None:
        num_cands = int(math.floor(min(NUM_CANDS_LIMIT, 1.5 * k) + 0.5))
    if k < 1:
        raise _bad("[k] must be greater than 0")
    if num_cands < k:
        raise _bad("[num_candidates] cannot be less than [k]")
    if num_cands > NUM_CANDS_LIMIT:
        raise _bad(f"[num_candidates] cannot exceed [{NUM_CANDS_LIMIT}]")
    vector = obj.get("query_vector")
    builder = obj.get("query_vector_builder")
    if vector is None and builder is None:
        raise _bad("either [query_vector_builder] or [query_vector] must be provided")
    if vector is not None and builder is not None:
        raise _bad("cannot provide both [query_vector_builder] and [query_vector]")
    if vector is not None:
        if isinstance(vector, list):
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
                raise _bad(f"[{where}] failed to parse field [query_vector]", "x_content_parse_exception")
        elif not isinstance(vector, str):
            raise _bad(f"[{where}] failed to parse field [query_vector]", "x_content_parse_exception")
    if builder is not None:
        if not isinstance(builder, dict) or list(builder) != ["text_embedding"]:
            name = next(iter(builder), "?") if isinstance(builder, dict) else "?"
            raise _bad(f"[1:2] unknown field [{name}]", "x_content_parse_exception")
        te = builder["text_embedding"]
        if not isinstance(te, dict) or "model_text" not in te:
            raise _bad("[text_embedding] failed to parse field [model_text]", "x_content_parse_exception")
    filters = obj.get("filter", [])
    filters = [parse_query(f) for f in (filters if isinstance(filters, list) else [filters])]
    sim = obj.get("similarity")
    return KnnSpec(field=obj["field"], vector=vector, builder=builder, k=k, num_candidates=num_cands,
                   filters=filters, similarity=None if sim is None else float(sim),
                   boost=float(obj.get("boost", 1.0)), name=obj.get("_name"))


def _int_param(obj: dict, key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(f"[{where}] {key} doesn't support values of type: {type(value).__name__}",
                   "x_content_parse_exception")
    try:
        return int(value)
    except ValueError:
        raise _bad(f"[{where}] failed to parse field [{key}]", "x_content_parse_exception") from None


@dataclass
class SortKey:
    field: str
    order: str = "asc"
    missing: Any = "_last"
    unmapped_type: str | None = None
    mode: str | None = None
    fmt: str | None = None


@dataclass
class Retriever:
    kind: str
    query: Query | None = None
    filters: list[Query] = dc_field(default_factory=list)
    knn: KnnSpec | None = None
    children: list[tuple[Retriever, float]] = dc_field(default_factory=list)
    rank_window_size: int = 10
    rank_constant: int = 60
    min_score: float | None = None
    sort: list[SortKey] | None = None


_TOP_KEYS = {
    "query", "knn", "retriever", "size", "from", "_source", "fields", "collapse", "min_score", "sort",
    "track_total_hits", "track_scores", "aggs", "aggregations", "post_filter", "search_after",
    "stored_fields", "docvalue_fields", "highlight", "explain", "version", "seq_no_primary_term", "timeout",
    "terminate_after", "runtime_mappings", "script_fields", "indices_boost", "profile", "stats", "ext",
    "suggest", "rescore", "pit", "slice", "rank", "_name",
}


@dataclass
class SearchRequest:
    """A parsed and validated search body plus URL parameters."""

    query: Query | None = None
    knn: list[KnnSpec] = dc_field(default_factory=list)
    retriever: Retriever | None = None
    size: int = DEFAULT_SIZE
    from_: int = 0
    sort: list[SortKey] | None = None
    track_total_hits: bool | int = DEFAULT_TRACK_TOTAL_HITS
    track_scores: bool = False
    min_score: float | None = None
    post_filter: Query | None = None
    search_after: list | None = None
    collapse: str | None = None
    source: Any = None
    fields: list = dc_field(default_factory=list)
    docvalue_fields: list = dc_field(default_factory=list)
    stored_fields_none: bool = False
    stored_fields: bool = False
    aggs: dict | None = None
    version: bool = False
    rest_total_hits_as_int: bool = False


def _token_name(value: Any) -> str:
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, (int, float)):
        return "VALUE_NUMBER"
    if value is None:
        return "VALUE_NULL"
    return "VALUE_STRING"


def _size_value(name: str, value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise _bad(f"[{name}] failed to parse, expected an integer but got [{value}]",
                   "x_content_parse_exception") from None
    if number < 0:
        raise _bad(f"[{name}] parameter cannot be negative, found [{number}]")
    return number


def parse_sort(value: Any) -> list[SortKey]:
    """Parse ``sort`` in all its shapes: ``"f"``, ``["f", {"g": "desc"}, {"h": {"order": ...}}]``."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            name, _, order = item.partition(":")
            out.append(SortKey(name, order or ("desc" if name == "_score" else "asc")))
        elif isinstance(item, dict) and len(item) == 1:
            name, spec = next(iter(item.items()))
            if isinstance(spec, str):
                out.append(SortKey(name, spec.lower()))
            elif isinstance(spec, dict):
                order = str(spec.get("order", "desc" if name == "_score" else "asc")).lower()
                out.append(SortKey(name, order, spec.get("missing", "_last"), spec.get("unmapped_type"),
                                   spec.get("mode"), spec.get("format")))
            else:
                raise _bad("malformed sort format, within the sort array, an object, or an actual string "
                           "are allowed", "parsing_exception")
        else:
            raise _bad("malformed sort format, within the sort array, an object, or an actual string are "
                       "allowed", "parsing_exception")
    for key in out:
        if key.order not in ("asc", "desc"):
            raise _bad(f"Unknown SortOrder [{key.order}]")
    return out


def _parse_track_total_hits(value: Any) -> bool | int:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _bad(f"[track_total_hits] parameter must be a boolean or an integer, got [{value}]") from None
    if number < -1:
        raise _bad(f"[track_total_hits] parameter must be positive or equals to -1, got {number}")
    return number


def parse_retriever(obj: Any, license_type: str, size: int | None) -> Retriever:
    """Parse ``retriever`` (standard | knn | rrf, nested); rrf is Enterprise/trial only (403)."""
    if not isinstance(obj, dict) or len(obj) != 1:
        raise _bad("retriever malformed, must have exactly one retriever", "parsing_exception")
    kind, body = next(iter(obj.items()))
    if not isinstance(body, dict):
        raise _bad(f"[{kind}] retriever malformed", "parsing_exception")
    if kind == "standard":
        allowed = {"query", "filter", "sort", "min_score", "collapse", "terminate_after", "search_after",
                   "_name", "rescore"}
        _retriever_keys(kind, body, allowed)
        filters = body.get("filter", [])
        return Retriever("standard", query=parse_query(body["query"]) if "query" in body else None,
                         filters=_parse_filters(filters),
                         min_score=body.get("min_score"),
                         sort=parse_sort(body["sort"]) if "sort" in body else None)
    if kind == "knn":
        _retriever_keys(kind, body, _KNN_KEYS | {"rank_window_size"})
        return Retriever("knn", knn=parse_knn(body, size, where="knn"))
    if kind == "rrf":
        if license_type not in ENTERPRISE_LICENSES:
            raise ESError(403, "security_exception",
                          "current license is non-compliant for [Reciprocal Rank Fusion (RRF)]",
                          **{"license.expired.feature": "Reciprocal Rank Fusion (RRF)"})
        _retriever_keys(kind, body, {"retrievers", "rank_window_size", "rank_constant", "filter", "_name",
                                     "fields", "query", "min_score"})
        children_raw = body.get("retrievers")
        if not isinstance(children_raw, list) or not children_raw:
            raise _bad("[rrf] requires at least one retriever in [retrievers]"
                       if isinstance(children_raw, list) else "[rrf] failed to parse field [retrievers]",
                       "x_content_parse_exception" if not isinstance(children_raw, list)
                       else "illegal_argument_exception")
        children = []
        for child in children_raw:
            if isinstance(child, dict) and "retriever" in child:
                children.append((parse_retriever(child["retriever"], license_type, size),
                                 float(child.get("weight", 1.0))))
            else:
                children.append((parse_retriever(child, license_type, size), 1.0))
        window = body.get("rank_window_size", 10)
        constant = body.get("rank_constant", 60)
        if int(constant) < 1:
            raise _bad("[rank_constant] must be greater or equal to [1] for [rrf]")
        if int(window) < 1:
            raise _bad("[rank_window_size] must be greater or equal to [1] for [rrf]")
        filters = body.get("filter", [])
        return Retriever("rrf", children=children, rank_window_size=int(window), rank_constant=int(constant),
                         filters=_parse_filters(filters),
                         min_score=body.get("min_score"))
    raise ESError(400, "x_content_parse_exception", f"[1:14] unknown retriever [{kind}]")


def _parse_filters(value: Any) -> list[Query]:
    return [parse_query(f) for f in (value if isinstance(value, list) else [value])]


def _retriever_keys(kind: str, body: dict, allowed: set[str]) -> None:
    for key in body:
        if key not in allowed:
            raise _bad(f"[1:2] [{kind}] unknown field [{key}]", "x_content_parse_exception")


def parse_request(body: dict | None, params: dict[str, str], license_type: str) -> SearchRequest:
    """Validate a ``_search`` body + URL parameters like ``SearchSourceBuilder`` and the REST layer."""
    body = body or {}
    if not isinstance(body, dict):
        raise _bad("request body is required", "parsing_exception")
    for key, value in body.items():
        if key not in _TOP_KEYS:
            raise _bad(f"Unknown key for a {_token_name(value)} in [{key}].", "parsing_exception")
    req = SearchRequest()
    body_size = _size_value("size", body["size"]) if "size" in body else None
    if body_size is not None:
        req.size = body_size
    if "from" in body:
        req.from_ = _size_value("from", body["from"])
    if "query" in body:
        req.query = parse_query(body["query"])
    knn_raw = body.get("knn")
    if knn_raw is not None:
        items = knn_raw if isinstance(knn_raw, list) else [knn_raw]
        req.knn = [parse_knn(item, body_size) for item in items]
    if "retriever" in body:
        # Same list, same order and same wording as SearchSourceBuilder's check.
        specified = [k for k in ("query", "knn", "search_after", "terminate_after", "sort", "rescore",
                                 "min_score", "rank") if k in body]
        if specified:
            raise _bad(f"cannot specify [retriever] and [{', '.join(specified)}]")
        req.retriever = parse_retriever(body["retriever"], license_type, body_size)
    if "sort" in body:
        req.sort = parse_sort(body["sort"])
    if "track_total_hits" in body:
        req.track_total_hits = _parse_track_total_hits(body["track_total_hits"])
    req.track_scores = bool(body.get("track_scores", False))
    if body.get("min_score") is not None:
        req.min_score = float(body["min_score"])
    if "post_filter" in body:
        req.post_filter = parse_query(body["post_filter"])
    if "search_after" in body:
        req.search_after = list(body["search_after"])
    if "collapse" in body:
        collapse = body["collapse"]
        if not isinstance(collapse, dict) or "field" not in collapse:
            raise _bad("[collapse] failed to parse, [field] is required", "x_content_parse_exception")
        req.collapse = collapse["field"]
    req.fields = parse_field_requests(body.get("fields"))
    req.docvalue_fields = parse_field_requests(body.get("docvalue_fields"), "docvalue_fields")
    stored = body.get("stored_fields", params.get("stored_fields"))
    if stored is not None:
        req.stored_fields_none = stored == "_none_" or stored == ["_none_"]
        req.stored_fields = True
    req.aggs = body.get("aggs", body.get("aggregations"))
    req.version = bool(body.get("version")) or params.get("version") == "true"

    # URL parameters override the body (RestSearchAction applies them after parsing it).
    if "size" in params:
        req.size = _size_value("size", params["size"])
    if "from" in params:
        req.from_ = _size_value("from", params["from"])
    if "q" in params:
        fields = [params["df"]] if "df" in params else ["*"]
        req.query = parse_query_string(params["q"], fields, params.get("default_operator", "or").lower())
    if "sort" in params:
        req.sort = parse_sort([s for s in params["sort"].split(",") if s])
    if "track_total_hits" in params:
        req.track_total_hits = _parse_track_total_hits(params["track_total_hits"])
    if "track_scores" in params:
        req.track_scores = params["track_scores"] == "true"
    if "min_score" in params:
        req.min_score = float(params["min_score"])
    req.rest_total_hits_as_int = params.get("rest_total_hits_as_int") == "true"
    if req.rest_total_hits_as_int:
        if "track_total_hits" not in body and "track_total_hits" not in params:
            req.track_total_hits = True
        elif req.track_total_hits not in (True, False):
            raise _bad(f"[rest_total_hits_as_int] cannot be used if the tracking of total hits is not "
                       f"accurate, got {req.track_total_hits}")
    search_type = params.get("search_type")
    if search_type is not None and search_type not in ("query_then_fetch", "dfs_query_then_fetch"):
        raise _bad(f"No search type for [{search_type}]")
    if req.knn and search_type is not None and search_type != "dfs_query_then_fetch":
        raise _bad("cannot set [search_type] when using [knn] search, since the search type is determined "
                   "automatically")
    req.source = parse_source_spec(body.get("_source"), params)
    if req.retriever is not None and req.retriever.kind == "rrf":
        if req.size > req.retriever.rank_window_size:
            window = req.retriever.rank_window_size
            raise ESError(400, "action_request_validation_exception",
                          f"Validation Failed: 1: [rrf] requires [rank_window_size: {window}] be greater "
                          f"than or equal to [size: {req.size}];")
    return req


# ---------------------------------------------------------------------------------------------- execution

@dataclass
class Hit:
    """A candidate document: its index context, id, position (for ES's doc-order tie-breaks), score."""

    ctx: IndexContext
    doc_id: str
    order: tuple[int, int]
    score: float
    sort_values: list | None = None
    collapsed: bool = False
    collapse_value: Any = None


class _Shards:
    """Per-index execution bookkeeping: the shard failures collected so far."""

    def __init__(self, contexts: list[IndexContext]) -> None:
        self.contexts = contexts
        self.failed: dict[str, dict] = {}
        self.phase = "query"
        self.doc_pos = [{d: i for i, d in enumerate(ctx.docs)} for ctx in contexts]

    def live(self) -> list[tuple[int, IndexContext]]:
        return [(i, c) for i, c in enumerate(self.contexts) if c.name not in self.failed]

    def fail(self, ctx: IndexContext, err: ShardError, phase: str = "query") -> None:
        if ctx.name not in self.failed:
            self.failed[ctx.name] = _shard_failure(ctx.name, err)
            self.phase = phase

    def hit(self, pos: int, doc_id: str, score: float) -> Hit:
        return Hit(self.contexts[pos], doc_id, (pos, self.doc_pos[pos][doc_id]), score)


def _similarity_score(similarity: str, element_type: str, q: list[float], d: list[float]) -> float:
    """Score of a document vector as ES/Lucene computes it per similarity (float32 results)."""
    dot = sum(a * b for a, b in zip(q, d, strict=False))
    if similarity == "cosine":
        qn = math.sqrt(sum(a * a for a in q))
        dn = math.sqrt(sum(b * b for b in d))
        cos = dot / (qn * dn) if qn and dn else 0.0
        return f32((1 + cos) / 2)
    if similarity == "dot_product":
        if element_type == "byte":
            return f32(0.5 + dot / (len(q) * (1 << 15)))
        return f32(max((1 + dot) / 2, 0.0))
    if similarity == "l2_norm":
        dist2 = sum((a - b) ** 2 for a, b in zip(q, d, strict=False))
        return f32(1 / (1 + dist2))
    if similarity == "max_inner_product":
        return f32(1 / (1 - dot) if dot < 0 else dot + 1)
    raise ShardError("illegal_argument_exception", f"unknown similarity [{similarity}]")


def _raw_to_score(similarity: str, element_type: str, raw: float, dims: int) -> float:
    """The score a raw similarity floor stands for (ES converts ``similarity`` this way)."""
    if similarity == "cosine":
        return f32((1 + raw) / 2)
    if similarity == "dot_product":
        if element_type == "byte":
            return f32(0.5 + raw / (dims * (1 << 15)))
        return f32((1 + raw) / 2)
    if similarity == "l2_norm":
        return f32(1 / (1 + raw * raw))
    return f32(1 / (1 - raw) if raw < 0 else raw + 1)


class Searcher:
    """Runs one parsed request over the target indices."""

    def __init__(self, indices: list[Any], req: SearchRequest, embed_text: EmbedText | None) -> None:
        self.req = req
        self.embed_text = embed_text
        self.shards = _Shards([IndexContext(ix) for ix in indices])
        self._vectors: dict[int, list[float]] = {}

    # -- vectors ------------------------------------------------------------------------------------
    def query_vector(self, spec: KnnSpec) -> list[float]:
        """The kNN query vector; ``query_vector_builder`` follows ``TextEmbeddingQueryVectorBuilder.buildVector``
        (x-pack/plugin/core/.../ml/vectors/TextEmbeddingQueryVectorBuilder.java): no ``model_id`` is 400
        ``illegal_argument_exception`` "[model_id] must not be null."; the text goes through the coordinated
        inference path (``embed_text``: unknown or undeployed is 404 "[id] is not an inference service model
        or a deployed ml model"); a deployed model of another task is refused as the deployment task refuses
        its ``TextEmbeddingConfigUpdate``: 403 ``status_exception`` (``TrainedModelDeploymentTask.infer``)."""
        key = id(spec)
        if key not in self._vectors:
            if spec.builder is not None:
                te = spec.builder["text_embedding"]
                if te.get("model_id") is None:
                    raise _bad("[model_id] must not be null.")
                if self.embed_text is None:
                    raise _bad("query_vector_builder needs a deployed model")
                vec = self.embed_text(te["model_id"], te["model_text"])
                task = getattr(vec, "task", "text_embedding")
                if task != "text_embedding":
                    raise ESError(
                        403,
                        "status_exception",
                        f"Trained model [{getattr(vec, 'model_id', te['model_id'])}] is configured for task "
                        f"[{task}] but called with task [text_embedding]",
                    )
                self._vectors[key] = [float(x) for x in vec]
            elif isinstance(spec.vector, str):
                try:
                    raw = bytes.fromhex(spec.vector)
                except ValueError:
                    raise _bad("failed to parse field [query_vector]: invalid hex string",
                               "x_content_parse_exception") from None
                self._vectors[key] = [float(b if b < 128 else b - 256) for b in raw]
            else:
                self._vectors[key] = [float(x) for x in spec.vector or []]
        return self._vectors[key]

    def knn_scores(self, spec: KnnSpec, ctx: IndexContext, limit: int | None) -> dict[str, float]:
        """Exact kNN on one index: pre-filter, similarity floor, top ``limit`` (None: all), boosted."""
        fspec = ctx.spec(spec.field)
        if fspec is None:
            return {}
        if fspec.get("type") != "dense_vector":
            raise query_shard_error("[knn] queries are only supported on [dense_vector] fields")
        if fspec.get("index") is False:
            raise query_shard_error(f"to perform knn search on field [{spec.field}], its mapping must have "
                                    f"[index] set to [true]")
        qv = self.query_vector(spec)
        element_type = fspec.get("element_type", "float")
        dims = fspec.get("dims")
        if dims is not None and int(dims) != len(qv):
            raise query_shard_error(f"The query vector has a different number of dimensions [{len(qv)}] than "
                                    f"the document vectors [{dims}].")
        similarity = fspec.get("similarity") or ("l2_norm" if element_type == "bit" else "cosine")
        if similarity == "cosine" and not any(qv):
            preview = ", ".join(str(float(x)) for x in qv[:10])
            raise query_shard_error(f"The [cosine] similarity does not support vectors with zero magnitude. "
                                    f"Preview of invalid vector: [{preview}]")
        allowed: set[str] | None = None
        for f in spec.filters:
            matched = set(f.run(ctx))
            allowed = matched if allowed is None else allowed & matched
        floor = None
        if spec.similarity is not None:
            floor = _raw_to_score(similarity, element_type, spec.similarity, len(qv))
        scored = []
        for doc_id, source in ctx.docs.items():
            if allowed is not None and doc_id not in allowed:
                continue
            dv = vector_value(source, spec.field)
            if dv is None or len(dv) != len(qv):
                continue
            score = _similarity_score(similarity, element_type, qv, dv)
            if floor is not None and score < floor:
                continue
            scored.append((doc_id, score))
        scored.sort(key=lambda item: -item[1])  # stable: ties keep doc order
        if limit is not None:
            scored = scored[:limit]
        out = {d: f32(s * spec.boost) for d, s in scored}
        ctx.note_match(spec.name, out)
        return out

    def global_knn(self, spec: KnnSpec) -> list[Hit]:
        """Top k over all shards for one knn clause (k per shard, then merged to k)."""
        hits: list[Hit] = []
        for pos, ctx in self.shards.live():
            try:
                scores = self.knn_scores(spec, ctx, spec.k)
            except ShardError as err:
                self.shards.fail(ctx, err, "dfs")  # top-level knn runs in ES's DFS phase
                continue
            hits.extend(self.shards.hit(pos, d, s) for d, s in scores.items())
        hits.sort(key=lambda h: (-h.score, h.order))
        return hits[:spec.k]

    def knn_query_runner(self, q: KnnQuery, ctx: IndexContext) -> dict[str, float]:
        spec: KnnSpec = q.spec["parsed"]
        return self.knn_scores(spec, ctx, spec.k)

    # -- query phase --------------------------------------------------------------------------------
    def run_query(self, query: Query | None, knn: list[KnnSpec], filters: list[Query] | None = None,
                  min_score: float | None = None) -> list[Hit]:
        """Union of the query's matches and the knn hits, scores summed; pre-``filters`` apply to both."""
        knn_hits: dict[tuple[int, str], float] = {}
        for spec in knn:
            if filters:
                spec = KnnSpec(**{**spec.__dict__, "filters": spec.filters + list(filters)})
            for hit in self.global_knn(spec):
                key = (hit.order[0], hit.doc_id)
                knn_hits[key] = knn_hits.get(key, 0.0) + hit.score
        results: list[Hit] = []
        for pos, ctx in self.shards.live():
            try:
                scores: dict[str, float] = {}
                if query is not None or not knn:
                    q = query if query is not None else MatchAll()
                    if filters:
                        q = Bool(must=[q], filter=list(filters))
                    scores = dict(q.run(ctx))
            except ShardError as err:
                self.shards.fail(ctx, err)
                continue
            for (kpos, doc_id), s in knn_hits.items():
                if kpos == pos:
                    scores[doc_id] = f32(scores.get(doc_id, 0.0) + s)
            for doc_id, s in scores.items():
                if min_score is not None and s < min_score:
                    continue
                results.append(self.shards.hit(pos, doc_id, s))
        return results

    def run_retriever(self, r: Retriever, filters: list[Query]) -> list[Hit]:
        """Ranked hits of a retriever (rrf: reciprocal rank fusion of its children's top windows)."""
        filters = filters + r.filters
        if r.kind == "standard":
            hits = self.run_query(r.query, [], filters, r.min_score)
            return self.sort_hits(hits, r.sort)
        if r.kind == "knn":
            assert r.knn is not None
            hits = self.run_query(None, [r.knn], filters)
            return sorted(hits, key=lambda h: (-h.score, h.order))
        fused: dict[tuple[int, int], Hit] = {}
        totals: dict[tuple[int, int], float] = {}
        for child, weight in r.children:
            ranked = self.run_retriever(child, filters)[:r.rank_window_size]
            for rank, hit in enumerate(ranked, start=1):
                fused.setdefault(hit.order, hit)
                totals[hit.order] = totals.get(hit.order, 0.0) + weight / (r.rank_constant + rank)
        out = []
        for order, hit in fused.items():
            score = f32(totals[order])
            if r.min_score is not None and score < r.min_score:
                continue
            out.append(Hit(hit.ctx, hit.doc_id, order, score))
        out.sort(key=lambda h: (-h.score, h.order))
        return out[:r.rank_window_size]

    # -- sorting ------------------------------------------------------------------------------------
    def _sort_value(self, hit: Hit, key: SortKey) -> Any:
        if key.field == "_score":
            return hit.score
        if key.field == "_doc":
            return hit.order[1]
        if key.field in ("_id", "_index"):
            return hit.doc_id if key.field == "_id" else hit.ctx.name
        spec = hit.ctx.spec(key.field)
        if spec is None:
            if key.unmapped_type is None:
                raise ShardError("query_shard_exception",
                                 f"No mapping found for [{key.field}] in order to sort on")
            return None
        ftype = spec.get("type")
        if ftype in TEXT_TYPES and not spec.get("fielddata"):
            raise ShardError("illegal_argument_exception", fielddata_message(key.field))
        values = hit.ctx.tokens(hit.doc_id, key.field) if ftype in TEXT_TYPES else hit.ctx.values(
            hit.doc_id, key.field)
        if not values:
            if key.missing not in ("_first", "_last", None):
                return _coerce_missing(key.missing, ftype)
            return None
        mode = key.mode or ("max" if key.order == "desc" else "min")
        if mode == "max":
            return max(values)
        if mode in ("avg", "median") and ftype in NUMERIC_TYPES:
            ordered = sorted(values)
            return sum(values) / len(values) if mode == "avg" else ordered[len(ordered) // 2]
        if mode == "sum" and ftype in NUMERIC_TYPES:
            return sum(values)
        return min(values)

    def _display_sort_value(self, hit: Hit, key: SortKey, value: Any) -> Any:
        if key.field == "_score":
            return value
        spec = hit.ctx.spec(key.field) or {"type": key.unmapped_type}
        ftype = spec.get("type")
        if value is None:
            if ftype in KEYWORD_TYPES or ftype in TEXT_TYPES or ftype is None:
                return None
            numeric_long = ftype in INTEGER_TYPES or ftype in DATE_TYPES or ftype == "boolean"
            if key.missing == "_first":
                first_low = key.order == "asc"
            else:
                first_low = key.order == "desc"
            if numeric_long:
                return -(2**63) if first_low else 2**63 - 1
            return -math.inf if first_low else math.inf
        if ftype == "boolean":
            return 1 if value else 0
        if ftype in DATE_TYPES and key.fmt:
            return format_date(value)
        if ftype in NUMERIC_TYPES and ftype not in INTEGER_TYPES:
            return float(value)
        return value

    def sort_hits(self, hits: list[Hit], sort: list[SortKey] | None) -> list[Hit]:
        """Order hits by ``sort`` (default: score desc, then index and doc order) and set ``sort`` values."""
        if not sort:
            return sorted(hits, key=lambda h: (-h.score, h.order))
        kept = []
        for hit in hits:
            if hit.ctx.name in self.shards.failed:
                continue
            try:
                raw = [self._sort_value(hit, key) for key in sort]
            except ShardError as err:
                self.shards.fail(hit.ctx, err)
                continue
            hit.sort_values = raw
            kept.append(hit)
        kept = [h for h in kept if h.ctx.name not in self.shards.failed]

        def compare(a: Hit, b: Hit) -> int:
            for i, key in enumerate(sort):
                va, vb = a.sort_values[i], b.sort_values[i]  # type: ignore[index]
                if va == vb:
                    continue
                if va is None or vb is None:
                    missing_first = key.missing == "_first"
                    a_first = (va is None) == missing_first
                    return -1 if a_first else 1
                less = va < vb
                if key.order == "desc":
                    less = not less
                return -1 if less else 1
            return -1 if a.order < b.order else (1 if a.order > b.order else 0)

        kept.sort(key=functools.cmp_to_key(compare))
        for hit in kept:
            hit.sort_values = [self._display_sort_value(hit, key, v)
                               for key, v in zip(sort, hit.sort_values or [], strict=False)]
        return kept


def _coerce_missing(value: Any, ftype: str | None) -> Any:
    """A custom ``missing`` sort value, typed like the field's values so it compares with them."""
    try:
        if ftype in NUMERIC_TYPES:
            return float(value) if ftype not in INTEGER_TYPES else int(float(value))
        if ftype in DATE_TYPES:
            from tests.escluster.fields import parse_date

            return parse_date(value)
    except (TypeError, ValueError):
        raise _bad(f"failed to parse missing value [{value}]") from None
    return str(value)


def _search_after(hits: list[Hit], after: list, sort: list[SortKey] | None) -> list[Hit]:
    if not sort:
        raise _bad("Sort must contain at least one field.")
    if len(after) != len(sort):
        raise _bad(f"search_after has {len(after)} value(s) but sort has {len(sort)}.")

    def is_after(hit: Hit) -> bool:
        for key, value, target in zip(sort, hit.sort_values or [], after, strict=False):
            if value == target:
                continue
            if value is None:
                return key.missing != "_first"
            if target is None:
                return key.missing == "_first"
            try:
                greater = value > type(value)(target) if not isinstance(value, str) else value > str(target)
            except (TypeError, ValueError):
                greater = str(value) > str(target)
            return greater if key.order == "asc" else not greater
        return False

    return [h for h in hits if is_after(h)]


def _collapse_value(hit: Hit, fname: str) -> Any:
    spec = hit.ctx.spec(fname)
    if spec is None:
        raise ShardError("illegal_argument_exception",
                         f"no mapping found for `{fname}` in order to collapse on")
    ftype = spec.get("type")
    if ftype not in KEYWORD_TYPES and ftype not in NUMERIC_TYPES and ftype not in DATE_TYPES:
        raise ShardError("illegal_argument_exception",
                         f"unknown type for collapse field `{fname}`, only keywords and numbers are accepted")
    values = hit.ctx.values(hit.doc_id, fname)
    if len(values) > 1:
        raise ShardError("illegal_state_exception",
                         f"failed to collapse {hit.doc_id}, the collapse field must be single valued")
    if not values:
        return None
    value = values[0]
    if ftype in NUMERIC_TYPES and ftype not in INTEGER_TYPES:
        return float(value)
    return value


# ---------------------------------------------------------------------------------------------- aggs

def _aggregate(aggs: dict, hits: list[Hit]) -> dict:
    out: dict[str, Any] = {}
    for name, spec in aggs.items():
        if not isinstance(spec, dict):
            raise _bad(f"Expected [START_OBJECT] under [{name}], but got a [{_token_name(spec)}] in [{name}]",
                       "parsing_exception")
        kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
        if len(kinds) != 1:
            raise _bad(f"Expected one aggregation type under [{name}]", "parsing_exception")
        kind = kinds[0]
        body = spec[kind]
        fname = body.get("field")

        def values(hit: Hit, fname: Any = fname) -> list:
            if fname is None or hit.ctx.spec(fname) is None:
                return []
            ftype = hit.ctx.spec(fname).get("type")
            if ftype in TEXT_TYPES:
                raise _bad(fielddata_message(fname))
            return hit.ctx.values(hit.doc_id, fname)

        if kind == "terms":
            counts: dict[Any, list[Hit]] = {}
            for hit in hits:
                for v in set(values(hit)):
                    counts.setdefault(v, []).append(hit)
            size = int(body.get("size", 10))
            ordered = sorted(counts.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            buckets = []
            for key, members in ordered[:size]:
                bucket: dict[str, Any] = {"key": key, "doc_count": len(members)}
                if isinstance(key, bool):
                    bucket = {"key": 1 if key else 0, "key_as_string": "true" if key else "false",
                              "doc_count": len(members)}
                sub = spec.get("aggs", spec.get("aggregations"))
                if sub:
                    bucket.update(_aggregate(sub, members))
                buckets.append(bucket)
            out[name] = {"doc_count_error_upper_bound": 0,
                         "sum_other_doc_count": sum(len(m) for _, m in ordered[size:]), "buckets": buckets}
        elif kind in ("min", "max", "avg", "sum", "value_count", "cardinality"):
            flat = [v for hit in hits for v in values(hit)]
            if kind == "value_count":
                out[name] = {"value": len(flat)}
            elif kind == "cardinality":
                out[name] = {"value": len(set(flat))}
            elif kind == "sum":
                out[name] = {"value": float(sum(flat))}
            elif not flat:
                out[name] = {"value": None}
            elif kind == "avg":
                out[name] = {"value": float(sum(flat)) / len(flat)}
            else:
                out[name] = {"value": float(min(flat) if kind == "min" else max(flat))}
        else:
            raise _bad(f"Unknown aggregation type [{kind}] did you mean [terms]?", "parsing_exception")
    return out


# ---------------------------------------------------------------------------------------------- entry points

def search(indices: list[Any], body: dict | None, params: dict[str, str], *, license_type: str,
           embed_text: EmbedText | None) -> dict:
    """Run a ``_search`` request and return the ES 9 response body; raises ``ESError`` like ES.

    Example::

        search([index], {"query": {"match": {"title": "car"}}, "size": 5}, {}, license_type="basic",
               embed_text=lambda model_id, text: [0.1, 0.2])["hits"]["hits"][0]["_id"]
    """
    started = time.monotonic()
    req = parse_request(body, params, license_type)
    if indices and req.from_ + req.size > MAX_RESULT_WINDOW:
        # ES checks the window on every shard before searching: all shards fail alike.
        reason = (f"Result window is too large, from + size must be less than or equal to: "
                  f"[{MAX_RESULT_WINDOW}] but was [{req.from_ + req.size}]. See the scroll api for a more "
                  f"efficient way to request large data sets. This limit can be set by changing the "
                  f"[index.max_result_window] index level setting.")
        raise SearchPhaseError([_shard_failure(ix.name, ShardError("illegal_argument_exception", reason))
                                for ix in indices])
    searcher = Searcher(indices, req, embed_text)
    _install_knn_query(searcher, req)
    # Resolve query_vector_builder up front: a missing/undeployed model fails the whole request.
    for spec in _all_knn(req):
        if spec.builder is not None:
            searcher.query_vector(spec)
    if req.retriever is not None:
        hits = searcher.run_retriever(req.retriever, [])
        sort = req.retriever.sort if req.retriever.kind == "standard" else None
    else:
        hits = searcher.run_query(req.query, req.knn, None, req.min_score)
        sort = req.sort
    agg_hits = list(hits)
    if req.post_filter is not None:
        passing: dict[int, set[str]] = {}
        for pos, ctx in searcher.shards.live():
            try:
                passing[pos] = set(req.post_filter.run(ctx))
            except ShardError as err:
                searcher.shards.fail(ctx, err)
        hits = [h for h in hits if h.doc_id in passing.get(h.order[0], set())]
    if sort:
        hits = searcher.sort_hits(hits, sort)
    elif req.retriever is None or req.retriever.kind != "rrf":
        hits = sorted(hits, key=lambda h: (-h.score, h.order))
    hits = [h for h in hits if h.ctx.name not in searcher.shards.failed]
    total = len(hits)
    if req.search_after is not None:
        hits = _search_after(hits, req.search_after, sort)
    if req.collapse:
        seen: set[Any] = set()
        collapsed = []
        for hit in hits:
            try:
                value = _collapse_value(hit, req.collapse)
            except ShardError as err:
                searcher.shards.fail(hit.ctx, err)
                continue
            if value in seen:
                continue
            seen.add(value)
            hit.collapsed, hit.collapse_value = True, value
            collapsed.append(hit)
        hits = [h for h in collapsed if h.ctx.name not in searcher.shards.failed]
    _raise_if_all_failed(searcher)
    sorted_by_field = bool(sort) and not all(k.field == "_score" for k in sort)
    page = hits[req.from_:req.from_ + req.size]
    # A sort containing _score fills each hit's _score from its sort value, as ES does.
    show_scores = not sorted_by_field or req.track_scores or any(k.field == "_score" for k in sort or [])
    max_score = max((h.score for h in hits), default=None) if show_scores and req.size > 0 else None
    response_hits = [_render_hit(h, req, show_scores) for h in page]
    hits_obj: dict[str, Any] = {}
    tth = req.track_total_hits
    if tth is not False:
        if tth is True or tth == -1:
            total_obj = {"value": total, "relation": "eq"}
        else:
            limit = int(tth)
            total_obj = {"value": min(total, limit), "relation": "gte" if total > limit else "eq"}
        hits_obj["total"] = total_obj["value"] if req.rest_total_hits_as_int else total_obj
    hits_obj["max_score"] = float(max_score) if max_score is not None else None
    hits_obj["hits"] = response_hits
    shards_total = len(searcher.shards.contexts)
    failed = list(searcher.shards.failed.values())
    shards: dict[str, Any] = {"total": shards_total, "successful": shards_total - len(failed), "skipped": 0,
                              "failed": len(failed)}
    if failed:
        shards["failures"] = failed
    response: dict[str, Any] = {"took": int((time.monotonic() - started) * 1000), "timed_out": False,
                                "_shards": shards, "hits": hits_obj}
    if req.aggs:
        response["aggregations"] = _aggregate(req.aggs, agg_hits)
    return response


def _all_knn(req: SearchRequest) -> list[KnnSpec]:
    out = list(req.knn)

    def walk(r: Retriever | None) -> None:
        if r is None:
            return
        if r.knn is not None:
            out.append(r.knn)
        for child, _ in r.children:
            walk(child)

    walk(req.retriever)
    return out


def _install_knn_query(searcher: Searcher, req: SearchRequest) -> None:
    """Give parsed ``knn`` query clauses their runner (they were parsed before the searcher existed)."""

    def visit(q: Any) -> None:
        if isinstance(q, KnnQuery):
            q.runner = searcher.knn_query_runner
        for attr in ("must", "should", "filter", "must_not", "queries"):
            for sub in getattr(q, attr, []) or []:
                visit(sub)
        inner = getattr(q, "inner", None)
        if inner is not None:
            visit(inner)

    visit(req.query)
    visit(req.post_filter)
    for spec in req.knn:
        for f in spec.filters:
            visit(f)

    def walk(r: Retriever | None) -> None:
        if r is None:
            return
        visit(r.query)
        for f in r.filters:
            visit(f)
        for child, _ in r.children:
            walk(child)

    walk(req.retriever)


def _raise_if_all_failed(searcher: Searcher) -> None:
    contexts = searcher.shards.contexts
    if contexts and len(searcher.shards.failed) == len(contexts):
        raise SearchPhaseError(list(searcher.shards.failed.values()), searcher.shards.phase)


def _render_hit(hit: Hit, req: SearchRequest, show_scores: bool) -> dict:
    ctx = hit.ctx
    out: dict[str, Any] = {"_index": ctx.name}
    if not req.stored_fields_none:
        out["_id"] = hit.doc_id
    if req.version:
        versions = getattr(ctx.index, "versions", None) or {}
        out["_version"] = versions.get(hit.doc_id, 1)
    out["_score"] = float(hit.score) if show_scores else None
    source = ctx.docs[hit.doc_id]
    want_source = not req.stored_fields_none and (not req.stored_fields or req.source.includes
                                                  or req.source.excludes)
    if want_source:
        rendered = render_source(source, req.source, ctx.fields, getattr(ctx.index, "settings", {}) or {})
        if rendered is not None:
            out["_source"] = rendered
    fields: dict[str, list] = {}
    if req.fields:
        fields.update(collect_fields(source, req.fields, ctx.fields))
    if req.docvalue_fields:
        fields.update(collect_fields(source, req.docvalue_fields, ctx.fields, docvalues=True))
    if hit.collapsed and req.collapse:
        fields[req.collapse] = [hit.collapse_value]
    if fields:
        out["fields"] = fields
    matched = ctx.matched.get(hit.doc_id)
    if matched:
        out["matched_queries"] = list(matched)
    if hit.sort_values is not None:
        out["sort"] = hit.sort_values
    return out


def count(indices: list[Any], body: dict | None) -> int:
    """Number of documents matching ``body["query"]`` over ``indices`` (``_count``).

    Example::

        count([index], {"query": {"term": {"tag": "a"}}})   # 2
    """
    body = body or {}
    for key in body:
        if key not in ("query",):
            raise _bad(f"request does not support [{key}]", "parsing_exception")
    q = parse_query(body.get("query")) if "query" in body else MatchAll()
    total = 0
    failures = []
    for ix in indices:
        ctx = IndexContext(ix)
        try:
            total += len(q.run(ctx))
        except ShardError as err:
            failures.append(_shard_failure(ctx.name, err))
    if failures and len(failures) == len(indices):
        raise SearchPhaseError(failures)
    return total


def _knn_query_factory(body: Any) -> KnnQuery:
    """Parse the ``knn`` query clause (8.12+): like top-level knn, without a global k merge."""
    if not isinstance(body, dict):
        raise _bad("[knn] query malformed, no start_object after query name", "parsing_exception")
    body = dict(body)
    for key in ("rescore_vector",):
        body.pop(key, None)
    k = body.get("k")
    nc = body.get("num_candidates")
    if k is None:
        body["k"] = int(nc) if nc is not None else DEFAULT_SIZE
    spec = parse_knn(body, None)
    return KnnQuery(spec={"parsed": spec}, boost=1.0, name=None)


query_mod._knn_factory[:] = [_knn_query_factory]

__all__ = ["search", "count", "SearchPhaseError", "parse_request", "parse_knn"]
