"""Search requests (pure builders) and typed results: text, image, "more like this doc" and hybrid.

Every query is a ``toolkit.devtools.Request`` built by a pure function, so ``--show-request`` prints
exactly what ``run`` sends, in the form a Kibana Dev Tools user would write it:

- text: a top-level ``knn`` on the image vector field with ``query_vector_builder.text_embedding``;
  the cluster embeds the text with the deployed multilingual CLIP text model. Nothing local is loaded
  (this module never imports torch, numpy or PIL at import time).
- image: the image is embedded locally (``embed_query_image``) and sent as ``query_vector``.
- like: the stored vector of an indexed document is read (``like_lookup_request``), then a ``knn``
  with it, excluding the document itself.
- hybrid: the image kNN plus BM25 on the caption plus kNN on the caption's in-cluster embedding,
  combined with the ``rrf`` retriever (Enterprise or trial) or a boosted sum (any license).

Example::

    settings = load_settings()
    request = text_query("a dog in the snow", settings, SearchOptions(k=5, filters=("label=dog",)))
    print(render(request))           # POST images/_search ...
    result = run(make_client(settings), request)
    [(hit.id, hit.score) for hit in result.hits]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from toolkit.devtools import Request, path, send
from toolkit.errors import (
    ClusterError,
    DimsMismatch,
    ImageError,
    LicenseError,
    NotFound,
    RequestFailed,
    ToolkitError,
    ValidationError,
)
from toolkit.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Mode = Literal["knn", "rrf", "boosted_sum"]
Kind = Literal["text", "image", "like"]

MAX_CANDIDATES = 10_000
#: ``num_candidates`` defaults to this many times ``k`` (at least ``MIN_CANDIDATES``, at most 10000).
CANDIDATES_PER_HIT = 10
#: A floor for small k: HNSW recall drops quickly below ~100 candidates per shard, and 100
#: candidates cost little (it is the value Elastic's own kNN examples use).
MIN_CANDIDATES = 100
#: Default weight of the caption parts (BM25 and caption kNN) in a boosted-sum hybrid query; the
#: image kNN has weight 1. Below 1 so that the image stays the main signal.
DEFAULT_CAPTION_WEIGHT = 0.5
RRF_RANK_CONSTANT = 60
_FILTER_RE = re.compile(r"^\s*([^=\s][^=]*?)\s*=(.*)$")


@dataclass(frozen=True)
class SearchOptions:
    """What a user can tune on any query kind.

    Args:
        k: hits to return (1..10000).
        num_candidates: candidates per shard for kNN; ``None`` means ``max(100, 10 * k)`` capped at 10000.
        filters: ``"FIELD=VALUE"`` strings. Each field becomes a ``term`` filter inside ``knn`` (so it
            filters before the vector search); several values for the same field become one ``terms``
            filter (any of them); different fields must all match.
        min_similarity: a floor on the raw vector similarity (knn ``similarity``; the cosine for cosine).
        min_score: drop hits whose final ``_score`` is below this (top-level ``min_score``).
        collapse: keep the best hit per value of this keyword field (e.g. ``relation_id``).
        fields: ``_source`` fields to return; ``None`` returns every stored field. Vectors never.
        hybrid: also use the caption (BM25 and the caption's in-cluster embedding). Text queries only.
        caption_weight: weight of the caption parts in a boosted sum (implies ``hybrid``).
        rrf: ``None`` picks RRF when the license allows and nothing needs a score; ``True`` insists on
            RRF (errors when not possible); ``False`` always uses the boosted sum.

    Example::

        SearchOptions(k=5, filters=("label=cat", "label=dog"), collapse="relation_id")
    """

    k: int = 10
    num_candidates: int | None = None
    filters: tuple[str, ...] = ()
    min_similarity: float | None = None
    min_score: float | None = None
    collapse: str | None = None
    fields: tuple[str, ...] | None = None
    hybrid: bool = False
    caption_weight: float | None = None
    rrf: bool | None = None

    @property
    def candidates(self) -> int:
        """``num_candidates`` as sent: the explicit value, or ``max(100, 10 * k)`` capped at 10000."""
        if self.num_candidates is not None:
            return self.num_candidates
        return min(MAX_CANDIDATES, max(MIN_CANDIDATES, CANDIDATES_PER_HIT * self.k))

    @property
    def is_hybrid(self) -> bool:
        return self.hybrid or self.caption_weight is not None


@dataclass(frozen=True)
class Hit:
    """One search hit: the document id, its ``_score`` and its ``_source`` (never the vectors)."""

    id: str
    score: float | None
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    """What ``run`` returns. ``total`` is ``hits.total.value`` (for kNN at most k, or k per kNN part)."""

    took_ms: int
    total: int
    hits: list[Hit]

    def as_json(self) -> dict[str, Any]:
        """The documented JSON shape: ``{"took_ms", "total", "hits": [{"id", "score", "source"}]}``."""
        return {"took_ms": self.took_ms, "total": self.total,
                "hits": [{"id": h.id, "score": h.score, "source": h.source} for h in self.hits]}


@dataclass(frozen=True)
class Plan:
    """A search request and how it was built (for the output's header line and ``--json``)."""

    request: Request
    kind: Kind
    mode: Mode
    why: str = ""


# --------------------------------------------------------------------------------------------------
# Validation and the shared pieces of a body


def validate_options(options: SearchOptions) -> None:
    """Raise ValidationError (naming the flag) for options Elasticsearch would reject or that make no
    sense."""
    if not 1 <= options.k <= MAX_CANDIDATES:
        raise ValidationError(f"k must be between 1 and {MAX_CANDIDATES}, got {options.k}", hint="fix -k")
    if options.num_candidates is not None and not options.k <= options.num_candidates <= MAX_CANDIDATES:
        raise ValidationError(
            f"num_candidates must be between k ({options.k}) and {MAX_CANDIDATES}, "
            f"got {options.num_candidates}",
            hint="fix --num-candidates (or leave it out: the default is max(100, 10 x k))")
    for flag, value in (("--min-similarity", options.min_similarity), ("--min-score", options.min_score),
                        ("--caption-weight", options.caption_weight)):
        # NaN compares False with everything (so it passes range checks) and is not JSON.
        if value is not None and not math.isfinite(value):
            raise ValidationError(f"{flag} must be a finite number, got {value}", hint=f"fix {flag}")
    if options.caption_weight is not None and options.caption_weight < 0:
        raise ValidationError(f"the caption weight must be 0 or more, got {options.caption_weight}",
                              hint="fix --caption-weight")
    if options.collapse is not None and not options.collapse.strip():
        raise ValidationError("--collapse needs a field name", hint="e.g. --collapse relation_id")
    parse_filters(options.filters)


def parse_filters(filters: Iterable[str]) -> dict[str, list[str]]:
    """``["label=cat", "label=dog", "relation_id=r1"]`` -> ``{"label": ["cat", "dog"], "relation_id":
    ["r1"]}``.

    The value is everything after the first ``=`` (it may contain ``=``); field names are trimmed.
    Raises ValidationError naming ``--filter`` when an item has no ``=`` or no field name.
    """
    out: dict[str, list[str]] = {}
    for item in filters:
        m = _FILTER_RE.match(item)
        if not m:
            raise ValidationError(f"--filter {item!r} is not FIELD=VALUE",
                                  hint="write filters as --filter label=cat (repeat the flag for more)")
        name, value = m.group(1), m.group(2)
        if value == "":
            raise ValidationError(f"--filter {item!r} has no value", hint="write --filter FIELD=VALUE")
        values = out.setdefault(name, [])
        if value not in values:
            values.append(value)
    return out


def filter_clauses(filters: Iterable[str]) -> list[dict[str, Any]]:
    """Term filters for ``knn.filter`` / ``bool.filter``: a ``term`` per field, ``terms`` for several values.

    Example::

        filter_clauses(["label=cat", "label=dog"])   # [{"terms": {"label": ["cat", "dog"]}}]
    """
    clauses: list[dict[str, Any]] = []
    for name, values in parse_filters(filters).items():
        if len(values) == 1:
            clauses.append({"term": {name: values[0]}})
        else:
            clauses.append({"terms": {name: values}})
    return clauses


def source_spec(settings: Settings, options: SearchOptions) -> dict[str, Any]:
    """``_source``: the requested fields (or all) minus the vector fields, which are never returned."""
    vectors = [settings.fields.image_vector, settings.fields.caption_vector]
    spec: dict[str, Any] = {}
    if options.fields:
        spec["includes"] = list(options.fields)
    spec["excludes"] = vectors
    return spec


def _knn(settings: Settings, options: SearchOptions, *, vector_field: str,
         vector: Sequence[float] | None = None, text: str | None = None,
         extra_filter: Sequence[dict[str, Any]] = (), boost: float | None = None) -> dict[str, Any]:
    """One kNN clause: the query vector (or the builder that embeds ``text`` in the cluster) and filters."""
    knn: dict[str, Any] = {"field": vector_field, "k": options.k, "num_candidates": options.candidates}
    if vector is not None:
        knn["query_vector"] = list(vector)
    else:
        knn["query_vector_builder"] = {"text_embedding": {
            "model_id": settings.text_model.cluster_deployment_id, "model_text": text}}
    filters = [*filter_clauses(options.filters), *extra_filter]
    if len(filters) == 1:
        knn["filter"] = filters[0]
    elif filters:
        knn["filter"] = filters
    if options.min_similarity is not None:
        knn["similarity"] = options.min_similarity
    if boost is not None:
        knn["boost"] = boost
    return knn


def _common(settings: Settings, options: SearchOptions, body: dict[str, Any], *, scores: bool = True) -> None:
    body["size"] = options.k
    body["_source"] = source_spec(settings, options)
    if options.collapse:
        body["collapse"] = {"field": options.collapse}
    if options.min_score is not None and scores:
        body["min_score"] = options.min_score


def _search_request(settings: Settings, body: dict[str, Any], index: str | None) -> Request:
    return Request("POST", f"{path(index or settings.index.alias)}/_search", body=body)


def _check_text(text: str | None) -> str:
    if text is None or not text.strip():
        raise ValidationError("the query text is empty",
                              hint='give some text (toolkit search "a dog in the snow"), or --image / --like')
    return text.strip()


# --------------------------------------------------------------------------------------------------
# The builders


def text_query(text: str, settings: Settings, options: SearchOptions | None = None, *,
               index: str | None = None) -> Request:
    """A kNN search on the image vectors for ``text``, embedded in the cluster by the deployed text model.

    Args:
        text: the query; must not be empty.
        settings: field names, the alias and the model's deployment id come from here.
        options: k, filters, thresholds, ... (see ``SearchOptions``).
        index: alias or index to search (default ``settings.index.alias``).

    Example::

        text_query("ein Hund im Schnee", settings, SearchOptions(k=3)).body["knn"]["query_vector_builder"]
    """
    options = options or SearchOptions()
    validate_options(options)
    text = _check_text(text)
    knn = _knn(settings, options, vector_field=settings.fields.image_vector, text=text)
    body: dict[str, Any] = {"knn": knn}
    _common(settings, options, body)
    return _search_request(settings, body, index)


def image_query(vector: Sequence[float], settings: Settings, options: SearchOptions | None = None, *,
                index: str | None = None) -> Request:
    """A kNN search on the image vectors with a locally computed ``query_vector``.

    Example::

        vector = embed_query_image("cat.jpg", settings)
        image_query(vector, settings, SearchOptions(k=5))
    """
    options = options or SearchOptions()
    validate_options(options)
    _check_vector(vector, settings)
    body: dict[str, Any] = {"knn": _knn(settings, options, vector_field=settings.fields.image_vector,
                                        vector=vector)}
    _common(settings, options, body)
    return _search_request(settings, body, index)


def like_query(doc_id: str, vector: Sequence[float], settings: Settings,
               options: SearchOptions | None = None, *, index: str | None = None) -> Request:
    """A kNN search with an indexed document's own vector, leaving that document out (``must_not ids``).

    The exclusion sits inside the kNN filter, so it still returns k other documents.

    Example::

        lookup = send(client, like_lookup_request("img-42", settings))
        like_query("img-42", vector_from_lookup(lookup, "img-42", settings), settings)
    """
    options = options or SearchOptions()
    validate_options(options)
    _check_vector(vector, settings)
    not_self = {"bool": {"must_not": [{"ids": {"values": [doc_id]}}]}}
    body: dict[str, Any] = {"knn": _knn(settings, options, vector_field=settings.fields.image_vector,
                                        vector=vector, extra_filter=[not_self])}
    _common(settings, options, body)
    return _search_request(settings, body, index)


def like_lookup_request(doc_id: str, settings: Settings, *, index: str | None = None) -> Request:
    """Read one document's stored image vector.

    A search (not ``GET _doc``) because the alias may span several indices; ``exclude_vectors: false``
    because from 9.2 vectors are left out of ``_source`` unless asked for (the option exists from 8.19/9.1).
    """
    if not doc_id or not doc_id.strip():
        raise ValidationError("--like needs a document id", hint="toolkit search --like <DOC_ID>")
    body = {"size": 1, "query": {"ids": {"values": [doc_id]}},
            "_source": {"exclude_vectors": False, "includes": [settings.fields.image_vector]}}
    return _search_request(settings, body, index)


def vector_from_lookup(response: Mapping[str, Any], doc_id: str, settings: Settings) -> list[float]:
    """The image vector from a ``like_lookup_request`` response.

    Raises NotFound when the document or its vector is absent.
    """
    hits = (response.get("hits") or {}).get("hits") or []
    if not hits:
        raise NotFound(f"no document with id {doc_id!r} in {settings.index.alias!r}", what="document",
                       name=doc_id, hint="check the id (it is the `id` column of toolkit search output)")
    source = hits[0].get("_source") or {}
    vector = field_value(source, settings.fields.image_vector)
    if not isinstance(vector, list) or not vector:
        raise NotFound(f"document {doc_id!r} has no {settings.fields.image_vector!r} vector",
                       what="vector", name=doc_id,
                       hint="re-ingest the image with `toolkit ingest` (it computes the vector)")
    return [float(v) for v in vector]


def field_value(source: Mapping[str, Any], dotted: str) -> Any:
    """A (possibly dotted) field of a ``_source``: flat ``{"a.b": v}`` or nested ``{"a": {"b": v}}``."""
    if dotted in source:
        return source[dotted]
    cur: Any = source
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _check_vector(vector: Sequence[float], settings: Settings) -> None:
    if len(vector) != settings.index.image_dims:
        raise DimsMismatch(
            f"the query vector has {len(vector)} dims but index.image_dims is {settings.index.image_dims}",
            hint="use the image model the index was built with (image_model.name), or fix index.image_dims")


def choose_mode(options: SearchOptions, *, rrf_allowed: bool | None) -> tuple[Mode, str]:
    """How a hybrid query combines its parts, and why (shown to the user).

    RRF (rank fusion) is used when the license allows (``rrf_allowed``; ``None`` = unknown, assumed
    allowed, e.g. ``--dry-run``) and nothing needs real scores: ``--caption-weight`` (weights),
    ``--min-score`` and ``--collapse`` need a boosted sum. ``options.rrf`` forces either way.
    """
    if not options.is_hybrid:
        return "knn", "kNN"
    needs_scores = [flag for flag, used in (("--caption-weight", options.caption_weight is not None),
                                            ("--min-score", options.min_score is not None),
                                            ("--collapse", options.collapse is not None)) if used]
    if options.rrf is False:
        return "boosted_sum", "boosted sum (--no-rrf)"
    if options.rrf is True:
        if needs_scores:
            raise ValidationError(f"--rrf cannot be combined with {', '.join(needs_scores)}: RRF fuses "
                                  "ranks, not scores",
                                  hint=f"drop --rrf (a boosted sum is used) or {needs_scores[0]}")
        if rrf_allowed is False:
            raise LicenseError("the rrf retriever needs an Enterprise license or a trial",
                               hint="drop --rrf (a boosted sum is used), or "
                                    "POST _license/start_trial?acknowledge=true")
        return "rrf", "RRF (--rrf)"
    if needs_scores:
        return "boosted_sum", f"boosted sum ({', '.join(needs_scores)} needs scores, RRF fuses ranks)"
    if rrf_allowed is False:
        return "boosted_sum", "boosted sum (the license does not include RRF: Enterprise or trial)"
    if rrf_allowed is None:
        return "rrf", "RRF (license not checked)"
    return "rrf", "RRF (the license allows it)"


def hybrid_query(text: str, settings: Settings, options: SearchOptions | None = None, *,
                 mode: Mode = "rrf", index: str | None = None) -> Request:
    """Image kNN + caption BM25 + caption kNN for ``text``, fused by RRF or summed with boosts.

    ``mode="rrf"``: ``retriever.rrf`` over a kNN retriever on the image vector, one on the caption
    vector and a standard retriever with ``match`` on the caption (equal say, ranks only).
    ``mode="boosted_sum"``: a ``knn`` list (image with boost 1, caption with ``caption_weight``) plus a
    ``match`` query with boost ``caption_weight``; each hit's score is the sum of the parts it matched.
    Filters apply to every part.

    Example::

        mode, why = choose_mode(options, rrf_allowed=cluster_facts(client).rrf_allowed)
        hybrid_query("a red car", settings, options, mode=mode)
    """
    options = options or SearchOptions()
    validate_options(options)
    text = _check_text(text)
    f = settings.fields
    filters = filter_clauses(options.filters)
    match: dict[str, Any] = {"match": {f.caption: {"query": text}}}
    body: dict[str, Any] = {}
    if mode == "rrf":
        if options.collapse or options.min_score is not None or options.caption_weight is not None:
            raise ValidationError("RRF fuses ranks: it cannot take --collapse, --min-score or "
                                  "--caption-weight",
                                  hint="use mode boosted_sum (--no-rrf)")
        bm25: dict[str, Any] = {"bool": {"must": [match]}}
        if filters:
            bm25["bool"]["filter"] = filters
        body["retriever"] = {"rrf": {
            "retrievers": [
                {"knn": _knn(settings, options, vector_field=f.image_vector, text=text)},
                {"knn": _knn(settings, options, vector_field=f.caption_vector, text=text)},
                {"standard": {"query": bm25}},
            ],
            "rank_window_size": max(options.k, 50),
            "rank_constant": RRF_RANK_CONSTANT,
        }}
        _common(settings, options, body, scores=False)
        return _search_request(settings, body, index)
    if mode != "boosted_sum":
        raise ValidationError(f"unknown hybrid mode {mode!r}")
    weight = DEFAULT_CAPTION_WEIGHT if options.caption_weight is None else options.caption_weight
    match["match"][f.caption]["boost"] = weight
    body["knn"] = [
        _knn(settings, options, vector_field=f.image_vector, text=text, boost=1.0),
        _knn(settings, options, vector_field=f.caption_vector, text=text, boost=weight),
    ]
    body["query"] = {"bool": {"must": [match], "filter": filters}} if filters else match
    _common(settings, options, body)
    return _search_request(settings, body, index)


# --------------------------------------------------------------------------------------------------
# Sending


def run(client: Elasticsearch, request: Request) -> SearchResult:
    """Send a search request and return typed hits; cluster errors come back with their fix.

    Example::

        result = run(client, text_query("a cat", settings))
        result.hits[0].id, result.hits[0].score, result.hits[0].source.get("caption")
    """
    try:
        body = send(client, request, doing="searching")
    except ClusterError as exc:
        raise explain(exc, request) from exc
    return parse_response(body)


def parse_response(body: Mapping[str, Any]) -> SearchResult:
    """A ``_search`` response body as a SearchResult."""
    hits_part = body.get("hits") or {}
    total = hits_part.get("total")
    total_value = int(total.get("value", 0)) if isinstance(total, Mapping) else int(total or 0)
    hits = [Hit(id=str(h.get("_id")), score=None if h.get("_score") is None else float(h["_score"]),
                source=dict(h.get("_source") or {}))
            for h in hits_part.get("hits") or []]
    return SearchResult(took_ms=int(body.get("took", 0)), total=total_value, hits=hits)


def _model_id_in(request: Request) -> str | None:
    def walk(value: Any) -> str | None:
        if isinstance(value, Mapping):
            te = value.get("text_embedding")
            if isinstance(te, Mapping) and "model_id" in te and "model_text" in te:
                return str(te["model_id"])
            for v in value.values():
                found = walk(v)
                if found:
                    return found
        elif isinstance(value, list):
            for v in value:
                found = walk(v)
                if found:
                    return found
        return None

    return walk(request.body)


def explain(exc: ClusterError, request: Request) -> ToolkitError:
    """Give a cluster error from a search the fix a user needs (deploy the model, set up the index, ...)."""
    index = request.path.split("/", 1)[0]
    model = _model_id_in(request)
    reason = (getattr(exc, "reason", None) or exc.message or "").lower()
    err_type = getattr(exc, "error_type", None) or getattr(exc, "what", "") or ""
    if isinstance(exc, NotFound) and err_type == "index_not_found_exception":
        return NotFound(f"index or alias {index!r} does not exist", what="index", name=index,
                        hint="run `toolkit setup` and `toolkit ingest` (or pass --index)")
    if isinstance(exc, LicenseError):
        if "rrf" in reason:
            return LicenseError(exc.message,
                                hint="drop --rrf/--hybrid or use --caption-weight (boosted sum), "
                                     "or POST _license/start_trial?acknowledge=true")
        if model:
            return LicenseError(exc.message,
                                hint="text queries run the text model in the cluster, which needs "
                                     "Platinum/Enterprise or a trial (POST _license/start_trial"
                                     "?acknowledge=true); --image and --like work on any license")
        return exc
    if model and (isinstance(exc, (NotFound, RequestFailed)) and (
            model.lower() in reason or "trained model" in reason or "deployment" in reason
            or "not allocated" in reason or "not deployed" in reason)):
        return NotFound(f"the text model {model!r} is not deployed and started in the cluster "
                        f"({getattr(exc, 'reason', None) or exc.message})", what="model", name=model,
                        hint="run `toolkit deploy-model` (text_model.model_id / deployment_id must match)")
    if isinstance(exc, RequestFailed) and ("dims" in reason or "dimension" in reason):
        if "query_vector_builder" in json.dumps(request.body):
            hint = ("the text model's embedding size must equal the index's image vector dims: deploy the "
                    "text model that shares the image model's space (`toolkit deploy-model --model ...`)")
        else:
            hint = ("use the image model the index was built with (image_model.name), or re-create the "
                    "index with the matching index.image_dims")
        return DimsMismatch(f"the query vector does not fit the index: {exc.reason}", hint=hint)
    return exc


# --------------------------------------------------------------------------------------------------
# Query images


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def download(url: str, *, timeout: float, max_bytes: int, retries: int = 0) -> bytes:
    """GET ``url`` with ingest's downloader (timeout, size cap, retries); failures are ImageErrors."""
    from toolkit.ingest.fetch import FetchError
    from toolkit.ingest.fetch import download as fetch

    try:
        return fetch(url, timeout=timeout, retries=retries, max_bytes=max_bytes)
    except FetchError as exc:
        raise ImageError(url, f"download failed: {exc.reason}") from exc


def embed_query_image(source: str | Path, settings: Settings, *, embedder: Any = None) -> list[float]:
    """Embed one query image (path or http(s) URL) locally with the configured CLIP image model.

    The image is read (or downloaded) before the model loads, so a bad path fails fast. The vector
    is returned as the shortest decimal floats that round-trip to the model's float32 values.

    Args:
        source: a file path or an http(s) URL.
        settings: ``image_model`` (name, device, precision) and ``ingest`` (download limits).
        embedder: an already built ``ImageEmbedder`` (tests, or several queries in one process).

    Example::

        vector = embed_query_image("https://example.org/cat.jpg", settings)
    """
    text = str(source)
    data: bytes | Path
    if is_url(text):
        data = download(text, timeout=settings.ingest.download_timeout,
                        max_bytes=settings.ingest.max_download_bytes, retries=settings.ingest.download_retries)
    else:
        file = Path(text).expanduser()
        if not file.exists():
            raise ImageError(text, "file not found")
        data = file
    if embedder is None:
        from toolkit.images.embedder import ClipImageEmbedder

        im = settings.image_model
        embedder = ClipImageEmbedder(im.name, device=im.device, precision=im.precision,
                                     strict=im.strict_precision, min_cosine=im.min_cosine.model_dump(), batch_size=1)
    from toolkit.images.decode import load_image

    image = load_image(data, target=embedder.preprocessing.target,
                       max_pixels=settings.ingest.max_image_pixels)
    vector = next(iter(embedder.embed([image])))
    return float32_list(vector)


def float32_list(vector: Any) -> list[float]:
    """Floats that print short and parse back to exactly the same float32 values."""
    import numpy as np

    return [float(str(v)) for v in np.asarray(vector, dtype=np.float32).ravel()]


def placeholder_vector(dims: int) -> list[float]:
    """A valid non-zero unit vector of ``dims`` (for sample requests in ``toolkit devtools``)."""
    value = float(f"{1 / dims ** 0.5:.6g}")
    return [value] * dims


# --------------------------------------------------------------------------------------------------
# One call for the CLI: build, print (through a callback), send


@dataclass(frozen=True)
class Step:
    """One request of a search, with a comment line saying what it is (printed as ``# ...``)."""

    comment: str
    request: Request

    def __post_init__(self) -> None:
        # The comment carries user input (query text, ids, paths): one line, or a pasted console
        # script would run whatever follows a newline as a request.
        object.__setattr__(self, "comment", comment_line(self.comment))


def comment_line(text: str) -> str:
    """``text`` as one line for a ``#`` comment in a Kibana console script (line breaks become spaces)."""
    return " ".join(text.splitlines())


@dataclass
class SearchOutcome:
    """What ``search`` did: the kind of query, how it was combined, the requests, and the result.

    ``result`` is None for a dry run.
    """

    kind: Kind
    mode: Mode
    why: str
    index: str
    steps: list[Step]
    result: SearchResult | None = None

    def as_json(self) -> dict[str, Any]:
        """The documented ``--json``: ``took_ms``, ``total``, ``hits`` plus ``kind``, ``mode``, ``index``."""
        out = self.result.as_json() if self.result else {"took_ms": 0, "total": 0, "hits": []}
        out.update({"kind": self.kind, "mode": self.mode, "index": self.index})
        return out


def render_steps(steps: Iterable[Step]) -> str:
    """Steps as Kibana console text: each request after its ``#`` comment line, blank lines between."""
    from toolkit.devtools import render

    return "\n\n".join(f"# {s.comment}\n{render(s.request)}" for s in steps) + "\n"


def search(*, settings: Settings, options: SearchOptions | None = None, text: str | None = None,
           image: str | Path | None = None, like: str | None = None, index: str | None = None,
           client: Elasticsearch | None = None, embedder: Any = None,
           on_step: Any = None) -> SearchOutcome:
    """Build and (unless ``client`` is None: a dry run) send one search of the given kind.

    Exactly one of ``text``, ``image`` (path or URL), ``like`` (document id). ``on_step(step)`` is called
    with every request before it is sent (``--show-request``). A dry run needs no cluster: a hybrid
    query then assumes RRF unless ``options.rrf`` is False; a ``like`` query shows the vector lookup
    and a kNN whose ``query_vector`` is a placeholder string.

    Example::

        outcome = search(settings=settings, text="a dog", options=SearchOptions(k=3), client=client)
        [h.id for h in outcome.result.hits]
    """
    options = options or SearchOptions()
    validate_options(options)
    kinds = (("TEXT", text), ("--image", image), ("--like", like))
    given = [name for name, value in kinds if value is not None]
    if len(given) != 1:
        raise ValidationError("give exactly one of TEXT, --image or --like" +
                              (f" (got {', '.join(given)})" if given else ""),
                              hint='e.g. toolkit search "a dog in the snow", or --image cat.jpg')
    if options.is_hybrid and text is None:
        raise ValidationError("--hybrid/--caption-weight combine the image kNN with the caption text, so "
                              "they need query TEXT", hint="drop --hybrid, or search with TEXT")
    target = index or settings.index.alias
    steps: list[Step] = []

    def emit(step: Step) -> None:
        steps.append(step)
        if on_step:
            on_step(step)

    mode: Mode = "knn"
    why = "kNN"
    if text is not None:
        kind: Kind = "text"
        _check_text(text)
        if options.is_hybrid:
            rrf_allowed: bool | None = None
            needs_license = options.rrf is not False and options.caption_weight is None \
                and options.min_score is None and options.collapse is None
            if client is not None and needs_license:
                from toolkit.cluster import cluster_facts

                rrf_allowed = cluster_facts(client).rrf_allowed
            mode, why = choose_mode(options, rrf_allowed=rrf_allowed)
            request = hybrid_query(text, settings, options, mode=mode, index=target)
            comment = (f"hybrid text search, {why}: image kNN + caption kNN (text embedded in the cluster by "
                       f"{settings.text_model.cluster_deployment_id}) + BM25 on {settings.fields.caption}")
        else:
            request = text_query(text, settings, options, index=target)
            comment = (f"text search: kNN on {settings.fields.image_vector}, the text embedded in the "
                       f"cluster by {settings.text_model.cluster_deployment_id}")
    elif image is not None:
        kind = "image"
        vector = embed_query_image(image, settings, embedder=embedder)
        request = image_query(vector, settings, options, index=target)
        comment = f"image search: kNN on {settings.fields.image_vector} with the embedding of {image}"
    else:
        kind = "like"
        assert like is not None
        lookup = like_lookup_request(like, settings, index=target)
        emit(Step(f"read the stored {settings.fields.image_vector} of document {like}", lookup))
        if client is None:
            placeholder = f"<the {settings.fields.image_vector} of {like} from the response above>"
            knn = _knn(settings, options, vector_field=settings.fields.image_vector, vector=[],
                       extra_filter=[{"bool": {"must_not": [{"ids": {"values": [like]}}]}}])
            knn["query_vector"] = placeholder
            body: dict[str, Any] = {"knn": knn}
            _common(settings, options, body)
            request = _search_request(settings, body, target)
        else:
            try:
                response = send(client, lookup, doing=f"reading document {like}")
            except ClusterError as exc:
                raise explain(exc, lookup) from exc
            request = like_query(like, vector_from_lookup(response, like, settings), settings, options,
                                 index=target)
        comment = f"images like {like}: kNN with its vector, leaving {like} itself out"
    emit(Step(comment, request))
    outcome = SearchOutcome(kind=kind, mode=mode, why=why, index=target, steps=steps)
    if client is not None:
        outcome.result = run(client, request)
    return outcome


# --------------------------------------------------------------------------------------------------
# Everything for Kibana: ``toolkit devtools``


def devtools_script(settings: Settings, *, text: str = "a dog playing in the snow",
                    image_vector: Sequence[float] | None = None, image_label: str | None = None,
                    like_id: str = "DOC_ID", options: SearchOptions | None = None) -> str:
    """Every request the toolkit sends, as one Kibana Dev Tools console script with ``#`` comments.

    Setup (``toolkit setup``), deploy (``toolkit deploy-model``: the uploads summarized as comments,
    then ``_start``, ``_stats`` and ``_infer``) and a sample of each search kind. Sends nothing.

    Example::

        print(devtools_script(load_settings(), text="ein Hund im Schnee"))
    """
    from toolkit.devtools import render
    from toolkit.provision import plan
    from toolkit.textmodel.deploy import start_options
    from toolkit.textmodel.requests import infer_request, start_request, stats_request

    options = options or SearchOptions()
    tm = settings.text_model
    model = path(tm.cluster_model_id)
    parts: list[str] = []

    def section(title: str) -> None:
        parts.append(f"# {'=' * 78}\n# {title}\n# {'=' * 78}")

    def add(comment: str, request: Request) -> None:
        parts.append(f"# {comment_line(comment)}\n{render(request)}")

    section("toolkit setup: ingest pipeline, component templates, index template, first index")
    for asset in plan(settings):
        add(f"{asset.kind.replace('_', ' ')} {asset.name}", asset.request)

    section("toolkit deploy-model: upload the text model, start it, check it")
    parts.append(
        f"# PUT _ml/trained_models/{model} (config: text_embedding, bert tokenization, "
        f"embedding_size {settings.index.caption_dims}; written by toolkit deploy-model)\n"
        f"# PUT _ml/trained_models/{model}/definition/0..N (N parts of 1 MiB of the traced TorchScript "
        "model, base64; written by toolkit deploy-model)\n"
        f"# PUT _ml/trained_models/{model}/vocabulary (the tokenizer's vocabulary; written by "
        "toolkit deploy-model)")
    add("start the deployment (toolkit deploy-model then polls _stats until it is started)",
        start_request(tm.cluster_model_id, start_options(settings)))
    add("deployment state (started) and allocations", stats_request(tm.cluster_model_id))
    add("embed a text in the cluster (the vector text queries search with)",
        infer_request(tm.cluster_deployment_id, [text]))

    section("toolkit search: one sample of each kind")
    add(f'toolkit search "{text}"', text_query(text, settings, options))
    if image_vector is None:
        vector: Sequence[float] = placeholder_vector(settings.index.image_dims)
        image_comment = (f"toolkit search --image PATH: query_vector is a placeholder of {len(vector)} "
                         "dims; toolkit embeds the image locally (`toolkit devtools --image PATH` puts "
                         "the real one)")
    else:
        vector = image_vector
        image_comment = f"toolkit search --image {image_label or 'IMAGE'}"
    add(image_comment, image_query(vector, settings, options))
    add(f"toolkit search --like {like_id}, step 1: read the document's stored vector",
        like_lookup_request(like_id, settings))
    add(f"toolkit search --like {like_id}, step 2: kNN with that vector (placeholder here), "
        f"leaving {like_id} out", like_query(like_id, placeholder_vector(settings.index.image_dims),
                                            settings, options))
    hybrid = SearchOptions(**{**options.__dict__, "hybrid": True, "caption_weight": None, "rrf": None,
                              "min_score": None, "collapse": None})
    add(f'toolkit search "{text}" --hybrid (RRF: Enterprise license or trial)',
        hybrid_query(text, settings, hybrid, mode="rrf"))
    add(f'toolkit search "{text}" --hybrid on a Basic/Platinum license (boosted sum; --caption-weight '
        f'sets the caption parts\' boost, default {DEFAULT_CAPTION_WEIGHT})',
        hybrid_query(text, settings, hybrid, mode="boosted_sum"))
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------------
# Lookups for the web page (``toolkit serve``): where a document's image is, which labels exist


def location_request(doc_id: str, settings: Settings, *, index: str | None = None) -> Request:
    """Read where one indexed document's image lives (its ``path`` or ``url`` field), nothing else.

    ``toolkit serve`` draws thumbnails from this, so only images of indexed documents can be shown.

    Example::

        location_request("img-42", settings).body["query"]   # {"ids": {"values": ["img-42"]}}
    """
    if not doc_id or not doc_id.strip():
        raise ValidationError("a document id is needed", hint="use the `id` of a search hit")
    f = settings.fields
    body = {"size": 1, "query": {"ids": {"values": [doc_id]}}, "_source": {"includes": [f.path, f.url]}}
    return _search_request(settings, body, index)


def document_location(client: Elasticsearch, doc_id: str, settings: Settings, *,
                      index: str | None = None) -> str:
    """The ``path`` (or else ``url``) stored with document ``doc_id``.

    Raises NotFound when there is no such document, or it has neither field.

    Example::

        document_location(client, "img-42", settings)    # "/photos/cat.jpg"
    """
    request = location_request(doc_id, settings, index=index)
    try:
        body = send(client, request, doing=f"reading document {doc_id}")
    except ClusterError as exc:
        raise explain(exc, request) from exc
    hits = (body.get("hits") or {}).get("hits") or []
    if not hits:
        raise NotFound(f"no document with id {doc_id!r} in {index or settings.index.alias!r}", what="document",
                       name=doc_id, hint="use the `id` of a search hit")
    source = hits[0].get("_source") or {}
    f = settings.fields
    for name in (f.path, f.url):
        value = field_value(source, name)
        if isinstance(value, str) and value:
            return value
    raise NotFound(f"document {doc_id!r} has no {f.path!r} or {f.url!r}", what="location", name=doc_id,
                   hint="re-ingest it with `toolkit ingest` (it stores the path or URL)")


def label_values_request(settings: Settings, *, index: str | None = None, size: int = 200) -> Request:
    """The most common values of the label field (a ``terms`` aggregation, no hits).

    Example::

        label_values_request(settings).body["aggs"]   # {"labels": {"terms": {"field": "label", "size": 200}}}
    """
    body = {"size": 0, "aggs": {"labels": {"terms": {"field": settings.fields.label, "size": size}}}}
    return _search_request(settings, body, index)


def label_values(client: Elasticsearch, settings: Settings, *, index: str | None = None,
                 size: int = 200) -> list[str]:
    """The label values present in the index, most common first (for a filter menu).

    Example::

        label_values(client, settings)    # ["animal", "space", "object"]
    """
    request = label_values_request(settings, index=index, size=size)
    try:
        body = send(client, request, doing="reading the labels")
    except ClusterError as exc:
        raise explain(exc, request) from exc
    buckets = ((body.get("aggregations") or {}).get("labels") or {}).get("buckets") or []
    return [str(b.get("key")) for b in buckets if b.get("key") is not None]


def embed_query_bytes(data: bytes, settings: Settings, *, embedder: Any = None, name: str = "upload") -> list[float]:
    """Embed one query image given as encoded bytes (an upload), with ingest's pixel cap.

    Like :func:`embed_query_image`; ``name`` is how errors refer to the image.

    Example::

        vector = embed_query_bytes(Path("cat.jpg").read_bytes(), settings)
    """
    if embedder is None:
        from toolkit.images.embedder import ClipImageEmbedder

        im = settings.image_model
        embedder = ClipImageEmbedder(im.name, device=im.device, precision=im.precision,
                                     strict=im.strict_precision, min_cosine=im.min_cosine.model_dump(), batch_size=1)
    from toolkit.images.decode import load_image

    if not data:
        raise ImageError(name, "empty upload (0 bytes)")
    try:
        image = load_image(bytes(data), target=embedder.preprocessing.target,
                           max_pixels=settings.ingest.max_image_pixels)
    except ImageError as exc:
        raise ImageError(name, exc.reason) from exc
    vector = next(iter(embedder.embed([image])))
    return float32_list(vector)
