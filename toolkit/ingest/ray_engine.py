"""The ingest on a Ray cluster: the local engine's stages as Ray Data operators.

The engine decides where a stage runs, never what it does: every stage is the local engine's function.

- driver: the source (``open_source``), source ids, duplicates, ``--resume`` checks of source ids
  (``existing_ids_request``), the ledger and failures file (:class:`~toolkit.ingest.ledger.Ledger`),
  bulk actions (``bulk_action``) sent with ``streaming_bulk`` by ``writers`` threads (429s retried
  with backoff, per-item outcomes), the pipeline-error check and the summary (``IngestReport``);
- Ray CPU tasks (``map_batches(_fetch_batch)``): bytes (``fetch``: files hashed, URLs downloaded),
  content ids (``content_id``), the ``--resume`` check of content ids;
- a Ray actor pool (``map_batches(_EmbedActor)``): decode + embed (``embed_paths`` with one embedder
  per actor: ``load_embedder`` and so the same precision logic, or ``embedder_factory``); one GPU per
  actor when the cluster has GPUs and ``image_model.device`` allows it.

Exactly-once by construction: document ids are source or content ids, results reach the driver in
source order (``preserve_order``) and each item's outcome is recorded once there. An actor that dies
is restarted and its batch retried by Ray (``max_restarts``/``max_task_retries``); only the
successful attempt's rows come back, and a retried bulk of the same id overwrites the same
document. ``seen == indexed + skipped + failed`` holds across the cluster because only the driver
counts. The source is read in windows of ``window`` items (one Ray Dataset each), so the driver's
memory stays bounded by the window.

Example::

    report = ingest_ray(client, settings, source=open_source("photos/"), options=RayOptions(address="auto"))
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.concurrency import ordered_map
from toolkit.devtools import Request, path, send
from toolkit.errors import ImageError, ToolkitError, ValidationError, mapped
from toolkit.images.sources import SourceItem
from toolkit.ingest import (
    BULK_RETRY_STATUSES,
    ID_QUERY_CHUNK,
    IngestReport,
    Work,
    _check_dims,
    _choice_json,
    _image_size,
    _Run,
    bulk_action,
    check_index,
    content_id,
    existing_ids_request,
    load_embedder,
    report_from,
    vector_encoding,
)
from toolkit.ingest.fetch import Fetched, FetchError, fetch
from toolkit.ingest.ledger import (
    SKIP_ALREADY,
    SKIP_DUPLICATE,
    IngestProgress,
    Ledger,
    check_failures_path,
    default_failures_path,
)
from toolkit.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from toolkit.images.embedder import ImageEmbedder

__all__ = ["RAY_INSTALL_HINT", "RayOptions", "ingest_ray", "import_ray"]

RAY_INSTALL_HINT = 'install the Ray extra: pip install "toolkit[ray]" (or pip install "ray[data]")'
#: Items per Ray Dataset: the driver holds at most this many items (and their outcomes) at once.
DEFAULT_WINDOW = 10_000
#: Items per fetch task.
FETCH_BATCH = 64
#: The stage of rows an actor could not embed because its model did not load (the error as JSON).
MODEL_ERROR = "model error"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs.

    ``address``: ``None`` starts a local Ray (or uses the one this process already joined), ``"auto"``
    joins the cluster of this node, ``"ray://head:10001"`` a remote cluster through Ray Client.
    ``embed_actors``: model replicas (default: one per GPU, else one per 2 CPUs, at least 1).
    ``writers``: bulk requests in flight at once. ``window``: items per Ray Dataset.
    """

    address: str | None = None
    embed_actors: int | None = None
    writers: int = 1
    window: int = DEFAULT_WINDOW
    fetch_batch: int = FETCH_BATCH


