"""Elasticsearch-shaped errors raised anywhere inside the test cluster.

Every handler raises :class:`ESError`; the HTTP layer turns it into the body and status Elasticsearch
would send::

    {"error": {"root_cause": [{"type": T, "reason": R}], "type": T, "reason": R, ...}, "status": N}
"""

from __future__ import annotations

from typing import Any


class ESError(Exception):
    """An error response: HTTP ``status``, ES error ``type`` and ``reason``, plus extra error keys."""

    def __init__(self, status: int, type: str, reason: str, **extra: Any) -> None:
        super().__init__(f"{status} {type}: {reason}")
        self.status = status
        self.type = type
        self.reason = reason
        self.extra = extra

    def error_object(self) -> dict[str, Any]:
        """The ``error`` object as ES nests it (also used for bulk item errors)."""
        return {"type": self.type, "reason": self.reason, **self.extra}

    def body(self) -> dict[str, Any]:
        """The full response body."""
        root = {"type": self.type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [root], **root}, "status": self.status}


def not_found_index(name: str) -> ESError:
    return ESError(404, "index_not_found_exception", f"no such index [{name}]",
                   index=name, **{"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_"})


def resource_not_found(reason: str) -> ESError:
    return ESError(404, "resource_not_found_exception", reason)


def bad_request(reason: str, type: str = "illegal_argument_exception") -> ESError:
    return ESError(400, type, reason)


def license_error(feature: str) -> ESError:
    return ESError(403, "security_exception", f"current license is non-compliant for [{feature}]",
                   license_expired_feature=feature)
