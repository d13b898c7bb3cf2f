"""Ingest: source items -> ids -> (resume check) -> bytes -> decoded + embedded -> bulk -> outcomes.

Generators end to end, each stage bounded, so memory stays flat with the number of items (apart from
the set of ids seen, needed to find duplicates: about 100 bytes an item):

1. ids known from the source (manifest id, Unsplash photo id) are checked for duplicates and, with
   ``resume``, for presence in the index (before anything is downloaded);
2. bytes: local files hashed, URLs downloaded (``fetch``; thread pool, order kept);
3. items without a source id get ``sha256(content)[:32]`` as id, checked the same way;
4. decode + embed (``toolkit.images.embedder.embed_paths``: worker threads overlapped with batched
   inference);
5. bulk actions through the alias (so the index's ``default_pipeline`` embeds captions in the
   cluster) with ``streaming_bulk`` (429s retried with backoff; per-item errors are outcomes, never
   exceptions);
6. after the run, documents of this run on which the pipeline's on-failure handler set
   ``ingest_error`` are counted as failed (stage ``pipeline``).

Stages 1-5a run in a producer thread that hands outcomes and bulk actions to the calling thread
through a bounded queue; the calling thread keeps the ledger and sends the bulk requests. So a chunk
is sent as soon as it is full *or* when nothing new arrived for ``flush_after`` seconds: a slow
download holds back the items after it (order is kept), never the ones already embedded.

Every item ends as indexed, skipped or failed (:mod:`toolkit.ingest.ledger`); failures go to a JSONL
file that ``--retry-failures`` reads back. Ctrl-C (``KeyboardInterrupt``), a lost cluster or any
other error ends the run with what was acknowledged kept, open downloads cut, and every item read
from the source accounted for: items sent without an answer fail at stage ``index`` ("no answer from
the cluster"), items never sent at stage ``not sent``; ``report.interrupted`` / ``report.error`` say
why. ``resume=True`` later skips what is already indexed without embedding it again.

Example::

    report = ingest(client, settings, source=open_source("photos/"))
    print(report.as_json())
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.concurrency import ordered_map
from toolkit.devtools import Request, path, send
from toolkit.errors import DimsMismatch, ImageError, NotFound, ToolkitError, mapped
from toolkit.images.sources import SourceItem, string_dict
from toolkit.ingest.fetch import Downloads, Fetched, FetchError, display_url, fetch
from toolkit.ingest.ledger import (
    SKIP_ALREADY,
    SKIP_DUPLICATE,
    STAGE_NOT_SENT,
    IngestProgress,
    Ledger,
    check_failures_path,
    default_failures_path,
)
from toolkit.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    from elasticsearch import Elasticsearch

    from toolkit.images.embedder import ImageEmbedder

__all__ = ["IngestProgress", "IngestReport", "Work", "bulk_action", "check_index", "content_id", "ingest",
           "load_embedder"]

#: Hex characters of the content sha256 used as document id (128 bits: collisions are not a concern).
CONTENT_ID_CHARS = 32
#: Ids per existence / pipeline-error query.
ID_QUERY_CHUNK = 1000
#: Bulk statuses retried with backoff: the cluster is busy (429) or briefly unavailable.
BULK_RETRY_STATUSES = (429, 502, 503, 504)
#: Seconds without a new item after which a partly filled bulk chunk is sent anyway.
FLUSH_AFTER_SECONDS = 1.0


def content_id(sha256_hex: str) -> str:
    """The document id of an item without a source id: the first 32 hex chars of its content sha256."""
    return sha256_hex[:CONTENT_ID_CHARS]


@dataclass
class Work:
    """One item on its way through the pipeline."""

    item: SourceItem
    id: str | None
    seq: int = 0
    fetched: Fetched | None = None
    width: int | None = None
    height: int | None = None
    id_from_content: bool = False


@dataclass
class IngestReport:
    """The summary of a run. ``seen == indexed + skipped + failed`` always holds.

    ``interrupted`` is true after Ctrl-C; ``error`` holds the error that stopped the run (a lost
    cluster); in both cases what was acknowledged stays indexed and ``--resume`` finishes the rest.
    """

    seen: int
    indexed: int
    skipped: int
    failed: int
    failures_file: str | None
    seconds: float
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    failed_reasons: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[dict[str, str]] = field(default_factory=list)
    """The first few skipped items of each reason: ``{"id", "position", "reason"}``."""
    failed_examples: list[dict[str, str]] = field(default_factory=list)
    """The first few failed items of each stage: ``{"location", "stage", "reason"}``."""
    ignored_files: int = 0
    interrupted: bool = False
    error: ToolkitError | None = None
    failures_write_error: str | None = None
    """Why the failures file could not be written (a full disk); the records are in ``unsaved_failures``."""
    unsaved_failures: list[dict[str, Any]] = field(default_factory=list)
    precision: dict[str, Any] | None = None
    """The image model's precision decision (``PrecisionChoice.as_json``); None when nothing was embedded."""
    vector_encoding: str = "json"
    """How image vectors were sent: ``base64`` (big-endian float32, Elasticsearch 9.3+) or ``json`` arrays."""

    @property
    def images_per_second(self) -> float:
        return round(self.indexed / self.seconds, 2) if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.error is None

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` summary (stable keys, see docs/ingest.md)."""
        return {
            "seen": self.seen, "indexed": self.indexed, "skipped": self.skipped, "failed": self.failed,
            "failures_file": self.failures_file, "seconds": round(self.seconds, 3),
            "images_per_second": self.images_per_second,
            "skipped_reasons": dict(self.skipped_reasons), "failed_reasons": dict(self.failed_reasons),
            "ignored_files": self.ignored_files, "complete": self.complete,
            "error": self.error.message if self.error else ("interrupted" if self.interrupted else None),
            "failures_write_error": self.failures_write_error,
            "unsaved_failures": list(self.unsaved_failures),
            "precision": self.precision, "vector_encoding": self.vector_encoding,
        }


# --------------------------------------------------------------------------------------------- checks

def _walk_field(properties: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = None
    props = properties
    for part in dotted.split("."):
        node = props.get(part)
        if not isinstance(node, dict):
            return None
        props = node.get("properties", {})
    return node


def mapping_request(settings: Settings) -> Request:
    """``GET <alias>/_mapping``."""
    return Request("GET", f"{path(settings.index.alias)}/_mapping")


def check_index(client: Elasticsearch, settings: Settings) -> int:
    """The ``dims`` of the image vector field in the index behind the alias.

    Raises:
        NotFound: the alias/index does not exist (hint: ``toolkit setup``).
        DimsMismatch: the field is missing or is not a ``dense_vector``.

    Example:
        >>> check_index(client, settings)
        512
    """
    alias, fieldname = settings.index.alias, settings.fields.image_vector
    try:
        body = send(client, mapping_request(settings), doing=f"reading the mapping of {alias}")
    except NotFound as exc:
        raise NotFound(f"index '{alias}' does not exist", what="index", name=alias,
                       hint="run `toolkit setup` first (or pass the right --index)") from exc
    for index_name, entry in sorted(body.items()):
        props = (entry.get("mappings") or {}).get("properties") or {}
        node = _walk_field(props, fieldname)
        if node is None or node.get("type") != "dense_vector" or "dims" not in node:
            raise DimsMismatch(
                f"index '{index_name}' has no dense_vector field '{fieldname}' with dims",
                hint="run `toolkit setup` for this alias, or set fields.image_vector to the vector field")
        return int(node["dims"])
    raise NotFound(f"index '{alias}' does not exist", what="index", name=alias,
                   hint="run `toolkit setup` first (or pass the right --index)")


def _check_dims(model_dims: int, index_dims: int, settings: Settings, model: str) -> None:
    if model_dims != index_dims:
        raise DimsMismatch(
            f"image model '{model}' outputs {model_dims} dims but '{settings.index.alias}' field "
            f"'{settings.fields.image_vector}' has dims {index_dims}",
            hint=f"use an image model with {index_dims} dims (--image-model), or recreate the index for "
                 f"{model_dims} dims: set index.image_dims: {model_dims} and use a new --index with "
                 "`toolkit setup`")


def load_embedder(settings: Settings) -> ImageEmbedder:
    """The configured CLIP image embedder (``settings.image_model``), torch threads set for ingest."""
    from toolkit.images.embedder import ClipImageEmbedder

    im = settings.image_model
    # torch keeps every core: on CPU, decoding pauses while a batch runs (see embed_paths).
    return ClipImageEmbedder(im.name, device=im.device, precision=im.precision, strict=im.strict_precision,
                             min_cosine=im.min_cosine.model_dump(), batch_size=im.batch_size)


#: The first Elasticsearch version that accepts a ``dense_vector`` value as a base64 string (ES PR #137072).
BASE64_VECTORS_SINCE = (9, 3)


def vector_encoding(client: Elasticsearch) -> str:
    """``"base64"`` when the cluster (``GET /``) is 9.3 or later, else ``"json"`` (arrays of numbers).

    Base64 of big-endian float32 is about 2.7 KB per 512-dim vector instead of about 6-10 KB of JSON
    numbers, and Elasticsearch parses it much faster (``FloatElement.parseBase64EncodedVector``).
    """
    from toolkit.cluster import parse_version

    body = send(client, Request("GET", "/"), doing="reading the cluster version")
    try:
        version = parse_version(str(body["version"]["number"]))
    except (KeyError, TypeError, ValueError):
        return "json"  # unknown: the format every version accepts
    return "base64" if version[:2] >= BASE64_VECTORS_SINCE else "json"


def encode_vector(vector: np.ndarray, encoding: str) -> list[float] | str:
    """The bulk value of one vector: a JSON array, or base64 of its big-endian float32 bytes.

    Example:
        >>> encode_vector(np.array([1.0, 0.0], dtype=np.float32), "base64")
        'P4AAAAAAAAA='
    """
    if encoding == "base64":
        import base64

        import numpy as np

        return base64.b64encode(np.asarray(vector, dtype=">f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _precision_of(embedder: Any) -> str | None:
    """The precision the embedder runs at (None for embedders that do not say: fakes)."""
    choice = getattr(embedder, "choice", None)
    used = getattr(choice, "used", None)
    return str(used) if used else None


def _decode_workers(settings: Settings) -> int | None:
    """Configured decode threads, or None for embed_paths' own default for the device."""
    return settings.image_model.decode_workers


# ------------------------------------------------------------------------------------------ requests

def existing_ids_request(alias: str, ids: list[str]) -> Request:
    """Which of ``ids`` are indexed without a pipeline error (those are done; others are redone)."""
    return Request("POST", f"{path(alias)}/_search", body={
        "size": len(ids),
        "_source": False,
        "query": {"bool": {"filter": [{"ids": {"values": ids}}],
                           "must_not": [{"exists": {"field": "ingest_error.message"}}]}},
    })


def pipeline_errors_request(alias: str, ids: list[str], settings: Settings) -> Request:
    """Documents among ``ids`` on which the ingest pipeline's on-failure handler set ``ingest_error``."""
    f = settings.fields
    return Request("POST", f"{path(alias)}/_search", body={
        "size": len(ids),
        "_source": [f.path, f.url, f.caption, f.label, f.relation_id, f.metadata, "content_sha256",
                    "ingest_error"],
        "query": {"bool": {"filter": [{"ids": {"values": ids}},
                                      {"exists": {"field": "ingest_error.message"}}]}},
    })


def bulk_action(work: Work, vector: np.ndarray, *, settings: Settings, model: str,
                ingested_at: str, precision: str | None = None, encoding: str = "json") -> dict[str, Any]:
    """The bulk ``index`` action for one embedded item, written through the alias (default pipeline).

    Example:
        >>> bulk_action(work, vector, settings=s, model="clip-ViT-B-32", ingested_at="2025-01-01T00:00:00Z")
        {'_op_type': 'index', '_index': 'images', '_id': '3f2a...', '_source': {...}}
    """
    f, item = settings.fields, work.item
    assert work.fetched is not None and work.id is not None
    body: dict[str, Any] = {f.image_vector: encode_vector(vector, encoding)}
    if item.caption:
        body[f.caption] = item.caption
    if item.is_url:
        body[f.url] = display_url(item.location)  # a password in the URL must not reach every searcher
    else:
        body[f.path] = item.location
    if item.label:
        body[f.label] = item.label
    if item.relation_id:
        body[f.relation_id] = item.relation_id
    if item.metadata:
        body[f.metadata] = dict(item.metadata)
    body["content_sha256"] = work.fetched.sha256
    if work.width and work.height:
        body["width"], body["height"] = work.width, work.height
    body["image_model"] = model
    if precision is not None:
        body["image_precision"] = precision
    body["ingested_at"] = ingested_at
    return {"_op_type": "index", "_index": settings.index.alias, "_id": work.id, "_source": body}


def _bulk_reason(info: dict[str, Any]) -> str:
    error = info.get("error")
    status = info.get("status")
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            text += f" (caused by {cause.get('type', '')}: {cause['reason']})"
    else:
        text = str(error)
    return f"rejected by the cluster ({status}): {text}"


def _image_size(source: bytes | Path) -> tuple[int | None, int | None]:
    """(width, height) as displayed (EXIF orientation applied), from the header only; None if unknown."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(0x0112, 1)
            except Exception:
                orientation = 1
    except Exception:  # decode reports the real problem with its own reason
        return None, None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# -------------------------------------------------------------------------------------------- the run

class _Run:
    """The state of one run: the ledger, ids seen, items open, actions waiting for the cluster's answer.

    The stages (``known_ids`` .. ``actions``) run in the producer thread and never touch the ledger:
    they put ``("skip" | "fail" | "action", ...)`` events on ``events``, which the calling thread
    applies (:meth:`apply`). ``open`` holds every item read from the source without an outcome yet.
    """

    def __init__(self, client: Elasticsearch, settings: Settings, ledger: Ledger, *, resume: bool) -> None:
        self.client, self.settings, self.ledger, self.resume = client, settings, ledger, resume
        self.alias = settings.index.alias
        self.first_seen: dict[str, str] = {}
        self.pending: dict[str, Work] = {}
        self.open: dict[int, Work] = {}
        self.indexed_ids: list[str] = []
        self.downloads = Downloads()
        self.stopping = threading.Event()
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=2 * max(1, settings.ingest.chunk_size))
        self.fetched_q: queue.Queue[tuple[Any, ...]] = queue.Queue(
            maxsize=2 * max(1, settings.image_model.batch_size) + settings.ingest.download_workers)
        self.fetch_done = False
        self.flush_after = FLUSH_AFTER_SECONDS
        self.embedder: Any = None
        self.vector_encoding = "json"

    # -- producer side
    def _skip(self, work: Work, reason: str, detail: str) -> None:
        self.events.put(("skip", work, reason, detail))

    def _fail(self, work: Work, stage: str, reason: str) -> None:
        self.events.put(("fail", work, stage, reason))

    def is_duplicate(self, work: Work) -> bool:
        assert work.id is not None
        first = self.first_seen.get(work.id)
        if first is not None:
            self._skip(work, SKIP_DUPLICATE, f"{SKIP_DUPLICATE} (first seen at {first})")
            return True
        self.first_seen[work.id] = work.item.position or work.item.location
        return False

    def known_ids(self, items: Iterable[SourceItem]) -> Iterator[Work]:
        for seq, item in enumerate(items, start=1):
            work = Work(item=item, id=item.id, seq=seq)
            self.open[seq] = work
            if item.error is not None:  # the source could not give this item (a bad row, a folder)
                self._fail(work, "source", item.error)
                continue
            if work.id is not None and self.is_duplicate(work):
                continue
            yield work
            if self.stopping.is_set():
                return

    def drop_existing(self, works: Iterable[Work], check: Callable[[Work], bool]) -> Iterator[Work]:
        """With ``resume``, skip works whose id is already indexed (checked in chunks, order kept)."""
        if not self.resume:
            yield from works
            return
        batch: list[Work] = []

        def flush() -> Iterator[Work]:
            ids = [w.id for w in batch if check(w) and w.id is not None]
            present: set[str] = set()
            if ids:
                body = send(self.client, existing_ids_request(self.alias, ids),
                            doing="checking which items are already indexed (--resume)")
                present = {hit["_id"] for hit in body.get("hits", {}).get("hits", [])}
            for w in batch:
                if check(w) and w.id in present:
                    self._skip(w, SKIP_ALREADY, f"{SKIP_ALREADY} (--resume)")
                else:
                    yield w

        for work in works:
            batch.append(work)
            if len(batch) >= ID_QUERY_CHUNK:
                yield from flush()
                batch = []
        if batch:
            yield from flush()

    def fetched(self, works: Iterable[Work]) -> Iterator[Work]:
        ing = self.settings.ingest

        def get(work: Work) -> tuple[Fetched, int | None, int | None]:
            got = fetch(work.item.location, timeout=ing.download_timeout, retries=ing.download_retries,
                        max_bytes=ing.max_download_bytes, downloads=self.downloads)
            return (got, *_image_size(got.source))

        for work, result in ordered_map(get, works, workers=ing.download_workers):
            if self.stopping.is_set():
                return  # downloads cut by the stop: this item and those after it stay open (not sent)
            if isinstance(result, FetchError):
                self._fail(work, result.stage, result.reason)
                continue
            if isinstance(result, BaseException):
                self._fail(work, "read", f"{type(result).__name__}: {result}")
                continue
            work.fetched, work.width, work.height = result
            if work.id is None:
                work.id = content_id(work.fetched.sha256)
                work.id_from_content = True
                if self.is_duplicate(work):
                    continue
            yield work

    def actions(self, results: Iterable[tuple[Work, np.ndarray | ImageError]], *, model: str,
                ingested_at: str) -> Iterator[tuple[Work, dict[str, Any]]]:
        for work, result in results:
            if isinstance(result, ImageError):
                self._fail(work, "decode", result.reason)
                continue
            assert work.id is not None
            yield work, bulk_action(work, result, settings=self.settings, model=model, ingested_at=ingested_at,
                                    precision=_precision_of(self.embedder), encoding=self.vector_encoding)

    def pump(self, works: Iterator[Work]) -> None:
        """The fetch thread: source, ids, resume checks and downloads; each work onto ``fetched_q``,
        an exception as ``("error", exc)``, last ``("done",)``. Stops early once ``stopping`` is set."""
        try:
            for work in works:
                self.fetched_q.put(("work", work))
                if self.stopping.is_set():
                    break
        except BaseException as exc:  # handed on to the calling thread, which decides
            self.fetched_q.put(("error", exc))
        finally:
            _close(works)  # in this thread: the download pool stops here
            self.fetched_q.put(("done",))

    def segment(self) -> Iterator[Work]:
        """Fetched works until none came for ``flush_after`` seconds (or the end): the embedder then
        embeds its partial batch, so a slow download never holds back items already downloaded."""
        got_any = False
        while not self.fetch_done and not self.stopping.is_set():
            try:
                event = self.fetched_q.get(timeout=self.flush_after if got_any else None)
            except queue.Empty:
                return
            if event[0] == "done":
                self.fetch_done = True
                return
            if event[0] == "error":
                self.fetch_done = True
                raise event[1]
            got_any = True
            yield event[1]

    def produce(self, embed: Callable[[Iterator[Work]], Iterator[tuple[Work, np.ndarray | ImageError]]],
                fetcher: threading.Thread, *, model: str, ingested_at: str) -> None:
        """The embed thread: one ``embed`` call per segment, every action onto ``events``; an exception
        as ``("error", exc)``; last ``("done",)`` once the fetch thread is done too."""
        try:
            while not self.fetch_done and not self.stopping.is_set():
                embedded = embed(self.segment())
                actions = self.actions(embedded, model=model, ingested_at=ingested_at)
                try:
                    for work, action in actions:
                        self.events.put(("action", work, action))
                        if self.stopping.is_set():
                            break
                finally:
                    _close(actions)
                    _close(embedded)
        except BaseException as exc:  # handed to the calling thread, which decides
            self.events.put(("error", exc))
        finally:
            # Stopped early: let the fetch thread finish (it may wait on a full queue); what it still
            # hands over stays open and is listed as not sent.
            while not self.fetch_done:
                try:
                    event = self.fetched_q.get(timeout=0.1)
                except queue.Empty:
                    if not fetcher.is_alive():
                        break
                    continue
                if event[0] == "done":
                    self.fetch_done = True
            self.events.put(("done",))

    # -- calling thread
    def apply(self, event: tuple[Any, ...]) -> None:
        """Record a ``skip`` or ``fail`` event in the ledger."""
        kind, work = event[0], event[1]
        self.open.pop(work.seq, None)
        if kind == "skip":
            self.ledger.record_skipped(event[2], doc_id=work.id, position=work.item.position, detail=event[3])
        else:
            self.ledger.record_failed(work.item, doc_id=work.id, stage=event[2], reason=event[3])

    def send_chunk(self, chunk: list[tuple[Work, dict[str, Any]]]) -> None:
        """Send one chunk (``streaming_bulk`` retries 429s); record every item's outcome."""
        from elasticsearch.helpers import streaming_bulk

        ing = self.settings.ingest
        for work, _ in chunk:
            assert work.id is not None
            self.pending[work.id] = work
        for ok, info in streaming_bulk(
            self.client, [action for _, action in chunk], chunk_size=len(chunk),
            max_chunk_bytes=ing.max_chunk_bytes, max_retries=ing.max_retries,
            initial_backoff=ing.initial_backoff, max_backoff=ing.max_backoff,
            retry_on_status=BULK_RETRY_STATUSES, raise_on_error=False, raise_on_exception=False,
        ):
            self.outcome(ok, info)

    def outcome(self, ok: bool, info: dict[str, Any]) -> None:
        _, detail = next(iter(info.items()))
        work = self.pending.pop(str(detail.get("_id")), None)
        if work is None:  # not ours (cannot happen with our actions); never count twice
            return
        self.open.pop(work.seq, None)
        if ok:
            self.indexed_ids.append(str(work.id))
            self.ledger.record_indexed()
        else:
            self.ledger.record_failed(work.item, doc_id=work.id, stage="index", reason=_bulk_reason(detail))

    def drain(self, producer: threading.Thread) -> None:
        """After an abort: stop the producer and apply what it still reports (actions are dropped: they
        stay open and fail as not sent). A second Ctrl-C stops waiting."""
        self.stopping.set()
        self.downloads.stop()
        try:
            while producer.is_alive() or not self.events.empty():
                try:
                    event = self.events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if event[0] in ("skip", "fail"):
                    self.apply(event)
                elif event[0] == "done":
                    break
        except KeyboardInterrupt:
            pass  # the producer is a daemon thread: what it still holds stays open, listed below

    def fail_open(self, why: str) -> None:
        """Every item without an outcome when the run stopped, as a failure the next run retries:
        sent without an answer (stage ``index``: it may be indexed) or never sent (``not sent``)."""
        for work in list(self.pending.values()):
            self.open.pop(work.seq, None)
            self.ledger.record_failed(work.item, doc_id=work.id, stage="index",
                                      reason=f"no answer from the cluster before the run stopped ({why}); "
                                             "it may be indexed: --resume checks")
        self.pending.clear()
        for work in sorted(self.open.values(), key=lambda w: w.seq):
            self.ledger.record_failed(work.item, doc_id=None if work.id_from_content else work.id,
                                      stage=STAGE_NOT_SENT,
                                      reason=f"not sent: the run stopped ({why}) before this item was "
                                             "finished; --retry-failures or --resume does it")
        self.open.clear()

    def pipeline_errors(self) -> None:
        """Count as failed this run's documents the pipeline's on-failure handler marked."""
        if not self.indexed_ids:
            return
        f = self.settings.fields
        send(self.client, Request("POST", f"{path(self.alias)}/_refresh"), doing="refreshing the index")
        for start in range(0, len(self.indexed_ids), ID_QUERY_CHUNK):
            ids = self.indexed_ids[start:start + ID_QUERY_CHUNK]
            body = send(self.client, pipeline_errors_request(self.alias, ids, self.settings),
                        doing="looking for ingest pipeline errors")
            for hit in body.get("hits", {}).get("hits", []):
                src = hit.get("_source") or {}
                error = src.get("ingest_error") or {}
                message = error.get("message") if isinstance(error, dict) else str(error)
                metadata = src.get(f.metadata) or {}
                from_content = hit["_id"] == content_id(str(src.get("content_sha256", "")))
                item = SourceItem(
                    location=str(src.get(f.path) or src.get(f.url) or ""),
                    id=None if from_content else hit["_id"],
                    caption=src.get(f.caption), label=src.get(f.label), relation_id=src.get(f.relation_id),
                    metadata=string_dict(metadata),
                    position=self.first_seen.get(hit["_id"], ""))
                self.ledger.reclassify_indexed_as_failed(
                    item, doc_id=hit["_id"], stage="pipeline",
                    reason="ingest pipeline error (document indexed without its caption embedding): "
                           f"{message}")


def ingest(
    client: Elasticsearch,
    settings: Settings,
    *,
    source: Iterable[SourceItem],
    embedder: ImageEmbedder | None = None,
    resume: bool = False,
    failures_file: Path | None = None,
    on_progress: Callable[[IngestProgress], None] | None = None,
    flush_after: float = FLUSH_AFTER_SECONDS,
    on_precision: Callable[[Any], None] | None = None,
) -> IngestReport:
    """Embed and index every item of ``source``; every item ends indexed, skipped or failed.

    Args:
        client: the Elasticsearch client (``toolkit.cluster.make_client``).
        settings: ``index.alias`` (written through), ``fields``, ``ingest`` (bulk and download limits),
            ``image_model`` (used when ``embedder`` is None).
        source: :class:`~toolkit.images.sources.SourceItem` s, e.g. ``open_source("photos/")``.
        embedder: an ``ImageEmbedder``; default: the configured CLIP model, loaded after the index check.
        resume: skip items whose id is already indexed (without a pipeline error), without embedding.
        failures_file: where failed items go (JSONL); default ``toolkit-failures-<timestamp>.jsonl`` in
            the working directory, created only when something fails.
        on_progress: called with the counts after every item's outcome (may raise KeyboardInterrupt).
        flush_after: seconds without a new item after which a partly filled bulk chunk is sent.
        on_precision: called once with the embedder's ``PrecisionChoice`` when the first batch decided it.

    Returns: the :class:`IngestReport`. A lost cluster does not raise: ``report.error`` holds it
        (the caller decides the exit code); Ctrl-C sets ``report.interrupted``.

    Raises:
        NotFound: the index does not exist (``toolkit setup``). DimsMismatch: the model's dims differ
        from the index mapping's. ValidationError: a source that cannot be read, a failures file that
        cannot be written.

    Example:
        >>> report = ingest(client, settings, source=open_source("reverse_image_search.csv"))
        >>> report.seen == report.indexed + report.skipped + report.failed
        True
    """
    from toolkit.images.embedder import embed_paths

    index_dims = check_index(client, settings)
    failures_path = failures_file or default_failures_path()
    check_failures_path(failures_path)  # before the model loads, not at the first failure mid-run
    model = settings.image_model.name
    if embedder is None:
        from toolkit.modelinfo import output_dims

        try:
            early = output_dims(model)
        except ToolkitError:
            early = None  # unreadable without loading it: checked below once loaded
        if early is not None:
            _check_dims(early, index_dims, settings, model)
        embedder = load_embedder(settings)
    model = str(getattr(embedder, "model_name", model))
    _check_dims(int(embedder.dims), index_dims, settings, model)
    encoding = vector_encoding(client)  # base64 vectors from Elasticsearch 9.3 (smaller, parsed faster)

    ledger = Ledger(failures_path=failures_path, on_progress=on_progress, exclusive=failures_file is None)
    run = _Run(client, settings, ledger, resume=resume)
    run.embedder = embedder
    run.vector_encoding = encoding
    if on_precision is not None and hasattr(embedder, "on_choice"):
        embedder.on_choice = on_precision
    ingested_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ing = settings.ingest
    interrupted = False
    error: ToolkitError | None = None
    producer: threading.Thread | None = None
    try:
        if resume:
            # One refresh makes every earlier run's documents visible to the id checks below.
            send(client, Request("POST", f"{path(settings.index.alias)}/_refresh"),
                 doing="refreshing the index")
        works = run.known_ids(source)
        works = run.drop_existing(works, lambda w: not w.id_from_content and w.id is not None)
        works = run.fetched(works)
        works = run.drop_existing(works, lambda w: w.id_from_content)
        chosen: ImageEmbedder = embedder

        def embed(segment: Iterator[Work]) -> Iterator[tuple[Work, np.ndarray | ImageError]]:
            return embed_paths(segment, chosen, workers=_decode_workers(settings),
                               source=lambda w: w.fetched.source,  # type: ignore[union-attr]
                               max_pixels=ing.max_image_pixels)

        run.flush_after = flush_after
        fetcher = threading.Thread(target=run.pump, args=(works,), name="toolkit-ingest-fetch", daemon=True)
        producer = threading.Thread(target=run.produce, args=(embed, fetcher),
                                    kwargs={"model": model, "ingested_at": ingested_at},
                                    name="toolkit-ingest-embed", daemon=True)
        fetcher.start()
        producer.start()
        chunk: list[tuple[Work, dict[str, Any]]] = []
        with mapped("indexing (bulk)"):
            while True:
                try:
                    event = run.events.get(timeout=flush_after if chunk else None)
                except queue.Empty:  # nothing new for a while (a slow download): send what is ready
                    run.send_chunk(chunk)
                    chunk = []
                    continue
                if event[0] == "done":
                    break
                if event[0] == "error":
                    raise event[1]
                if event[0] == "action":
                    chunk.append((event[1], event[2]))
                    if len(chunk) >= max(1, ing.chunk_size):
                        run.send_chunk(chunk)
                        chunk = []
                else:
                    run.apply(event)
            if chunk:
                run.send_chunk(chunk)
        producer = None
        run.pipeline_errors()
    except KeyboardInterrupt:
        interrupted = True
        ledger.on_progress = None  # the callback that raised must not run again while we clean up
        _stop(run, producer, "interrupted")
    except ToolkitError as exc:
        if not ledger.seen and not run.pending and not run.open:
            _stop(run, producer, None)
            raise  # nothing happened yet: a plain error (bad source, cluster down from the start)
        error = exc
        ledger.on_progress = None
        _stop(run, producer, exc.message)
    except Exception as exc:  # anything else: still account for every item, then say what happened
        error = ToolkitError(f"the run stopped on an unexpected error: {type(exc).__name__}: {exc}",
                             hint="the items not finished are in the failures file; fix the cause, then "
                                  "run the same command with --resume")
        error.__cause__ = exc
        ledger.on_progress = None
        _stop(run, producer, f"{type(exc).__name__}")
    finally:
        run.downloads.stop()
        ledger.close()
    return report_from(ledger, source, interrupted=interrupted, error=error, precision=_choice_json(embedder),
                       vector_encoding=run.vector_encoding)


def report_from(ledger: Ledger, source: Any, *, interrupted: bool, error: ToolkitError | None,
                precision: dict[str, Any] | None, vector_encoding: str) -> IngestReport:
    """The run's summary from its ledger: one place for the local and the Ray engine."""
    return IngestReport(
        seen=ledger.seen, indexed=ledger.indexed, skipped=ledger.skipped, failed=ledger.failed,
        failures_file=str(ledger.failures_file) if ledger.failures_file else None,
        seconds=ledger.progress().seconds,
        skipped_reasons=dict(ledger.skipped_reasons), failed_reasons=dict(ledger.failed_reasons),
        skipped_examples=list(ledger.skipped_examples), failed_examples=list(ledger.failed_examples),
        ignored_files=int(getattr(source, "ignored_files", 0)),
        interrupted=interrupted, error=error,
        failures_write_error=ledger.write_error, unsaved_failures=list(ledger.unsaved),
        precision=precision, vector_encoding=vector_encoding,
    )


def _choice_json(embedder: Any) -> dict[str, Any] | None:
    choice = getattr(embedder, "choice", None)
    as_json = getattr(choice, "as_json", None)
    return dict(as_json()) if callable(as_json) else None


def _close(stage: object) -> None:
    """Close a generator stage now (its threads stop), not whenever it is collected."""
    close = getattr(stage, "close", None)
    if close is not None:
        close()


def _stop(run: _Run, producer: threading.Thread | None, why: str | None) -> None:
    """Stop the producer (cutting downloads) and, with ``why``, fail every item still open."""
    if producer is not None:
        run.drain(producer)
    else:
        run.stopping.set()
        run.downloads.stop()
    if why is not None:
        run.fail_open(why)
