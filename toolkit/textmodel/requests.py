"""Pure builders for every trained-model request the toolkit sends (printable with ``devtools.render``).

Example::

    from toolkit.devtools import render
    print(render(infer_request("my-model", ["a dog in the snow"])))
    # POST _ml/trained_models/my-model/_infer
    # {"docs": [{"text_field": "a dog in the snow"}]}
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from toolkit.devtools import Request, path

INPUT_FIELD = "text_field"
SAMPLE_TEXT = "a dog playing in the snow"


@dataclass(frozen=True)
class StartOptions:
    """How to start a deployment (``POST _ml/trained_models/<id>/deployment/_start``).

    ``adaptive_min``/``adaptive_max`` set: adaptive allocations (body), no ``number_of_allocations``.
    """

    deployment_id: str
    number_of_allocations: int = 1
    threads_per_allocation: int = 1
    queue_capacity: int = 1024
    priority: str = "normal"
    adaptive_min: int | None = None
    adaptive_max: int | None = None

    @property
    def adaptive(self) -> bool:
        return self.adaptive_min is not None or self.adaptive_max is not None


def _models(model_id: str, *rest: str) -> str:
    return path("_ml", "trained_models", model_id, *rest)


def get_model_request(model_id: str) -> Request:
    return Request("GET", _models(model_id))


def stats_request(model_id: str) -> Request:
    return Request("GET", _models(model_id, "_stats"))


def put_config_request(model_id: str, config: dict[str, Any]) -> Request:
    return Request("PUT", _models(model_id), body=config)


def definition_part_request(model_id: str, part: int, chunk: bytes, *, total_length: int,
                            total_parts: int) -> Request:
    """One base64 chunk of the TorchScript file (parts are numbered from 0)."""
    body = {"definition": base64.b64encode(chunk).decode("ascii"), "total_definition_length": total_length,
            "total_parts": total_parts}
    return Request("PUT", _models(model_id, "definition", str(part)), body=body)


def vocabulary_request(model_id: str, vocab: dict[str, Any]) -> Request:
    return Request("PUT", _models(model_id, "vocabulary"), body=vocab)


def start_request(model_id: str, options: StartOptions) -> Request:
    """Starts without waiting (``wait_for=starting``): the toolkit polls ``_stats`` and shows progress."""
    params: dict[str, Any] = {
        "deployment_id": options.deployment_id,
        "threads_per_allocation": options.threads_per_allocation,
        "queue_capacity": options.queue_capacity,
        "priority": options.priority,
        "wait_for": "starting",
    }
    body = None
    if options.adaptive:
        body = {"adaptive_allocations": {
            "enabled": True,
            "min_number_of_allocations": options.adaptive_min if options.adaptive_min is not None else 1,
            "max_number_of_allocations": options.adaptive_max if options.adaptive_max is not None else 4,
        }}
    else:
        params = {"number_of_allocations": options.number_of_allocations, **params}
    return Request("POST", _models(model_id, "deployment", "_start"), body=body, params=params)


def stop_request(deployment_id: str, *, force: bool = False) -> Request:
    return Request("POST", _models(deployment_id, "deployment", "_stop"),
                   params={"force": True} if force else {})


def delete_request(model_id: str, *, force: bool = False) -> Request:
    return Request("DELETE", _models(model_id), params={"force": True} if force else {})


def infer_request(model_or_deployment_id: str, texts: list[str]) -> Request:
    return Request("POST", _models(model_or_deployment_id, "_infer"),
                   body={"docs": [{INPUT_FIELD: t} for t in texts]})
