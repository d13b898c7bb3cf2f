"""``toolkit eval``: how good retrieval is on a labeled source, measured through the live index.

Flow: labeled source -> queries (text prompts per language, image queries) -> requests (the builders
``toolkit.search`` uses) -> hits -> figures computed from the hits -> :class:`EvalReport`.

- text to image: for each label and language, one prompt per template (``"a photo of a {label}"``, ...),
  the label's words taken from a YAML file; recall@1, recall@k, precision@k and mAP@k.
- image to image: held-out query images (``image_queries``) or leave-one-out (``like``: each labeled
  image, embedded locally, searches the index without itself); precision@k by label.
- ANN fidelity: the approximate kNN (default ``num_candidates`` and a sweep) against exact search
  (``script_score`` with ``cosineSimilarity`` over the same filter), for the text queries' vectors.
- latency: p50/p95 of ``took`` and of the wall clock per query kind.

Formulas (a query of label L; ``rel_i`` is 1 when the i-th hit's label is L; R the number of labeled
items of label L, less one for a leave-one-out query):

- recall@k = 1 if any of the first k hits is relevant, else 0 (as CLIP benchmarks report it);
- precision@k = (sum of rel_i for i <= k) / k;
- AP@k = (sum over relevant ranks i <= k of precision@i) / min(R, k); mAP@k is its mean;
- ANN recall@k = |approximate top k ∩ exact top k| / |exact top k|;
- p50 / p95: nearest-rank percentiles. Every figure is a mean over queries.

Nothing heavy is imported here: torch loads only for image queries (``toolkit.ingest.load_embedder``).

Example::

    report = evaluate(client, settings, source=Path("shapes/manifest.csv"), labels_file=Path("labels.yaml"))
    report.as_json()["text"]["by_language"]["de"]["recall_at_1"]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.devtools import Request, send
from toolkit.errors import ClusterError, ImageError, ValidationError
from toolkit.search import (
    MAX_CANDIDATES,
    Hit,
    SearchOptions,
    SearchResult,
    explain,
    filter_clauses,
    float32_list,
    image_query,
    parse_response,
    source_spec,
    text_query,
    validate_options,
)
from toolkit.settings import Settings
from toolkit.textmodel.requests import infer_request

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Prompt templates per language when the labels file has none; ``{label}`` is the label's words.
DEFAULT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("a photo of a {label}",),
    "de": ("ein Foto von {label}",),
    "fr": ("une photo de {label}",),
    "es": ("una foto de {label}",),
    "zh": ("一张{label}的照片",),
    "ja": ("{label}の写真",),
}
#: ``num_candidates`` values of the ANN sweep, as multiples of k (capped at 10000, at least k).
SWEEP_FACTORS = (1, 2, 5, 10, 20, 50)
MAX_IMAGE_QUERIES = 200
#: ANN fidelity runs exact search (every matching document is scored): at most this many prompts,
#: evenly spaced over the labels and languages.
MAX_ANN_QUERIES = 100


@dataclass(frozen=True)
class LabeledItem:
    """One image of the labeled source: where it is and its label."""

    location: str
    label: str


@dataclass(frozen=True)
class Labels:
    """The labels file: ``{label: {language: words}}`` and the prompt templates per language."""

    words: dict[str, dict[str, str]]
    templates: dict[str, tuple[str, ...]]

    def prompt_words(self, label: str, language: str) -> str | None:
        """The label's words in a language; English falls back to the label itself (``red-circle`` ->
        ``red circle``); other languages without a translation give None (the label is skipped there)."""
        words = self.words.get(label, {}).get(language)
        if words:
            return words
        if language == "en":
            return label.replace("_", " ").replace("-", " ")
        return None


@dataclass
class Query:
    """One query and what came back."""

    kind: str
    label: str
    text: str
    language: str | None = None
    hit_labels: list[str | None] = field(default_factory=list)
    relevant_total: int = 0
    took_ms: int = 0
    wall_ms: float = 0.0


@dataclass
class EvalReport:
    """Every figure of one eval run; :meth:`as_json` is the documented ``--json`` shape."""

    index: str
    k: int
    num_candidates: int
    items: int
    labels: int
    text: list[Query] = field(default_factory=list)
    image: list[Query] = field(default_factory=list)
    ann: dict[str, Any] | None = None
    latency_samples: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def text_figures(self, language: str | None = None) -> dict[str, Any]:
        queries = [q for q in self.text if language is None or q.language == language]
        return figures(queries, self.k)

    def as_json(self) -> dict[str, Any]:
        languages = sorted({q.language for q in self.text if q.language})
        image_labels = sorted({q.label for q in self.image})
        return {
            "index": self.index,
            "k": self.k,
            "num_candidates": self.num_candidates,
            "items": self.items,
            "labels": self.labels,
            "text": None if not self.text else {
                **self.text_figures(),
                "by_language": {lang: self.text_figures(lang) for lang in languages},
            },
            "image": None if not self.image else {
                **figures(self.image, self.k),
                "by_label": {lab: figures([q for q in self.image if q.label == lab], self.k)["precision_at_k"]
                             for lab in image_labels},
            },
            "ann": self.ann,
            "latency": {kind: latency(samples) for kind, samples in sorted(self.latency_samples.items())},
            "skipped": dict(self.skipped),
        }


# --------------------------------------------------------------------------------------------------
# Metrics: pure functions over the labels of the hits


def relevance(query: Query, k: int) -> list[bool]:
    return [lab == query.label for lab in query.hit_labels[:k]]


def recall_at(query: Query, k: int) -> float:
    """1.0 when any of the first ``k`` hits has the query's label."""
    return 1.0 if any(relevance(query, k)) else 0.0