def import_ray() -> Any:
    """``ray`` with Ray Data, or a ValidationError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ValidationError(f"--engine ray needs Ray Data, which is not installed ({exc})",
                              hint=RAY_INSTALL_HINT) from exc
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail at once when ``HOST:PORT`` / ``ray://HOST:PORT`` does not accept a connection.

    ``ray.init`` retries an unreachable address for minutes and then fails without a clear word;
    ``None`` (start Ray here) and ``auto`` (find the local node) have no address to check.
    """
    if not address or address == "auto":
        return
    import socket

    from toolkit.errors import ConnectionFailed

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # not a HOST:PORT form: let Ray say what it makes of it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionFailed(f"cannot join the Ray cluster at {address}: nothing answers there "
                               f"({exc.strerror or exc})",
                               hint="check --ray-address (auto on a cluster node, ray://HEAD:10001 from "
                                    "outside), or drop it to start Ray on this machine") from exc


def connect(ray: Any, address: str | None) -> bool:
    """Join (or start) Ray; True when this call started it (so the run shuts it down after)."""
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError, RuntimeError, grpc errors: one message
        from toolkit.errors import ConnectionFailed

        raise ConnectionFailed(f"cannot join the Ray cluster at {address or 'local'}: {type(exc).__name__}: {exc}",
                               hint="check --ray-address (auto on a cluster node, ray://HEAD:10001 from "
                                    "outside), or drop it to start Ray on this machine") from exc
    return True


# ------------------------------------------------------------------------- stages run by Ray workers

def _fetch_batch(batch: dict[str, Any], *, settings: Settings, resume: bool) -> dict[str, list[Any]]:
    """Ray CPU task: the local engine's fetch stage (``fetch``, ``_image_size``, ``content_id``) on a
    batch of rows; with ``resume`` the content ids already indexed are marked (``skip``)."""
    ing = settings.ingest
    rows = [{"seq": int(s), "location": str(loc), "id": str(i)}
            for s, loc, i in zip(batch["seq"], batch["location"], batch["id"], strict=True)]

    def get(row: dict[str, Any]) -> tuple[Fetched, int | None, int | None]:
        got = fetch(row["location"], timeout=ing.download_timeout, retries=ing.download_retries,
                    max_bytes=ing.max_download_bytes)
        return (got, *_image_size(got.source))

    out: dict[str, list[Any]] = {k: [] for k in (
        "seq", "id", "from_content", "sha256", "size", "data", "path", "width", "height", "stage", "reason")}
    for row, result in ordered_map(get, rows, workers=max(1, ing.download_workers)):
        stage = reason = ""
        got: Fetched | None = None
        width = height = None
        if isinstance(result, FetchError):
            stage, reason = result.stage, result.reason
        elif isinstance(result, BaseException):
            stage, reason = "read", f"{type(result).__name__}: {result}"
        else:
            got, width, height = result
        doc_id, from_content = row["id"], False
        if got is not None and not doc_id:
            doc_id, from_content = content_id(got.sha256), True
        out["seq"].append(row["seq"])
        out["id"].append(doc_id)
        out["from_content"].append(from_content)
        out["sha256"].append(got.sha256 if got else "")
        out["size"].append(got.size if got else 0)
        out["data"].append(got.data if got and got.data is not None else b"")
        out["path"].append(str(got.path) if got and got.path is not None else "")
        out["width"].append(width or 0)
        out["height"].append(height or 0)
        out["stage"].append(stage)
        out["reason"].append(reason)
    if resume:
        _mark_existing(out, settings)
    return out


def _mark_existing(out: dict[str, list[Any]], settings: Settings) -> None:
    """``--resume`` for content ids (known only once hashed): mark those indexed as stage ``skip``."""
    from toolkit.cluster import make_client

    wanted = [i for i, (from_content, stage) in enumerate(zip(out["from_content"], out["stage"], strict=True))
              if from_content and not stage]
    if not wanted:
        return
    client = make_client(settings)
    try:
        ids = [out["id"][i] for i in wanted]
        present: set[str] = set()
        for start in range(0, len(ids), ID_QUERY_CHUNK):
            body = send(client, existing_ids_request(settings.index.alias, ids[start:start + ID_QUERY_CHUNK]),
                        doing="checking which items are already indexed (--resume)")
            present |= {hit["_id"] for hit in body.get("hits", {}).get("hits", [])}
    finally:
        client.close()
    for i in wanted:
        if out["id"][i] in present:
            out["stage"][i] = "skip"


