"""The text encoder inside Elasticsearch: trace locally, upload and start, prove parity.

Local work (``trace``) and cluster work (``upload``, ``start``, ``parity``) meet only through files, as
in eland; ``deploy`` and ``undeploy`` orchestrate them for ``toolkit deploy-model`` / ``toolkit undeploy``.
Nothing heavy (torch, eland, sentence-transformers) is imported until a function needs it.

Example::

    from toolkit.textmodel import deploy
    report = deploy(make_client(settings), settings)
    print(report.action, report.parity.min_cosine)
"""

from toolkit.textmodel.deploy import (
    DeployReport,
    PreflightResult,
    UndeployReport,
    deploy,
    preflight,
    start_options,
    torch_warning,
    try_request,
    undeploy,
)
from toolkit.textmodel.lifecycle import (
    DeploymentState,
    Progress,
    delete,
    deployment,
    deployments,
    get_model,
    start,
    stop,
    upload,
    wait_ready,
)
from toolkit.textmodel.parity import MIN_COSINE, PROBES, ParityReport, ProbeResult, compare, parity
from toolkit.textmodel.requests import StartOptions, infer_request, start_request
from toolkit.textmodel.source import ModelSource, resolve_source, validate_id
from toolkit.textmodel.trace import TracedModel, load_traced, trace

__all__ = [
    "MIN_COSINE", "PROBES", "DeployReport", "DeploymentState", "ModelSource", "ParityReport",
    "PreflightResult", "ProbeResult", "Progress", "StartOptions", "TracedModel", "UndeployReport",
    "compare", "delete", "deploy",
    "deployment", "deployments", "get_model", "infer_request", "load_traced", "parity", "preflight",
    "resolve_source", "start", "start_options", "start_request", "stop", "torch_warning", "trace",
    "try_request", "undeploy", "upload", "validate_id", "wait_ready",
]