def precision_at(query: Query, k: int) -> float:
    """Relevant hits among the first ``k``, divided by ``k`` (missing hits count as not relevant)."""
    return sum(relevance(query, k)) / k


def average_precision(query: Query, k: int) -> float:
    """AP@k: the precision at each relevant rank within k, summed, over min(R, k)."""
    denominator = min(query.relevant_total, k)
    if denominator <= 0:
        return 0.0
    found, total = 0, 0.0
    for rank, rel in enumerate(relevance(query, k), start=1):
        if rel:
            found += 1
            total += found / rank
    return total / denominator


def figures(queries: Sequence[Query], k: int) -> dict[str, Any]:
    """Means over ``queries``: ``queries``, ``recall_at_1``, ``recall_at_k``, ``precision_at_k``, ``map_at_k``."""
    n = len(queries)

    def mean(fn: Callable[[Query], float]) -> float | None:
        return round(sum(fn(q) for q in queries) / n, 6) if n else None

    return {"queries": n, "recall_at_1": mean(lambda q: recall_at(q, 1)),
            "recall_at_k": mean(lambda q: recall_at(q, k)), "precision_at_k": mean(lambda q: precision_at(q, k)),
            "map_at_k": mean(lambda q: average_precision(q, k))}


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``pct`` % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency(samples: Sequence[tuple[int, float]]) -> dict[str, Any]:
    took = [float(t) for t, _ in samples]
    wall = [w for _, w in samples]

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {"queries": len(samples), "took_ms_p50": r(percentile(took, 50)), "took_ms_p95": r(percentile(took, 95)),
            "wall_ms_p50": r(percentile(wall, 50)), "wall_ms_p95": r(percentile(wall, 95))}


def overlap(approx: Sequence[str], exact: Sequence[str]) -> float:
    """|approx ∩ exact| / |exact| (1.0 when exact search found nothing either)."""
    if not exact:
        return 1.0
    return len(set(approx) & set(exact)) / len(exact)