class _EmbedActor:
    """Ray actor: one embedder (one model) per actor; decode + embed with ``embed_paths``."""

    def __init__(self, *, settings: Settings, factory: Callable[[], ImageEmbedder] | None) -> None:
        self.settings = settings
        self.reported_choice = False
        # A model that cannot load is handed to the driver with the first batch (stage ``model error``),
        # which raises it there with its type and hint: Ray keeps restarting an actor whose constructor
        # fails, and a raised error loses its type on the way (Ray wraps it; its cause is not pickled).
        self.load_error: ToolkitError | None = None
        try:
            self.embedder = factory() if factory is not None else load_embedder(settings)
        except ToolkitError as exc:
            self.load_error = exc

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        if self.load_error is not None:
            err = self.load_error
            return {"seq": list(batch["seq"]), "stage": [MODEL_ERROR] * len(batch["seq"]),
                    "reason": [json.dumps({"type": type(err).__name__, "message": err.message, "hint": err.hint})]
                    * len(batch["seq"])}

        from toolkit.images.embedder import embed_paths
        from toolkit.ingest import _precision_of

        n = len(batch["seq"])
        todo = [i for i in range(n) if not batch["stage"][i]]

        def source(i: int) -> bytes | Path:
            data = batch["data"][i]
            return bytes(data) if len(data) else Path(str(batch["path"][i]))

        dims = int(self.embedder.dims)
        vectors = np.zeros((n, dims), dtype=np.float32)
        stages = [str(s) for s in batch["stage"]]
        reasons = [str(r) for r in batch["reason"]]
        for i, result in embed_paths(todo, self.embedder, workers=self.settings.image_model.decode_workers,
                                     source=source, max_pixels=self.settings.ingest.max_image_pixels):
            if isinstance(result, ImageError):
                stages[i], reasons[i] = "decode", result.reason
            else:
                vectors[i] = result
        choice = ""
        if todo and not self.reported_choice:
            as_json = _choice_json(self.embedder)
            if as_json is not None:
                choice = json.dumps(as_json)
                self.reported_choice = True
        keep = {k: batch[k] for k in ("seq", "id", "from_content", "sha256", "size", "width", "height")}
        return {**keep, "stage": stages, "reason": reasons, "vector": vectors,
                "precision": [_precision_of(self.embedder) or ""] * n,
                "model": [str(getattr(self.embedder, "model_name", self.settings.image_model.name))] * n,
                "choice": [choice] + [""] * (n - 1)}


# -------------------------------------------------------------------------------------- the driver

