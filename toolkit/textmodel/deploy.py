"""``toolkit deploy-model`` / ``toolkit undeploy``: preflight, idempotent upload and start, parity.

Order of work, cheapest first, so that a cluster that cannot run the model fails in seconds:

1. preflight: cluster version, ML license, an ML node, valid ids, start options; local torch against
   the cluster's libtorch (a warning only);
2. pin the model to a revision (hub commit / hash of the directory's files);
3. compare with what the cluster has: same source and revision uploaded and started -> nothing to do;
   uploaded but not started -> start; another model under the id -> error unless ``replace``;
4. estimate memory from the weight files and check it against the ML nodes, then trace, check again
   with the traced file's size, then (for ``replace``) stop and delete the old model, upload and start;
5. parity (unless skipped): it also runs when nothing changed, as the proof that the deployment works.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from toolkit.cluster import (
    MLCapacity,
    cluster_facts,
    deployment_memory_bytes,
    ml_capacity,
    require_ml_capacity,
    require_supported,
)
from toolkit.devtools import render
from toolkit.errors import ConfigError, LicenseError, ValidationError
from toolkit.settings import Settings
from toolkit.textmodel.lifecycle import (
    DeploymentState,
    Progress,
    deployment,
    deployments,
    get_model,
    no_progress,
    start,
    stop,
    upload,
    wait_ready,
)
from toolkit.textmodel.lifecycle import delete as delete_model
from toolkit.textmodel.parity import PROBES, ParityReport, parity
from toolkit.textmodel.requests import SAMPLE_TEXT, StartOptions, infer_request
from toolkit.textmodel.source import (
    ModelSource,
    local_torch_version,
    resolve_source,
    validate_id,
    weight_bytes,
)
from toolkit.textmodel.trace import provenance_of, trace

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Action = Literal["uploaded", "started", "unchanged", "replaced"]


@dataclass(frozen=True)
class PreflightResult:
    version: str
    license_type: str
    libtorch: str | None
    capacity: MLCapacity
    warnings: list[str] = field(default_factory=list)
    torch_warning: str | None = None
    """Only relevant when the model gets traced; ``deploy`` reports it then."""


@dataclass
class DeployReport:
    """What ``deploy`` did. ``as_json()`` is the ``--json`` output."""

    model_id: str
    deployment_id: str
    action: Action
    source: str
    revision: str
    state: DeploymentState | None = None
    parity: ParityReport | None = None
    parity_skipped: bool = False
    warnings: list[str] = field(default_factory=list)
    devtools: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "deployment_id": self.deployment_id,
            "action": self.action,
            "source": self.source,
            "revision": self.revision,
            "state": None if self.state is None else {
                "state": self.state.state, "allocation_state": self.state.allocation_state,
                "allocation_count": self.state.allocation_count,
                "target_allocation_count": self.state.target_allocation_count,
                "threads_per_allocation": self.state.threads_per_allocation},
            "parity": None if self.parity is None else self.parity.as_json(),
            "parity_skipped": self.parity_skipped,
            "warnings": self.warnings,
            "devtools": self.devtools,
        }


@dataclass
class UndeployReport:
    model_id: str
    deployment_id: str
    stopped: bool
    deleted: bool

    def as_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "deployment_id": self.deployment_id, "stopped": self.stopped,
                "deleted": self.deleted}


def _minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def torch_warning(local: str | None, libtorch: str | None) -> str | None:
    """A warning when the local torch is newer than the cluster's libtorch (pure; never an error).

    Example::

        torch_warning("2.13.0", "2.7.1")   # 'tracing with torch 2.13.0 ...'
    """
    if local is None:
        return "torch is not installed locally; tracing needs it (pip install torch)"
    if libtorch is None:
        return f"the cluster's libtorch version is unknown; tracing with torch {local}"
    if _minor(local) > _minor(libtorch):
        return (f"tracing with torch {local} but the cluster runs libtorch {libtorch}: a newer trace may "
                f"fail to load there ('Attempted to read a PyTorch file with version N'); if the deployment "
                f"fails, trace with pip install torch=={libtorch}")
    return None


def start_options(settings: Settings) -> StartOptions:
    """Start options from settings, with the rules Elasticsearch enforces checked up front.

    Example::

        start_options(load_settings(overrides={"text_model.threads_per_allocation": 2}))
    """
    tm = settings.text_model
    deployment_id = validate_id(tm.cluster_deployment_id, what="deployment id", flag="--deployment-id")
    adaptive = tm.adaptive_allocations
    fixed_one = tm.number_of_allocations == 1 and tm.threads_per_allocation == 1
    if tm.priority == "low" and (not fixed_one or adaptive.enabled):
        raise ValidationError("priority 'low' runs exactly one allocation with one thread",
                              hint="drop --allocations/--threads/--adaptive-*, or use --priority normal")
    if adaptive.enabled:
        if settings.origin("text_model.number_of_allocations") != "default":
            raise ValidationError(
                "adaptive allocations cannot be combined with a fixed number of allocations",
                hint="use either --allocations or --adaptive-min/--adaptive-max")
        if adaptive.min_number_of_allocations > adaptive.max_number_of_allocations:
            raise ValidationError(
                f"adaptive allocations: min {adaptive.min_number_of_allocations} is above max "
                f"{adaptive.max_number_of_allocations}", hint="fix --adaptive-min / --adaptive-max")
        return StartOptions(deployment_id=deployment_id, threads_per_allocation=tm.threads_per_allocation,
                            queue_capacity=tm.queue_capacity, priority=tm.priority,
                            adaptive_min=adaptive.min_number_of_allocations,
                            adaptive_max=adaptive.max_number_of_allocations)
    return StartOptions(deployment_id=deployment_id, number_of_allocations=tm.number_of_allocations,
                        threads_per_allocation=tm.threads_per_allocation, queue_capacity=tm.queue_capacity,
                        priority=tm.priority)


def preflight(client: Elasticsearch, settings: Settings) -> PreflightResult:
    """Cheap checks before any heavy work: version, ML license, ML node, ids; torch as a warning.

    Raises ``LicenseError`` (basic license), ``MLNodeError`` (no ML node), ``ValidationError`` (ids).

    Example::

        preflight(make_client(settings), settings).warnings
    """
    validate_id(settings.text_model.cluster_model_id)
    validate_id(settings.text_model.cluster_deployment_id, what="deployment id", flag="--deployment-id")
    facts = cluster_facts(client)
    require_supported(facts)
    if not facts.ml_allowed:
        raise LicenseError(
            f"the cluster's license is '{facts.license_type}' ({facts.license_status}); running a text model "
            "in Elasticsearch needs Platinum, Enterprise or a trial",
            hint="start a 30-day trial: POST _license/start_trial?acknowledge=true (or upgrade the license)")
    capacity = ml_capacity(client)
    require_ml_capacity(capacity, 0)
    return PreflightResult(version=facts.version, license_type=facts.license_type, libtorch=facts.libtorch,
                           capacity=capacity, torch_warning=torch_warning(local_torch_version(), facts.libtorch))


def _template_dims(settings: Settings, warnings: list[str]) -> int | None:
    from toolkit.assets import load_assets, template_vector_dims

    try:
        return template_vector_dims(load_assets(settings), settings.fields.caption_vector)
    except ConfigError as exc:
        warnings.append(f"index template not checked against the model ({exc.message})")
        return None


def try_request(deployment_id: str) -> str:
    """The Kibana Dev Tools request a user can paste to try the deployed model."""
    return render(infer_request(deployment_id, [SAMPLE_TEXT]))


def _options_warning(state: DeploymentState, options: StartOptions) -> str | None:
    differs = []
    threads, allocations = state.threads_per_allocation, state.number_of_allocations
    if threads is not None and threads != options.threads_per_allocation:
        differs.append(f"threads_per_allocation {threads} (asked {options.threads_per_allocation})")
    fixed = not options.adaptive and not state.adaptive_allocations
    if fixed and allocations is not None and allocations != options.number_of_allocations:
        differs.append(f"number_of_allocations {allocations} (asked {options.number_of_allocations})")
    if not differs:
        return None
    return ("the running deployment keeps its settings: " + ", ".join(differs)
            + "; toolkit undeploy then toolkit deploy-model applies new ones")


def deploy(client: Elasticsearch, settings: Settings, *, replace: bool = False, skip_parity: bool = False,
           progress: Progress = no_progress) -> DeployReport:
    """Deploy ``settings.text_model`` into the cluster, idempotently, and prove parity.

    Args:
        replace: stop, delete and re-upload even when a model is already there under the id.
        skip_parity: do not compare cluster and local embeddings (the deployment is still awaited).
        progress: ``progress(stage, done, total, detail)`` for stages preflight, resolve, trace,
            upload, start, parity.

    Example::

        report = deploy(make_client(settings), settings)
        report.action, report.parity.min_cosine   # ('uploaded', 0.99999...)
    """
    tm = settings.text_model
    model_id, deployment_id = tm.cluster_model_id, tm.cluster_deployment_id
    progress("preflight", 0, None, "checking license, ML nodes and versions")
    options = start_options(settings)
    pre = preflight(client, settings)
    warnings = list(pre.warnings)
    progress("preflight", 1, 1, f"Elasticsearch {pre.version}, {pre.license_type} license, "
                                f"{pre.capacity.nodes} ML node(s)")

    progress("resolve", 0, None, f"pinning {tm.hub_id}")
    src = resolve_source(tm.hub_id)
    progress("resolve", 1, 1, f"{src.source} @ {src.revision}")

    existing = get_model(client, model_id)
    action: Action
    state: DeploymentState | None = None
    if existing is not None and not replace:
        prov = provenance_of(existing)
        # A local directory is identified by its files' hash, wherever it lives now.
        same = prov.get("revision") == src.revision and (
            prov.get("source") == src.source or src.revision.startswith("sha256:"))
        if not same:
            have = (f"{prov.get('source')} @ {prov.get('revision')}" if prov
                    else "a model not uploaded by toolkit")
            raise ValidationError(
                f"trained model '{model_id}' already holds {have}, not {src.source} @ {src.revision}",
                hint="pass --replace to stop, delete and re-upload it, or choose another --model-id")
        current = deployment(client, model_id, deployment_id)
        if current is not None and current.state in ("started", "starting"):
            state = current if current.ready else wait_ready(client, model_id, deployment_id,
                                                             timeout=tm.start_timeout, progress=progress)
            action = "unchanged"
            warning = _options_warning(state, options)
            if warning:
                warnings.append(warning)
        else:
            if current is not None:  # failed or stopping: start afresh
                stop(client, deployment_id, force=True)
            state = start(client, model_id, options, timeout=tm.start_timeout, progress=progress)
            action = "started"
    else:
        state = _upload_and_start(client, settings, src, options, pre.capacity, replace=existing is not None,
                                  progress=progress)
        action = "replaced" if existing is not None else "uploaded"
        if pre.torch_warning:
            warnings.append(pre.torch_warning)

    report = DeployReport(model_id=model_id, deployment_id=deployment_id, action=action, source=src.source,
                          revision=src.revision, state=state, parity_skipped=skip_parity, warnings=warnings,
                          devtools=try_request(deployment_id))
    if not skip_parity:
        progress("parity", 0, None, f"embedding {len(PROBES)} probes in the cluster and locally")
        template_dims = _template_dims(settings, warnings)
        report.parity = parity(client, deployment_id, src.local_dir, PROBES, template_dims=template_dims)
        progress("parity", 1, 1, f"min cosine {report.parity.min_cosine:.6f}")
    return report


def _upload_and_start(client: Elasticsearch, settings: Settings, src: ModelSource, options: StartOptions,
                      capacity: MLCapacity, *, replace: bool, progress: Progress) -> DeploymentState:
    tm = settings.text_model
    model_id = tm.cluster_model_id
    # Before tracing: the weight files are about the size of the traced file.
    require_ml_capacity(capacity, deployment_memory_bytes(weight_bytes(src.local_dir)))
    with tempfile.TemporaryDirectory(prefix="toolkit-trace-") as work:
        progress("trace", 0, None, f"tracing {src.source} with eland")
        traced = trace(src, work)
        progress("trace", 1, 1, f"{traced.file_bytes / 1024**2:.1f} MiB, {traced.embedding_size} dims, "
                                f"max {traced.max_sequence_length} tokens")
        require_ml_capacity(capacity, deployment_memory_bytes(traced.file_bytes))
        if replace:
            # Only now that the new trace exists: a failed trace leaves the old model running.
            for old in deployments(client, model_id):
                stop(client, old.deployment_id, force=True)
            delete_model(client, model_id, force=True)
        upload(client, traced, model_id, progress=progress)
    return start(client, model_id, options, timeout=tm.start_timeout, progress=progress)


def undeploy(client: Elasticsearch, settings: Settings, *, delete: bool = False,
             force: bool = False) -> UndeployReport:
    """Stop the deployment; with ``delete`` stop every deployment of the model and delete the model.

    Args:
        force: stop/delete even when ingest pipelines reference the model.

    Example::

        undeploy(make_client(settings), settings, delete=True).deleted   # True
    """
    tm = settings.text_model
    model_id = validate_id(tm.cluster_model_id)
    deployment_id = validate_id(tm.cluster_deployment_id, what="deployment id", flag="--deployment-id")
    # Stop and delete read a 404 as "nothing there": make sure it is Elasticsearch answering, not another
    # server on the URL (Kibana's port, say), or undeploy would report success having done nothing.
    cluster_facts(client)
    stopped = False
    if delete:
        for dep in deployments(client, model_id):
            stopped = stop(client, dep.deployment_id, force=force) or stopped
        deleted = delete_model(client, model_id, force=force)
    else:
        if deployment(client, model_id, deployment_id) is not None:
            stopped = stop(client, deployment_id, force=force)
        deleted = False
    return UndeployReport(model_id=model_id, deployment_id=deployment_id, stopped=stopped, deleted=deleted)