def sweep_values(k: int, default: int) -> list[int]:
    """``num_candidates`` of the ANN sweep: k x SWEEP_FACTORS plus the default, within [k, 10000]."""
    values = {min(MAX_CANDIDATES, max(k, k * f)) for f in SWEEP_FACTORS} | {default}
    return sorted(values)


# --------------------------------------------------------------------------------------------------
# Inputs


def load_labels(file: Path | None) -> Labels:
    """Read the labels YAML file (``labels: {LABEL: {LANG: words}}``, optional ``templates: {LANG: [..]}``).

    Raises ValidationError naming ``--labels`` for a missing, unreadable or misshapen file.

    Example::

        load_labels(Path("labels.yaml")).prompt_words("red-circle", "de")   # 'roten Kreis'
    """
    if file is None:
        return Labels(words={}, templates=dict(DEFAULT_TEMPLATES))
    import yaml

    hint = "fix --labels (see README: toolkit eval)"
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(f"--labels {file}: cannot read it ({exc.strerror or exc})", hint=hint) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValidationError(f"--labels {file}: not valid YAML ({type(exc).__name__})", hint=hint) from exc
    if not isinstance(data, dict) or not isinstance(data.get("labels", {}), dict):
        raise ValidationError(f"--labels {file}: expected a mapping with 'labels' (and optionally 'templates')",
                              hint=hint)
    unknown = sorted(set(data) - {"labels", "templates"})
    if unknown:
        raise ValidationError(f"--labels {file}: unknown key(s) {', '.join(map(str, unknown))}", hint=hint)
    words: dict[str, dict[str, str]] = {}
    for label, per_language in (data.get("labels") or {}).items():
        if not isinstance(per_language, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in per_language.items()):
            raise ValidationError(f"--labels {file}: label {label!r} needs {{language: words}} strings", hint=hint)
        words[str(label)] = dict(per_language)
    templates = dict(DEFAULT_TEMPLATES)
    raw_templates = data.get("templates") or {}
    if not isinstance(raw_templates, dict):
        raise ValidationError(f"--labels {file}: 'templates' must map a language to a list of prompts", hint=hint)
    for language, prompts in raw_templates.items():
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or not all(
                isinstance(p, str) and "{label}" in p for p in prompts):
            raise ValidationError(f"--labels {file}: templates for {language!r} must be prompts containing "
                                  "{label}", hint=hint)
        for prompt in prompts:
            try:
                prompt.format(label="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValidationError(f"--labels {file}: template {prompt!r} has a placeholder other than "
                                      "{label} (write a literal brace as {{ or }})", hint=hint) from exc
        templates[str(language)] = tuple(prompts)
    return Labels(words=words, templates=templates)


def labeled_items(source: Path) -> tuple[list[LabeledItem], int]:
    """The labeled images of a manifest (``label`` column) or of a folder per label; also the number of
    source items left out (no label, or an item the source could not read).

    A folder holding ``reverse_image_search.csv`` (the towhee dataset) reads that manifest.

    Raises ValidationError when the source has no labeled item.

    Example::

        items, left_out = labeled_items(Path("photos"))   # photos/cat/1.jpg -> label 'cat'
    """
    from toolkit.images.sources import open_source

    source = Path(source)
    if source.is_dir() and (source / "reverse_image_search.csv").is_file():
        source = source / "reverse_image_search.csv"
    opened = open_source(source)
    items: list[LabeledItem] = []
    left_out = 0
    for item in opened:
        label = item.label
        if opened.kind == "directory" and item.error is None:
            parts = Path(os.path.relpath(item.location, source)).parts
            label = parts[0] if len(parts) > 1 else None
        if item.error is not None or not label or item.is_url:
            left_out += 1
            continue
        items.append(LabeledItem(location=item.location, label=label))
    if not items:
        raise ValidationError(f"{source}: no labeled images (a manifest needs a 'label' column; a folder needs "
                              "one subfolder per label)", hint="pass a labeled manifest or folder")
    return items, left_out