def ingest_ray(
    client: Elasticsearch,
    settings: Settings,
    *,
    source: Iterable[SourceItem],
    options: RayOptions | None = None,
    embedder_factory: Callable[[], ImageEmbedder] | None = None,
    resume: bool = False,
    failures_file: Path | None = None,
    on_progress: Callable[[IngestProgress], None] | None = None,
    on_precision: Callable[[Any], None] | None = None,
) -> IngestReport:
    """:func:`toolkit.ingest.ingest` on Ray: the same items, ids, vectors, outcomes and summary.

    Args:
        client, settings, source, resume, failures_file, on_progress, on_precision: as ``ingest``.
        options: :class:`RayOptions` (address, actors, writers, window).
        embedder_factory: builds the embedder inside each actor (it must pickle); default: the
            configured CLIP model (``load_embedder``), so each actor decides its precision as local
            ingest does.

    Raises: as ``ingest``; ValidationError when Ray is not installed; ConnectionFailed when the Ray
        cluster cannot be joined.

    Example:
        >>> report = ingest_ray(client, settings, source=open_source("photos/"))
        >>> report.seen == report.indexed + report.skipped + report.failed
        True
    """
    ray = import_ray()
    opts = options or RayOptions()
    index_dims = check_index(client, settings)
    failures_path = failures_file or default_failures_path()
    check_failures_path(failures_path)
    if embedder_factory is None:
        from toolkit.modelinfo import output_dims

        try:
            early = output_dims(settings.image_model.name)
        except ToolkitError:
            early = None  # checked on the first vector, before anything is sent
        if early is not None:
            _check_dims(early, index_dims, settings, settings.image_model.name)
    encoding = vector_encoding(client)
    started = connect(ray, opts.address)
    ledger = Ledger(failures_path=failures_path, on_progress=on_progress, exclusive=failures_file is None)
    run = _Run(client, settings, ledger, resume=resume)
    run.vector_encoding = encoding
    driver = _Driver(ray, run, opts, index_dims=index_dims, factory=embedder_factory, on_precision=on_precision)
    interrupted = False
    error: ToolkitError | None = None
    try:
        if resume:
            send(client, Request("POST", f"{path(settings.index.alias)}/_refresh"), doing="refreshing the index")
        with mapped("indexing (bulk)"):
            driver.execute(source)
        run.pipeline_errors()
    except KeyboardInterrupt:
        interrupted = True
        ledger.on_progress = None
        driver.stop("interrupted")
    except ToolkitError as exc:
        if not ledger.seen and not run.pending and not run.open:
            driver.stop(None)
            raise
        error = exc
        ledger.on_progress = None
        driver.stop(exc.message)
    except Exception as exc:  # a Ray task error, a lost Ray cluster: every item still accounted for
        # A toolkit error raised in a task or an actor (a model that cannot load): its own message and hint.
        error = _toolkit_error_in(exc)
        why = error.message if error is not None else type(exc).__name__
        if error is None:
            error = ToolkitError(f"the Ray run stopped on an unexpected error: {type(exc).__name__}: {exc}",
                                 hint="the items not finished are in the failures file; fix the cause, then "
                                      "run the same command with --resume")
            error.__cause__ = exc
        ledger.on_progress = None
        driver.stop(why)
    finally:
        ledger.close()
        if started:
            ray.shutdown()
    return report_from(ledger, source, interrupted=interrupted, error=error, precision=driver.choice,
                       vector_encoding=run.vector_encoding)


def _rebuilt_error(text: str) -> ToolkitError:
    """The toolkit error an actor handed over as JSON, as its own class (``ModelError``: exit 20)."""
    from toolkit import errors

    data = json.loads(text)
    cls = getattr(errors, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, ToolkitError)):
        cls = ToolkitError
    try:
        return cls(str(data.get("message")), hint=data.get("hint"))
    except TypeError:  # a subclass with other required arguments
        return ToolkitError(str(data.get("message")), hint=data.get("hint"))


