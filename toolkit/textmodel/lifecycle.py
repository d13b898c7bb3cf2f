"""Cluster work: upload traced files, start and wait, read deployment state, stop, delete.

Everything goes through ``toolkit.devtools.send`` with requests from ``toolkit.textmodel.requests``, so
what the toolkit sends is exactly what ``render`` prints. Progress is reported through a callback
``progress(stage, done, total, detail)``; the CLI turns it into rich progress bars.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolkit.devtools import Request, send
from toolkit.errors import ClusterError, ModelError, NotFound, RequestFailed
from toolkit.textmodel.requests import (
    StartOptions,
    definition_part_request,
    delete_request,
    get_model_request,
    put_config_request,
    start_request,
    stats_request,
    stop_request,
    vocabulary_request,
)
from toolkit.textmodel.trace import TracedModel

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Progress = Callable[[str, int, "int | None", str], None]
"""``progress(stage, done, total, detail)``; ``total`` None means unknown (a spinner)."""

CHUNK_SIZE = 1024 * 1024  # eland's part size; ES accepts any size, 1 MiB keeps requests small


def no_progress(stage: str, done: int, total: int | None, detail: str) -> None:
    """The default progress callback: ignore."""


@dataclass(frozen=True)
class DeploymentState:
    """One deployment as ``_stats`` reports it."""

    deployment_id: str
    model_id: str
    state: str
    allocation_state: str = ""
    allocation_count: int = 0
    target_allocation_count: int = 0
    threads_per_allocation: int | None = None
    number_of_allocations: int | None = None
    queue_capacity: int | None = None
    priority: str | None = None
    adaptive_allocations: dict[str, Any] | None = None
    reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ready(self) -> bool:
        """Started and every wanted allocation running."""
        if self.state != "started":
            return False
        if self.allocation_state == "fully_allocated":
            return True
        if self.target_allocation_count == 0 and self.adaptive_allocations:
            # Adaptive allocations with a minimum of 0 may scale to zero: started is all there is to wait for.
            return True
        return self.target_allocation_count > 0 and self.allocation_count >= self.target_allocation_count

    def describe(self) -> str:
        alloc = f"{self.allocation_count}/{self.target_allocation_count} allocations"
        return f"{self.state}, {self.allocation_state or 'no allocation status'} ({alloc})"


def _state_from_stats(model_id: str, entry: dict[str, Any]) -> DeploymentState | None:
    stats = entry.get("deployment_stats")
    if not isinstance(stats, dict):
        return None
    alloc = stats.get("allocation_status") or {}
    reason = str(stats.get("reason") or "")
    if not reason:
        for node in stats.get("nodes") or []:
            routing = node.get("routing_state") or {}
            if routing.get("reason"):
                reason = str(routing["reason"])
                break
    return DeploymentState(
        deployment_id=str(stats.get("deployment_id") or model_id),
        model_id=str(stats.get("model_id") or entry.get("model_id") or model_id),
        state=str(stats.get("state", "")),
        allocation_state=str(alloc.get("state", "")),
        allocation_count=int(alloc.get("allocation_count", 0) or 0),
        target_allocation_count=int(alloc.get("target_allocation_count", 0) or 0),
        threads_per_allocation=stats.get("threads_per_allocation"),
        number_of_allocations=stats.get("number_of_allocations"),
        queue_capacity=stats.get("queue_capacity"),
        priority=stats.get("priority"),
        adaptive_allocations=stats.get("adaptive_allocations"),
        reason=reason,
        raw=stats,
    )


def get_model(client: Elasticsearch, model_id: str) -> dict[str, Any] | None:
    """The stored config of a trained model, or None when there is none.

    Example::

        cfg = get_model(client, "my-model")
        cfg and cfg["metadata"]["toolkit"]["revision"]
    """
    try:
        body = send(client, get_model_request(model_id), doing=f"reading trained model {model_id}")
    except NotFound:
        return None
    configs = body.get("trained_model_configs") or []
    return dict(configs[0]) if configs else None


def deployments(client: Elasticsearch, model_id: str) -> list[DeploymentState]:
    """Every deployment of a model (or the one deployment when ``model_id`` is a deployment id)."""
    try:
        body = send(client, stats_request(model_id), doing=f"reading stats of {model_id}")
    except NotFound:
        return []
    found = []
    for entry in body.get("trained_model_stats") or []:
        state = _state_from_stats(model_id, entry)
        if state is not None:
            found.append(state)
    return found


def deployment(client: Elasticsearch, model_id: str, deployment_id: str) -> DeploymentState | None:
    """The named deployment of a model, or None."""
    for state in deployments(client, model_id):
        if state.deployment_id == deployment_id:
            return state
    return None


def upload(client: Elasticsearch, traced: TracedModel, model_id: str, *, progress: Progress = no_progress,
           chunk_size: int = CHUNK_SIZE) -> int:
    """Upload config, definition parts (in order, with progress per part) and vocabulary; return parts.

    Uses the same three requests as eland's ``PyTorchModel.import_model``, sent through
    ``devtools.send`` so that each part reports progress.

    Example::

        upload(client, load_traced("build/text-model"), "my-model")
    """
    send(client, put_config_request(model_id, traced.config), doing=f"creating trained model {model_id}")
    total_length = traced.file_bytes
    total_parts = max(1, math.ceil(total_length / chunk_size))
    progress("upload", 0, total_parts, f"{total_length / 1024**2:.1f} MiB")
    with traced.model_path.open("rb") as fh:
        for part in range(total_parts):
            chunk = fh.read(chunk_size)
            send(client, definition_part_request(model_id, part, chunk, total_length=total_length,
                                                 total_parts=total_parts),
                 doing=f"uploading definition part {part + 1}/{total_parts} of {model_id}")
            progress("upload", part + 1, total_parts, "")
    vocab = json.loads(traced.vocab_path.read_text(encoding="utf-8"))
    send(client, vocabulary_request(model_id, vocab), doing=f"uploading the vocabulary of {model_id}")
    return total_parts


def start(client: Elasticsearch, model_id: str, options: StartOptions, *, timeout: float = 300.0,
          progress: Progress = no_progress, poll_interval: float = 0.5) -> DeploymentState:
    """Start a deployment and wait until it is started and fully allocated.

    Args:
        options: allocations, threads, queue capacity, priority, deployment id or adaptive allocations.
        timeout: seconds to wait (``text_model.start_timeout`` / ``--timeout``).
        progress: called with stage ``"start"`` and the state text at each poll.

    Example::

        start(client, "my-model", StartOptions(deployment_id="my-model", threads_per_allocation=2))
    """
    try:
        send(client, start_request(model_id, options), doing=f"starting deployment {options.deployment_id}")
    except NotFound as exc:
        raise NotFound(f"{exc.message}", what="trained model definition", name=model_id,
                       hint="upload the model again: toolkit deploy-model --replace") from exc
    except RequestFailed as exc:
        reason = (exc.reason or "").lower()
        hint: str | None
        if "already" in reason or ("deployment" in reason and "exist" in reason):
            hint = "stop it (toolkit undeploy) or choose another --deployment-id"
        elif "definition" in reason or "truncated" in reason:
            hint = "the upload is incomplete: toolkit deploy-model --replace"
        elif "load" in reason or "pytorch" in reason:
            hint = ("the cluster cannot load the traced model: trace with the torch version of the "
                    "cluster's libtorch (pip install torch==<libtorch>), then toolkit deploy-model --replace")
        else:
            hint = exc.hint
        raise RequestFailed(exc.message, status=exc.status, error_type=exc.error_type, reason=exc.reason,
                            hint=hint) from exc
    return wait_ready(client, model_id, options.deployment_id, timeout=timeout, progress=progress,
                      poll_interval=poll_interval)


def wait_ready(client: Elasticsearch, model_id: str, deployment_id: str, *, timeout: float = 300.0,
               progress: Progress = no_progress, poll_interval: float = 0.5) -> DeploymentState:
    """Poll ``_stats`` until the deployment is started and fully allocated, failed, or out of time."""
    deadline = time.monotonic() + timeout
    last: DeploymentState | None = None
    while True:
        last = deployment(client, model_id, deployment_id)
        if last is not None:
            progress("start", last.allocation_count, last.target_allocation_count or None, last.describe())
            if last.state == "failed":
                raise ModelError(
                    f"deployment {deployment_id} failed: {last.reason or 'no reason given'}",
                    hint="a trace made with a newer torch than the cluster's libtorch cannot load; "
                         "see the warnings, then toolkit deploy-model --replace")
            if last.ready:
                return last
        if time.monotonic() >= deadline:
            seen = last.describe() if last else "not found in _stats"
            raise ClusterError(
                f"deployment {deployment_id} was not started and fully allocated within {timeout:.0f} s "
                f"(last state: {seen})",
                hint="raise --timeout (text_model.start_timeout), or check ML node memory and "
                     "processors (toolkit doctor)")
        time.sleep(poll_interval)


def pipelines_using(client: Elasticsearch, ids: set[str]) -> list[str]:
    """Ingest pipelines whose ``inference`` processors name one of ``ids`` (a model or deployment id).

    Elasticsearch's refusal does not name them (``TransportStopTrainedModelDeploymentAction`` and
    ``TransportDeleteTrainedModelAction`` only say "referenced by ingest processors"); a user needs the
    names to decide. Processors inside ``on_failure`` and ``foreach`` count, as they do for ES
    (``InferenceProcessorInfoExtractor``).
    """
    try:
        pipelines = send(client, Request("GET", "_ingest/pipeline"), doing="reading ingest pipelines")
    except NotFound:  # no pipeline at all: ES answers 404 with {}
        return []

    def uses(processors: Any) -> bool:
        for proc in processors if isinstance(processors, list) else []:
            for kind, cfg in (proc.items() if isinstance(proc, dict) else []):
                if not isinstance(cfg, dict):
                    continue
                if kind == "inference" and cfg.get("model_id") in ids:
                    return True
                if uses(cfg.get("on_failure")) or (kind == "foreach" and uses([cfg.get("processor")])):
                    return True
        return False

    return sorted(name for name, body in pipelines.items()
                  if isinstance(body, dict) and (uses(body.get("processors")) or uses(body.get("on_failure"))))


def _send_unless_missing(client: Elasticsearch, request: Request, *, doing: str, force: bool, verb: str,
                         what: str, ids: set[str]) -> bool:
    """Send a stop/delete; False when there was nothing to act on. A model that ingest pipelines use
    is refused by ES (409) unless forced: name the pipelines and the ways out."""
    try:
        send(client, request, doing=doing)
    except NotFound:
        return False
    except RequestFailed as exc:
        if not force and (exc.status == 409 or "referenced by ingest processors" in (exc.reason or "")):
            names = pipelines_using(client, ids)
            used_by = (f"ingest pipeline{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"
                       if names else "an ingest pipeline")
            raise RequestFailed(
                f"cannot {verb} {what}: {used_by} uses it (Elasticsearch answered 409: {exc.reason})",
                status=exc.status, error_type=exc.error_type, reason=exc.reason,
                hint=f"`toolkit undeploy --force{' --delete' if verb == 'delete' else ''}` {verb}s it anyway: "
                     "documents written meanwhile are indexed without caption vectors, with ingest_error set "
                     "(re-ingest them after `toolkit deploy-model`); or first stop using the pipeline "
                     "(remove index.default_pipeline from the indices, then DELETE _ingest/pipeline/<name>)"
            ) from exc
        raise
    return True


def stop(client: Elasticsearch, deployment_id: str, *, force: bool = False) -> bool:
    """Stop a deployment; False when there was none to stop."""
    return _send_unless_missing(client, stop_request(deployment_id, force=force), force=force, verb="stop",
                                what=f"deployment '{deployment_id}'", ids={deployment_id},
                                doing=f"stopping deployment {deployment_id}")


def delete(client: Elasticsearch, model_id: str, *, force: bool = False) -> bool:
    """Delete a trained model; False when there was none."""
    return _send_unless_missing(client, delete_request(model_id, force=force), force=force, verb="delete",
                                what=f"model '{model_id}'", ids={model_id},
                                doing=f"deleting trained model {model_id}")
