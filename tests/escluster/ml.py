"""The trained-model (``/_ml``) part of the test cluster.

:class:`MLStore` keeps the models, their definition parts and vocabularies, and the deployments, and
runs uploaded TorchScript models for real: the base64 parts are joined and loaded with
``torch.jit.load`` when a deployment starts (a model that does not load never becomes a started
deployment), texts are tokenized with the uploaded vocabulary (:mod:`tests.escluster.tokenize`) and
``forward(input_ids, attention_mask, token_type_ids, position_ids)`` is called with int64 tensors.

Endpoints (``parts`` are the path segments after ``_ml``)::

    GET    _ml/info
    GET    _ml/trained_models[/<ids>]              ids: comma list, wildcards, _all
    PUT    _ml/trained_models/<id>
    DELETE _ml/trained_models/<id>[?force=true]
    PUT    _ml/trained_models/<id>/definition/<part>
    PUT    _ml/trained_models/<id>/vocabulary
    POST   _ml/trained_models/<id>/deployment/_start | _stop | _update | _infer (deprecated)
    GET    _ml/trained_models[/<ids>]/_stats
    POST   _ml/trained_models/<model or deployment id>/_infer

Licensing as in ES: uploading, starting and running a model need Platinum/Enterprise/trial; reading
(info, get, stats), stopping and deleting stay free.

Example::

    ml = MLStore(license_type=lambda: "trial", ml_nodes=lambda: 1, ml_memory_bytes=lambda: 8 << 30)
    ml.handle("GET", ["info"], {}, None)  # (200, {"defaults": ..., "limits": ...})
"""

from __future__ import annotations

import base64
import binascii
import copy
import fnmatch
import io
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.escluster.errors import ESError, license_error
from tests.escluster.tokenize import TokenizationError, WordPieceTokenizer

PAID_LICENSES = {"platinum", "enterprise", "trial"}
MB = 1024 * 1024
MEMORY_OVERHEAD = 240 * MB  # ES adds this to every PyTorch deployment's memory estimate
MAX_NUM_NATIVE_DEFINITION_PARTS = 10_000
MAX_QUEUE_CAPACITY = 100_000
# PyTorchResultProcessor.REPORTING_PERIOD_MS: throughput is counted in one-minute periods from the start.
REPORTING_PERIOD_MS = 60_000
# InferenceProcessorInfoExtractor.MAX_INFERENCE_PROCESSOR_SEARCH_RECURSIONS
MAX_INFERENCE_PROCESSOR_SEARCH_RECURSIONS = 10
# Messages.UNABLE_TO_DEPLOY_MODEL_BAD_PARTS: the constant's text is not in the stored ES source; this
# wording is from memory (guess), the sentence before it is verbatim from TransportStartTrainedModelDeploymentAction.
UNABLE_TO_DEPLOY_MODEL_BAD_PARTS = "Unable to deploy model, please delete and recreate the model definition"
ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?")
ID_LENGTH_LIMIT = 64
NLP_TASKS = {
    "text_embedding",
    "pass_through",
    "fill_mask",
    "ner",
    "text_classification",
    "zero_shot_classification",
    "question_answering",
    "text_expansion",
    "text_similarity",
}
TOKENIZATION_DEFAULTS = {
    "do_lower_case": False,
    "with_special_tokens": True,
    "max_sequence_length": 512,
    "truncate": "first",
    "span": -1,
}
DEFAULT_INPUT_FIELD = "input"  # ES's default when a PyTorch config names no input field
LANG_IDENT = "lang_ident_model_1"
NODE_ID = "escluster-node-0"
NODE_NAME = "escluster-node"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _validation_error(messages: list[str]) -> ESError:
    reason = "Validation Failed: " + "".join(f"{i}: {m};" for i, m in enumerate(messages, 1))
    return ESError(400, "action_request_validation_exception", reason)


def _status(status: int, reason: str, **extra: Any) -> ESError:
    return ESError(status, "status_exception", reason, **extra)


def _not_found_model(model_id: str) -> ESError:
    return ESError(404, "resource_not_found_exception", f"Could not find trained model [{model_id}]")


def _bool_param(params: dict[str, str], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    raise ESError(
        400,
        "illegal_argument_exception",
        f"Failed to parse value [{value}] as only [true] or [false] are allowed.",
    )


def _int_param(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ESError(
            400, "illegal_argument_exception", f"Failed to parse int parameter [{name}] with value [{value}]"
        ) from None


def _mb(num_bytes: int) -> str:
    return f"{num_bytes // MB}mb"


def _missing_deployment(deployment_id: str) -> ESError:
    """``ExceptionsHelper.missingModelDeployment``: 404 ``resource_not_found_exception``."""
    return ESError(404, "resource_not_found_exception", f"No known model deployment with id [{deployment_id}]")


def referenced_model_ids(pipelines: dict[str, Any]) -> dict[str, list[str]]:
    """Model, deployment or alias ids named by ``inference`` processors -> the pipelines naming them.

    Follows ``InferenceProcessorInfoExtractor.addModelsAndPipelines`` (x-pack/plugin/core/.../ml/utils/
    InferenceProcessorInfoExtractor.java): top-level processors of every pipeline, the one processor inside
    a ``foreach``, and processor-level ``on_failure`` lists, at most 10 levels deep; a pipeline-level
    ``on_failure`` is not searched.

    Example::

        referenced_model_ids({"p": {"processors": [{"inference": {"model_id": "m"}}]}})  # {"m": ["p"]}
    """
    found: dict[str, list[str]] = {}

    def visit(kind: Any, definition: Any, pipeline_id: str, level: int) -> None:
        if level > MAX_INFERENCE_PROCESSOR_SEARCH_RECURSIONS or kind is None or definition is None:
            return
        if kind == "inference":
            model_id = definition.get("model_id") if isinstance(definition, dict) else None
            if isinstance(model_id, str):
                users = found.setdefault(model_id, [])
                if pipeline_id not in users:
                    users.append(pipeline_id)
            return
        if kind == "foreach" and isinstance(definition, dict):
            inner = definition.get("processor")
            if isinstance(inner, dict):
                for inner_kind, inner_definition in inner.items():
                    visit(inner_kind, inner_definition, pipeline_id, level + 1)
            return
        if isinstance(definition, dict) and isinstance(definition.get("on_failure"), list):
            for processor in definition["on_failure"]:
                if isinstance(processor, dict):
                    for inner_kind, inner_definition in processor.items():
                        visit(inner_kind, inner_definition, pipeline_id, level + 1)

    for pipeline_id in sorted(pipelines):
        config = pipelines[pipeline_id]
        processors = config.get("processors") if isinstance(config, dict) else None
        for processor in processors if isinstance(processors, list) else []:
            if isinstance(processor, dict):
                for kind, definition in processor.items():
                    visit(kind, definition, pipeline_id, 0)
    return found


@dataclass
class _Part:
    """One stored definition doc (``TrainedModelDefinitionDoc``): each part keeps its own totals."""

    data: bytes
    total_definition_length: int
    total_parts: int


@dataclass
class _Model:
    model_id: str
    config: dict[str, Any]
    parts: dict[int, _Part] = field(default_factory=dict)
    vocabulary: dict[str, Any] | None = None
    fully_defined: bool = False  # non-PyTorch models given inline

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "tree_ensemble"))

    def task(self) -> tuple[str, dict[str, Any]]:
        config = self.config.get("inference_config") or {}
        for name, options in config.items():
            return name, options or {}
        return "pass_through", {}

    @property
    def total_definition_length(self) -> int:
        """The first part's ``total_definition_length`` (what ``_stats`` and the memory estimate use)."""
        return self.parts[min(self.parts)].total_definition_length if self.parts else 0

    def definition_bytes(self) -> bytes:
        return b"".join(self.parts[i].data for i in sorted(self.parts))

    def definition_problem(self) -> ESError | None:
        """Why ``_start`` refuses the parts, or None.

        ``TransportStartTrainedModelDeploymentAction.step3VerifyModelPartsArePresent``: no parts is 404;
        every part's ``total_definition_length`` must equal the first part's; the parts' lengths must add
        up to it ("Model definition truncated"). The number of parts is not checked against
        ``total_parts``.
        """
        if not self.parts:
            return ESError(
                404, "resource_not_found_exception", f"Could not find trained model definition [{self.model_id}]"
            )
        order = sorted(self.parts)
        first = self.parts[order[0]].total_definition_length
        for num in order:
            total = self.parts[num].total_definition_length
            if total != first:
                return _status(
                    400,
                    f"[{self.model_id}] [total_definition_length] must be the same in all model definition parts. "
                    f"The value [{total}] in model definition part [{num}] does not match the value [{first}] "
                    f"in part [{order[0]}]. {UNABLE_TO_DEPLOY_MODEL_BAD_PARTS}",
                )
        if sum(len(self.parts[num].data) for num in order) != first:
            return _status(
                400, f"Model definition truncated. Unable to deserialize trained model definition [{self.model_id}]"
            )
        return None

    def is_complete(self) -> bool:
        return self.definition_problem() is None