def _toolkit_error_in(exc: BaseException) -> ToolkitError | None:
    """The toolkit error a Ray error wraps (raised in a task or an actor's constructor), if any."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ToolkitError):
            return current
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None


class _Driver:
    """The driver's side: windows of the source through Ray, outcomes into the run's ledger."""

    def __init__(self, ray: Any, run: _Run, opts: RayOptions, *, index_dims: int,
                 factory: Callable[[], ImageEmbedder] | None, on_precision: Callable[[Any], None] | None) -> None:
        self.ray, self.run, self.opts, self.index_dims = ray, run, opts, index_dims
        self.factory, self.on_precision = factory, on_precision
        self.settings = run.settings
        self.choice: dict[str, Any] | None = None
        self.dims_checked = False
        self.ingested_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.writers = ThreadPoolExecutor(max_workers=max(1, opts.writers), thread_name_prefix="toolkit-bulk")
        self.in_flight: list[Future[list[tuple[bool, dict[str, Any]]]]] = []
        self.lock = threading.Lock()

    # -- source side (driver): ids, duplicates, --resume of source ids
    def windows(self, source: Iterable[SourceItem]) -> Iterator[list[Work]]:
        window: list[Work] = []
        for seq, item in enumerate(source, start=1):
            work = Work(item=item, id=item.id, seq=seq)
            self.run.open[seq] = work
            if item.error is not None:
                self.fail(work, "source", item.error)
                continue
            if work.id is not None and self.duplicate(work):
                continue
            window.append(work)
            if len(window) >= max(1, self.opts.window):
                yield self.drop_existing(window)
                window = []
        if window:
            yield self.drop_existing(window)

    def duplicate(self, work: Work) -> bool:
        assert work.id is not None
        first = self.run.first_seen.get(work.id)
        if first is not None:
            self.skip(work, SKIP_DUPLICATE, f"{SKIP_DUPLICATE} (first seen at {first})")
            return True
        self.run.first_seen[work.id] = work.item.position or work.item.location
        return False

    def drop_existing(self, works: list[Work]) -> list[Work]:
        if not self.run.resume:
            return works
        ids = [w.id for w in works if w.id is not None]
        present: set[str] = set()
        for start in range(0, len(ids), ID_QUERY_CHUNK):
            body = send(self.run.client, existing_ids_request(self.run.alias, ids[start:start + ID_QUERY_CHUNK]),
                        doing="checking which items are already indexed (--resume)")
            present |= {hit["_id"] for hit in body.get("hits", {}).get("hits", [])}
        kept = []
        for w in works:
            if w.id is not None and w.id in present:
                self.skip(w, SKIP_ALREADY, f"{SKIP_ALREADY} (--resume)")
            else:
                kept.append(w)
        return kept

    def skip(self, work: Work, reason: str, detail: str) -> None:
        self.run.open.pop(work.seq, None)
        self.run.ledger.record_skipped(reason, doc_id=work.id, position=work.item.position, detail=detail)

    def fail(self, work: Work, stage: str, reason: str) -> None:
        self.run.open.pop(work.seq, None)
        self.run.ledger.record_failed(work.item, doc_id=work.id, stage=stage, reason=reason)

    # -- the Ray pipeline for one window
    def dataset(self, works: list[Work]) -> Any:
        import ray.data

        s = self.settings
        rows = [{"seq": w.seq, "location": w.item.location, "id": w.id or ""} for w in works]
        blocks = max(1, min(len(rows), -(-len(rows) // max(1, self.opts.fetch_batch))))
        gpus = float(self.ray.cluster_resources().get("GPU", 0))
        use_gpu = gpus >= 1 and not s.image_model.device.startswith("cpu")
        cpus = float(self.ray.cluster_resources().get("CPU", 1))
        actors = self.opts.embed_actors or (int(gpus) if use_gpu else max(1, int(cpus) // 2))
        ds: Any = ray.data.from_items(rows, override_num_blocks=blocks)
        # On CPU each actor gets its share of the cluster's CPUs (Ray sets OMP_NUM_THREADS from it, so
        # torch uses them all, as local ingest does); on GPU one GPU and no CPU reservation. Fetching asks
        # for the same CPUs, so Ray Data fuses it into the actors on CPU (no CPU left idle waiting).
        actor_cpus = 0 if use_gpu else max(1, int(cpus) // max(1, actors))
        ds = ds.map_batches(_fetch_batch, batch_size=max(1, self.opts.fetch_batch), batch_format="numpy",
                            fn_kwargs={"settings": s, "resume": self.run.resume}, num_cpus=actor_cpus or 1)
        return ds.map_batches(
            _EmbedActor, batch_size=max(1, s.image_model.batch_size), batch_format="numpy",
            fn_constructor_kwargs={"settings": s, "factory": self.factory},
            compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
            # Ray Data's actor defaults (ActorPoolMapOperator: max_restarts=-1, max_task_retries=-1)
            # restart a dead actor and retry its batch; the kill test pins that.
            num_gpus=1 if use_gpu else 0, num_cpus=actor_cpus)

    def execute(self, source: Iterable[SourceItem]) -> None:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
        # Source order: duplicates of content ids are found as the local engine finds them (first wins).
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False  # the toolkit's own progress bar, from the ledger
        quiet = logging.getLogger("ray.data")
        level = quiet.level
        quiet.setLevel(logging.WARNING)
        try:
            chunk: list[tuple[Work, dict[str, Any]]] = []
            for works in self.windows(source):
                if not works:
                    continue
                for row in self.dataset(works).iter_rows():
                    got = self.result(row)
                    if got is not None:
                        chunk.append(got)
                        if len(chunk) >= max(1, self.settings.ingest.chunk_size):
                            self.send(chunk)
                            chunk = []
                    self.collect(block=False)
            if chunk:
                self.send(chunk)
            self.collect(block=True)
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
            quiet.setLevel(level)

    def result(self, row: dict[str, Any]) -> tuple[Work, dict[str, Any]] | None:
        """One row back from the actors: an outcome in the ledger, or the bulk action to send."""
        work = self.run.open.get(int(row["seq"]))
        if work is None:  # an outcome is recorded once, whatever Ray hands back twice
            return None
        stage, reason = str(row["stage"]), str(row["reason"])
        if stage == MODEL_ERROR:
            raise _rebuilt_error(reason)
        doc_id = str(row["id"]) or None
        if stage == "skip":
            work.id = doc_id
            self.skip(work, SKIP_ALREADY, f"{SKIP_ALREADY} (--resume)")
            return None
        if stage and stage != "decode":  # fetch failed: no content id yet
            self.fail(work, stage, reason)
            return None
        work.id, work.id_from_content = doc_id, bool(row["from_content"])
        if work.id_from_content and self.duplicate(work):
            return None
        if stage == "decode":
            self.fail(work, stage, reason)
            return None
        if row["choice"] and self.choice is None:
            self.choice = json.loads(str(row["choice"]))
            if self.on_precision is not None:
                from toolkit.images.embedder import PrecisionChoice

                self.on_precision(PrecisionChoice(**{k: self.choice[k] for k in (
                    "requested", "used", "device", "thresholds", "measured", "fell_back", "reason")}))
        vector = row["vector"]
        if not self.dims_checked:
            _check_dims(len(vector), self.index_dims, self.settings, str(row["model"]))
            self.dims_checked = True
        work.fetched = Fetched(sha256=str(row["sha256"]), size=int(row["size"]))
        work.width, work.height = int(row["width"]) or None, int(row["height"]) or None
        action = bulk_action(work, vector, settings=self.settings, model=str(row["model"]),
                             ingested_at=self.ingested_at, precision=str(row["precision"]) or None,
                             encoding=self.run.vector_encoding)
        return work, action

    # -- bulk: ``writers`` requests in flight, outcomes recorded by the driver thread
    def send(self, chunk: list[tuple[Work, dict[str, Any]]]) -> None:
        if self.opts.writers <= 1:
            self.run.send_chunk(chunk)  # the local engine's own sender
            return
        for work, _ in chunk:
            assert work.id is not None
            self.run.pending[work.id] = work
        while len(self.in_flight) >= self.opts.writers:
            self.collect(block=True, one=True)
        self.in_flight.append(self.writers.submit(_bulk, self.run.client, [a for _, a in chunk], self.settings))

    def collect(self, *, block: bool, one: bool = False) -> None:
        while self.in_flight:
            future = self.in_flight[0]
            if not block and not future.done():
                return
            self.in_flight.pop(0)
            for ok, info in future.result():
                self.run.outcome(ok, info)
            if one:
                return

    def stop(self, why: str | None) -> None:
        """After an abort: answers already in are recorded; the rest fails (``index`` / ``not sent``)."""
        for future in self.in_flight:
            if future.done() and future.exception() is None:
                for ok, info in future.result():
                    self.run.outcome(ok, info)
        self.in_flight.clear()
        self.writers.shutdown(wait=False, cancel_futures=True)
        if why is not None:
            self.run.fail_open(why)


def _bulk(client: Elasticsearch, actions: list[dict[str, Any]], settings: Settings) -> list[tuple[bool, Any]]:
    """One chunk through ``streaming_bulk`` with the local engine's retry policy (a writer thread)."""
    from elasticsearch.helpers import streaming_bulk

    ing = settings.ingest
    return list(streaming_bulk(
        client, actions, chunk_size=len(actions), max_chunk_bytes=ing.max_chunk_bytes,
        max_retries=ing.max_retries, initial_backoff=ing.initial_backoff, max_backoff=ing.max_backoff,
        retry_on_status=BULK_RETRY_STATUSES, raise_on_error=False, raise_on_exception=False))
