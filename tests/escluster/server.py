"""HTTP layer of the test cluster: wire protocol (headers, media types, errors, auth, faults) and routing.

:func:`make_server` builds a ``ThreadingHTTPServer`` around a :class:`~tests.escluster.state.Cluster`;
``testing.running_cluster`` and ``python -m tests.escluster`` start it.

Example::

    server = make_server(Cluster(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
"""

from __future__ import annotations

import copy
import fnmatch
import gzip
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ESError
from .state import Cluster, nest_settings

Handler = Callable[..., Any]
_COMPAT = re.compile(r"compatible-with\s*=\s*(\d+)")
_JSON_TYPES = (
    "application/json",
    "application/vnd.elasticsearch+json",
    "application/x-ndjson",
    "application/vnd.elasticsearch+x-ndjson",
)


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    def body(self) -> Any:
        """The JSON body (None when empty); malformed JSON is 400 ``x_content_parse_exception``."""
        if not self._parsed:
            self._parsed = True
            if self.raw.strip():
                try:
                    self._json = json.loads(self.raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
                    raise ESError(
                        400, "x_content_parse_exception", f"[{line}:{col}] {getattr(exc, 'msg', str(exc))}"
                    ) from None
        return self._json

    def require_body(self) -> Any:
        body = self.body()
        if body is None:
            raise ESError(400, "parse_exception", "request body is required")
        return body


# ------------------------------------------------------------------------------------------------ routes


class Router:
    """Path patterns with ``{name}`` segments; literal segments win over variables, like ES's trie."""

    def __init__(self) -> None:
        self.routes: list[tuple[set[str], list[str], Handler]] = []

    def add(self, methods: str, pattern: str, handler: Handler) -> None:
        self.routes.append((set(methods.split(",")), [p for p in pattern.split("/") if p], handler))

    def match(self, method: str, parts: list[str]) -> tuple[Handler | None, dict[str, str], set[str]]:
        best_key: tuple[int, ...] | None = None
        found: list[tuple[set[str], dict[str, str], Handler]] = []
        for methods, pattern, handler in self.routes:
            if len(pattern) != len(parts):
                continue
            values: dict[str, str] = {}
            key = []
            for seg, part in zip(pattern, parts, strict=True):
                if seg.startswith("{"):
                    values[seg[1:-1]] = part
                    key.append(0)
                elif seg == part:
                    key.append(1)
                else:
                    break
            else:
                k = tuple(key)
                if best_key is None or k > best_key:
                    best_key, found = k, [(methods, values, handler)]
                elif k == best_key:
                    found.append((methods, values, handler))
        allowed: set[str] = set()
        for methods, values, handler in found:
            allowed |= methods
            if method in methods:
                return handler, values, allowed
        return None, {}, allowed


def build_router(cluster: Cluster) -> Router:
    """All endpoints of the test cluster."""
    r = Router()
    c = cluster

    def info(req: Request) -> Any:
        return {
            "name": "node-0",
            "cluster_name": c.cluster_name,
            "cluster_uuid": c.cluster_uuid,
            "version": {
                "number": c.version,
                "build_flavor": "default",
                "build_type": "tar",
                "build_hash": "0" * 40,
                "build_date": "2025-10-01T00:00:00.000000000Z",
                "build_snapshot": False,
                "lucene_version": "10.3.1",
                "minimum_wire_compatibility_version": "8.19.0",
                "minimum_index_compatibility_version": "8.0.0",
            },
            "tagline": "You Know, for Search",
        }

    r.add("GET,HEAD", "/", info)

    # -- cluster
    def health(req: Request, index: str | None = None) -> Any:
        wait = req.params.get("wait_for_status")
        timeout = _time_s(req.params.get("timeout", "30s"))
        order = {"green": 0, "yellow": 1, "red": 2}
        if wait is not None and wait not in order:
            raise ESError(400, "illegal_argument_exception", f"unknown cluster health status [{wait}]")
        deadline = time.monotonic() + timeout
        while True:
            body = c.health(index, req.params.get("level", "cluster"))
            if wait is None or order[body["status"]] <= order[wait]:
                return body
            if time.monotonic() >= deadline:
                body["timed_out"] = True
                return 408, body
            time.sleep(0.05)

    r.add("GET", "/_cluster/health", health)
    r.add("GET", "/_cluster/health/{index}", health)

    def nodes_info(req: Request, a: str | None = None, b: str | None = None) -> Any:
        stats = "stats" in (a, b)
        nodes = {}
        for n in c.nodes():
            node: dict[str, Any] = {
                "name": n["name"],
                "transport_address": "127.0.0.1:9300",
                "host": "127.0.0.1",
                "ip": "127.0.0.1",
                "roles": n["roles"],
                "attributes": n["attributes"],
            }
            memory = {"total_in_bytes": c.ml_memory_bytes, "free_in_bytes": c.ml_memory_bytes // 2}
            heap = {"heap_max_in_bytes": c.ml_memory_bytes // 2}
            if stats:
                node.update({"timestamp": int(time.time() * 1000), "os": {"mem": memory}, "jvm": {"mem": heap}})
            else:
                node.update(
                    {
                        "version": c.version,
                        "build_flavor": "default",
                        "build_type": "tar",
                        "build_hash": "0" * 40,
                        "total_indexing_buffer": 53687091,
                        "os": {
                            "name": "Linux",
                            "arch": "amd64",
                            "available_processors": 16,
                            "allocated_processors": 4,
                        },
                        "jvm": {"mem": heap},
                    }
                )
            nodes[n["id"]] = node
        total = len(nodes)
        return {
            "_nodes": {"total": total, "successful": total, "failed": 0},
            "cluster_name": c.cluster_name,
            "nodes": nodes,
        }

    r.add("GET", "/_nodes", nodes_info)
    r.add("GET", "/_nodes/{a}", nodes_info)
    r.add("GET", "/_nodes/{a}/{b}", nodes_info)

    # -- license
    r.add("GET", "/_license", lambda req: c.license_body())
    r.add("POST,PUT", "/_license/start_trial", lambda req: c.start_trial(req.params))
    r.add("POST,PUT", "/_license/start_basic", lambda req: c.start_basic(req.params))
    r.add("GET", "/_license/trial_status", lambda req: {"eligible_to_start_trial": not c.trial_used})
    r.add("GET", "/_license/basic_status", lambda req: {"eligible_to_start_basic": c.license_type != "basic"})

    def xpack(req: Request) -> Any:
        paid = c.license_type != "basic"
        return {
            "build": {"hash": "0" * 40, "date": "2025-10-01T00:00:00.000Z"},
            "license": {
                "uid": c.license_uid,
                "type": c.license_type,
                "mode": c.license_type,
                "status": "active",
            },
            "features": {
                "ml": {"available": paid, "enabled": True},
                "security": {"available": True, "enabled": False},
            },
            "tagline": "You know, for X",
        }

    r.add("GET", "/_xpack", xpack)

    # -- indices
    def put_index(req: Request, index: str) -> Any:
        return c.create_index(index, req.body())

    def get_index(req: Request, index: str) -> Any:
        return c.get_index(index, req.params)

    def head_index(req: Request, index: str) -> Any:
        return (200 if c.index_exists(index) else 404), None

    r.add("PUT", "/{index}", put_index)
    r.add("GET", "/{index}", get_index)
    r.add("HEAD", "/{index}", head_index)
    r.add("DELETE", "/{index}", lambda req, index: c.delete_index(index, req.params))
    r.add("POST", "/{index}/_close", lambda req, index: c.close_index(index))
    r.add("POST", "/{index}/_open", lambda req, index: c.open_index(index))
    r.add("GET,POST", "/_refresh", lambda req: c.refresh(None, req.params))
    r.add("GET,POST", "/{index}/_refresh", lambda req, index: c.refresh(index, req.params))
    r.add("GET", "/_mapping", lambda req: c.get_mapping(None, req.params))
    r.add("GET", "/{index}/_mapping", lambda req, index: c.get_mapping(index, req.params))
    r.add("PUT,POST", "/{index}/_mapping", lambda req, index: c.put_mapping(index, req.require_body()))
    r.add("GET", "/_settings", lambda req: c.get_settings(None, None, req.params))
    r.add("GET", "/_settings/{name}", lambda req, name: c.get_settings(None, name, req.params))
    r.add("GET", "/{index}/_settings", lambda req, index: c.get_settings(index, None, req.params))
    r.add("GET", "/{index}/_settings/{name}", lambda req, index, name: c.get_settings(index, name, req.params))
    r.add("PUT", "/_settings", lambda req: c.put_settings(None, req.require_body()))
    r.add("PUT", "/{index}/_settings", lambda req, index: c.put_settings(index, req.require_body()))

    # -- aliases
    r.add("POST", "/_aliases", lambda req: c.update_aliases(req.require_body()))
    for pattern in ("/{index}/_alias/{name}", "/{index}/_aliases/{name}"):
        r.add("PUT,POST", pattern, lambda req, index, name: c.put_alias(index, name, req.body()))
        r.add("DELETE", pattern, lambda req, index, name: c.delete_alias(index, name))

    def get_alias(req: Request, index: str | None = None, name: str | None = None) -> Any:
        return c.get_alias(index, name)

    def head_alias(req: Request, index: str | None = None, name: str | None = None) -> Any:
        status, _ = c.get_alias(index, name)
        if status == 200 and name and not _:
            status = 404
        return status, None

    for pattern in ("/_alias", "/_alias/{name}", "/{index}/_alias", "/{index}/_alias/{name}"):
        r.add("GET", pattern, get_alias)
        r.add("HEAD", pattern, head_alias)

    # -- templates
    r.add(
        "PUT,POST",
        "/_index_template/{name}",
        lambda req, name: c.put_index_template(name, req.require_body(), req.params),
    )
    r.add("GET", "/_index_template", lambda req: c.get_index_templates(None))
    r.add("GET", "/_index_template/{name}", lambda req, name: c.get_index_templates(name))
    r.add("DELETE", "/_index_template/{name}", lambda req, name: c.delete_index_template(name))
    r.add(
        "HEAD",
        "/_index_template/{name}",
        lambda req, name: (
            200 if _exists(lambda: c.get_index_templates(name)["index_templates"]) else 404,
            None,
        ),
    )
    r.add(
        "PUT,POST",
        "/_component_template/{name}",
        lambda req, name: c.put_component_template(name, req.require_body(), req.params),
    )
    r.add("GET", "/_component_template", lambda req: c.get_component_templates(None))
    r.add("GET", "/_component_template/{name}", lambda req, name: c.get_component_templates(name))
    r.add("DELETE", "/_component_template/{name}", lambda req, name: c.delete_component_template(name))
    r.add(
        "HEAD",
        "/_component_template/{name}",
        lambda req, name: (
            200 if _exists(lambda: c.get_component_templates(name)["component_templates"]) else 404,
            None,
        ),
    )

    # -- ingest
    r.add("PUT", "/_ingest/pipeline/{id}", lambda req, id: c.put_pipeline(id, req.require_body()))
    r.add("GET", "/_ingest/pipeline", lambda req: c.get_pipelines(None))
    r.add("GET", "/_ingest/pipeline/{id}", lambda req, id: c.get_pipelines(id))
    r.add("DELETE", "/_ingest/pipeline/{id}", lambda req, id: c.delete_pipeline(id))
    r.add(
        "GET,POST",
        "/_ingest/pipeline/_simulate",
        lambda req: c.simulate(None, req.require_body(), req.params),
    )
    r.add(
        "GET,POST",
        "/_ingest/pipeline/{id}/_simulate",
        lambda req, id: c.simulate(id, req.require_body(), req.params),
    )

    # -- documents
    def bulk(req: Request, index: str | None = None) -> Any:
        if not req.raw:
            raise ESError(400, "parse_exception", "request body is required")
        return c.bulk(index, req.raw, req.params)

    r.add("POST,PUT", "/_bulk", bulk)
    r.add("POST,PUT", "/{index}/_bulk", bulk)

    def index_doc(req: Request, index: str, id: str | None = None, create: bool = False) -> Any:
        op = "create" if create or req.params.get("op_type") == "create" else "index"
        body = req.require_body()
        return c.write(
            op,
            index,
            id,
            body,
            pipeline=req.params.get("pipeline"),
            refresh=req.params.get("refresh"),
            require_alias=req.params.get("require_alias") == "true",
            if_seq_no=req.params.get("if_seq_no"),
            if_primary_term=req.params.get("if_primary_term"),
            routing=req.params.get("routing"),
        )

    r.add("PUT,POST", "/{index}/_doc/{id}", index_doc)
    r.add("POST", "/{index}/_doc", index_doc)
    r.add("PUT,POST", "/{index}/_create/{id}", lambda req, index, id: index_doc(req, index, id, create=True))

    def get_doc(req: Request, index: str, id: str) -> Any:
        status, body, rec, idx = c.get_doc(index, id)
        if rec is not None:
            source = _filter_doc_source(rec.source, req.params, idx, c.version)
            if source is not None:
                body["_source"] = source
        return status, body

    def head_doc(req: Request, index: str, id: str) -> Any:
        status, _, _, _ = c.get_doc(index, id)
        return status, None

    def get_source(req: Request, index: str, id: str) -> Any:
        status, _, rec, idx = c.get_doc(index, id)
        if rec is None:
            raise ESError(404, "resource_not_found_exception", f"Document not found [{idx.name}]/[{id}]")
        return _filter_doc_source(rec.source, req.params, idx, c.version) or {}

    r.add("GET", "/{index}/_doc/{id}", get_doc)
    r.add("HEAD", "/{index}/_doc/{id}", head_doc)
    r.add("GET", "/{index}/_source/{id}", get_source)
    r.add(
        "DELETE",
        "/{index}/_doc/{id}",
        lambda req, index, id: c.write("delete", index, id, None, refresh=req.params.get("refresh")),
    )
    r.add(
        "POST",
        "/{index}/_update/{id}",
        lambda req, index, id: c.write(
            "update", index, id, None, refresh=req.params.get("refresh"), update_body=req.require_body()
        ),
    )

    # -- search (delegated)
    def do_search(req: Request, index: str | None = None) -> Any:
        from . import search as search_mod

        views = c.views(index, req.params)
        return search_mod.search(
            views, req.body() or {}, req.params, license_type=c.license_type, embed_text=c.embed_text
        )

    def do_count(req: Request, index: str | None = None) -> Any:
        from . import search as search_mod

        views = c.views(index, req.params)
        n = search_mod.count(views, req.body())
        return {
            "count": n,
            "_shards": {"total": len(views), "successful": len(views), "skipped": 0, "failed": 0},
        }

    r.add("GET,POST", "/_search", do_search)
    r.add("GET,POST", "/{index}/_search", do_search)
    r.add("GET,POST", "/_count", do_count)
    r.add("GET,POST", "/{index}/_count", do_count)

    # -- cluster state, stats, cat, mget, delete_by_query
    def cluster_state(req: Request, metric: str | None = None, index: str | None = None) -> Any:
        with c.lock:
            indices = c.resolve(index) if index else [c.indices[n] for n in sorted(c.indices)]
            nodes = {
                n["id"]: {
                    "name": n["name"],
                    "transport_address": "127.0.0.1:9300",
                    "roles": n["roles"],
                    "attributes": n["attributes"],
                }
                for n in c.nodes()
            }
            metadata = {
                "cluster_uuid": c.cluster_uuid,
                "indices": {
                    i.name: {
                        "state": "open",
                        "settings": nest_settings(i.settings),
                        "mappings": {"_doc": copy.deepcopy(i.mappings)} if i.mappings else {},
                        "aliases": sorted(i.aliases),
                    }
                    for i in indices
                },
                "index_template": {"index_template": copy.deepcopy(c.index_templates)},
                "component_template": {"component_template": copy.deepcopy(c.component_templates)},
                "ingest": {"pipeline": [{"id": k, "config": v} for k, v in c.pipelines.items()]},
            }
            return {
                "cluster_name": c.cluster_name,
                "cluster_uuid": c.cluster_uuid,
                "master_node": c.nodes()[0]["id"],
                "nodes": nodes,
                "metadata": metadata,
            }

    r.add("GET", "/_cluster/state", cluster_state)
    r.add("GET", "/_cluster/state/{metric}", cluster_state)
    r.add("GET", "/_cluster/state/{metric}/{index}", cluster_state)

    def stats(req: Request, index: str | None = None, metric: str | None = None) -> Any:
        with c.lock:
            indices = c.resolve(index)
            per = {}
            total = 0
            for i in indices:
                docs = {"count": len(i.docs), "deleted": 0}
                total += len(i.docs)
                per[i.name] = {
                    "uuid": i.uuid,
                    "health": "yellow" if i.replicas() else "green",
                    "status": "open",
                    "primaries": {"docs": docs},
                    "total": {"docs": dict(docs)},
                }
            shards = {"total": sum(1 + i.replicas() for i in indices), "successful": len(indices), "failed": 0}
            return {
                "_shards": shards,
                "_all": {
                    "primaries": {"docs": {"count": total, "deleted": 0}},
                    "total": {"docs": {"count": total, "deleted": 0}},
                },
                "indices": per,
            }

    r.add("GET", "/_stats", stats)
    r.add("GET", "/_stats/{metric}", lambda req, metric: stats(req, None, metric))
    r.add("GET", "/{index}/_stats", stats)
    r.add("GET", "/{index}/_stats/{metric}", stats)

    def cat_indices(req: Request, index: str | None = None) -> Any:
        with c.lock:
            rows = []
            for i in c.resolve(index):
                rows.append(
                    {
                        "health": "yellow" if i.replicas() else "green",
                        "status": "open",
                        "index": i.name,
                        "uuid": i.uuid,
                        "pri": i.settings.get("index.number_of_shards", "1"),
                        "rep": str(i.replicas()),
                        "docs.count": str(len(i.docs)),
                        "docs.deleted": "0",
                        "store.size": "1kb",
                        "pri.store.size": "1kb",
                        "dataset.size": "1kb",
                    }
                )
        return _cat(req, rows)

    def cat_health(req: Request) -> Any:
        h = c.health(None)
        row = {
            "epoch": str(int(time.time())),
            "timestamp": time.strftime("%H:%M:%S"),
            "cluster": c.cluster_name,
            "status": h["status"],
            "node.total": str(h["number_of_nodes"]),
            "node.data": str(h["number_of_data_nodes"]),
            "shards": str(h["active_shards"]),
            "pri": str(h["active_primary_shards"]),
            "relo": "0",
            "init": "0",
            "unassign": str(h["unassigned_shards"]),
            "unassign.pri": "0",
            "pending_tasks": "0",
            "max_task_wait_time": "-",
            "active_shards_percent": f"{h['active_shards_percent_as_number']:.1f}%",
        }
        return _cat(req, [row])

    r.add("GET", "/_cat/indices", cat_indices)
    r.add("GET", "/_cat/indices/{index}", cat_indices)
    r.add("GET", "/_cat/health", cat_health)

    def mget(req: Request, index: str | None = None) -> Any:
        body = req.require_body()
        if not isinstance(body, dict):
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: no documents to get;")
        specs = body.get("docs") or [{"_id": i} for i in body.get("ids") or []]
        if not specs:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: no documents to get;")
        out = []
        for spec in specs:
            target = spec.get("_index", index)
            doc_id = str(spec.get("_id"))
            if target is None:
                raise ESError(
                    400, "action_request_validation_exception", "Validation Failed: 1: index is missing for doc 0;"
                )
            try:
                _, got, rec, idx = c.get_doc(target, doc_id)
            except ESError as exc:
                out.append({"_index": target, "_id": doc_id, "error": exc.error_object()})
                continue
            if rec is not None:
                source = _filter_doc_source(rec.source, req.params, idx, c.version)
                if source is not None:
                    got["_source"] = source
            out.append(got)
        return {"docs": out}

    r.add("GET,POST", "/_mget", mget)
    r.add("GET,POST", "/{index}/_mget", mget)

    def delete_by_query(req: Request, index: str) -> Any:
        from . import search as search_mod

        started = time.monotonic()
        body = req.require_body()
        if not isinstance(body, dict) or "query" not in body:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: query is missing;")
        views = c.views(index, req.params)
        found = search_mod.search(
            views,
            {"query": body["query"], "size": 10000, "_source": False, "track_total_hits": True},
            {},
            license_type=c.license_type,
            embed_text=c.embed_text,
        )
        deleted = 0
        for hit in found["hits"]["hits"]:
            status, _ = c.write("delete", hit["_index"], hit["_id"], None)
            deleted += status == 200
        if req.params.get("refresh") == "true":
            c.refresh(index, {})
        return {
            "took": int((time.monotonic() - started) * 1000),
            "timed_out": False,
            "total": len(found["hits"]["hits"]),
            "deleted": deleted,
            "batches": 1,
            "version_conflicts": 0,
            "noops": 0,
            "retries": {"bulk": 0, "search": 0},
            "throttled_millis": 0,
            "requests_per_second": -1.0,
            "throttled_until_millis": 0,
            "failures": [],
        }

    r.add("POST", "/{index}/_delete_by_query", delete_by_query)

    # -- reindex (Cluster.reindex cites the ES source) and the task that runs it in the background
    r.add("POST", "/_reindex", lambda req: c.reindex(req.require_body(), req.params))
    r.add("GET", "/_tasks/{task_id}", lambda req, task_id: c.get_task(task_id))

    # -- fault injection and run-time config (paths ES never uses)
    def faults(req: Request) -> Any:
        if req.method == "POST":
            body = req.require_body()
            if not isinstance(body, dict):
                raise ESError(400, "illegal_argument_exception", "faults body must be an object")
            c.faults.add(body)
        elif req.method == "DELETE":
            c.faults.clear()
        return {"acknowledged": True, "pending": c.faults.describe()} if req.method != "GET" else c.faults.describe()

    r.add("GET,POST,DELETE", "/_test/faults", faults)
    r.add("GET", "/_test/config", lambda req: c.config())
    r.add("POST,PUT", "/_test/config", lambda req: c.configure(req.require_body()))
    return r


def _cat(req: Request, rows: list[dict[str, str]]) -> Any:
    """``_cat`` output: JSON rows with ``format=json``, else an aligned text table (``v`` adds headers)."""
    if req.params.get("format") == "json":
        return rows
    columns = list(rows[0]) if rows else []
    if req.params.get("h"):
        columns = [h for h in req.params["h"].split(",") if h]
    table = [[str(row.get(col, "")) for col in columns] for row in rows]
    if req.params.get("v") is not None:
        table.insert(0, columns)
    widths = [max((len(line[i]) for line in table), default=0) for i in range(len(columns))]
    text = "".join(
        " ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in table
    )
    return _TextBody(text)


class _TextBody:
    """A ``text/plain`` response body (``_cat`` APIs)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _exists(fn: Callable[[], Any]) -> bool:
    try:
        return bool(fn())
    except ESError:
        return False


def _time_s(text: str) -> float:
    text = text.strip()
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * factor
            except ValueError:
                break
    raise ESError(
        400,
        "illegal_argument_exception",
        f"failed to parse setting [timeout] with value [{text}] as a time value: unit is missing or unrecognized",
    )


def _filter_doc_source(source: dict[str, Any], params: dict[str, str], idx: Any, version: str) -> Any:
    """``_source`` of a GET: ``_source=false``, include/exclude lists, vectors left out from 9.2."""
    from .mapping import mapped_vector_fields

    flag = params.get("_source")
    if flag == "false":
        return None
    includes = [p for p in (params.get("_source_includes") or "").split(",") if p]
    if flag and flag != "true":
        includes += [p for p in flag.split(",") if p]
    excludes = [p for p in (params.get("_source_excludes") or "").split(",") if p]
    major_minor = tuple(int(x) for x in (version.split(".") + ["0"])[:2] if x.isdigit())
    if (
        major_minor >= (9, 2)
        and params.get("_source_exclude_vectors") != "false"
        and str(idx.settings.get("index.mapping.exclude_source_vectors", "true")) != "false"
    ):
        excludes += list(mapped_vector_fields(idx.mappings))
    if not includes and not excludes:
        return source
    return _filter(source, includes, excludes, "")


def _filter(node: dict[str, Any], includes: list[str], excludes: list[str], prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in node.items():
        path = prefix + key
        if any(fnmatch.fnmatchcase(path, e) for e in excludes):
            continue
        included = not includes or any(fnmatch.fnmatchcase(path, i) or i.startswith(path + ".") for i in includes)
        full_match = not includes or any(fnmatch.fnmatchcase(path, i) for i in includes)
        if not included:
            continue
        if isinstance(value, dict) and (not full_match or any(e.startswith(path + ".") for e in excludes)):
            sub_includes = [] if full_match else includes
            out[key] = _filter(value, sub_includes, excludes, path + ".")
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------- filter_path


def apply_filter_path(body: Any, filter_path: str) -> Any:
    """ES ``filter_path``: comma-separated dotted paths with ``*`` / ``**``; ``-path`` excludes.

    Example::

        apply_filter_path({"a": {"b": 1, "c": 2}}, "a.b")   # {"a": {"b": 1}}
    """
    paths = [p.strip() for p in filter_path.split(",") if p.strip()]
    includes = [p.split(".") for p in paths if not p.startswith("-")]
    excludes = [p[1:].split(".") for p in paths if p.startswith("-")]
    result = body
    if includes:
        result = _include(body, includes)
        if result is _NOTHING:
            result = {}
    if excludes:
        result = _exclude(result, excludes)
    return result


_NOTHING = object()


def _include(node: Any, patterns: list[list[str]]) -> Any:
    if any(not p for p in patterns):
        return node
    if isinstance(node, list):
        items = [_include(item, patterns) for item in node]
        items = [i for i in items if i is not _NOTHING]
        return items if items else _NOTHING
    if not isinstance(node, dict):
        return _NOTHING
    out = {}
    for key, value in node.items():
        nxt: list[list[str]] = []
        for p in patterns:
            head = p[0]
            if head == "**":
                nxt.append(p)  # ** keeps matching deeper
                if len(p) > 1 and fnmatch.fnmatchcase(key, p[1]):
                    nxt.append(p[2:])
                elif len(p) == 1:
                    nxt.append([])
            elif fnmatch.fnmatchcase(key, head):
                nxt.append(p[1:])
        if not nxt:
            continue
        sub = _include(value, nxt)
        if sub is not _NOTHING:
            out[key] = sub
    return out if out else _NOTHING


def _exclude(node: Any, patterns: list[list[str]]) -> Any:
    if isinstance(node, list):
        return [_exclude(item, patterns) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        nxt = [p[1:] for p in patterns if fnmatch.fnmatchcase(key, p[0])]
        if any(not p for p in nxt):
            continue
        out[key] = _exclude(value, nxt) if nxt else value
    return out


# ---------------------------------------------------------------------------------------------- handler


class ESServer(ThreadingHTTPServer):
    """The HTTP server; carries the cluster, its router and the optional credentials."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        cluster: Cluster,
        *,
        api_key: str | None = None,
        password: str | None = None,
    ) -> None:
        # Set before binding: a failed bind calls server_close(), which needs _stop.
        self._stop = threading.Event()
        super().__init__(address, _RequestHandler)
        self.cluster = cluster
        self.router = build_router(cluster)
        self.api_key = api_key
        self.password = password
        self._ticker = threading.Thread(target=self._tick, name="escluster-refresh", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        # The periodic refresh (index.refresh_interval, 1s by default).
        while not self._stop.wait(0.1):
            try:
                self.cluster.refresh_due()
            except Exception:  # noqa: BLE001 - a refresh problem must not kill the ticker
                pass

    def server_close(self) -> None:
        self._stop.set()
        super().server_close()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes on a kept-alive connection: with Nagle's algorithm the
    # body waits for the client's delayed ACK (~40 ms per request). Elasticsearch (Netty) sets TCP_NODELAY.
    disable_nagle_algorithm = True
    server: ESServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET  # noqa: N815

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip" and raw:
            raw = gzip.decompress(raw)
        return raw

    def _handle(self) -> None:
        raw = self._read_body()
        split = urlsplit(self.path)
        path = split.path or "/"
        params = {k: v for k, v in parse_qsl(split.query, keep_blank_values=True)}
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, path, params, headers, raw)
        compat = self._compat_version(headers)
        srv = self.server
        faults = srv.cluster.faults
        is_test = path.startswith("/_test/") or path == "/_test"
        if not is_test:
            if faults.latency_ms:
                time.sleep(faults.latency_ms / 1000.0)
            if faults.take_drop(path):
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
        try:
            if isinstance(compat, ESError):
                raise compat
            self._check_content_type(headers, raw)
            if not is_test:
                self._check_auth(headers, path)
                injected = faults.take_failure(path)
                if injected is not None:
                    raise injected
            status, body = self._dispatch(req)
        except ESError as exc:
            status, body = exc.status, exc.body()
        except Exception as exc:  # noqa: BLE001 - any bug becomes a 500 in ES shape, not a dropped socket
            status, body = 500, ESError(500, "exception", f"{type(exc).__name__}: {exc}").body()
        self._send(status, body, params, compat, path)

    def _compat_version(self, headers: dict[str, str]) -> int | ESError | None:
        versions = set()
        for name in ("accept", "content-type"):
            match = _COMPAT.search(headers.get(name, ""))
            if match:
                versions.add(int(match.group(1)))
        if not versions:
            return None
        if len(versions) > 1 or not versions <= {8, 9}:
            return ESError(
                400,
                "media_type_header_exception",
                "Invalid media-type value on headers [Accept, Content-Type]",
                caused_by={
                    "type": "status_exception",
                    "reason": "A compatible version is required on both Content-Type and Accept "
                    "headers if either one has requested a compatible version and the "
                    "compatible versions must match. Accept="
                    f"{headers.get('accept')}, Content-Type={headers.get('content-type')}",
                },
            )
        return versions.pop()

    def _check_content_type(self, headers: dict[str, str], raw: bytes) -> None:
        if not raw:
            return
        ctype = headers.get("content-type", "")
        base = ctype.split(";")[0].strip().lower()
        if base not in _JSON_TYPES:
            raise _PlainError(406, f"Content-Type header [{ctype}] is not supported")

    def _check_auth(self, headers: dict[str, str], path: str) -> None:
        srv = self.server
        if srv.api_key is None and srv.password is None:
            return
        auth = headers.get("authorization")
        if auth is None:
            raise ESError(
                401,
                "security_exception",
                f"missing authentication credentials for REST request [{path}]",
                header={"WWW-Authenticate": ['Basic realm="security", charset="UTF-8"', "ApiKey"]},
            )
        ok = False
        if srv.api_key is not None and auth == f"ApiKey {srv.api_key}":
            ok = True
        if srv.password is not None and auth.startswith("Basic "):
            import base64

            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                ok = ok or (user == "elastic" and password == srv.password)
            except ValueError:
                pass
        if not ok:
            raise ESError(
                401,
                "security_exception",
                "unable to authenticate with provided credentials and anonymous access is not allowed for this request",
                additional_unsuccessful_credentials="API key: invalid API key",
                header={"WWW-Authenticate": ['Basic realm="security", charset="UTF-8"', "ApiKey"]},
            )

    def _dispatch(self, req: Request) -> tuple[int, Any]:
        parts = [unquote(p) for p in req.path.split("/") if p]
        if parts and parts[0] == "_ml":
            ml = self.server.cluster.ml
            if ml is None:
                raise self._no_handler(req)
            status, body = ml.handle(req.method if req.method != "HEAD" else "GET", parts[1:], req.params, req.body())
            return status, body
        handler, values, allowed = self.server.router.match(req.method, parts)
        if handler is None:
            if allowed:
                raise _PlainError(
                    405,
                    f"Incorrect HTTP method for uri [{req.path}] and method [{req.method}], "
                    f"allowed: [{', '.join(sorted(allowed))}]",
                    allow=sorted(allowed),
                )
            raise self._no_handler(req)
        result = handler(req, **values)
        if isinstance(result, tuple):
            return result[0], result[1]
        return 200, result

    @staticmethod
    def _no_handler(req: Request) -> ESError:
        return ESError(
            400,
            "illegal_argument_exception",
            f"no handler found for uri [{req.path}] and method [{req.method}]",
        )

    def _send(self, status: int, body: Any, params: dict[str, str], compat: Any, path: str) -> None:
        extra_headers: dict[str, str] = {}
        if isinstance(body, _PlainBody):
            extra_headers = body.headers
            body = body.body
        if status == 401:
            extra_headers["WWW-Authenticate"] = 'Basic realm="security", charset="UTF-8", ApiKey'
        if body is not None and params.get("filter_path") and isinstance(body, (dict, list)) and status < 400:
            body = apply_filter_path(body, params["filter_path"])
        text_body = isinstance(body, _TextBody)
        if text_body:
            payload = body.text.encode("utf-8")
        elif body is None:
            payload = b""
        else:
            indent = 2 if params.get("pretty") not in (None, "false") else None
            payload = json.dumps(
                body, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":")
            ).encode("utf-8")
            if indent:
                payload += b"\n"
        ctype = (
            ("application/vnd.elasticsearch+json;compatible-with=" + str(compat))
            if isinstance(compat, int)
            else "application/json"
        )
        if text_body:
            ctype = "text/plain; charset=UTF-8"
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", ctype)
        for key, value in extra_headers.items():
            self.send_header(key, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def send_response(self, code: int, message: str | None = None) -> None:
        # Skip BaseHTTPRequestHandler's Server/Date headers: ES sends neither.
        self.send_response_only(code, message)


class _PlainBody:
    def __init__(self, body: Any, headers: dict[str, str]) -> None:
        self.body = body
        self.headers = headers


class _PlainError(ESError):
    """Errors ES reports as ``{"error": "<text>", "status": N}`` (405, 406)."""

    def __init__(self, status: int, text: str, allow: list[str] | None = None) -> None:
        super().__init__(status, "plain", text)
        self.allow = allow

    def body(self) -> Any:  # type: ignore[override]
        headers = {"Allow": ",".join(self.allow)} if self.allow else {}
        return _PlainBody({"error": self.reason, "status": self.status}, headers)


def make_server(
    cluster: Cluster,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    password: str | None = None,
) -> ESServer:
    """A server bound to ``host:port`` (0 = ephemeral) for ``cluster``; call ``serve_forever()`` to run it.

    Example::

        srv = make_server(Cluster(license="basic"), port=0, api_key="secret")
        print(srv.server_address)
    """
    return ESServer((host, port), cluster, api_key=api_key, password=password)
