"""Requests as values: built by pure functions, printed in Kibana Dev Tools console form, then sent.

The same ``Request`` object is printed by ``--show-request``/``--dry-run`` and sent by ``send``, so what
a user pastes into Kibana is exactly what the toolkit sends. Requests never carry credentials: those
live in the client's headers.

Example::

    req = Request("PUT", "_ingest/pipeline/p", body={"processors": []})
    print(render(req))
    # PUT _ingest/pipeline/p
    # {
    #   "processors": []
    # }
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from toolkit.errors import ValidationError, mapped, not_elasticsearch

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


_MIME = "application/vnd.elasticsearch+json; compatible-with=9"


@dataclass(frozen=True)
class Request:
    """One HTTP request to Elasticsearch. ``path`` has no leading slash, as Kibana writes it."""

    method: str
    path: str
    body: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)
    ndjson: bool = False
    """``body`` is a list of objects sent as NDJSON (``_bulk``)."""

    @property
    def url_path(self) -> str:
        return "/" + self.path.lstrip("/")

    @property
    def query_string(self) -> str:
        items = [(k, _param(v)) for k, v in self.params.items() if v is not None]
        return urlencode(items, safe=",*:") if items else ""


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def path(*segments: str) -> str:
    """Join path segments, percent-encoding each (ids may contain characters URLs reserve)."""
    return "/".join(quote(s, safe=",*") for s in segments)


def render(request: Request) -> str:
    """The request as Kibana Dev Tools console text (method, path, then the JSON body)."""
    line = f"{request.method} {request.path.lstrip('/')}"
    if request.query_string:
        line += "?" + request.query_string
    if request.body is None:
        return line
    try:
        # allow_nan=False: NaN/Infinity are not JSON; Kibana and Elasticsearch would reject them.
        if request.ndjson:
            return line + "\n" + "\n".join(json.dumps(item, ensure_ascii=False, allow_nan=False)
                                            for item in request.body)
        return line + "\n" + json.dumps(request.body, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValidationError(f"{line}: the request holds a NaN or infinite number, which JSON cannot carry",
                              hint="give finite numbers (the option or setting named 'nan'/'inf')") from exc


def _has_non_finite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if depth > 100:
        return False
    if isinstance(value, Mapping):
        return any(_has_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v, depth + 1) for v in value)
    return False


def render_all(requests: Iterable[Request]) -> str:
    """Several requests separated by blank lines, ready to paste into the console."""
    return "\n\n".join(render(r) for r in requests) + "\n"


def exists(client: Elasticsearch, target: str, *, doing: str = "") -> bool:
    """``HEAD <target>``: True on 200, False on 404 (the client does not raise for HEAD 404)."""
    with mapped(doing or f"HEAD {target}"):
        response = client.perform_request("HEAD", "/" + target.lstrip("/"), headers={"accept": _MIME})
    meta = response.meta
    # The client returns a HEAD 404 without checking who answered: another server's 404 is not "missing".
    if meta.status == 404 and meta.headers and meta.headers.get("x-elastic-product") != "Elasticsearch":
        raise not_elasticsearch(meta, None, doing=doing or f"HEAD {target}")
    return 200 <= meta.status < 300


def send(client: Elasticsearch, request: Request, *, doing: str = "") -> Any:
    """Send a request through the official client and return the decoded body.

    Errors are raised as ``toolkit.errors`` types.
    """
    mime = _MIME
    headers = {"accept": mime}
    body: Any = request.body
    if body is not None and not request.ndjson and _has_non_finite(body):
        # The backstop: the client's serializer would write NaN/Infinity, which is not JSON.
        raise ValidationError(f"{request.method} {request.path}: the request holds a NaN or infinite number, "
                              "which JSON cannot carry", hint="give finite numbers (the option or setting "
                                                              "named 'nan'/'inf')")
    if body is not None:
        if request.ndjson:
            headers["content-type"] = "application/vnd.elasticsearch+x-ndjson; compatible-with=9"
            body = "".join(json.dumps(item) + "\n" for item in request.body)
        else:
            headers["content-type"] = mime
    target = request.url_path + (f"?{request.query_string}" if request.query_string else "")
    with mapped(doing or f"{request.method} {request.path}"):
        response = client.perform_request(request.method, target, headers=headers, body=body)
    return response.body