def _key(location: str) -> str:
    return os.path.normcase(os.path.abspath(location))


# --------------------------------------------------------------------------------------------------
# Requests


def exact_query(vector: Sequence[float], settings: Settings, options: SearchOptions, *,
                index: str | None = None) -> Request:
    """Exact search: ``script_score`` with ``cosineSimilarity(params.query_vector, FIELD) + 1.0`` over the
    documents that have the vector and match the same filters as the kNN search.

    Example::

        exact_query(vector, settings, SearchOptions(k=10, filters=("label=cat",))).body["query"]
    """
    vector_field = settings.fields.image_vector
    body: dict[str, Any] = {
        "size": options.k,
        "_source": source_spec(settings, options),
        "query": {"script_score": {
            "query": {"bool": {"filter": [{"exists": {"field": vector_field}}, *filter_clauses(options.filters)]}},
            "script": {"source": f"cosineSimilarity(params.query_vector, '{vector_field}') + 1.0",
                       "params": {"query_vector": list(vector)}},
        }},
    }
    from toolkit.devtools import path

    return Request("POST", f"{path(index or settings.index.alias)}/_search", body=body)


def _timed(client: Elasticsearch, request: Request) -> tuple[SearchResult, float]:
    start = time.perf_counter()
    try:
        body = send(client, request, doing="searching")
    except ClusterError as exc:
        raise explain(exc, request) from exc
    return parse_response(body), (time.perf_counter() - start) * 1000


def _text_vectors(client: Elasticsearch, settings: Settings, texts: list[str]) -> list[list[float]]:
    body = send(client, infer_request(settings.text_model.cluster_deployment_id, texts),
                doing="embedding the prompts in the cluster (_infer)")
    return [[float(x) for x in r.get("predicted_value") or []] for r in body.get("inference_results") or []]


# --------------------------------------------------------------------------------------------------
# The run


