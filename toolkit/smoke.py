"""``toolkit smoke``: the end-to-end check a platform team runs in CI against its cluster.

Checks, in order (a check that needs an earlier one that failed is reported "not run" and fails):

1. ``reachable``, ``version``, ``license``, ``ml_nodes``, ``model_started``: the matching
   ``toolkit doctor`` checks (one doctor run; its time is on ``reachable``).

The later checks need the earlier ones (``index_images`` needs ``model_started`` and ``pipeline``;
the queries need ``index_images``), so one broken piece fails once, precisely, and the checks after
it say "not run: needs <check>".
2. ``pipeline``: ``_simulate`` of the configured caption pipeline (``index.pipeline``) on a caption
   returns a caption vector of ``index.caption_dims`` dims.
3. ``index_images``: a temporary index ``toolkit-smoke-<random>`` is created from the same asset files
   as ``toolkit setup`` (templates and pipeline renamed after it, so nothing of the user's is touched)
   and the bundled photos are ingested into it with the configured image model; every photo must be
   indexed with its caption embedded by the cluster.
4. ``text_query``: a text query (``query_vector_builder``, embedded by the deployed model) must return
   first the photo whose stored image vector is nearest, by the index similarity, to the cluster's own
   ``_infer`` embedding of the text, with that score. This holds for any model, random ones included,
   and proves the query path end to end.
5. ``image_query``: the bundled cat photo, embedded locally, must find itself first.
6. ``semantic`` (default real models only, or ``semantic=True``): "a cat" finds the cat, "eine Tasse
   Kaffee" the coffee, "a rocket on the launch pad" the rocket.
7. ``cleanup``: the temporary index, templates and pipeline are deleted (kept with ``keep=True``).

Example::

    report = run_smoke(make_client(settings), settings)
    print(report.verdict())          # smoke: PASS 10/10 checks in 12.3s
"""

from __future__ import annotations

import math
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import assets as asset_mod
from toolkit import datasets
from toolkit import search as s
from toolkit.devtools import Request, path, send
from toolkit.errors import DimsMismatch, NotFound, RequestFailed, ToolkitError
from toolkit.settings import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: The caption the pipeline check embeds.
PIPELINE_CAPTION = "a cat sitting on a wooden table"
# Longer than the text model's 128 tokens: Elasticsearch truncates it and says so (is_truncated).
LONG_CAPTION = " ".join(["a cat sitting on a wooden table next to a window in the morning light"] * 12)
#: The text of the model-agnostic text query check.
TEXT_QUERY = "a cat"
#: The bundled photo the image query searches with (it must find itself).
IMAGE_QUERY_PHOTO = "cat"
#: (text, expected first hit) with the default real models: English and German.
SEMANTIC_QUERIES: tuple[tuple[str, str], ...] = (
    ("a cat", "cat"),
    ("eine Tasse Kaffee", "coffee"),
    ("a rocket on the launch pad", "rocket"),
)
#: How far (on the ``_score`` scale) a hit may be from the exact score and still count: quantized
#: vectors (int8_hnsw, the default) score approximately.
SCORE_TOLERANCE = 0.02
NAME_PREFIX = "toolkit-smoke-"
DOCTOR_CHECKS = (("reachable", "reachable"), ("version", "version"), ("license", "license"),
                 ("ml_nodes", "ml_nodes"), ("model_started", "text_model"))


@dataclass
class SmokeCheck:
    """One check's outcome. ``fix`` says what to do when it failed (not part of ``--json``)."""

    name: str
    passed: bool
    message: str
    seconds: float
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message,
                "seconds": round(self.seconds, 3)}