@dataclass
class _Deployment:
    deployment_id: str
    model_id: str
    number_of_allocations: int
    threads_per_allocation: int
    queue_capacity: int
    priority: str
    cache_size: str | None
    adaptive: dict[str, Any] | None
    per_deployment_memory_bytes: int
    per_allocation_memory_bytes: int
    model_bytes: int
    start_time: int = field(default_factory=_now_ms)
    state: str = "started"
    reason: str | None = None
    module: Any = None
    tokenizer: WordPieceTokenizer | None = None
    inference_count: int = 0
    error_count: int = 0
    total_inference_ms: float = 0.0
    last_access: int | None = None
    cache: dict[str, list[Any]] = field(default_factory=dict)
    cache_hits: int = 0
    total_inference_ms_excluding_cache_hits: float = 0.0
    # PyTorchResultProcessor's one-minute periods (aligned to start_time)
    peak_throughput: int = 0
    current_period_end: int = 0
    period_count: int = 0
    period_total_ms: float = 0.0
    period_cache_hits: int = 0
    last_period: tuple[int, float | None, int] | None = None  # (count, average ms, cache hits)

    def record_inference(self, count: int, elapsed_ms: float, cache_hits: int, now_ms: int) -> None:
        """Count ``count`` results that took ``elapsed_ms`` together, ``cache_hits`` of them from the cache.

        Every inference (``_infer``, ingest ``inference`` processors, ``query_vector_builder``) runs through
        :meth:`MLStore._run`, which calls this once per batch. Follows
        ``PyTorchResultProcessor.updateStats`` (x-pack/plugin/ml/.../pytorch/process/
        PyTorchResultProcessor.java), one result per text: the time is spread over the texts that missed
        the cache (cache hits count as 0 ms and stay out of the "excluding cache hits" average: a guess at
        the native process's per-result times).
        """
        if count <= 0:
            return
        misses = max(count - cache_hits, 0)
        per_miss = elapsed_ms / misses if misses else 0.0
        for i in range(count):
            hit = i < cache_hits
            time_ms = 0.0 if hit else per_miss
            self.inference_count += 1
            self.total_inference_ms += time_ms
            if not hit:
                self.total_inference_ms_excluding_cache_hits += time_ms
            self.last_access = now_ms
            if self.current_period_end == 0:
                self.current_period_end = self.start_time + REPORTING_PERIOD_MS
            if now_ms > self.current_period_end:
                # rolled into the next period
                self.peak_throughput = max(self.peak_throughput, self.period_count)
                if now_ms > self.current_period_end + REPORTING_PERIOD_MS:
                    self.last_period = None  # one or more periods without results
                else:
                    average = self.period_total_ms / self.period_count if self.period_count else None
                    self.last_period = (self.period_count, average, self.period_cache_hits)
                self.period_count, self.period_total_ms, self.period_cache_hits = 0, 0.0, 0
                elapsed = now_ms - self.start_time
                self.current_period_end = self.start_time + -(-elapsed // REPORTING_PERIOD_MS) * REPORTING_PERIOD_MS
            self.period_count += 1
            self.period_total_ms += time_ms
            if hit:
                self.period_cache_hits += 1

    def recent_stats(self, now_ms: int) -> tuple[int, float | None, int]:
        """``PyTorchResultProcessor.getResultStats``: (count, average ms, cache hits) of the last full
        minute, updating the peak when that minute has just closed."""
        period_start = self.start_time + (now_ms - self.start_time) // REPORTING_PERIOD_MS * REPORTING_PERIOD_MS
        last = self.last_access or 0
        recent: tuple[int, float | None, int] | None = None
        if last >= period_start:
            recent = self.last_period
        elif last >= period_start - REPORTING_PERIOD_MS:
            average = self.period_total_ms / self.period_count if self.period_count else None
            recent = (self.period_count, average, self.period_cache_hits)
            self.peak_throughput = max(self.peak_throughput, self.period_count)
        return recent if recent is not None else (0, None, 0)


class MLStore:
    """Trained models and deployments of one test cluster; thread-safe.

    Args:
        license_type: returns the current license type (``basic``, ``trial``, ...).
        ml_nodes: returns the number of ML nodes (0 means deployments cannot start, as in ES).
        ml_memory_bytes: returns the native memory available to ML on all ML nodes.
        version: the cluster version reported in configs and native code info.
        pipelines: returns the stored ingest pipelines (id -> body); stop and delete refuse ids their
            ``inference`` processors name, and ``_stats`` counts them. None: no pipelines.
        clock: epoch milliseconds; deployment start times, ``last_access`` and the per-minute
            throughput periods read it (tests pass a settable one).

    Example::

        ml = MLStore(license_type=lambda: "trial", ml_nodes=lambda: 1, ml_memory_bytes=lambda: 8 << 30)
        status, body = ml.handle("PUT", ["trained_models", "m"], {}, {"model_type": "pytorch", ...})
    """

    def __init__(
        self,
        *,
        license_type: Callable[[], str],
        ml_nodes: Callable[[], int],
        ml_memory_bytes: Callable[[], int],
        version: str = "9.2.0",
        pipelines: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._license_type = license_type
        self._pipelines = pipelines
        self._clock = clock
        self._ml_nodes = ml_nodes
        self._ml_memory_bytes = ml_memory_bytes
        self.version = version
        self._lock = threading.RLock()
        self._models: dict[str, _Model] = {LANG_IDENT: self._lang_ident()}
        self._deployments: dict[str, _Deployment] = {}

    # ----------------------------------------------------------------------------------------- routing
    def handle(self, method: str, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        """Serve one request under ``/_ml``; returns ``(status, json body)`` or raises :class:`ESError`."""
        with self._lock:
            return self._route(method, parts, params, body)

    def _route(self, method: str, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        if parts == ["info"] and method == "GET":
            return 200, self._info()
        if not parts or parts[0] != "trained_models":
            raise self._no_handler(method, parts)
        rest = parts[1:]
        if not rest and method == "GET":
            return 200, self._get_models("_all", params)
        if rest == ["_stats"] and method == "GET":
            return 200, self._stats("_all", params)
        if len(rest) == 1:
            if method == "GET":
                return 200, self._get_models(rest[0], params)
            if method == "PUT":
                return 200, self._put_model(rest[0], params, body)
            if method == "DELETE":
                return 200, self._delete_model(rest[0], params)
        if len(rest) == 2:
            model_id, action = rest
            if action == "_stats" and method == "GET":
                return 200, self._stats(model_id, params)
            if action == "vocabulary" and method == "PUT":
                return 200, self._put_vocabulary(model_id, body)
            if action == "_infer" and method == "POST":
                return 200, self._infer_api(model_id, params, body, deprecated=False)
        if len(rest) == 3:
            model_id, a, b = rest
            if a == "definition" and method == "PUT":
                return 200, self._put_definition(model_id, b, body)
            if a == "deployment" and method == "POST":
                if b == "_start":
                    return 200, self._start(model_id, params, body)
                if b == "_stop":
                    return 200, self._stop(model_id, params, body)
                if b == "_update":
                    return 200, self._update(model_id, params, body)
                if b == "_infer":
                    return 200, self._infer_api(model_id, params, body, deprecated=True)
        if len(rest) == 4 and rest[1:] == ["deployment", "cache", "_clear"] and method == "POST":
            deployment = self._deployments.get(rest[0])
            if deployment is None:
                raise ESError(
                    404, "resource_not_found_exception", f"No known model deployment with id [{rest[0]}]"
                )
            deployment.cache.clear()
            return 200, {"cleared": True}
        raise self._no_handler(method, parts)

    @staticmethod
    def _no_handler(method: str, parts: list[str]) -> ESError:
        path = "/_ml/" + "/".join(parts)
        return ESError(
            400,
            "illegal_argument_exception",
            f"request [{path}] contains unrecognized method [{method}]"
            if parts
            else f"no handler found for uri [{path}] and method [{method}]",
        )

    def _check_license(self) -> None:
        if self._license_type() not in PAID_LICENSES:
            raise license_error("ml")

    # -------------------------------------------------------------------------------------------- info
    def _info(self) -> dict[str, Any]:
        nodes = max(self._ml_nodes(), 0)
        memory = max(self._ml_memory_bytes(), 0) if nodes else 0
        limits: dict[str, Any] = {}
        if nodes:
            limits["max_single_ml_node_processors"] = 1
            limits["total_ml_processors"] = nodes
            limits["effective_max_model_memory_limit"] = _mb(memory // nodes)
        else:
            limits["total_ml_processors"] = 0
        limits["total_ml_memory"] = _mb(memory)
        return {
            "defaults": {
                "anomaly_detectors": {
                    "categorization_analyzer": {
                        "char_filter": ["first_line_with_letters"],
                        "tokenizer": "ml_standard",
                        "filter": [
                            {
                                "type": "stop",
                                "stopwords": [
                                    "Monday",
                                    "Tuesday",
                                    "Wednesday",
                                    "Thursday",
                                    "Friday",
                                    "Saturday",
                                    "Sunday",
                                    "Mon",
                                    "Tue",
                                    "Wed",
                                    "Thu",
                                    "Fri",
                                    "Sat",
                                    "Sun",
                                    "January",
                                    "February",
                                    "March",
                                    "April",
                                    "May",
                                    "June",
                                    "July",
                                    "August",
                                    "September",
                                    "October",
                                    "November",
                                    "December",
                                    "Jan",
                                    "Feb",
                                    "Mar",
                                    "Apr",
                                    "May",
                                    "Jun",
                                    "Jul",
                                    "Aug",
                                    "Sep",
                                    "Oct",
                                    "Nov",
                                    "Dec",
                                    "GMT",
                                    "UTC",
                                ],
                            },
                            {"type": "limit", "max_token_count": "100"},
                        ],
                    },
                    "model_memory_limit": "1gb",
                    "categorization_examples_limit": 4,
                    "model_snapshot_retention_days": 10,
                    "daily_model_snapshot_retention_after_days": 1,
                },
                "datafeeds": {"scroll_size": 1000},
            },
            "upgrade_mode": False,
            "native_code": {"version": self.version, "build_hash": "0000000000000000"},
            "limits": limits,
        }

    # ------------------------------------------------------------------------------------------ models
    def _lang_ident(self) -> _Model:
        config = {
            "model_id": LANG_IDENT,
            "model_type": "lang_ident",
            "created_by": "_xpack",
            "version": "7.6.0",
            "create_time": 1575548914594,
            "model_size_bytes": 1053992,
            "estimated_operations": 39629,
            "license_level": "basic",
            "description": "Model used for identifying language from arbitrary input text.",
            "tags": ["lang_ident", "prepackaged"],
            "input": {"field_names": ["text"]},
            "inference_config": {
                "classification": {
                    "num_top_classes": 0,
                    "top_classes_results_field": "top_classes",
                    "results_field": "predicted_value",
                    "num_top_feature_importance_values": 0,
                    "prediction_field_type": "string",
                }
            },
            "metadata": {},
        }
        return _Model(LANG_IDENT, config, fully_defined=True)

    def _resolve_models(self, expression: str, allow_no_match: bool) -> list[_Model]:
        names = [e.strip() for e in expression.split(",") if e.strip()] or ["_all"]
        found: dict[str, _Model] = {}
        for name in names:
            if name in ("_all", "*"):
                found.update(self._models)
            elif "*" in name:
                matches = {k: m for k, m in self._models.items() if fnmatch.fnmatchcase(k, name)}
                if not matches and not allow_no_match:
                    raise _not_found_model(name)
                found.update(matches)
            elif name in self._models:
                found[name] = self._models[name]
            else:
                raise _not_found_model(name)
        return [found[k] for k in sorted(found)]

    def _model_json(self, model: _Model, include: set[str]) -> dict[str, Any]:
        body = copy.deepcopy(model.config)
        if "definition_status" in include:
            body["fully_defined"] = model.fully_defined or model.is_complete()
        if "definition" in include:
            if model.model_type == "pytorch":
                raise ESError(
                    400,
                    "status_exception",
                    f"[{model.model_id}] is type [pytorch] and does not support retrieving the definition",
                )
            if "definition" in model.config:
                body["definition"] = copy.deepcopy(model.config["definition"])
        elif model.model_type != "pytorch":
            body.pop("definition", None)
        return body

    def _get_models(self, expression: str, params: dict[str, str]) -> dict[str, Any]:
        allow_no_match = _bool_param(params, "allow_no_match", True)
        include = {p.strip() for p in params.get("include", "").split(",") if p.strip()}
        unknown = include - {
            "definition",
            "total_feature_importance",
            "feature_importance_baseline",
            "hyperparameters",
            "definition_status",
        }
        if unknown:
            raise ESError(400, "illegal_argument_exception", f"unknown [include] values {sorted(unknown)}")
        if "definition" in include and "definition_status" in include:
            raise ESError(
                400,
                "illegal_argument_exception",
                "[definition] and [definition_status] cannot be used together",
            )
        models = self._resolve_models(expression, allow_no_match)
        start = _int_param(params, "from") or 0
        size = _int_param(params, "size")
        page = models[start : start + size if size is not None else None]
        return {"count": len(models), "trained_model_configs": [self._model_json(m, include) for m in page]}

    def _put_model(self, model_id: str, params: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_license()
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        allowed = {
            "model_id",
            "description",
            "model_type",
            "input",
            "inference_config",
            "metadata",
            "tags",
            "definition",
            "compressed_definition",
            "location",
            "estimated_heap_memory_usage_bytes",
            "estimated_inference_operations",
            "model_size_bytes",
            "platform_architecture",
            "prefix_strings",
            "default_field_map",
        }
        for key in body:
            if key not in allowed:
                raise ESError(
                    400, "x_content_parse_exception", f"[1:2] [trained_model_config] unknown field [{key}]"
                )
        errors = []
        if body.get("model_id") not in (None, model_id):
            errors.append(
                f"Inconsistent model_id; '{body['model_id']}' specified in the body differs from "
                f"'{model_id}' specified as a URL argument"
            )
        if not ID_PATTERN.fullmatch(model_id):
            errors.append(
                f"Invalid model_id; '{model_id}' can contain lowercase alphanumeric (a-z and 0-9), "
                "hyphens or underscores; must start and end with alphanumeric"
            )
        if len(model_id) > ID_LENGTH_LIMIT:
            errors.append(
                f"Invalid model_id; '{model_id}' cannot contain more than {ID_LENGTH_LIMIT} characters."
            )
        model_type = body.get("model_type")
        if model_type is None:
            model_type = (
                "tree_ensemble" if ("definition" in body or "compressed_definition" in body) else None
            )
        if model_type not in (None, "pytorch", "tree_ensemble", "lang_ident"):
            raise ESError(400, "illegal_argument_exception", f"unknown model_type [{model_type}]")
        inference_config = body.get("inference_config")
        if inference_config is None:
            errors.append("[inference_config] must not be null.")
        elif not isinstance(inference_config, dict) or len(inference_config) != 1:
            raise ESError(
                400,
                "x_content_parse_exception",
                "[inference_config] must contain exactly one inference configuration",
            )
        if model_type == "pytorch" and ("definition" in body or "compressed_definition" in body):
            errors.append("[definition] must not be set for a model of type [pytorch]")
        if model_type is None and not errors:
            errors.append("[model_type] must be set if [definition] is not defined.")
        if errors:
            raise _validation_error(errors)
        if model_id in self._models:
            raise ESError(
                400,
                "resource_already_exists_exception",
                f"Trained machine learning model [{model_id}] already exists",
            )
        if model_id in self._deployments:
            raise ESError(
                400,
                "status_exception",
                f"Cannot create model [{model_id}] the id is the same as an current model deployment",
            )
        assert isinstance(inference_config, dict)
        task, options = next(iter(inference_config.items()))
        options = copy.deepcopy(options) if isinstance(options, dict) else {}
        if model_type == "pytorch":
            if task not in NLP_TASKS:
                raise ESError(
                    400,
                    "x_content_parse_exception",
                    f"[1:2] [trained_model_config] failed to parse field [inference_config]: "
                    f"unknown inference configuration [{task}] for a pytorch model",
                )
            options["tokenization"] = self._tokenization_with_defaults(options.get("tokenization"))
            if task == "fill_mask":
                kind = next(iter(options["tokenization"]))
                expected = "<mask>" if kind in ("roberta", "xlm_roberta") else "[MASK]"
                if options.get("mask_token", expected) != expected:
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"IllegalArgumentException: Mask token requested was [{options['mask_token']}] "
                        f"but must be [{expected}] for this model",
                    )
                options["mask_token"] = expected
            options["vocabulary"] = {"index": ".ml-inference-native-000002"}
        config: dict[str, Any] = {
            "model_id": model_id,
            "model_type": model_type,
            "created_by": "api_user",
            "version": "12.0.0",
            "create_time": _now_ms(),
            "model_size_bytes": 0,
            "estimated_operations": 0,
            "license_level": "platinum",
            "description": body.get("description", ""),
            "tags": list(body.get("tags") or []),
            "metadata": copy.deepcopy(body.get("metadata") or {}),
            "input": copy.deepcopy(body.get("input") or {"field_names": [DEFAULT_INPUT_FIELD]}),
            "inference_config": {task: options},
        }
        if model_type == "pytorch":
            config["location"] = {"index": {"name": ".ml-inference-native-000002"}}
        if body.get("prefix_strings"):
            config["prefix_strings"] = copy.deepcopy(body["prefix_strings"])
        model = _Model(model_id, config)
        if model_type != "pytorch":
            model.fully_defined = "definition" in body or "compressed_definition" in body
            if "definition" in body:
                config["definition"] = copy.deepcopy(body["definition"])
        self._models[model_id] = model
        out = copy.deepcopy(config)
        out.pop("definition", None)
        return out

    @staticmethod
    def _tokenization_with_defaults(tokenization: Any) -> dict[str, Any]:
        if not tokenization:
            return {"bert": dict(TOKENIZATION_DEFAULTS)}
        if not isinstance(tokenization, dict) or len(tokenization) != 1:
            raise ESError(
                400, "x_content_parse_exception", "[tokenization] must contain exactly one tokenizer"
            )
        kind, options = next(iter(tokenization.items()))
        if kind not in ("bert", "bert_ja", "mpnet", "roberta", "xlm_roberta", "deberta_v2"):
            raise ESError(400, "x_content_parse_exception", f"[1:2] unknown tokenization [{kind}]")
        merged = dict(TOKENIZATION_DEFAULTS)
        if kind in ("roberta", "xlm_roberta"):
            merged.pop("do_lower_case")
        merged.update(options or {})
        if merged.get("truncate") not in ("first", "second", "none", "balanced"):
            raise ESError(
                400, "illegal_argument_exception", f"unknown truncate value [{merged.get('truncate')}]"
            )
        if not isinstance(merged.get("max_sequence_length"), int) or merged["max_sequence_length"] < 1:
            raise ESError(
                400, "illegal_argument_exception", "[max_sequence_length] must be a positive integer"
            )
        return {kind: merged}

    def _get_model(self, model_id: str) -> _Model:
        model = self._models.get(model_id)
        if model is None:
            raise _not_found_model(model_id)
        return model

    def _referenced(self) -> dict[str, list[str]]:
        """Ids that ``inference`` processors of the stored ingest pipelines name -> those pipelines."""
        return referenced_model_ids(self._pipelines() if self._pipelines is not None else {})

    def _delete_model(self, model_id: str, params: dict[str, str]) -> dict[str, Any]:
        """``DELETE _ml/trained_models/<id>[?force]``.

        Follows ``TransportDeleteTrainedModelAction.deleteModel`` (x-pack/plugin/ml/.../action/
        TransportDeleteTrainedModelAction.java), in its order: an id named by an ingest ``inference``
        processor is 409 unless forced (checked before the model is looked up, so even an unknown id a
        pipeline names is 409); a model with a deployment (``modelIsDeployed``: any deployment of this
        model) is 409 unless forced; with force ES stops the deployment whose id is the model id
        (``forceStopDeployment(request.getId())``): a deployment under another id is left running, as in
        ES. Then ``TrainedModelProvider.deleteTrainedModel``: ``lang_ident_model_1`` is 400
        (``INFERENCE_CANNOT_DELETE_ML_MANAGED_MODEL``), and the id is a term query, so a wildcard or a
        missing id deletes nothing and is 404 ``Could not find trained model [<id>]``.
        """
        force = _bool_param(params, "force", False)
        if not force and model_id in self._referenced():
            raise _status(
                409,
                f"Cannot delete model [{model_id}] as it is still referenced by ingest processors; "
                "use force to delete the model",
            )
        deployed = [d for d in self._deployments.values() if d.model_id == model_id]
        if deployed and not force:
            raise _status(
                409,
                f"Cannot delete model [{model_id}] as it is currently deployed; use force to delete the model",
            )
        if deployed:
            self._deployments.pop(model_id, None)
        if model_id == LANG_IDENT:
            raise _status(400, f"Unable to delete model [{model_id}] as it is required by machine learning")
        model = self._get_model(model_id)
        del self._models[model.model_id]
        return {"acknowledged": True}

    def _put_definition(self, model_id: str, part_text: str, body: Any) -> dict[str, Any]:
        """``PUT _ml/trained_models/<id>/definition/<part>``.

        Follows ``PutTrainedModelDefinitionPartAction.Request`` (parsing, ``validate()``) and
        ``TransportPutTrainedModelDefinitionPartAction.doExecute`` (license, model lookup, ``location``)
        with ``TrainedModelProvider.storeTrainedModelDefinitionDoc`` (a part stored twice is a
        ``VersionConflictEngineException`` turned into ``resource_already_exists_exception`` with
        ``Messages.INFERENCE_TRAINED_MODEL_DOC_EXISTS``). Each part keeps its own ``total_definition_length``
        and ``total_parts``: nothing compares them across parts here; ``_start`` does
        (``TransportStartTrainedModelDeploymentAction.checkFullModelDefinitionIsPresent``).
        """
        try:
            part = int(part_text)
            if not -(2**31) <= part < 2**31:  # RestRequest.paramAsInt: Integer.parseInt
                raise ValueError(part_text)
        except ValueError:
            raise ESError(
                400,
                "illegal_argument_exception",
                f"Failed to parse int parameter [part] with value [{part_text}]",
            ) from None
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        for key in body:
            if key not in ("definition", "total_definition_length", "total_parts"):
                raise ESError(
                    400,
                    "x_content_parse_exception",
                    f"[1:2] [put_trained_model_part_action] unknown field [{key}]",
                )
        definition = body.get("definition")
        total_length = body.get("total_definition_length", 0)
        total_parts = body.get("total_parts", 0)
        for name, value in (("total_definition_length", total_length), ("total_parts", total_parts)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ESError(
                    400,
                    "x_content_parse_exception",
                    f"[1:2] [put_trained_model_part_action] failed to parse field [{name}]",
                )
        data = b""
        if definition is not None:
            try:
                data = base64.b64decode(str(definition), validate=True)
            except (binascii.Error, ValueError):
                raise ESError(
                    400,
                    "x_content_parse_exception",
                    "[1:16] [put_trained_model_part_action] failed to parse field [definition]",
                ) from None
        else:
            # Request's constructor: ExceptionsHelper.requireNonNull(definition, DEFINITION)
            raise ESError(400, "illegal_argument_exception", "[definition] must not be null.")
        errors = []
        if part < 0:
            errors.append("[part] must be greater or equal to 0")
        if total_parts <= 0:
            errors.append("[total_parts] must be greater than 0")
        if total_parts > MAX_NUM_NATIVE_DEFINITION_PARTS:
            errors.append(f"[total_parts] must be less than or equal to {MAX_NUM_NATIVE_DEFINITION_PARTS}")
        if total_length <= 0:
            errors.append("[total_definition_length] must be greater than 0")
        if part >= total_parts:
            errors.append("[part] must be less than total_parts")
        if errors:
            raise _validation_error(errors)
        self._check_license()
        model = self._get_model(model_id)
        if model.model_type != "pytorch":
            raise ESError(
                400, "status_exception", f"cannot put definition for model [{model_id}] as location is null"
            )
        if part in model.parts:
            raise ESError(
                400,
                "resource_already_exists_exception",
                f"Trained machine learning model chunked doc [{model_id}][{part}] already exists",
            )
        model.parts[part] = _Part(data, total_length, total_parts)
        model.config["model_size_bytes"] = model.total_definition_length
        return {"acknowledged": True}

    def _put_vocabulary(self, model_id: str, body: Any) -> dict[str, Any]:
        self._check_license()
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        for key in body:
            if key not in ("vocabulary", "merges", "scores"):
                raise ESError(
                    400,
                    "x_content_parse_exception",
                    f"[1:2] [put_trained_model_vocabulary_action] unknown field [{key}]",
                )
        vocabulary = body.get("vocabulary")
        if not isinstance(vocabulary, list) or not vocabulary:
            raise _validation_error(["[vocabulary] must not be empty"])
        model = self._get_model(model_id)
        if model.model_type != "pytorch":
            raise ESError(
                400,
                "status_exception",
                f"cannot put vocabulary for model [{model_id}] as it is not a pytorch model",
            )
        model.vocabulary = {k: list(v) for k, v in body.items() if isinstance(v, list)}
        return {"acknowledged": True}

    # ------------------------------------------------------------------------------------- deployments
    def _start(self, model_id: str, params: dict[str, str], body: Any) -> dict[str, Any]:
        """``POST _ml/trained_models/<model_id>/deployment/_start``.

        Follows ``RestStartTrainedModelDeploymentAction.prepareRequest`` (``wait_for`` through
        ``AllocationStatus.State.fromString``: case-insensitive, an unknown value is the enum's
        ``IllegalArgumentException``) and ``TransportStartTrainedModelDeploymentAction.masterOperation``
        in its order: license; an existing deployment with the same id is 400 before the model is even
        looked up; the model (404), its type, a deployment id that names another model, then
        ``checkFullModelDefinitionIsPresent`` (:meth:`_Model.definition_problem`). A deployment whose
        model fails to load on the node: ``DeploymentStartedPredicate`` sees the failed route and
        ``deleteFailedDeployment`` removes it, answering 500 "Could not start trained model deployment,
        the following nodes failed with errors [{node=reason}]"; with ``wait_for=starting`` the call
        returns before the load, so the deployment stays, in state ``failed`` (the reason text is a guess).
        """
        self._check_license()
        deployment_id = params.get("deployment_id") or model_id
        number = _int_param(params, "number_of_allocations")
        threads = _int_param(params, "threads_per_allocation")
        queue = _int_param(params, "queue_capacity")
        priority = params.get("priority", "normal")
        wait_for = params.get("wait_for", "started").strip().lower()
        adaptive = None
        if isinstance(body, dict):
            for key in body:
                if key not in (
                    "adaptive_allocations",
                    "number_of_allocations",
                    "threads_per_allocation",
                    "queue_capacity",
                    "priority",
                    "cache_size",
                ):
                    raise ESError(
                        400,
                        "x_content_parse_exception",
                        f"[1:2] [start_trained_model_deployment] unknown field [{key}]",
                    )
            adaptive = body.get("adaptive_allocations")
            number = body.get("number_of_allocations", number)
            threads = body.get("threads_per_allocation", threads)
            queue = body.get("queue_capacity", queue)
            priority = body.get("priority", priority)
        if priority not in ("normal", "low"):
            raise ESError(
                400,
                "illegal_argument_exception",
                f"No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.Priority."
                f"{str(priority).upper()}",
            )
        if wait_for not in ("starting", "started", "fully_allocated"):
            raise ESError(
                400,
                "illegal_argument_exception",
                "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.AllocationStatus.State."
                + params.get("wait_for", "").strip().upper(),
            )
        errors = []
        adaptive_on = isinstance(adaptive, dict) and adaptive.get("enabled", False)
        if adaptive_on and number is not None:
            errors.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
        if number is not None and number < 1:
            errors.append("[number_of_allocations] must be a positive integer")
        if threads is not None and (threads < 1 or threads > 32 or threads & (threads - 1)):
            errors.append("[threads_per_allocation] must be a power of 2 less than or equal to 32")
        if queue is not None and queue < 1:
            errors.append("[queue_capacity] must be a positive integer")
        if queue is not None and queue >= MAX_QUEUE_CAPACITY:
            errors.append(f"[queue_capacity] must be less than {MAX_QUEUE_CAPACITY}")
        if priority == "low":
            if number is not None and number != 1:
                errors.append("[number_of_allocations] must be 1 when [priority] is low")
            if threads is not None and threads != 1:
                errors.append("[threads_per_allocation] must be 1 when [priority] is low")
        if isinstance(adaptive, dict):
            low = adaptive.get("min_number_of_allocations")
            high = adaptive.get("max_number_of_allocations")
            if low is not None and low < 0:
                errors.append("[min_number_of_allocations] must be a non-negative integer")
            if high is not None and high < 1:
                errors.append("[max_number_of_allocations] must be a positive integer")
            if low is not None and high is not None and low > high:
                errors.append(
                    "[max_number_of_allocations] must be greater than or equal to [min_number_of_allocations]"
                )
        elif adaptive is not None:
            raise ESError(400, "x_content_parse_exception", "[adaptive_allocations] must be an object")
        if errors:
            raise _validation_error(errors)

        if deployment_id in self._deployments:
            raise _status(
                400,
                f"Could not start model deployment because an existing deployment with the same "
                f"id [{deployment_id}] exist",
            )
        model = self._get_model(model_id)
        if model.model_type != "pytorch":
            raise ESError(
                400,
                "status_exception",
                f"model [{model_id}] of type [{model.model_type}] cannot be deployed. "
                "Only PyTorch models can be deployed",
            )
        if deployment_id != model_id and deployment_id in self._models:
            raise ESError(
                400,
                "status_exception",
                f"Deployment id [{deployment_id}] is the same as an another model which is not the model "
                "being deployed. Deployment id can be the same as the model being deployed but cannot "
                "match a different model",
            )
        problem = model.definition_problem()
        if problem is not None:
            raise problem
        if model.vocabulary is None:
            raise ESError(
                404, "resource_not_found_exception", f"Could not find trained model vocabulary [{model_id}]"
            )

        if priority == "low":
            number, threads = 1, 1
        if adaptive_on:
            number = max(int(adaptive.get("min_number_of_allocations") or 0), 1)  # type: ignore[union-attr]
        number = number or 1
        threads = threads or 1
        metadata = model.config.get("metadata") or {}
        per_deployment = int(metadata.get("per_deployment_memory_bytes") or 0)
        per_allocation = int(metadata.get("per_allocation_memory_bytes") or 0)
        required = _required_memory(model, number)
        if self._ml_nodes() <= 0:
            self._raise_no_capacity(model_id, "none")
        available = self._ml_memory_bytes()
        if required > available:
            self._raise_no_capacity(
                model_id,
                f"{{{NODE_NAME}}}{{{NODE_ID}}} This node has insufficient available memory. "
                f"Available memory for ML [{available} ({_mb(available)})], memory required by existing "
                f"jobs and models [0 (0b)], estimated memory required for this model [{required} "
                f"({_mb(required)})].",
            )

        cache_size = params.get("cache_size")
        if isinstance(body, dict) and body.get("cache_size") is not None:
            cache_size = str(body["cache_size"])
        deployment = _Deployment(
            deployment_id=deployment_id,
            model_id=model_id,
            number_of_allocations=number,
            threads_per_allocation=threads,
            queue_capacity=queue or 10_000,
            priority=priority,
            cache_size=cache_size,
            adaptive=copy.deepcopy(adaptive) if isinstance(adaptive, dict) else None,
            per_deployment_memory_bytes=per_deployment,
            per_allocation_memory_bytes=per_allocation,
            model_bytes=model.total_definition_length,
            start_time=self._clock(),
        )
        try:
            deployment.module = _load_module(model.definition_bytes())
        except Exception as exc:  # noqa: BLE001 -- any load failure means a failed deployment
            deployment.state = "failed"
            deployment.reason = f"Failed to load model: {exc}".splitlines()[0]
            if wait_for == "starting":
                # ES answered while the route was still starting; the failure shows in _stats later.
                reason, deployment.state, deployment.reason = deployment.reason, "starting", None
                answer = {"assignment": self._assignment(deployment)}
                deployment.state, deployment.reason = "failed", reason
                self._deployments[deployment_id] = deployment
                return answer
            raise _status(
                500,
                "Could not start trained model deployment, the following nodes failed with errors "
                f"[{{{NODE_ID}={deployment.reason}}}]",
            ) from None
        kind, options = next(iter(model.task()[1]["tokenization"].items()))
        deployment.tokenizer = WordPieceTokenizer(
            model.vocabulary["vocabulary"], do_lower_case=bool(options.get("do_lower_case", False)), kind=kind
        )
        self._deployments[deployment_id] = deployment
        return {"assignment": self._assignment(deployment)}

    def _raise_no_capacity(self, model_id: str, explanation: str) -> None:
        detail = (
            f"Could not start deployment because no suitable nodes were found, allocation explanation "
            f"[{explanation}]"
        )
        raise _status(
            429,
            "Could not start deployment because no ML nodes with sufficient capacity were found",
            caused_by={"type": "illegal_state_exception", "reason": detail},
        )

    def _assignment(self, d: _Deployment) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model_id": d.model_id,
            "deployment_id": d.deployment_id,
            "model_bytes": d.model_bytes,
            "threads_per_allocation": d.threads_per_allocation,
            "number_of_allocations": d.number_of_allocations,
            "queue_capacity": d.queue_capacity,
            "priority": d.priority,
            "per_deployment_memory_bytes": d.per_deployment_memory_bytes,
            "per_allocation_memory_bytes": d.per_allocation_memory_bytes,
        }
        if d.cache_size is not None:
            params["cache_size"] = d.cache_size
        out: dict[str, Any] = {
            "task_parameters": params,
            "routing_table": {
                NODE_ID: {
                    "current_allocations": d.number_of_allocations if d.state == "started" else 0,
                    "target_allocations": d.number_of_allocations,
                    "routing_state": d.state,
                    "reason": d.reason or "",
                }
            },
            "assignment_state": "started" if d.state == "started" else "starting",
            "start_time": datetime.fromtimestamp(d.start_time / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "max_assigned_allocations": d.number_of_allocations,
        }
        if d.adaptive is not None:
            out["adaptive_allocations"] = d.adaptive
        return out

    def _find_deployment(self, some_id: str) -> _Deployment | None:
        if some_id in self._deployments:
            return self._deployments[some_id]
        for deployment in self._deployments.values():
            if deployment.model_id == some_id:
                return deployment
        return None

    def _stop(self, deployment_id: str, params: dict[str, str], body: Any) -> dict[str, Any]:
        """``POST _ml/trained_models/<deployment_id>/deployment/_stop``.

        Follows ``TransportStopTrainedModelDeploymentAction.doExecute`` (x-pack/plugin/ml/.../action/
        TransportStopTrainedModelDeploymentAction.java): the id is looked up as a deployment id only
        (``TrainedModelAssignmentMetadata.assignmentForDeploymentId``; no wildcards, no ``_all``, no model
        id). No such deployment: ``{"stopped": true}`` when ``allow_no_match`` (the default, in
        ``StopTrainedModelDeploymentAction.Request``), else 404 ``missingModelDeployment``. Without
        ``force``, a deployment id that an ingest ``inference`` processor names
        (``InferenceProcessorInfoExtractor.getModelIdsFromInferenceProcessors``) is 409; a pipeline naming
        the model id of a deployment under another id does not block it. A body is parsed by
        ``Request.parseRequest`` (``model_id``, ``allow_no_match``, ``force``); query parameters are read
        when there is none (``RestStopTrainedModelDeploymentAction``; that handler's newest source is not
        stored, so taking both when both are given is a guess). No license check.
        """
        allow_no_match = _bool_param(params, "allow_no_match", True)
        force = _bool_param(params, "force", False)
        if isinstance(body, dict):
            parsed = dict(body)
            for key, value in body.items():
                if key not in ("model_id", "allow_no_match", "force"):
                    raise ESError(
                        400,
                        "x_content_parse_exception",
                        f"[1:2] [cluster:admin/xpack/ml/trained_models/deployment/stop] unknown field [{key}]",
                    )
                if key != "model_id" and value in ("true", "false"):
                    parsed[key] = value == "true"  # ObjectParser's booleans take the strings too
                elif key != "model_id" and not isinstance(value, bool):
                    raise ESError(
                        400,
                        "x_content_parse_exception",
                        f"[1:2] [cluster:admin/xpack/ml/trained_models/deployment/stop] failed to parse field "
                        f"[{key}]",
                    )
            if body.get("model_id") not in (None, deployment_id):
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"Inconsistent model_id; '{body['model_id']}' specified in the body differs from "
                    f"'{deployment_id}' specified as a URL argument",
                )
            allow_no_match = parsed.get("allow_no_match", allow_no_match)
            force = parsed.get("force", force)
        deployment = self._deployments.get(deployment_id)
        if deployment is None:
            if not allow_no_match:
                raise _missing_deployment(deployment_id)
            return {"stopped": True}
        if not force and deployment_id in self._referenced():
            raise _status(
                409,
                f"Cannot stop deployment [{deployment_id}] as it is referenced by ingest processors; "
                "use force to stop the deployment",
            )
        del self._deployments[deployment_id]
        return {"stopped": True}

    def _update(self, some_id: str, params: dict[str, str], body: Any) -> dict[str, Any]:
        deployment = self._deployments.get(some_id)
        if deployment is None:
            raise ESError(
                404, "resource_not_found_exception", f"No known model deployment with id [{some_id}]"
            )
        body = body if isinstance(body, dict) else {}
        number = body.get("number_of_allocations", _int_param(params, "number_of_allocations"))
        adaptive = body.get("adaptive_allocations")
        errors = []
        if number is not None and isinstance(adaptive, dict) and adaptive.get("enabled"):
            errors.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
        if number is not None and number < 1:
            errors.append("[number_of_allocations] must be a positive integer")
        if number is None and adaptive is None:
            errors.append("Either [number_of_allocations] or [adaptive_allocations] must be set")
        if number is not None and deployment.priority == "low" and number != 1:
            errors.append("[number_of_allocations] must be 1 when [priority] is low")
        if errors:
            raise _validation_error(errors)
        if number is not None:
            deployment.number_of_allocations = number
        if isinstance(adaptive, dict):
            deployment.adaptive = copy.deepcopy(adaptive)
            if adaptive.get("enabled"):
                deployment.number_of_allocations = max(int(adaptive.get("min_number_of_allocations") or 0), 1)
        return {"assignment": self._assignment(deployment)}

    # ------------------------------------------------------------------------------------------- stats
    def _stats(self, expression: str, params: dict[str, str]) -> dict[str, Any]:
        """``GET _ml/trained_models[/<ids>]/_stats``.

        Follows ``TransportGetTrainedModelsStatsAction.doExecute`` and
        ``GetTrainedModelsStatsAction.Response.Builder.build``: a deployment id in the expression adds
        its model (``addModelsUsedInMatchingDeployments``); a model gets one entry per deployment that the
        expression matches by deployment id or by model id (``getDeploymentStats``), else one entry
        without ``deployment_stats``. ``pipeline_count`` counts the pipelines whose ``inference``
        processors name the deployment (when the expression matched its id) or else the model
        (``pipelineIdsByResource``, ``inferenceIngestStatsByModelId``). ES then adds an ``ingest`` object
        of per-pipeline counters; the test cluster does not count ingest per pipeline, so it leaves that
        object out rather than show made-up numbers.
        """
        allow_no_match = _bool_param(params, "allow_no_match", True)
        tokens = [t.strip() for t in expression.split(",") if t.strip()] if expression else []
        tokens = tokens or ["_all"]

        def matches(some_id: str) -> bool:
            return any(t in ("_all", "*") or fnmatch.fnmatchcase(some_id, t) for t in tokens)

        matched_deployments = {d for d in self._deployments if matches(d)}
        names = list(tokens)
        names += sorted({self._deployments[d].model_id for d in matched_deployments} - set(tokens))
        # A token that is only a deployment id is not an unknown model (ES passes matchedDeploymentIds).
        names = [n for n in names if n in self._models or n not in matched_deployments or "*" in n]
        models = self._resolve_models(",".join(names) or "_all", allow_no_match)
        start = _int_param(params, "from") or 0
        size = _int_param(params, "size")
        page = models[start : start + size if size is not None else None]
        referenced = self._referenced()
        entries = []
        for model in page:
            deployments = sorted(
                (
                    d
                    for d in self._deployments.values()
                    if d.model_id == model.model_id and (matches(d.deployment_id) or matches(d.model_id))
                ),
                key=lambda d: d.deployment_id,
            )
            targets: list[_Deployment | None] = list(deployments) or [None]
            for deployment in targets:
                pipelines = referenced.get(model.model_id, [])
                if deployment is not None and deployment.deployment_id in matched_deployments:
                    pipelines = referenced.get(deployment.deployment_id) or pipelines
                entries.append(self._model_stats(model, deployment, len(pipelines)))
        return {"count": len(models), "trained_model_stats": entries}

    def _model_stats(self, model: _Model, d: _Deployment | None, pipeline_count: int) -> dict[str, Any]:
        """One ``TrainedModelStats``: ``inference_stats`` is the deployment's
        ``AssignmentStats.getOverallInferenceStats`` (failures = errors + timeouts + rejections). An
        undeployed model has it only from stats ES persisted for models run in the JVM (tree ensembles);
        the test cluster persists none, so it is absent then (``TrainedModelProvider.getInferenceStats``
        finds no stats docs: from memory of that method, a guess)."""
        size = (
            model.total_definition_length
            if model.model_type == "pytorch"
            else model.config.get("model_size_bytes", 0)
        )
        entry: dict[str, Any] = {
            "model_id": model.model_id,
            "model_size_stats": {
                "model_size_bytes": size,
                "required_native_memory_bytes": _required_memory(model, d.number_of_allocations if d else 1)
                if model.model_type == "pytorch"
                else 0,
            },
            "pipeline_count": pipeline_count,
        }
        if d is not None:
            started = d.state == "started"
            entry["inference_stats"] = {
                "failure_count": d.error_count if started else 0,
                "inference_count": d.inference_count if started else 0,
                "cache_miss_count": 0,
                "missing_all_fields_count": 0,
                "timestamp": self._clock(),
            }
            entry["deployment_stats"] = self._deployment_stats(d)
        return entry

    def _deployment_stats(self, d: _Deployment) -> dict[str, Any]:
        """``AssignmentStats.toXContent`` with one ``NodeStats`` (``forStartedState`` /
        ``forNotStartedState``): counters that are 0 (``error_count``, ``rejected_execution_count``,
        ``timeout_count``, and the deployment's ``inference_count``) are left out as ES leaves them out;
        averages only after an inference; ``peak_throughput_per_minute`` and ``throughput_last_minute``
        come from whole one-minute periods (:meth:`_Deployment.recent_stats`), so they stay 0 during the
        first minute."""
        started = d.state == "started"
        allocations = d.number_of_allocations if started else 0
        node: dict[str, Any] = {
            "node": {
                NODE_ID: {
                    "name": NODE_NAME,
                    "ephemeral_id": NODE_ID,
                    "transport_address": "127.0.0.1:9300",
                    "external_id": NODE_NAME,
                    "attributes": {},
                    "roles": ["data", "ingest", "master", "ml", "transform"],
                }
            },
            "routing_state": {"routing_state": d.state, **({"reason": d.reason} if d.reason else {})},
        }
        if started:
            recent_count, recent_avg, recent_hits = d.recent_stats(self._clock())
            node["inference_count"] = d.inference_count
            if d.inference_count > 0:
                node["average_inference_time_ms"] = d.total_inference_ms / d.inference_count
                misses = d.inference_count - d.cache_hits
                if misses > 0:
                    node["average_inference_time_ms_excluding_cache_hits"] = (
                        d.total_inference_ms_excluding_cache_hits / misses
                    )
            node["inference_cache_hit_count"] = d.cache_hits
            if d.last_access is not None:
                node["last_access"] = d.last_access
            node["number_of_pending_requests"] = 0
            if d.error_count > 0:
                node["error_count"] = d.error_count
            node["start_time"] = d.start_time
            node["threads_per_allocation"] = d.threads_per_allocation
            node["number_of_allocations"] = allocations
            node["peak_throughput_per_minute"] = d.peak_throughput
            node["throughput_last_minute"] = recent_count
            if recent_avg is not None:
                node["average_inference_time_ms_last_minute"] = recent_avg
            node["inference_cache_hit_count_last_minute"] = recent_hits
        else:
            node["peak_throughput_per_minute"] = 0
            node["throughput_last_minute"] = 0
        stats: dict[str, Any] = {
            "deployment_id": d.deployment_id,
            "model_id": d.model_id,
            "threads_per_allocation": d.threads_per_allocation,
            "number_of_allocations": d.number_of_allocations,
            "queue_capacity": d.queue_capacity,
            "state": d.state,
            "allocation_status": {
                "allocation_count": allocations,
                "target_allocation_count": d.number_of_allocations,
                "state": "fully_allocated" if started else "starting",
            },
            "priority": d.priority,
            "start_time": d.start_time,
        }
        if d.state == "failed":
            stats["reason"] = d.reason
        if d.cache_size is not None:
            stats["cache_size"] = d.cache_size
        if d.adaptive is not None:
            stats["adaptive_allocations"] = d.adaptive
        errors = d.error_count if started else 0
        if errors > 0:
            stats["error_count"] = errors
        if started and d.inference_count > 0:
            stats["inference_count"] = d.inference_count
        stats["peak_throughput_per_minute"] = node["peak_throughput_per_minute"]
        stats["nodes"] = [node]
        return stats

    # ------------------------------------------------------------------------------------------- infer
    # Two paths, as in ES 9.x:
    # - coordinated (TransportCoordinatedInferenceAction): text inputs from `input_output` inference
    #   processors and query_vector_builder. With no assignment for the id it asks the inference
    #   service, which knows no endpoint here, so: 404 "[id] is not an inference service model or a
    #   deployed ml model". With an assignment it goes on to the internal path.
    # - internal (TransportInternalInferModelAction): `_infer`, and document maps from `field_map`
    #   processors (CoordinatedInferenceAction.Request.forMapInput -> hasObjects -> doInClusterModel).
    def _assignments(self, some_id: str) -> list[_Deployment]:
        """``TrainedModelAssignmentUtils.modelAssignments``: the deployment with that id, else every
        deployment of the model with that id (x-pack/plugin/core/.../assignment/TrainedModelAssignmentUtils.java)."""
        if some_id in self._deployments:
            return [self._deployments[some_id]]
        return [d for d in self._deployments.values() if d.model_id == some_id]

    @staticmethod
    def _pick_assignment(assignments: list[_Deployment]) -> _Deployment:
        """``TransportInternalInferModelAction.pickAssignment``: started first, then starting, stopping,
        failed (ES shuffles within a state; here the first one wins)."""
        order = {"started": 0, "starting": 1, "stopping": 2, "failed": 3}
        return min(assignments, key=lambda d: order.get(d.state, 1))

    def _check_infer_license(self, some_id: str) -> None:
        """``TransportInternalInferModelAction.doExecute`` without a Platinum+ license: the model config is
        read first (an unknown id, a deployment id included, is 404 ``Could not find trained model``),
        then a model above the basic license level (every PyTorch model) is 403. ``previouslyLicensed``
        (a processor that already ran before the downgrade keeps working) is not emulated."""
        if self._license_type() in PAID_LICENSES:
            return
        model = self._models.get(some_id)
        if model is None:
            raise _not_found_model(some_id)
        if model.model_id != LANG_IDENT:
            raise license_error("ml")

    def _resolve_internal(self, some_id: str) -> tuple[_Deployment, _Model]:
        """The checks of ``TransportInternalInferModelAction.doInfer`` / ``getModelAndInfer`` /
        ``inferAgainstAllocatedModel`` (x-pack/plugin/ml/.../action/TransportInternalInferModelAction.java):

        - no assignment, unknown id: 404 ``resource_not_found_exception`` "Could not find trained model [id]";
        - no assignment, a PyTorch model: 409 ``status_exception`` "Model [id] must be deployed to use.
          Please deploy with the start trained model deployment API.";
        - the assignment is stopping or failed: 409 "Trained model [deployment] is [stopping]";
        - no started allocation: 409 "Trained model deployment [id] is not allocated to any nodes"
          (the id as requested, not the deployment's). A deployment whose only route failed to load is
          such a one: its assignment state stays ``starting`` (as ``_assignment`` reports it) while the
          route is ``failed``.
        """
        self._check_infer_license(some_id)
        assignments = self._assignments(some_id)
        if not assignments:
            model = self._models.get(some_id)
            if model is None:
                raise _not_found_model(some_id)
            if model.model_type == "pytorch":
                raise _status(
                    409,
                    f"Model [{some_id}] must be deployed to use. Please deploy with the start trained model "
                    "deployment API.",
                )
            # ES runs tree/lang_ident models in the JVM (LocalModel); this test cluster cannot.
            raise ESError(500, "illegal_state_exception", f"the test cluster cannot run model [{some_id}]")
        deployment = self._pick_assignment(assignments)
        if deployment.state == "stopping":
            raise _status(409, f"Trained model [{deployment.deployment_id}] is [{deployment.state}]")
        if deployment.state != "started":
            raise _status(409, f"Trained model deployment [{some_id}] is not allocated to any nodes")
        model = self._models.get(deployment.model_id)
        if model is None:
            raise _not_found_model(deployment.model_id)
        return deployment, model

    def _infer_api(
        self, some_id: str, params: dict[str, str], body: Any, *, deprecated: bool
    ) -> dict[str, Any]:
        """``POST _ml/trained_models/<id>/_infer`` (RestInferTrainedModelAction -> the internal path,
        ``TransportInternalInferModelAction``). The deprecated ``deployment/_infer`` is served the same
        way and answers with the first result only (guess: RestInferTrainedModelDeploymentAction).

        Per document, ``NlpInferenceInput.extractInput`` reads the model's first input field: missing is
        400 ``status_exception`` "Input field [f] does not exist in the source document", not a string is
        400 "Input value [v] for field [f] must be a string". An ``inference_config`` of another task is
        403 (``TrainedModelDeploymentTask.infer``). ``is_truncated: true`` is added to a result whose input
        was cut at ``max_sequence_length`` (``NlpInferenceResults.toXContent``).
        """
        if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
            raise _validation_error(
                ["[docs] must not be null"]
                if not isinstance(body, dict) or body.get("docs") is None
                else ["[docs] must be an array"]
            )
        docs = body["docs"]
        if not docs:
            raise _validation_error(["at least one document is required"])
        for key in body:
            if key not in ("docs", "inference_config", "text_input"):
                raise ESError(
                    400, "x_content_parse_exception", f"[1:2] [infer_trained_model] unknown field [{key}]"
                )
        deployment, model = self._resolve_internal(some_id)
        options = self._options_with_update(model, body.get("inference_config"))
        results = self._infer_docs(deployment, model, docs, options)
        out = []
        for result in results:
            entry: dict[str, Any] = {result.results_field: list(result)}
            if result.is_truncated:
                entry["is_truncated"] = True
            out.append(entry)
        if deprecated:
            return out[0]
        return {"inference_results": out}

    def _options_with_update(self, model: _Model, override: Any) -> dict[str, Any]:
        """The model's task options with an ``inference_config`` update applied. An update for another task
        is 403 ``status_exception`` "Trained model [m] is configured for task [t] but called with task [u]"
        (``TrainedModelDeploymentTask.infer``: ``update.isSupported(config) == false``)."""
        task, options = model.task()
        options = copy.deepcopy(options)
        if not isinstance(override, dict) or not override:
            return options
        o_task, o_options = next(iter(override.items()))
        if o_task != task:
            raise _status(
                403,
                f"Trained model [{model.model_id}] is configured for task [{task}] but called with task "
                f"[{o_task}]",
            )
        options.update({k: v for k, v in (o_options or {}).items() if k != "tokenization"})
        tok_override = (o_options or {}).get("tokenization")
        if isinstance(tok_override, dict) and tok_override:
            kind, tok = next(iter(options["tokenization"].items()))
            options["tokenization"] = {kind: {**tok, **next(iter(tok_override.values()))}}
        return options

    def _infer_docs(
        self, deployment: _Deployment, model: _Model, docs: list[Any], options: dict[str, Any]
    ) -> list[InferenceVector]:
        field_names = (model.config.get("input") or {}).get("field_names") or [DEFAULT_INPUT_FIELD]
        texts = [_extract_input(doc, field_names[0]) for doc in docs]
        return self._run(deployment, model, texts, options)

    def infer(self, model_or_deployment_id: str, inputs: list[Any]) -> list[InferenceVector]:
        """Run a model for the ``inference`` processor and ``query_vector_builder``, choosing the path as
        ``TransportCoordinatedInferenceAction.doExecute`` does: document maps (a ``field_map`` processor)
        go to the internal path, text inputs (``input_output``, ``query_vector_builder``) to ``forNlp``.

        Each result is the predicted value (a list) carrying ``is_truncated``, ``results_field``, ``task``
        and ``model_id``. Raises ``ESError``: 404 ``status_exception`` "[id] is not an inference service
        model or a deployed ml model" for text inputs and an id with no deployment (unknown or not
        deployed alike); otherwise the internal path's errors (see :meth:`_resolve_internal`), and 403
        ``security_exception`` on a basic license when the model is deployed.

        Example::

            ml.infer("my-model", ["a dog in the snow"])[0][:3]
            ml.infer("my-model", [{"text_field": "a dog"}])[0].results_field  # "predicted_value"
        """
        with self._lock:
            inputs = list(inputs)
            if inputs and all(isinstance(i, dict) for i in inputs):
                deployment, model = self._resolve_internal(model_or_deployment_id)
                return self._infer_docs(deployment, model, inputs, self._options_with_update(model, None))
            if not self._assignments(model_or_deployment_id):
                # forNlp: no assignment -> the inference service, which has no such endpoint here
                # (guess: it looks the endpoint up before any license check).
                raise _status(
                    404,
                    f"[{model_or_deployment_id}] is not an inference service model or a deployed ml model",
                )
            deployment, model = self._resolve_internal(model_or_deployment_id)
            task, options = model.task()
            return self._run(deployment, model, [str(t) for t in inputs], copy.deepcopy(options))

    def _run(
        self, d: _Deployment, model: _Model, texts: list[str], options: dict[str, Any]
    ) -> list[InferenceVector]:
        """Tokenize (BERT WordPiece, truncated to ``max_sequence_length``) and call the TorchScript
        ``forward``; each result carries ``is_truncated`` as ES's tokenizer reports it
        (``NlpTokenizer``/``BertTokenizer``: more tokens, specials included, than ``max_sequence_length``
        with ``truncate`` first/second)."""
        import torch

        assert d.tokenizer is not None
        kind, tok = next(iter(options["tokenization"].items()))
        if kind not in ("bert", "bert_ja", "mpnet"):
            raise _status(400, f"tokenization [{kind}] is not supported by the test cluster")
        task, _ = model.task()
        results_field = str(options.get("results_field") or "predicted_value")
        max_len = int(tok["max_sequence_length"])
        specials = bool(tok.get("with_special_tokens", True))
        truncate = str(tok.get("truncate", "first"))
        started = time.perf_counter()
        cache_key_base = f"{tok}"
        rows: list[list[Any] | None] = [None] * len(texts)
        cut = [False] * len(texts)
        todo: list[int] = []
        for i, text in enumerate(texts):
            key = cache_key_base + text
            if d.cache_size not in (None, "0", "0b") and key in d.cache:
                cached = copy.deepcopy(d.cache[key])
                rows[i], cut[i] = cached[0], bool(cached[1])
                d.cache_hits += 1
            else:
                todo.append(i)
        if todo:
            try:
                encoded = []
                for i in todo:
                    if truncate != "none":
                        full = d.tokenizer.encode(
                            texts[i], max_sequence_length=1 << 30, with_special_tokens=specials, truncate="first"
                        )
                        cut[i] = len(full) > max_len
                    encoded.append(
                        d.tokenizer.encode(
                            texts[i], max_sequence_length=max_len, with_special_tokens=specials, truncate=truncate
                        )
                    )
            except TokenizationError as exc:
                d.error_count += 1
                raise _status(400, str(exc)) from None
            longest = max(max(len(e) for e in encoded), 1)
            ids = torch.full((len(encoded), longest), d.tokenizer.pad_id, dtype=torch.int64)
            mask = torch.zeros((len(encoded), longest), dtype=torch.int64)
            for row, e in enumerate(encoded):
                if e:
                    ids[row, : len(e)] = torch.tensor(e, dtype=torch.int64)
                    mask[row, : len(e)] = 1
            types = torch.zeros_like(ids)
            positions = (
                torch.arange(longest, dtype=torch.int64).unsqueeze(0).expand(len(encoded), -1).contiguous()
            )
            args = (ids, mask, types, positions)
            count = _forward_arity(d.module)
            try:
                with torch.no_grad():
                    out = d.module(*args[:count])
            except Exception as exc:  # noqa: BLE001 -- the model's own failure becomes an ES error
                d.error_count += 1
                raise _status(500, f"Error in inference process: [{str(exc).splitlines()[0]}]") from None
            if isinstance(out, (tuple, list)):
                out = out[0]
            out = out.detach().to(torch.float64)
            if out.dim() == 1:
                out = out.unsqueeze(0)
            if out.dim() == 2:
                out = out.unsqueeze(1)
            for row, i in enumerate(todo):
                value = out[row].tolist()
                rows[i] = value
                if d.cache_size not in (None, "0", "0b"):
                    d.cache[cache_key_base + texts[i]] = [value, cut[i]]
        # the one place inference is counted: _Deployment.record_inference feeds _stats (AssignmentStats)
        d.record_inference(len(texts), (time.perf_counter() - started) * 1000, len(texts) - len(todo), self._clock())
        results = []
        for row_value, was_cut in zip(rows, cut, strict=True):
            assert row_value is not None
            # ``row_value`` is [tokens][dims] (a 2-D model output counts as one token); ES takes the first
            # row as the embedding (MlTextEmbeddingResults) and returns everything for pass_through.
            shaped = row_value[0] if task == "text_embedding" else row_value
            results.append(
                InferenceVector(
                    shaped, is_truncated=was_cut, results_field=results_field, task=task, model_id=model.model_id
                )
            )
        return results


class InferenceVector(list[Any]):
    """One NLP inference result: the predicted value (a list, what ES writes) plus what
    ``NlpInferenceResults`` carries: ``is_truncated`` (true only when the input was cut at the model's
    ``max_sequence_length``), the ``results_field`` of the model's config, its ``task`` and ``model_id``.

    Example::

        v = InferenceVector([0.1, 0.2], is_truncated=True, results_field="predicted_value",
                            task="text_embedding", model_id="m")
        v == [0.1, 0.2], v.is_truncated   # (True, True)
    """

    def __init__(
        self, value: list[Any], *, is_truncated: bool, results_field: str, task: str, model_id: str
    ) -> None:
        super().__init__(value)
        self.is_truncated = is_truncated
        self.results_field = results_field
        self.task = task
        self.model_id = model_id


def _java_text(value: Any) -> str:
    """``String.valueOf`` of a parsed JSON value, as ES messages print it (``[1, 2]``, ``{a=1}``, ``true``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _extract_input(doc: Any, field_name: str) -> str:
    """``NlpInferenceInput.extractInput`` (x-pack/plugin/ml/.../deployment/NlpInferenceInput.java): the value
    at ``field_name`` (a dotted path through objects, ``XContentMapValues.extractValue``); missing or null is
    400 "Input field [f] does not exist in the source document", not a string is 400 "Input value [v] for
    field [f] must be a string"."""
    node: Any = doc if isinstance(doc, dict) else {}
    if field_name in node:
        node = node[field_name]
    else:
        for part in field_name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        raise _status(400, f"Input field [{field_name}] does not exist in the source document")
    if not isinstance(node, str):
        raise _status(400, f"Input value [{_java_text(node)}] for field [{field_name}] must be a string")
    return node


def _required_memory(model: _Model, allocations: int) -> int:
    """ES's memory estimate for a PyTorch deployment: eland's metadata when present, else 2 x the file."""
    metadata = model.config.get("metadata") or {}
    per_deployment = int(metadata.get("per_deployment_memory_bytes") or 0)
    per_allocation = int(metadata.get("per_allocation_memory_bytes") or 0)
    if per_deployment > 0 and per_allocation > 0:
        return MEMORY_OVERHEAD + per_deployment + per_allocation * allocations
    return MEMORY_OVERHEAD + 2 * model.total_definition_length


def _load_module(data: bytes) -> Any:
    """``torch.jit.load`` a TorchScript archive from bytes, on CPU, in eval mode."""
    import torch

    module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    module.eval()
    return module


def _forward_arity(module: Any) -> int:
    """How many tensors ``forward`` takes (BERT-like: 4; RoBERTa/MPNet traces: 2)."""
    try:
        return max(len(module.forward.schema.arguments) - 1, 1)
    except (AttributeError, RuntimeError):
        return 4