def evaluate(
    client: Elasticsearch,
    settings: Settings,
    *,
    source: Path,
    labels_file: Path | None = None,
    languages: Sequence[str] = (),
    k: int = 10,
    num_candidates: int | None = None,
    filters: Sequence[str] = (),
    like: bool = False,
    image_queries: Path | None = None,
    max_image_queries: int = MAX_IMAGE_QUERIES,
    ann: bool = True,
    sweep: Sequence[int] | None = None,
    max_ann_queries: int = MAX_ANN_QUERIES,
    embedder: Any = None,
    index: str | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> EvalReport:
    """Run the eval queries against the index and compute every figure from the hits.

    Args:
        source: the labeled images the index holds (manifest with ``label``, folder per label, towhee).
        labels_file: the YAML file of label translations and templates (see :func:`load_labels`).
        languages: the prompt languages; default: every language of the labels file with a template
            (English only without a file).
        k, num_candidates, filters: as ``toolkit search`` (``num_candidates`` None: the toolkit's default).
        like: leave-one-out image queries over the source's images (embedded locally).
        image_queries: held-out labeled query images (manifest or folder per label).
        max_image_queries: at most this many image queries (the first ones of the source).
        ann: measure ANN fidelity against exact ``script_score`` search; ``sweep`` its num_candidates;
            ``max_ann_queries`` prompts at most (evenly spaced).
        embedder: an ``ImageEmbedder`` for image queries (default: the configured model).

    Raises:
        ValidationError: bad flags or sources. NotFound: the index or the model is missing.

    Example::

        report = evaluate(client, settings, source=Path("shapes"), labels_file=Path("labels.yaml"), like=True)
    """
    options = SearchOptions(k=k, num_candidates=num_candidates, filters=tuple(filters), fields=(
        settings.fields.label, settings.fields.path))
    validate_options(options)
    for flag, value in (("--max-image-queries", max_image_queries), ("--max-ann-queries", max_ann_queries)):
        if value < 1:
            raise ValidationError(f"{flag} must be at least 1, got {value}", hint=f"fix {flag}")
    labels = load_labels(labels_file)
    items, left_out = labeled_items(source)
    by_location = {_key(i.location): i.label for i in items}
    counts: dict[str, int] = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    chosen = list(dict.fromkeys(languages)) or _languages(labels)
    unknown = [lang for lang in chosen if lang not in labels.templates]
    if unknown:
        raise ValidationError(f"no prompt template for language(s) {', '.join(unknown)}",
                              hint="add them under 'templates' in the --labels file, or fix --lang")
    alias = index or settings.index.alias
    report = EvalReport(index=alias, k=k, num_candidates=options.candidates, items=len(items), labels=len(counts),
                        skipped={"source_items_without_label": left_out, "missing_translations": 0,
                                 "hits_without_label": 0})
    progress = on_progress or (lambda stage, done, total: None)

    def hit_label(hit: Hit) -> str | None:
        value = hit.source.get(settings.fields.label)
        if isinstance(value, str) and value:
            return value
        location = hit.source.get(settings.fields.path)
        found = by_location.get(_key(location)) if isinstance(location, str) else None
        if found is None:
            report.skipped["hits_without_label"] += 1
        return found

    def record(kind: str, result: SearchResult, wall: float) -> None:
        report.latency_samples.setdefault(kind, []).append((result.took_ms, wall))

    # text -> image
    prompts: list[Query] = []
    for language in chosen:
        for label in sorted(counts):
            words = labels.prompt_words(label, language)
            if words is None:
                report.skipped["missing_translations"] += 1
                continue
            for template in labels.templates[language]:
                prompts.append(Query(kind="text", label=label, language=language,
                                     text=template.format(label=words), relevant_total=counts[label]))
    for n, query in enumerate(prompts, start=1):
        result, wall = _timed(client, text_query(query.text, settings, options, index=alias))
        record("text", result, wall)
        query.hit_labels = [hit_label(h) for h in result.hits]
        query.took_ms, query.wall_ms = result.took_ms, wall
        progress("text", n, len(prompts))
    report.text = prompts

    # image -> image
    if like or image_queries is not None:
        report.image = _image_queries(client, settings, options, alias, items, counts, like=like,
                                      image_queries=image_queries, limit=max_image_queries, embedder=embedder,
                                      hit_label=hit_label, record=record, progress=progress, report=report)

    # ANN fidelity
    if ann and prompts:
        step = max(1, math.ceil(len(prompts) / max_ann_queries))
        report.ann = _ann(client, settings, options, alias, prompts[::step][:max_ann_queries], sweep, record,
                          progress)
    return report


def _languages(labels: Labels) -> list[str]:
    given = {lang for per in labels.words.values() for lang in per}
    ordered = [lang for lang in labels.templates if lang in given]
    return ordered or ["en"]


def _image_queries(client: Elasticsearch, settings: Settings, options: SearchOptions, alias: str,
                   items: list[LabeledItem], counts: dict[str, int], *, like: bool, image_queries: Path | None,
                   limit: int, embedder: Any, hit_label: Callable[[Hit], str | None],
                   record: Callable[[str, SearchResult, float], None], progress: Callable[[str, int, int], None],
                   report: EvalReport) -> list[Query]:
    from toolkit.images.decode import load_image
    from toolkit.ingest import load_embedder

    if image_queries is not None:
        queries, left = labeled_items(image_queries)
        report.skipped["image_queries_without_label"] = left
    else:
        queries = items
    queries = queries[:limit]
    embedder = embedder or load_embedder(settings)
    wider = SearchOptions(**{**options.__dict__, "k": options.k + (1 if like and image_queries is None else 0),
                             "num_candidates": None if options.num_candidates is None
                             else max(options.num_candidates, options.k + 1)})
    out: list[Query] = []
    report.skipped["image_queries_unreadable"] = 0
    for n, item in enumerate(queries, start=1):
        try:
            image = load_image(Path(item.location), target=embedder.preprocessing.target,
                               max_pixels=settings.ingest.max_image_pixels)
        except ImageError:
            report.skipped["image_queries_unreadable"] += 1  # one bad query image does not end the run
            continue
        vector = float32_list(next(iter(embedder.embed([image]))))
        result, wall = _timed(client, image_query(vector, settings, wider, index=alias))
        record("image", result, wall)
        hits = result.hits
        leave_one_out = image_queries is None
        if leave_one_out:
            own = _key(item.location)
            hits = [h for h in hits if not (isinstance(h.source.get(settings.fields.path), str)
                                            and _key(h.source[settings.fields.path]) == own)][:options.k]
        relevant = counts.get(item.label, 0) - (1 if leave_one_out else 0)
        out.append(Query(kind="image", label=item.label, text=item.location, hit_labels=[hit_label(h) for h in hits],
                         relevant_total=relevant, took_ms=result.took_ms, wall_ms=wall))
        progress("image", n, len(queries))
    return out


def _ann(client: Elasticsearch, settings: Settings, options: SearchOptions, alias: str, prompts: list[Query],
         sweep: Sequence[int] | None, record: Callable[[str, SearchResult, float], None],
         progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    texts = [q.text for q in prompts]
    vectors: list[list[float]] = []
    for start in range(0, len(texts), 50):
        vectors += _text_vectors(client, settings, texts[start:start + 50])
    values = sorted(set(sweep)) if sweep else sweep_values(options.k, options.candidates)
    bad = [v for v in values if not options.k <= v <= MAX_CANDIDATES]
    if bad:
        raise ValidationError(f"--sweep values must be between k ({options.k}) and {MAX_CANDIDATES}, got "
                              f"{', '.join(map(str, bad))}", hint="fix --sweep")
    if options.candidates not in values:
        values = sorted({*values, options.candidates})
    recalls: dict[int, list[float]] = {v: [] for v in values}
    total = len(vectors) * (len(values) + 1)
    done = 0
    for vector in vectors:
        exact, wall = _timed(client, exact_query(vector, settings, options, index=alias))
        record("exact", exact, wall)
        exact_ids = [h.id for h in exact.hits]
        done += 1
        for value in values:
            approx_options = SearchOptions(**{**options.__dict__, "num_candidates": value})
            approx, wall = _timed(client, image_query(vector, settings, approx_options, index=alias))
            record("knn", approx, wall)
            recalls[value].append(overlap([h.id for h in approx.hits], exact_ids))
            done += 1
        progress("ann", done, total)

    def mean(xs: Iterable[float]) -> float:
        listed = list(xs)
        return round(sum(listed) / len(listed), 6) if listed else 1.0

    return {"queries": len(vectors), "k": options.k, "default_num_candidates": options.candidates,
            "recall_at_default": mean(recalls[options.candidates]),
            "sweep": [{"num_candidates": v, "recall": mean(recalls[v])} for v in values]}


# --------------------------------------------------------------------------------------------------
# Output


def table_rows(report: EvalReport) -> list[tuple[str, str, str]]:
    """``(section, figure, value)`` rows for the table the CLI prints."""
    data = report.as_json()

    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    rows: list[tuple[str, str, str]] = []
    text = data["text"]
    if text:
        for lang, figs in text["by_language"].items():
            rows.append((f"text ({lang})", f"R@1 / R@{report.k} / P@{report.k} / mAP@{report.k}",
                         " / ".join(f(figs[key]) for key in ("recall_at_1", "recall_at_k", "precision_at_k",
                                                             "map_at_k")) + f"  ({figs['queries']} prompts)"))
    image = data["image"]
    if image:
        rows.append(("image", f"P@{report.k} / mAP@{report.k}",
                     f"{f(image['precision_at_k'])} / {f(image['map_at_k'])}  ({image['queries']} queries)"))
    ann = data["ann"]
    if ann:
        rows.append(("ann", f"recall@{report.k} at num_candidates {ann['default_num_candidates']}",
                     f(ann["recall_at_default"])))
        rows.append(("ann", "sweep", ", ".join(f"{s['num_candidates']}: {f(s['recall'])}" for s in ann["sweep"])))
    for kind, lat in data["latency"].items():
        rows.append((f"latency ({kind})", "took p50 / p95, wall p50 / p95 (ms)",
                     f"{f(lat['took_ms_p50'])} / {f(lat['took_ms_p95'])}, {f(lat['wall_ms_p50'])} / "
                     f"{f(lat['wall_ms_p95'])}"))
    return rows


def check_plot_path(file: Path) -> None:
    """Before the run: ``--plot`` must name a .png file in an existing folder, and matplotlib must import.

    Raises ValidationError naming ``--plot`` (with the install hint when matplotlib is missing).
    """
    file = Path(file)
    if file.suffix.lower() != ".png":
        raise ValidationError(f"--plot {file}: the plot is a PNG file", hint="name it FILE.png")
    if file.is_dir() or not file.parent.is_dir():
        raise ValidationError(f"--plot {file}: {'is a folder' if file.is_dir() else 'its folder does not exist'}",
                              hint="fix --plot")
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ValidationError("--plot needs matplotlib", hint='pip install "toolkit[plot]" (or pip install '
                                                              'matplotlib)') from exc


def plot(report: EvalReport, file: Path) -> Path:
    """Write a PNG: recall vs num_candidates (ANN sweep) and per-language bars (R@1, R@k, P@k, mAP@k).

    Raises ValidationError with the install hint when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValidationError("--plot needs matplotlib", hint='pip install "toolkit[plot]" (or pip install '
                                                              'matplotlib)') from exc
    data = report.as_json()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ann = data["ann"]
    if ann:
        xs = [s["num_candidates"] for s in ann["sweep"]]
        left.plot(xs, [s["recall"] for s in ann["sweep"]], marker="o")
        left.axvline(ann["default_num_candidates"], color="grey", linestyle="--", label="default")
        left.set_xscale("log")
        left.set_ylim(0, 1.05)
        left.legend()
    left.set_title(f"ANN recall@{report.k} vs exact search")
    left.set_xlabel("num_candidates")
    left.set_ylabel(f"recall@{report.k}")
    text: Mapping[str, Any] = data["text"] or {"by_language": {}}
    languages = list(text["by_language"])
    keys = [("recall_at_1", "R@1"), ("recall_at_k", f"R@{report.k}"), ("precision_at_k", f"P@{report.k}"),
            ("map_at_k", f"mAP@{report.k}")]
    width = 0.8 / len(keys)
    for i, (key, name) in enumerate(keys):
        right.bar([x + i * width for x in range(len(languages))],
                  [text["by_language"][lang][key] or 0.0 for lang in languages], width, label=name)
    right.set_xticks([x + width * (len(keys) - 1) / 2 for x in range(len(languages))], languages)
    right.set_ylim(0, 1.25)  # headroom for the legend above the bars
    right.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    right.set_title("text to image, per language")
    right.legend(fontsize="small", ncol=len(keys), loc="upper center")
    fig.suptitle(f"toolkit eval: {report.index} ({report.items} images, {report.labels} labels)")
    fig.tight_layout()
    file = Path(file)
    try:
        fig.savefig(file, dpi=100)
    except OSError as exc:
        raise ValidationError(f"--plot {file}: cannot write it ({exc.strerror or exc})", hint="fix --plot") from exc
    finally:
        plt.close(fig)
    return file


__all__ = ["EvalReport", "Labels", "LabeledItem", "evaluate", "exact_query", "figures", "labeled_items",
           "load_labels", "plot", "table_rows"]