@dataclass
class SmokeReport:
    """All checks of a run; ``index`` is the temporary index's alias (and its templates' name)."""

    checks: list[SmokeCheck]
    seconds: float
    index: str
    kept: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[SmokeCheck]:
        return [c for c in self.checks if not c.passed]

    def verdict(self) -> str:
        """One line: ``smoke: PASS 10/10 checks in 12.3s`` or ``smoke: FAIL <check>: <message>``."""
        if self.passed:
            return f"smoke: PASS {len(self.checks)}/{len(self.checks)} checks in {self.seconds:.1f}s"
        first = self.failures[0]
        more = len(self.failures) - 1
        suffix = f" (+{more} more failed)" if more else ""
        return f"smoke: FAIL {first.name}: {first.message}{suffix}"

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` shape: ``{"passed", "checks": [{"name", "passed", "message", "seconds"}], "seconds"}``."""
        return {"passed": self.passed, "checks": [c.as_json() for c in self.checks],
                "seconds": round(self.seconds, 3)}

    def junit_xml(self, *, scrub: Callable[[str], str] = lambda text: text) -> str:
        """The report as JUnit XML: one ``testsuite``, one ``testcase`` per check, ``failure`` elements.

        ``scrub`` is applied to every message (the CLI passes its secret scrubber).
        """
        import xml.etree.ElementTree as ET

        suite = ET.Element("testsuite", {
            "name": "toolkit smoke", "tests": str(len(self.checks)), "failures": str(len(self.failures)),
            "errors": "0", "skipped": "0", "time": f"{self.seconds:.3f}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        })
        for check in self.checks:
            case = ET.SubElement(suite, "testcase", {"classname": "toolkit.smoke", "name": check.name,
                                                     "time": f"{check.seconds:.3f}"})
            message = scrub(check.message)
            if check.passed:
                ET.SubElement(case, "system-out").text = message
            else:
                failure = ET.SubElement(case, "failure", {"message": message, "type": "CheckFailed"})
                failure.text = message + (f"\nfix: {scrub(check.fix)}" if check.fix else "")
        ET.indent(suite)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


class _Checks:
    """Runs checks one after another, timing them and turning errors into failed checks."""

    def __init__(self, on_check: Callable[[SmokeCheck], None] | None) -> None:
        self.results: list[SmokeCheck] = []
        self.on_check = on_check

    def ok(self, name: str) -> bool:
        return any(c.name == name and c.passed for c in self.results)

    def add(self, check: SmokeCheck) -> None:
        self.results.append(check)
        if self.on_check:
            self.on_check(check)

    def run(self, name: str, fn: Callable[[], str], *, needs: Sequence[str] = ()) -> bool:
        missing = [n for n in needs if not self.ok(n)]
        if missing:
            self.add(SmokeCheck(name, False, f"not run: needs {missing[0]}", 0.0,
                                f"fix {missing[0]} first"))
            return False
        start = time.monotonic()
        try:
            message, passed, fix = fn(), True, None
        except ToolkitError as exc:
            message, passed, fix = exc.message, False, exc.hint
        except Exception as exc:  # a smoke test reports everything; the traceback is not the point
            message, passed, fix = f"{type(exc).__name__}: {exc}", False, None
        self.add(SmokeCheck(name, passed, message, time.monotonic() - start, fix))
        return passed


def _doctor_checks(client: Elasticsearch, settings: Settings, checks: _Checks) -> None:
    from toolkit import doctor

    start = time.monotonic()
    try:
        results = {c.name: c for c in doctor.run_checks(client, settings)}
    except ToolkitError as exc:
        checks.add(SmokeCheck("reachable", False, exc.message, time.monotonic() - start, exc.hint))
        for name, _ in DOCTOR_CHECKS[1:]:
            checks.add(SmokeCheck(name, False, "not run: needs reachable", 0.0))
        return
    elapsed = time.monotonic() - start
    auth = results.get("auth")
    for i, (name, doctor_name) in enumerate(DOCTOR_CHECKS):
        found = results.get(doctor_name)
        if name == "reachable" and found and found.status == "ok" and auth and auth.status == "fail":
            found = auth  # reachable but refused: say so on the first check
        seconds = elapsed if i == 0 else 0.0
        if found is None:
            checks.add(SmokeCheck(name, False, f"doctor has no '{doctor_name}' check", seconds))
        elif found.status in ("ok", "warn"):
            checks.add(SmokeCheck(name, True, found.message, seconds))
        elif found.status == "skip":
            checks.add(SmokeCheck(name, False, f"not run: {found.message.removeprefix('skipped: ')}", seconds,
                                  found.fix))
        else:
            checks.add(SmokeCheck(name, False, found.message, seconds, found.fix))


def simulate_request(pipeline: str, caption_field: str, caption: str = PIPELINE_CAPTION) -> Request:
    """``POST _ingest/pipeline/<pipeline>/_simulate`` with one document holding ``caption``."""
    return Request("POST", f"_ingest/pipeline/{path(pipeline)}/_simulate",
                   body={"docs": [{"_source": {caption_field: caption}}]})


def check_pipeline(client: Elasticsearch, settings: Settings) -> str:
    """Simulate the caption pipeline; raise with the precise problem (missing, model error, dims)."""
    name, f = settings.index.pipeline, settings.fields
    try:
        body = send(client, simulate_request(name, f.caption), doing=f"simulating ingest pipeline {name}")
    except (NotFound, RequestFailed) as exc:
        # Elasticsearch answers _simulate of a missing pipeline with 400 "pipeline [x] does not exist".
        if isinstance(exc, RequestFailed) and "does not exist" not in (exc.reason or ""):
            raise
        raise NotFound(f"ingest pipeline '{name}' does not exist", what="pipeline", name=name,
                       hint="run `toolkit setup` (it installs the pipeline)") from exc
    docs = body.get("docs") or [{}]
    doc = docs[0]
    if "error" in doc:
        error = doc["error"]
        raise ToolkitError(f"pipeline '{name}' failed: {error.get('reason', error)}",
                           hint="run `toolkit doctor`; `toolkit setup` reinstalls the pipeline")
    source = (doc.get("doc") or {}).get("_source") or {}
    failure = s.field_value(source, "ingest_error.message")
    if failure:
        raise ToolkitError(f"pipeline '{name}' could not embed the caption: {failure}",
                           hint="the text model must be deployed and started: `toolkit deploy-model`")
    vector = s.field_value(source, f.caption_vector)
    if not isinstance(vector, list) or not vector:
        raise ToolkitError(f"pipeline '{name}' returned no '{f.caption_vector}' for a caption",
                           hint="run `toolkit setup` to reinstall the pipeline from the asset files")
    want = settings.index.caption_dims
    if len(vector) != want:
        raise DimsMismatch(f"pipeline '{name}' embeds captions with {len(vector)} dims but index.caption_dims "
                           f"is {want}",
                           hint=f"set index.caption_dims: {len(vector)} and run `toolkit setup` for a new index, "
                                f"or deploy a text model with {want} dims")
    # Elasticsearch writes more than the vector (model_id; is_truncated for a long caption): every field
    # the pipeline leaves must be mapped, or a strict index rejects the document after the pipeline ran.
    long_body = send(client, simulate_request(name, f.caption, LONG_CAPTION),
                     doing=f"simulating ingest pipeline {name}")
    long_source = ((long_body.get("docs") or [{}])[0].get("doc") or {}).get("_source") or {}
    mapped = set(asset_mod.template_properties(asset_mod.load_assets(settings)))
    unmapped = sorted((set(source) | set(long_source)) - mapped)
    if unmapped:
        raise ToolkitError(f"pipeline '{name}' writes {', '.join(unmapped)}, which the index mapping does not "
                           "map: a strict index rejects every document with a caption",
                           hint="run `toolkit setup` (it updates the pipeline and the index mapping)")
    return f"'{name}' embeds a caption into {len(vector)} dims with '{settings.text_model.cluster_deployment_id}'"


def temporary_settings(settings: Settings, name: str) -> Settings:
    """The settings of the temporary index: alias, template and pipeline names are ``name``."""
    tmp = settings.model_copy(deep=True)
    tmp.index.alias = name
    tmp.index.template_name = name
    tmp.index.pipeline = name
    return tmp


def temporary_assets(tmp: Settings) -> list[asset_mod.Asset]:
    """The setup assets rendered for the temporary index (same files, names from ``tmp``).

    The index template's priority is raised by one: Elasticsearch refuses two templates of the same
    priority whose patterns overlap (a user alias ``toolkit`` would match ``toolkit-smoke-*``).
    """
    out = []
    for asset in asset_mod.load_assets(tmp):
        if asset.kind == "index_template":
            body = dict(asset.body)
            body["priority"] = int(body.get("priority") or 0) + 1
            asset = asset_mod.Asset(asset.kind, asset.name, body, asset.source)
        out.append(asset)
    return out


def stored_vectors(client: Elasticsearch, tmp: Settings) -> dict[str, dict[str, Any]]:
    """Every document of the temporary index: id -> ``_source`` with its vectors."""
    f = tmp.fields
    body = send(client, Request("POST", f"{path(tmp.index.alias)}/_search", body={
        "size": 100, "query": {"match_all": {}},
        "_source": {"exclude_vectors": False, "includes": [f.image_vector, f.caption_vector, f.caption]},
    }), doing="reading the temporary index")
    return {h["_id"]: h.get("_source") or {} for h in body.get("hits", {}).get("hits", [])}


def similarity_score(similarity: str, a: Sequence[float], b: Sequence[float]) -> float:
    """The ``_score`` Elasticsearch gives a kNN hit, by the field's similarity (exact, not quantized).

    Example::

        similarity_score("cosine", [1, 0], [1, 0])   # 1.0
    """
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    if similarity == "cosine":
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
        return (1 + dot / (na * nb)) / 2 if na and nb else 0.0
    if similarity == "dot_product":
        return (1 + dot) / 2
    if similarity == "l2_norm":
        return 1 / (1 + sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
    return 1 / (1 - dot) if dot < 0 else dot + 1  # max_inner_product


@contextmanager
def _quiet_failures() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="toolkit-smoke-") as work:
        yield Path(work) / "failures.jsonl"


def run_smoke(client: Elasticsearch, settings: Settings, *, keep: bool = False, name: str | None = None,
              semantic: bool | None = None, embedder: Any = None,
              on_check: Callable[[SmokeCheck], None] | None = None) -> SmokeReport:
    """Run every smoke check against the cluster (see the module docstring) and report.

    Args:
        client: the official client.
        settings: the effective settings (text model, pipeline, dims, image model).
        keep: leave the temporary index, templates and pipeline in the cluster.
        name: the temporary index's alias (default ``toolkit-smoke-<8 hex>``).
        semantic: run the semantic check; None: only with the default real models.
        embedder: an already loaded image embedder (default: the configured one, loaded once).
        on_check: called with each check as soon as it is done (progress).

    Example::

        report = run_smoke(client, settings, keep=True)
        report.passed, report.index
    """
    start = time.monotonic()
    name = name or f"{NAME_PREFIX}{secrets.token_hex(4)}"
    tmp = temporary_settings(settings, name)
    checks = _Checks(on_check)
    state: dict[str, Any] = {"embedder": embedder}
    created: list[asset_mod.Asset] = []
    if semantic is None:
        semantic = (settings.text_model.hub_id == DEFAULT_TEXT_MODEL
                    and settings.image_model.name == DEFAULT_IMAGE_MODEL)

    def get_embedder() -> Any:
        if state["embedder"] is None:
            from toolkit.ingest import load_embedder

            state["embedder"] = load_embedder(settings)
        return state["embedder"]

    def index_images() -> str:
        from toolkit.ingest import ingest

        for asset in temporary_assets(tmp):
            created.append(asset)
            send(client, asset.request, doing=f"creating the temporary {asset.kind.replace('_', ' ')}")
        with _quiet_failures() as failures:
            report = ingest(client, tmp, source=datasets.sample_source(), embedder=get_embedder(),
                            failures_file=failures)
        if report.error is not None:
            raise report.error
        if report.failed or not report.indexed:
            reasons = "; ".join(f"{reason} ({n})" for reason, n in report.failed_reasons.items())
            raise ToolkitError(f"{report.failed} of {report.seen} photos failed to index: {reasons or 'none'}",
                               hint="see the reason; `toolkit doctor` checks the pieces one by one")
        send(client, Request("POST", f"{path(name)}/_refresh"), doing="refreshing the temporary index")
        docs = stored_vectors(client, tmp)
        state["docs"] = docs
        missing = [doc_id for doc_id, src in docs.items() if src.get(settings.fields.caption)
                   and not s.field_value(src, settings.fields.caption_vector)]
        if len(docs) != report.indexed:
            raise ToolkitError(f"{report.indexed} photos indexed but {len(docs)} found in {name}")
        if missing:
            raise ToolkitError(f"captions of {', '.join(sorted(missing))} were not embedded by the pipeline",
                               hint="check the pipeline (`toolkit setup`) and the text model")
        return (f"{report.indexed} photos indexed into {tmp.index.first_index} with "
                f"'{getattr(state['embedder'], 'model_name', settings.image_model.name)}', captions embedded "
                "by the cluster")

    def text_query() -> str:
        from toolkit.textmodel.parity import cluster_embeddings

        deployment = settings.text_model.cluster_deployment_id
        embedding = cluster_embeddings(client, deployment, [TEXT_QUERY])[0]
        docs: dict[str, dict[str, Any]] = state["docs"]
        field_name = settings.fields.image_vector
        vectors = {doc_id: s.field_value(src, field_name) for doc_id, src in docs.items()}
        dims = {len(v) for v in vectors.values() if isinstance(v, list)}
        if dims and len(embedding) not in dims:
            raise DimsMismatch(f"the text model '{deployment}' outputs {len(embedding)} dims but the image "
                               f"vectors have {dims.pop()}: text queries cannot search the images",
                               hint="use a text model and an image model of the same CLIP family "
                                    "(the defaults match)")
        similarity = settings.index.similarity
        expected = {doc_id: similarity_score(similarity, embedding, v) for doc_id, v in vectors.items()
                    if isinstance(v, list)}
        result = s.run(client, s.text_query(TEXT_QUERY, tmp, s.SearchOptions(k=3)))
        if not result.hits:
            raise ToolkitError(f"the text query '{TEXT_QUERY}' returned no hits")
        top = result.hits[0]
        best_id = max(expected, key=lambda k: expected[k])
        if expected.get(top.id, -math.inf) < expected[best_id] - SCORE_TOLERANCE:
            raise ToolkitError(
                f"the text query '{TEXT_QUERY}' returned '{top.id}' first, but '{best_id}' is nearest to the "
                f"cluster's _infer embedding of the text (score {expected[best_id]:.4f} vs "
                f"{expected.get(top.id, float('nan')):.4f})",
                hint="query_vector_builder must use the deployment the pipeline uses (text_model.deployment_id)")
        if top.score is not None and abs(top.score - expected[top.id]) > SCORE_TOLERANCE:
            raise ToolkitError(
                f"the text query scored '{top.id}' {top.score:.4f} but its vector scores {expected[top.id]:.4f} "
                "against the cluster's _infer embedding: the query was embedded differently",
                hint="check text_model.deployment_id and the index similarity")
        return f"'{TEXT_QUERY}' -> {top.id} (score {top.score or 0:.4f}), the image nearest the model's embedding"

    def image_query() -> str:
        photo = datasets.sample_photo(IMAGE_QUERY_PHOTO)
        vector = s.embed_query_image(photo, tmp, embedder=get_embedder())
        result = s.run(client, s.image_query(vector, tmp, s.SearchOptions(k=3)))
        ids = [h.id for h in result.hits]
        if not ids:
            raise ToolkitError(f"the image query with {photo.name} returned no hits")
        scores = {h.id: h.score or 0.0 for h in result.hits}
        top = result.hits[0]
        if top.id != IMAGE_QUERY_PHOTO and scores.get(IMAGE_QUERY_PHOTO, -math.inf) < (top.score or 0) - 1e-5:
            raise ToolkitError(f"the image query with {photo.name} returned {ids} instead of "
                               f"'{IMAGE_QUERY_PHOTO}' itself first",
                               hint="query images must be embedded with the model the index was built with "
                                    "(image_model.name)")
        return f"{photo.name} -> {top.id} (score {top.score or 0:.4f})"

    def semantic_check() -> str:
        found = []
        for text, want in SEMANTIC_QUERIES:
            result = s.run(client, s.text_query(text, tmp, s.SearchOptions(k=1)))
            got = result.hits[0].id if result.hits else None
            if got != want:
                raise ToolkitError(f"'{text}' returned {got!r} first, expected {want!r}",
                                   hint="the default models should find it; check text_model.hub_id and "
                                        "image_model.name belong together")
            found.append(f"'{text}' -> {got}")
        return ", ".join(found)

    def cleanup() -> str:
        if not created:
            # Say so rather than claim to have kept or removed an index that never existed.
            return f"nothing to remove: the temporary index {tmp.index.first_index} was never created"
        if keep:
            return (f"kept {tmp.index.first_index} (alias {name}), its templates and pipeline {name}; "
                    f"DELETE {tmp.index.first_index} when done")
        removed = []
        if _delete(client, tmp.index.first_index):
            removed.append(f"index {tmp.index.first_index}")
        for asset in sorted(created, key=lambda a: ("index_template", "component_template", "pipeline",
                                                    "index").index(a.kind)):
            if asset.kind != "index" and _delete(client, asset.request.path):
                removed.append(f"{asset.kind.replace('_', ' ')} {asset.name}")
        return "removed " + (", ".join(removed) or "nothing (none of it was left)")

    try:
        _doctor_checks(client, settings, checks)
        checks.run("pipeline", lambda: check_pipeline(client, settings), needs=("reachable",))
        checks.run("index_images", index_images, needs=("model_started", "pipeline"))
        checks.run("text_query", text_query, needs=("index_images",))
        checks.run("image_query", image_query, needs=("index_images",))
        if semantic:
            checks.run("semantic", semantic_check, needs=("index_images",))
    finally:
        if checks.ok("reachable") or created:
            checks.run("cleanup", cleanup)
    return SmokeReport(checks=checks.results, seconds=time.monotonic() - start, index=name, kept=keep)


def _delete(client: Elasticsearch, target: str) -> bool:
    """DELETE a resource; absent is fine (cleanup after a partial run). True when it existed."""
    try:
        send(client, Request("DELETE", target), doing=f"deleting {target}")
    except NotFound:
        return False
    return True
