"""Cluster state of the test cluster: indices, documents, aliases, templates, pipelines, license, faults.

:class:`Cluster` holds everything behind one re-entrant lock and implements the non-search APIs as
methods returning ``(status, body)`` or raising :class:`~tests.escluster.errors.ESError`. The HTTP layer
(``server.py``) only routes to them. Search and ML live in ``search.py`` / ``ml.py``; search receives
:class:`IndexView` objects that hold only *refreshed* documents.

Example::

    cluster = Cluster(license="trial")
    cluster.create_index("images", {"mappings": {"properties": {"v": {"type": "dense_vector", "dims": 3}}}})
    cluster.write("index", "images", "1", {"v": [1, 0, 0]}, refresh="true")
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import os
import threading
import time
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import ingest
from .errors import ESError, not_found_index
from .mapping import merge_mappings, normalize_mappings, parse_document

LICENSE_TYPES = ("basic", "trial", "gold", "platinum", "enterprise")
_INVALID_NAME_CHARS = ["\\", "/", "*", "?", '"', "<", ">", "|", " ", ",", "#", ":"]
# Index settings ES knows (exact keys and prefixes). Anything else is "unknown setting" like ES.
_KNOWN_SETTINGS = {
    "index.number_of_shards",
    "index.number_of_replicas",
    "index.refresh_interval",
    "index.default_pipeline",
    "index.final_pipeline",
    "index.hidden",
    "index.codec",
    "index.auto_expand_replicas",
    "index.priority",
    "index.number_of_routing_shards",
    "index.max_result_window",
    "index.max_inner_result_window",
    "index.max_rescore_window",
    "index.max_docvalue_fields_search",
    "index.max_script_fields",
    "index.max_ngram_diff",
    "index.max_shingle_diff",
    "index.max_refresh_listeners",
    "index.max_terms_count",
    "index.max_regex_length",
    "index.default_field",
    "index.mode",
    "index.load_fixed_bitset_filters_eagerly",
    "index.shard.check_on_startup",
    "index.uuid",
    "index.provided_name",
    "index.creation_date",
    "index.version.created",
    "index.gc_deletes",
    "index.format",
    "index.time_series.start_time",
    "index.time_series.end_time",
    "index.routing_path",
    "index.max_slices_per_scroll",
    "index.soft_deletes.enabled",
    "index.source_only",
    "index.frozen",
    "index.requests.cache.enable",
    "index.dense_vector.hnsw_filter_heuristic",
    "index.logsdb.sort_on_host_name",
}
_KNOWN_SETTING_PREFIXES = (
    "index.analysis.",
    "index.routing.",
    "index.mapping.",
    "index.blocks.",
    "index.lifecycle.",
    "index.query.",
    "index.similarity.",
    "index.sort.",
    "index.translog.",
    "index.highlight.",
    "index.store.",
    "index.search.",
    "index.indexing.",
    "index.merge.",
    "index.unassigned.",
    "index.write.",
    "index.soft_deletes.",
    "index.version.",
    "index.shard.",
    "index.fielddata.",
    "index.allocation.",
    "index.recovery.",
    "index.vectors.",
    "index.look_ahead_time",
    "index.time_series.",
    "index.default_pipeline",
)
_DYNAMIC_SETTINGS = {
    "index.number_of_replicas",
    "index.refresh_interval",
    "index.default_pipeline",
    "index.final_pipeline",
    "index.hidden",
    "index.max_result_window",
    "index.auto_expand_replicas",
    "index.priority",
    "index.blocks.write",
    "index.blocks.read_only",
    "index.blocks.read",
    "index.blocks.metadata",
    "index.blocks.read_only_allow_delete",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


class IndexView(Protocol):
    """What search sees of an index: its name, mapping (as ``GET _mapping`` shows it) and refreshed docs."""

    name: str
    mappings: dict[str, Any]
    docs: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class SearchView:
    """The :class:`IndexView` handed to search: refreshed documents only (id -> ``_source``).

    ``settings`` (flat ``index.*`` keys, string values) and ``aliases`` ride along for search's use.
    """

    name: str
    mappings: dict[str, Any]
    docs: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


@dataclass
class DocRecord:
    """One stored document (the latest version)."""

    source: dict[str, Any]
    version: int
    seq_no: int
    primary_term: int = 1


class Index:
    """An index: settings (flat ``index.*`` keys), mapping, aliases, live and refreshed documents."""

    def __init__(
        self,
        name: str,
        settings: dict[str, Any],
        mappings: dict[str, Any],
        aliases: dict[str, dict[str, Any]],
        version_created: str,
    ) -> None:
        self.name = name
        self.uuid = base64.urlsafe_b64encode(_uuid.uuid4().bytes).decode()[:22]
        self.created = _now_ms()
        self.settings: dict[str, Any] = {
            "index.routing.allocation.include._tier_preference": "data_content",
            "index.number_of_shards": "1",
            "index.number_of_replicas": "1",
            **settings,
            "index.provided_name": name,
            "index.creation_date": str(self.created),
            "index.uuid": self.uuid,
            "index.version.created": version_created,
        }
        self.mappings = mappings
        self.aliases = aliases
        self.docs: dict[str, DocRecord] = {}
        self.searchable: dict[str, dict[str, Any]] = {}
        self.seq_no = -1
        self.closed = False
        self.dirty = False
        self.last_refresh = time.monotonic()

    def refresh(self) -> None:
        # A fresh dict each time: searches holding the previous snapshot keep a consistent view.
        self.searchable = {doc_id: rec.source for doc_id, rec in self.docs.items()}
        self.dirty = False
        self.last_refresh = time.monotonic()

    def refresh_interval_s(self) -> float | None:
        """Seconds between automatic refreshes, None for ``-1`` (never)."""
        return parse_time_s(self.settings.get("index.refresh_interval", "1s"))

    def view(self) -> SearchView:
        return SearchView(self.name, self.mappings, self.searchable, self.settings, tuple(self.aliases))

    def replicas(self) -> int:
        try:
            return int(self.settings.get("index.number_of_replicas", "1"))
        except ValueError:
            return 1

    def shards_info(self) -> dict[str, int]:
        return {"total": 1 + self.replicas(), "successful": 1, "failed": 0}


def parse_time_s(value: Any) -> float | None:
    """``1s`` / ``500ms`` / ``1m`` / ``-1`` -> seconds (None for -1)."""
    text = str(value).strip()
    if text in ("-1", "-1s", "-1ms"):
        return None
    units = (
        ("micros", 1e-6),
        ("nanos", 1e-9),
        ("ms", 0.001),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86400.0),
    )
    for unit, factor in units:
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * factor
            except ValueError:
                break
    try:
        return float(text) / 1000.0
    except ValueError:
        raise ESError(
            400,
            "illegal_argument_exception",
            f"failed to parse setting [index.refresh_interval] with value [{text}] as a time value: "
            f"unit is missing or unrecognized",
        ) from None


# ----------------------------------------------------------------------------------------------- settings


def flatten_settings(settings: Any, prefix: str = "") -> dict[str, Any]:
    """Nested or flat settings -> flat keys with the ``index.`` prefix and string values (as ES stores them).

    Example::

        flatten_settings({"number_of_shards": 1, "index": {"refresh_interval": "1s"}})
        # {"index.number_of_shards": "1", "index.refresh_interval": "1s"}
    """
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ESError(400, "illegal_argument_exception", "malformed settings section, expected an object")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_settings(value, full + "."))
            continue
        if not full.startswith("index."):
            full = "index." + full
        out[full] = _setting_str(value)
    return out


def _setting_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_setting_str(v) for v in value]
    if value is None:
        return None
    return str(value)


def nest_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat ``index.a.b`` keys -> ``{"index": {"a": {"b": ...}}}`` as ``GET _settings`` prints them."""
    out: dict[str, Any] = {}
    for key in sorted(flat):
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[parts[-1]] = flat[key]
    return out


def validate_settings(flat: dict[str, Any]) -> None:
    """Refuse unknown index settings and bad shard/replica counts as ES does (400)."""
    for key, value in flat.items():
        if key not in _KNOWN_SETTINGS and not key.startswith(_KNOWN_SETTING_PREFIXES):
            raise ESError(
                400,
                "illegal_argument_exception",
                f"unknown setting [{key}] please check that any required plugins are installed, or "
                f"check the breaking changes documentation for removed settings",
            )
        if key in ("index.number_of_shards", "index.number_of_replicas") and value is not None:
            minimum = 1 if key == "index.number_of_shards" else 0
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ESError(
                    400, "illegal_argument_exception", f"Failed to parse value [{value}] for setting [{key}]"
                ) from None
            if number < minimum:
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"Failed to parse value [{value}] for setting [{key}] must be >= {minimum}",
                )
        if key == "index.refresh_interval" and value is not None:
            parse_time_s(value)
        if key == "index.soft_deletes.enabled" and value == "false":
            raise ESError(
                400,
                "illegal_argument_exception",
                "Creating indices with soft-deletes disabled is no longer supported. Please do not specify a "
                "value for setting [index.soft_deletes.enabled].",
            )


def validate_index_name(name: str, *, what: str = "index") -> None:
    """ES's index name rules; raises 400 ``invalid_index_name_exception``."""

    def bad(reason: str) -> ESError:
        return ESError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{name}], {reason}",
            index_uuid="_na_",
            index=name,
        )

    if not name:
        raise bad("must not be empty")
    if name != name.lower():
        raise bad("must be lowercase")
    if any(c in name for c in _INVALID_NAME_CHARS):
        raise bad(
            "must not contain the following characters [' ', '\"', '*', ',', '/', '<', '>', '?', '\\', '|']"
            if "#" not in name and ":" not in name
            else ("must not contain '#'" if "#" in name else "must not contain ':'")
        )
    if name[0] in "_-+":
        raise bad("must not start with '_', '-', or '+'")
    if name in (".", ".."):
        raise bad("must not be '.' or '..'")
    if len(name.encode()) > 255:
        raise bad(f"index name is too long, ({len(name.encode())} > 255)")


# ------------------------------------------------------------------------------------------------- faults


class Faults:
    """Pending injected faults (``POST /_test/faults``). All counters count down as they fire.

    Keys: ``bulk_429_items`` (reject the next N bulk items with 429), ``bulk_429_requests`` (reject the
    next N whole ``_bulk`` requests), ``fail_requests`` + ``status`` (default 503) + ``path_prefix``
    (default any) + optional ``type`` / ``reason``, ``drop_connections`` (+ ``path_prefix``),
    ``latency_ms`` (every request sleeps that long until cleared).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self.bulk_429_items = 0
        self.bulk_429_requests = 0
        self.fail: list[dict[str, Any]] = []
        self.drops: list[dict[str, Any]] = []
        self.latency_ms = 0.0

    def add(self, body: dict[str, Any]) -> None:
        known = {
            "bulk_429_items",
            "bulk_429_requests",
            "fail_requests",
            "status",
            "path_prefix",
            "type",
            "reason",
            "drop_connections",
            "latency_ms",
        }
        unknown = [k for k in body if k not in known]
        if unknown:
            raise ESError(400, "illegal_argument_exception", f"unknown fault keys {unknown}; known: {sorted(known)}")
        with self.lock:
            self.bulk_429_items += int(body.get("bulk_429_items", 0))
            self.bulk_429_requests += int(body.get("bulk_429_requests", 0))
            prefix = str(body.get("path_prefix", "/"))
            if int(body.get("fail_requests", 0)) > 0:
                status = int(body.get("status", 503))
                self.fail.append(
                    {
                        "remaining": int(body["fail_requests"]),
                        "status": status,
                        "path_prefix": prefix,
                        "type": body.get("type") or _fault_type(status),
                        "reason": body.get("reason") or f"injected fault [{status}]",
                    }
                )
            if int(body.get("drop_connections", 0)) > 0:
                self.drops.append({"remaining": int(body["drop_connections"]), "path_prefix": prefix})
            if "latency_ms" in body:
                self.latency_ms = float(body["latency_ms"])

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "bulk_429_items": self.bulk_429_items,
                "bulk_429_requests": self.bulk_429_requests,
                "fail_requests": [dict(f) for f in self.fail],
                "drop_connections": [dict(d) for d in self.drops],
                "latency_ms": self.latency_ms,
            }

    def _take(self, entries: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
        for entry in entries:
            if path.startswith(entry["path_prefix"]) and entry["remaining"] > 0:
                entry["remaining"] -= 1
                if entry["remaining"] == 0:
                    entries.remove(entry)
                return entry
        return None

    def take_drop(self, path: str) -> bool:
        with self.lock:
            return self._take(self.drops, path) is not None

    def take_failure(self, path: str) -> ESError | None:
        with self.lock:
            entry = self._take(self.fail, path)
        if entry is None:
            return None
        return ESError(entry["status"], entry["type"], entry["reason"])

    def take_bulk_request(self) -> bool:
        with self.lock:
            if self.bulk_429_requests > 0:
                self.bulk_429_requests -= 1
                return True
            return False

    def take_bulk_item(self) -> bool:
        with self.lock:
            if self.bulk_429_items > 0:
                self.bulk_429_items -= 1
                return True
            return False


def _fault_type(status: int) -> str:
    return {
        429: "es_rejected_execution_exception",
        503: "unavailable_shards_exception",
        500: "exception",
        502: "exception",
        504: "timeout_exception",
        408: "timeout_exception",
    }.get(status, "status_exception")


def closed_index(idx: Index) -> ESError:
    """The 400 ES answers for reads and writes on a closed index."""
    return ESError(400, "index_closed_exception", "closed", index_uuid=idx.uuid, index=idx.name)


def rejected_execution() -> ESError:
    """The 429 ES answers when the write thread pool queue is full."""
    return ESError(
        429,
        "es_rejected_execution_exception",
        "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
        "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, "
        "max_coordinating_and_primary_bytes=0]",
    )


# ------------------------------------------------------------------------------------------------ cluster


class Cluster:
    """All state of one test cluster plus the non-search, non-ML APIs.

    Args:
        license: ``basic`` or ``trial`` (also gold/platinum/enterprise).
        version: the version ``GET /`` reports.
        ml_nodes: number of ML nodes (0 = no ML node).
        ml_memory_bytes: memory of each ML node.
        cluster_name: reported name.

    Example::

        c = Cluster(license="basic")
        c.create_index("a", {})
    """

    def __init__(
        self,
        *,
        license: str = "trial",
        version: str = "9.2.0",
        ml_nodes: int = 1,
        ml_memory_bytes: int = 4 * 1024**3,
        cluster_name: str = "escluster",
    ) -> None:
        if license not in LICENSE_TYPES:
            raise ValueError(f"license must be one of {LICENSE_TYPES}")
        self.lock = threading.RLock()
        self.version = version
        self.cluster_name = cluster_name
        self.cluster_uuid = base64.urlsafe_b64encode(_uuid.uuid4().bytes).decode()[:22]
        self.node_ids = [base64.urlsafe_b64encode(os.urandom(16)).decode()[:22] for _ in range(8)]
        self.license_type = license
        self.license_uid = str(_uuid.uuid4())
        self.license_issued = _now_ms()
        self.trial_used = license == "trial"
        self.ml_nodes = ml_nodes
        self.ml_memory_bytes = ml_memory_bytes
        self.indices: dict[str, Index] = {}
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.faults = Faults()
        self.tasks: dict[str, dict[str, Any]] = {}  # _reindex?wait_for_completion=false results (by task id)
        self.ml: Any = self._make_ml()

    def _make_ml(self) -> Any:
        try:
            from .ml import MLStore
        except ImportError:
            return None
        return MLStore(
            license_type=lambda: self.license_type,
            ml_nodes=lambda: self.ml_nodes,
            ml_memory_bytes=lambda: self.ml_memory_bytes,
            version=self.version,
            # read without self.lock: the ML store holds its own lock and ingest calls into it under ours
            pipelines=lambda: dict(self.pipelines),
        )

    # ---------------------------------------------------------------------------------------- helpers
    @property
    def version_id(self) -> str:
        major, minor, patch = (int(p) for p in (self.version.split("-")[0].split(".") + ["0", "0"])[:3])
        return str(major * 1_000_000 + minor * 10_000 + patch * 100 + 99)

    def infer(self, model_id: str, texts: list[str]) -> list[list[float]]:
        """Run a deployed model (the ``inference`` processor and ``query_vector_builder`` use it)."""
        if self.ml is None:
            raise ESError(404, "resource_not_found_exception", f"Could not find trained model [{model_id}]")
        return self.ml.infer(model_id, texts)

    def embed_text(self, model_id: str, text: str) -> list[float]:
        return self.infer(model_id, [text])[0]

    def alias_map(self) -> dict[str, list[Index]]:
        out: dict[str, list[Index]] = {}
        for idx in self.indices.values():
            for alias in idx.aliases:
                out.setdefault(alias, []).append(idx)
        return out

    def resolve(
        self,
        expression: str | None,
        *,
        ignore_unavailable: bool = False,
        allow_no_indices: bool = True,
        expand_hidden: bool = False,
    ) -> list[Index]:
        """Index names, aliases, wildcards, ``_all`` and comma lists -> concrete indices (in name order)."""
        with self.lock:
            names = [n.strip() for n in (expression or "_all").split(",") if n.strip()] or ["_all"]
            aliases = self.alias_map()
            chosen: dict[str, Index] = {}
            for name in names:
                exclude = name.startswith("-") and len(names) > 1
                pattern = name[1:] if exclude else name
                if pattern in ("_all", "*") and not exclude:
                    matched = [i for i in self.indices.values() if expand_hidden or not self._hidden(i)]
                elif "*" in pattern:
                    matched = [
                        i
                        for i in self.indices.values()
                        if fnmatch.fnmatchcase(i.name, pattern)
                        and (expand_hidden or pattern.startswith(".") or not self._hidden(i))
                    ]
                    for alias, idxs in aliases.items():
                        if fnmatch.fnmatchcase(alias, pattern):
                            matched.extend(idxs)
                elif pattern in self.indices:
                    matched = [self.indices[pattern]]
                elif pattern in aliases:
                    matched = aliases[pattern]
                else:
                    if exclude or ignore_unavailable:
                        continue
                    raise not_found_index(pattern)
                for idx in matched:
                    if exclude:
                        chosen.pop(idx.name, None)
                    else:
                        chosen[idx.name] = idx
            if not chosen and not allow_no_indices:
                raise not_found_index(expression or "_all")
            return [chosen[n] for n in sorted(chosen)]

    @staticmethod
    def _hidden(idx: Index) -> bool:
        return idx.settings.get("index.hidden") == "true" or idx.name.startswith(".")

    def views(self, expression: str | None, params: dict[str, str]) -> list[SearchView]:
        """Refreshed views of the indices an expression names (for search and count)."""
        with self.lock:
            indices = self.resolve(
                expression,
                ignore_unavailable=params.get("ignore_unavailable") == "true",
                allow_no_indices=params.get("allow_no_indices", "true") != "false",
            )
            named = {n.strip() for n in (expression or "").split(",")}
            for idx in indices:
                if idx.closed and idx.name in named:
                    raise closed_index(idx)
            return [i.view() for i in indices if not i.closed]

    def close_index(self, expression: str) -> dict[str, Any]:
        """``POST <index>/_close``."""
        with self.lock:
            indices = self.resolve(expression)
            for idx in indices:
                idx.closed = True
            return {
                "acknowledged": True,
                "shards_acknowledged": True,
                "indices": {i.name: {"closed": True} for i in indices},
            }

    def open_index(self, expression: str) -> dict[str, Any]:
        """``POST <index>/_open``."""
        with self.lock:
            for idx in self.resolve(expression):
                idx.closed = False
            return {"acknowledged": True, "shards_acknowledged": True}

    def refresh_due(self) -> None:
        """Refresh indices whose ``refresh_interval`` passed since their last refresh (the 1s timer)."""
        now = time.monotonic()
        with self.lock:
            for idx in self.indices.values():
                if not idx.dirty:
                    continue
                interval = idx.refresh_interval_s()
                if interval is not None and now - idx.last_refresh >= interval:
                    idx.refresh()

    # ------------------------------------------------------------------------------------- templates
    def _matching_template(self, name: str) -> tuple[str, dict[str, Any]] | None:
        best: tuple[int, str, dict[str, Any]] | None = None
        for tname, tpl in self.index_templates.items():
            if any(fnmatch.fnmatchcase(name, p) for p in tpl["index_patterns"]):
                if name.startswith(".") and not any(p.startswith(".") for p in tpl["index_patterns"]):
                    continue
                priority = int(tpl.get("priority", 0))
                if best is None or priority > best[0]:
                    best = (priority, tname, tpl)
        return (best[1], best[2]) if best else None

    def _compose(self, name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Settings (flat), raw mappings and aliases a new index gets from the matching templates."""
        settings: dict[str, Any] = {}
        mappings: dict[str, Any] = {}
        aliases: dict[str, Any] = {}
        match = self._matching_template(name)
        if match is None:
            return settings, mappings, aliases
        _, tpl = match
        layers = [
            self.component_templates[c]["template"] for c in tpl.get("composed_of", []) if c in self.component_templates
        ]
        layers.append(tpl.get("template", {}))
        for layer in layers:
            settings.update(flatten_settings(layer.get("settings")))
            if layer.get("mappings"):
                mappings = merge_mappings(mappings, layer["mappings"], strict_types=False)
            aliases.update(copy.deepcopy(layer.get("aliases") or {}))
        return settings, mappings, aliases

    def put_index_template(self, name: str, body: Any, params: dict[str, str]) -> dict[str, Any]:
        """``PUT _index_template/<name>``."""
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        known = {
            "index_patterns",
            "composed_of",
            "priority",
            "version",
            "_meta",
            "template",
            "data_stream",
            "allow_auto_create",
            "ignore_missing_component_templates",
            "deprecated",
        }
        for key in body:
            if key not in known:
                raise ESError(400, "x_content_parse_exception", f"[1:2] [index_template] unknown field [{key}]")
        patterns = body.get("index_patterns")
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns:
            raise ESError(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index patterns are missing;",
            )
        tpl = copy.deepcopy(body)
        tpl["index_patterns"] = patterns
        tpl["composed_of"] = list(body.get("composed_of") or [])
        template = tpl.get("template")
        if template is not None:
            tpl["template"] = self._check_template_body(template, name)
        with self.lock:
            if params.get("create") == "true" and name in self.index_templates:
                raise ESError(400, "illegal_argument_exception", f"index template [{name}] already exists")
            ignored = set(body.get("ignore_missing_component_templates") or [])
            missing = [c for c in tpl["composed_of"] if c not in self.component_templates and c not in ignored]
            if missing:
                raise ESError(
                    400,
                    "invalid_index_template_exception",
                    f"index_template [{name}] invalid, cause [index template [{name}] specifies "
                    f"component templates {_brackets(missing)} that do not exist]",
                )
            priority = int(tpl.get("priority", 0) or 0)
            for other_name, other in self.index_templates.items():
                if other_name == name or int(other.get("priority", 0) or 0) != priority:
                    continue
                overlap = [p for p in patterns if any(_patterns_overlap(p, q) for q in other["index_patterns"])]
                if overlap:
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"index template [{name}] has index patterns {_brackets(patterns)} matching "
                        f"patterns from existing templates [{other_name}] with patterns ({other_name} "
                        f"=> {_brackets(other['index_patterns'])}) that have the same priority "
                        f"[{priority}], multiple index templates may not match during index creation, "
                        f"please use a different priority",
                    )
            # Validate the composition the way index creation will see it.
            mappings: dict[str, Any] = {}
            for comp in tpl["composed_of"]:
                if comp in self.component_templates:
                    layer = self.component_templates[comp]["template"].get("mappings")
                    if layer:
                        mappings = merge_mappings(mappings, layer, strict_types=False)
            if template and template.get("mappings"):
                mappings = merge_mappings(mappings, template["mappings"], strict_types=False)
            normalize_mappings(mappings, version=self.version)
            self.index_templates[name] = tpl
        return {"acknowledged": True}

    def _check_template_body(self, template: Any, name: str) -> dict[str, Any]:
        if not isinstance(template, dict):
            raise ESError(400, "x_content_parse_exception", "[1:2] [template] failed to parse field [template]")
        for key in template:
            if key not in ("settings", "mappings", "aliases", "lifecycle", "data_stream_options"):
                raise ESError(400, "x_content_parse_exception", f"[1:2] [template] unknown field [{key}]")
        out = copy.deepcopy(template)
        if "settings" in template:
            flat = flatten_settings(template["settings"])
            validate_settings(flat)
            out["settings"] = flat
        if "mappings" in template:
            normalize_mappings(template["mappings"], version=self.version)
        if "aliases" in template:
            for alias in template["aliases"] or {}:
                validate_index_name(alias)
            out["aliases"] = {a: _alias_spec(spec or {}) for a, spec in (template["aliases"] or {}).items()}
        return out

    def _render_template_body(self, template: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(template)
        if "settings" in out:
            out["settings"] = nest_settings(out["settings"])
        return out

    def get_index_templates(self, name: str | None) -> dict[str, Any]:
        """``GET _index_template[/<name>]`` (wildcards and comma lists)."""
        with self.lock:
            found = self._select(self.index_templates, name, "index template matching [{}] not found")
            out = []
            for tname in found:
                tpl = copy.deepcopy(self.index_templates[tname])
                if "template" in tpl:
                    tpl["template"] = self._render_template_body(tpl["template"])
                out.append({"name": tname, "index_template": tpl})
            return {"index_templates": out}

    def _select(self, store: dict[str, Any], name: str | None, missing: str) -> list[str]:
        if not name or name in ("*", "_all"):
            return sorted(store)
        found: list[str] = []
        for part in name.split(","):
            if "*" in part:
                found += [n for n in sorted(store) if fnmatch.fnmatchcase(n, part) and n not in found]
            elif part in store:
                found.append(part)
            else:
                raise ESError(404, "resource_not_found_exception", missing.format(part))
        return found

    def delete_index_template(self, name: str) -> dict[str, Any]:
        with self.lock:
            names = self._select(self.index_templates, name, "index_template [{}] missing")
            if not names:
                raise ESError(404, "resource_not_found_exception", f"index_template [{name}] missing")
            for n in names:
                del self.index_templates[n]
        return {"acknowledged": True}

    def put_component_template(self, name: str, body: Any, params: dict[str, str]) -> dict[str, Any]:
        """``PUT _component_template/<name>``."""
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        for key in body:
            if key not in ("template", "version", "_meta", "deprecated"):
                raise ESError(400, "x_content_parse_exception", f"[1:2] [component_template] unknown field [{key}]")
        if "template" not in body:
            raise ESError(400, "x_content_parse_exception", "[1:2] Required [template]")
        comp = copy.deepcopy(body)
        comp["template"] = self._check_template_body(body["template"], name)
        with self.lock:
            if params.get("create") == "true" and name in self.component_templates:
                raise ESError(400, "illegal_argument_exception", f"component template [{name}] already exists")
            self.component_templates[name] = comp
        return {"acknowledged": True}

    def get_component_templates(self, name: str | None) -> dict[str, Any]:
        with self.lock:
            found = self._select(self.component_templates, name, "component template matching [{}] not found")
            out = []
            for cname in found:
                comp = copy.deepcopy(self.component_templates[cname])
                comp["template"] = self._render_template_body(comp["template"])
                out.append({"name": cname, "component_template": comp})
            return {"component_templates": out}

    def delete_component_template(self, name: str) -> dict[str, Any]:
        with self.lock:
            names = self._select(self.component_templates, name, "component template matching [{}] not found")
            users = sorted(
                t for t, tpl in self.index_templates.items() if any(n in tpl.get("composed_of", []) for n in names)
            )
            if users:
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"component templates {_brackets(names)} cannot be removed as they are still in use "
                    f"by index templates {_brackets(users)}",
                )
            for n in names:
                del self.component_templates[n]
        return {"acknowledged": True}

    # --------------------------------------------------------------------------------------- indices
    def create_index(self, name: str, body: Any, *, auto: bool = False) -> dict[str, Any]:
        """``PUT <index>``: templates by priority, components in order, then the request on top."""
        body = body or {}
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "Failed to derive xcontent")
        for key in body:
            if key not in ("settings", "mappings", "aliases"):
                raise ESError(400, "parse_exception", f"unknown key [{key}] for create index")
        validate_index_name(name)
        request_settings = flatten_settings(body.get("settings"))
        validate_settings(request_settings)
        with self.lock:
            if name in self.indices:
                raise ESError(
                    400,
                    "resource_already_exists_exception",
                    f"index [{name}/{self.indices[name].uuid}] already exists",
                    index_uuid=self.indices[name].uuid,
                    index=name,
                )
            if name in self.alias_map():
                raise ESError(
                    400,
                    "invalid_index_name_exception",
                    f"Invalid index name [{name}], already exists as alias",
                    index_uuid="_na_",
                    index=name,
                )
            settings, mappings, aliases = self._compose(name)
            settings.update(request_settings)
            if body.get("mappings"):
                mappings = merge_mappings(mappings, body["mappings"], strict_types=False)
            normalized = normalize_mappings(mappings, version=self.version)
            for alias, spec in (body.get("aliases") or {}).items():
                aliases[alias] = spec
            clean_aliases: dict[str, dict[str, Any]] = {}
            for alias, spec in aliases.items():
                if alias == name or alias in self.indices:
                    raise ESError(
                        400,
                        "invalid_alias_name_exception",
                        f"Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias",
                    )
                validate_index_name(alias)
                clean_aliases[alias] = _alias_spec(spec or {})
            idx = Index(
                name,
                {k: v for k, v in settings.items() if v is not None},
                normalized,
                clean_aliases,
                self.version_id,
            )
            self.indices[name] = idx
        return {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def get_index(self, expression: str, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            indices = self.resolve(expression, ignore_unavailable=params.get("ignore_unavailable") == "true")
            out: dict[str, Any] = {}
            for idx in indices:
                out[idx.name] = {
                    "aliases": {a: dict(s) for a, s in idx.aliases.items()},
                    "mappings": copy.deepcopy(idx.mappings),
                    "settings": self._render_settings(idx, params),
                }
            return out

    def _render_settings(self, idx: Index, params: dict[str, str]) -> dict[str, Any]:
        flat = dict(idx.settings)
        if params.get("flat_settings") == "true":
            return flat
        return nest_settings(flat)

    def index_exists(self, expression: str) -> bool:
        try:
            return bool(self.resolve(expression, allow_no_indices=False))
        except ESError:
            return False

    def delete_index(self, expression: str, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            for part in expression.split(","):
                if "*" in part or part == "_all":
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        "Wildcard expressions or all indices are not allowed",
                    )
                if part in self.alias_map() and part not in self.indices:
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"The provided expression [{part}] matches an alias, specify the corresponding "
                        f"concrete indices instead.",
                    )
            indices = self.resolve(expression, ignore_unavailable=params.get("ignore_unavailable") == "true")
            for idx in indices:
                del self.indices[idx.name]
        return {"acknowledged": True}

    def refresh(self, expression: str | None, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            indices = self.resolve(expression, ignore_unavailable=params.get("ignore_unavailable") == "true")
            for idx in indices:
                idx.refresh()
            total = sum(1 + idx.replicas() for idx in indices)
            return {"_shards": {"total": total, "successful": len(indices), "failed": 0}}

    def get_mapping(self, expression: str | None, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            indices = self.resolve(expression, ignore_unavailable=params.get("ignore_unavailable") == "true")
            return {idx.name: {"mappings": copy.deepcopy(idx.mappings)} for idx in indices}

    def put_mapping(self, expression: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        normalized_overlay = normalize_mappings(body, version=self.version)
        with self.lock:
            indices = self.resolve(expression)
            updated = []
            for idx in indices:
                raw = normalize_mappings(body, version=self.version)
                merged = merge_mappings(idx.mappings, raw, strict_types=True, version=self.version)
                updated.append((idx, merged))
            for idx, merged in updated:
                idx.mappings = merged
        del normalized_overlay
        return {"acknowledged": True}

    def get_settings(self, expression: str | None, name: str | None, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            indices = self.resolve(expression, ignore_unavailable=params.get("ignore_unavailable") == "true")
            out = {}
            for idx in indices:
                flat = dict(idx.settings)
                if name:
                    patterns = name.split(",")
                    flat = {
                        k: v
                        for k, v in flat.items()
                        if any(fnmatch.fnmatchcase(k, p) or fnmatch.fnmatchcase(k, "index." + p) for p in patterns)
                    }
                if not flat and name:
                    continue
                out[idx.name] = {"settings": flat if params.get("flat_settings") == "true" else nest_settings(flat)}
            return out

    def put_settings(self, expression: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        flat = flatten_settings(body.get("settings", body) if set(body) == {"settings"} else body)
        validate_settings(flat)
        with self.lock:
            indices = self.resolve(expression)
            static = [
                k
                for k in flat
                if k not in _DYNAMIC_SETTINGS
                and not k.startswith(
                    (
                        "index.blocks.",
                        "index.routing.",
                        "index.lifecycle.",
                        "index.search.",
                        "index.indexing.",
                        "index.mapping.total_fields",
                        "index.translog.",
                        "index.merge.",
                        "index.max_",
                        "index.query.",
                    )
                )
            ]
            if static:
                names = ", ".join(f"[{i.name}/{i.uuid}]" for i in indices)
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"Can't update non dynamic settings [[{', '.join(static)}]] for open indices [{names}]",
                )
            for idx in indices:
                for key, value in flat.items():
                    if value is None:
                        idx.settings.pop(key, None)
                    else:
                        idx.settings[key] = value
        return {"acknowledged": True}

    # --------------------------------------------------------------------------------------- aliases
    def update_aliases(self, body: Any) -> dict[str, Any]:
        """``POST _aliases`` with ``add`` / ``remove`` / ``remove_index`` actions (all or nothing)."""
        if not isinstance(body, dict) or "actions" not in body:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: no actions specified;")
        actions = body["actions"]
        if not isinstance(actions, list) or not actions:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: no actions specified;")
        with self.lock:
            # Work on copies so a failing action leaves everything untouched.
            staged = {name: {a: dict(s) for a, s in idx.aliases.items()} for name, idx in self.indices.items()}
            removed_indices: list[str] = []
            for action in actions:
                if not isinstance(action, dict) or len(action) != 1:
                    raise ESError(400, "illegal_argument_exception", "Too many operations declared on operation entry")
                kind, spec = next(iter(action.items()))
                if kind not in ("add", "remove", "remove_index"):
                    raise ESError(400, "x_content_parse_exception", f"[1:2] [alias_action] unknown field [{kind}]")
                idx_names = _listify(spec.get("index")) + _listify(spec.get("indices"))
                if not idx_names:
                    raise ESError(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: One of [index] or [indices] is required;",
                    )
                targets: list[str] = []
                for expr in idx_names:
                    targets += [i.name for i in self.resolve(expr) if i.name not in targets]
                if kind == "remove_index":
                    removed_indices += targets
                    continue
                alias_names = _listify(spec.get("alias")) + _listify(spec.get("aliases"))
                if not alias_names:
                    raise ESError(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: One of [alias] or [aliases] is required;",
                    )
                if kind == "add":
                    for alias in alias_names:
                        if alias in self.indices:
                            raise ESError(
                                400,
                                "invalid_alias_name_exception",
                                f"Invalid alias name [{alias}]: an index or data stream exists with the "
                                f"same name as the alias",
                            )
                        validate_index_name(alias)
                        for t in targets:
                            staged[t][alias] = _alias_spec(spec)
                else:
                    for t in targets:
                        hit = [a for a in list(staged[t]) if any(fnmatch.fnmatchcase(a, p) for p in alias_names)]
                        if not hit and spec.get("must_exist") is not False:
                            raise ESError(
                                404,
                                "aliases_not_found_exception",
                                f"aliases {_brackets(alias_names)} missing",
                                **{"resource.type": "aliases", "resource.id": ",".join(alias_names)},
                            )
                        for a in hit:
                            del staged[t][a]
            writers: dict[str, list[str]] = {}
            for name, aliases in staged.items():
                for alias, spec in aliases.items():
                    if spec.get("is_write_index") is True:
                        writers.setdefault(alias, []).append(name)
            for alias, names in writers.items():
                if len(names) > 1:
                    raise ESError(
                        400,
                        "illegal_state_exception",
                        f"alias [{alias}] has more than one write index [{','.join(sorted(names))}]",
                    )
            for name, aliases in staged.items():
                self.indices[name].aliases = aliases
            for name in removed_indices:
                self.indices.pop(name, None)
        return {"acknowledged": True, "errors": False}

    def put_alias(self, expression: str, alias: str, body: Any) -> dict[str, Any]:
        spec = dict(body or {})
        spec["index"] = expression
        spec["alias"] = alias
        return self.update_aliases({"actions": [{"add": spec}]})

    def delete_alias(self, expression: str, alias: str) -> dict[str, Any]:
        return self.update_aliases({"actions": [{"remove": {"index": expression, "alias": alias}}]})

    def get_alias(self, expression: str | None, name: str | None) -> tuple[int, dict[str, Any]]:
        """``GET [<index>/]_alias[/<name>]``; a missing alias is 404 ``{"error": "alias [x] missing"}``."""
        with self.lock:
            indices = self.resolve(expression) if expression else [self.indices[n] for n in sorted(self.indices)]
            patterns = [p for p in (name or "").split(",") if p]
            out: dict[str, Any] = {}
            seen: set[str] = set()
            for idx in indices:
                aliases = {
                    a: dict(s)
                    for a, s in idx.aliases.items()
                    if not patterns or any(p in ("_all", "*") or fnmatch.fnmatchcase(a, p) for p in patterns)
                }
                seen.update(aliases)
                if aliases or not patterns:
                    out[idx.name] = {"aliases": aliases}
            missing = sorted(p for p in patterns if "*" not in p and p != "_all" and p not in seen)
            if missing:
                body: dict[str, Any] = {"error": f"alias [{','.join(missing)}] missing", "status": 404}
                if len(missing) > 1:
                    body["error"] = f"aliases [{','.join(missing)}] missing"
                body.update(out)
                return 404, body
            return 200, out

    def write_index_for(self, name: str, *, require_alias: bool = False) -> str:
        """The concrete index a write to ``name`` goes to (an alias's write index); may not exist yet."""
        aliases = self.alias_map()
        if name in aliases:
            members = aliases[name]
            writers = [i for i in members if i.aliases[name].get("is_write_index") is True]
            if writers:
                return writers[0].name
            if len(members) == 1 and members[0].aliases[name].get("is_write_index") is not False:
                return members[0].name
            raise ESError(
                400,
                "illegal_argument_exception",
                f"no write index is defined for alias [{name}]. The write index may be explicitly disabled "
                f"using is_write_index=false or the alias points to multiple indices without one being "
                f"designated as a write index",
            )
        if require_alias:
            raise ESError(
                404,
                "index_not_found_exception",
                f"no such index [{name}] and [require_alias] request flag is [true] and [{name}] is not an alias",
                index=name,
                index_uuid="_na_",
                **{"resource.type": "index_expression", "resource.id": name},
            )
        return name

    # -------------------------------------------------------------------------------------- reindex
    _REINDEX_KEYS = ("source", "dest", "max_docs", "script", "conflicts", "size")

    def reindex(self, body: Any, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``POST _reindex``: copy the documents a search of ``source`` finds into ``dest``.

        Follows modules/reindex/.../Reindexer.java (``AsyncIndexBySearchAction.buildRequest``: id and
        ``_source`` from the hit, ``dest.pipeline`` set on each index request, ``op_type`` only when
        ``create``) and server/.../index/reindex/ReindexRequest.java (``PARSER``: ``source`` is a search
        body plus ``index``; ``dest`` takes ``index``, ``routing``, ``op_type``, ``pipeline``,
        ``version_type``; ``validate()`` messages). Vectors: AbstractAsyncBulkByScrollAction
        ``prepareSearchRequest(needsVectors)`` sets ``exclude_vectors: false`` unless the request's
        ``_source`` says otherwise, so 9.2's vectors-excluded ``_source``
        (``index.mapping.exclude_source_vectors``, PR #131907: "rehydrated transparently for ... reindex")
        still copies vectors (PR #130834 "Ensure vectors are always included in reindex actions", before
        9.2; pinned by ReindexBasicTests.testReindexIncludeVectors); a ``_source.excludes`` drops them.
        Without ``dest.pipeline`` the destination's ``default_pipeline`` runs (an ordinary index request).
        A failed write is listed in ``failures``; its batch (``source.size``, default 1000: one bulk request)
        finishes, then the copy stops (``onBulkResponse``); the HTTP status is the highest failure
        status (BulkIndexByScrollResponseContentListener). ``wait_for_completion=false`` answers
        ``{"task": "node:id"}`` and runs in the background (``GET _tasks/<id>``). Guesses: at most 10,000
        refreshed documents in all; ``script`` and remote sources are refused; no slices, no throttling.
        """
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        for key in body:
            if key not in self._REINDEX_KEYS:
                raise ESError(400, "x_content_parse_exception", f"[1:2] [reindex] unknown field [{key}]")
        source = body.get("source") or {}
        dest = body.get("dest") or {}
        if not isinstance(source, dict) or not isinstance(dest, dict):
            raise ESError(400, "x_content_parse_exception", "[1:2] [reindex] source and dest must be objects")
        if "script" in body or "remote" in source:
            raise ESError(400, "illegal_argument_exception", "the test cluster does not run reindex scripts or "
                          "remote sources (guess: not emulated)")
        problems = []
        indices = source.get("index")
        names = [n for n in (indices.split(",") if isinstance(indices, str) else indices or []) if n]
        if not names:
            problems.append("use _all if you really want to copy from all existing indexes")
        if source.get("_source") is False:
            problems.append("_source:false is not supported in this context")
        if not dest.get("index"):
            problems.append("index must be specified")
        if problems:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: "
                          + "".join(f"{i}: {p};" for i, p in enumerate(problems, 1)))
        op = str(dest.get("op_type", "index"))
        if op not in ("index", "create"):
            raise ESError(400, "illegal_argument_exception", f"opType must be 'create' or 'index', found: [{op}]")
        conflicts = str(body.get("conflicts", params.get("conflicts", "abort")))
        if conflicts not in ("abort", "proceed"):
            raise ESError(400, "illegal_argument_exception",
                          f'conflicts may only be "proceed" or "abort" but was [{conflicts}]')
        max_docs = body.get("max_docs", body.get("size"))
        batch_size = int(source.get("size") or 1000)  # the scroll size (AbstractBulkByScrollRequest default 1000)
        search_body: dict[str, Any] = {k: v for k, v in source.items() if k not in ("index", "size")}
        spec = search_body.get("_source")
        if spec is None:
            search_body["_source"] = {"exclude_vectors": False}
        elif isinstance(spec, dict) and "exclude_vectors" not in spec:
            search_body["_source"] = {**spec, "exclude_vectors": False}
        elif isinstance(spec, list | str):
            search_body["_source"] = {"includes": [spec] if isinstance(spec, str) else spec, "exclude_vectors": False}
        views = self.views(",".join(names), {})  # resolves now: a missing source index is a 404 up front

        def run() -> tuple[int, dict[str, Any]]:
            return self._run_reindex(views, search_body, dest, op, conflicts, max_docs, params, batch_size)

        if params.get("wait_for_completion", "true") == "false":
            task_id = f"{self.node_ids[0]}:{len(self.tasks) + 1}"
            task = {"completed": False, "description": f"reindex from [{','.join(names)}] to [{dest['index']}]",
                    "started": _now_ms()}
            self.tasks[task_id] = task

            def background() -> None:
                try:
                    _, response = run()
                    task["response"] = response
                except ESError as exc:
                    task["error"] = exc.error_object()
                task["completed"] = True

            threading.Thread(target=background, name=f"reindex-{task_id}", daemon=True).start()
            return 200, {"task": task_id}
        return run()

    def _run_reindex(self, views: list[Any], search_body: dict[str, Any], dest: dict[str, Any], op: str,
                     conflicts: str, max_docs: Any, params: dict[str, str],
                     batch_size: int) -> tuple[int, dict[str, Any]]:
        from . import search as search_mod

        started = time.monotonic()
        size = 10000 if max_docs is None else int(max_docs)
        found = search_mod.search(views, {**search_body, "size": size, "track_total_hits": True}, {},
                                  license_type=self.license_type, embed_text=self.embed_text)
        counts = {"created": 0, "updated": 0, "noops": 0, "version_conflicts": 0}
        failures: list[dict[str, Any]] = []
        status = 200
        hits = found["hits"]["hits"]
        batches = 0
        # Each scroll batch is one bulk request: a failure lets its batch finish, then the copy stops
        # (AbstractAsyncBulkByScrollAction.onBulkResponse -> finishHim with the failures).
        for start in range(0, len(hits), batch_size):
            batches += 1
            for hit in hits[start:start + batch_size]:
                try:
                    code, item = self.write(op, str(dest["index"]), hit["_id"],
                                            copy.deepcopy(hit.get("_source") or {}),
                                            pipeline=dest.get("pipeline"), routing=dest.get("routing"))
                except ESError as exc:
                    counts["version_conflicts"] += exc.status == 409
                    if exc.status == 409 and conflicts == "proceed":
                        continue
                    failures.append({"index": dest["index"], "id": hit["_id"], "cause": exc.error_object(),
                                     "status": exc.status})
                    status = max(status, exc.status)
                    continue
                if item.get("result") == "noop":
                    counts["noops"] += 1
                else:
                    counts["created" if code == 201 else "updated"] += 1
            if failures:
                break
        if params.get("refresh") in ("true", ""):
            self.refresh(str(dest["index"]), {})
        return status, {
            "took": int((time.monotonic() - started) * 1000), "timed_out": False,
            "total": len(hits), "updated": counts["updated"], "created": counts["created"],
            "deleted": 0, "batches": batches, "version_conflicts": counts["version_conflicts"],
            "noops": counts["noops"],
            "retries": {"bulk": 0, "search": 0}, "throttled_millis": 0, "requests_per_second": -1.0,
            "throttled_until_millis": 0, "failures": failures,
        }

    def get_task(self, task_id: str) -> dict[str, Any]:
        """``GET _tasks/<id>`` of a background reindex: ``completed``, ``task`` and ``response`` (or ``error``).

        Follows server/.../action/admin/cluster/node/tasks/get/TransportGetTaskAction.java (a finished
        task's stored result; an unknown one is 404 ``resource_not_found_exception``). The ``task``
        object is trimmed (guess: no status counters while running).
        """
        task = self.tasks.get(task_id)
        if task is None:
            raise ESError(404, "resource_not_found_exception",
                          f"task [{task_id}] isn't running and hasn't stored its results")
        node, _, number = task_id.partition(":")
        out: dict[str, Any] = {"completed": task["completed"], "task": {
            "node": node, "id": int(number), "type": "transport", "action": "indices:data/write/reindex",
            "description": task["description"], "start_time_in_millis": task["started"], "cancellable": True}}
        if "response" in task:
            out["response"] = task["response"]
        if "error" in task:
            out["error"] = task["error"]
        return out

    # -------------------------------------------------------------------------------------- pipelines
    def put_pipeline(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        ingest.validate_pipeline(body, pipeline_id)
        with self.lock:
            self.pipelines[pipeline_id] = copy.deepcopy(body)
        return {"acknowledged": True}

    def get_pipelines(self, pipeline_id: str | None) -> tuple[int, dict[str, Any]]:
        """``GET _ingest/pipeline[/<id>]``; a missing id is 404 with ``{}`` as ES answers."""
        with self.lock:
            if not pipeline_id or pipeline_id in ("*", "_all"):
                # ES answers 404 (with an empty object) when no pipeline exists at all.
                return (200 if self.pipelines else 404), copy.deepcopy(self.pipelines)
            out = {}
            for part in pipeline_id.split(","):
                for pid in sorted(self.pipelines):
                    if pid == part or ("*" in part and fnmatch.fnmatchcase(pid, part)):
                        out[pid] = copy.deepcopy(self.pipelines[pid])
            return (200 if out else 404), out

    def delete_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        with self.lock:
            matched = [
                p
                for p in self.pipelines
                if p == pipeline_id or ("*" in pipeline_id and fnmatch.fnmatchcase(p, pipeline_id))
            ]
            if not matched:
                raise ESError(404, "resource_not_found_exception", f"pipeline [{pipeline_id}] is missing")
            for p in matched:
                del self.pipelines[p]
        return {"acknowledged": True}

    def simulate(self, pipeline_id: str | None, body: Any, params: dict[str, str]) -> dict[str, Any]:
        """``POST _ingest/pipeline[/<id>]/_simulate``: run docs through a stored or inline pipeline."""
        if not isinstance(body, dict):
            raise ESError(400, "parse_exception", "request body is required")
        with self.lock:
            pipelines = dict(self.pipelines)
        if pipeline_id is None:
            if "pipeline" not in body:
                raise ingest.config_error("[pipeline] required property is missing", property_name="pipeline")
            inline = body["pipeline"]
            ingest.validate_pipeline(inline)
        elif pipeline_id not in pipelines:
            raise ESError(400, "illegal_argument_exception", f"pipeline [{pipeline_id}] does not exist")
        docs = body.get("docs")
        if docs is None:
            raise ingest.config_error("[docs] required property is missing", property_name="docs")
        if not isinstance(docs, list) or not docs:
            raise ingest.config_error("must specify at least one document in [docs]", property_name="docs")
        results = []
        for entry in docs:
            if not isinstance(entry, dict) or "_source" not in entry:
                raise ingest.config_error("[_source] required property is missing", property_name="_source")
            doc = ingest.IngestDocument(
                copy.deepcopy(entry["_source"]),
                index=entry.get("_index", "_index"),
                doc_id=entry.get("_id", "_id"),
                routing=entry.get("_routing"),
            )
            doc.meta["_version"] = str(entry.get("_version", "-3"))
            verbose = params.get("verbose") in ("true", "")
            trace: list[dict[str, Any]] | None = [] if verbose else None
            try:
                if pipeline_id is None:
                    kept = ingest.run_inline(inline, doc, pipelines=pipelines, infer=self.infer, trace=trace)
                else:
                    kept = ingest.run_pipeline(pipelines, pipeline_id, doc, infer=self.infer, trace=trace)
            except ESError as exc:
                results.append({"processor_results": trace} if verbose else {"error": ingest.error_body(exc)})
                continue
            if verbose:
                results.append({"processor_results": trace})
                continue
            if not kept:
                results.append(None)
                continue
            rendered: dict[str, Any] = {k: v for k, v in doc.meta.items() if v is not None}
            rendered["_source"] = doc.source
            rendered["_ingest"] = {"timestamp": doc.ingest["timestamp"]}
            results.append({"doc": rendered})
        return {"docs": results}

    # ---------------------------------------------------------------------------------------- writes
    def _pipeline_for(self, index_name: str, requested: str | None) -> tuple[str | None, str | None]:
        """(pipeline, final_pipeline) a write runs: the request's (or item's), else the index default."""
        idx = self.indices.get(index_name)
        settings = idx.settings if idx is not None else self._compose(index_name)[0]
        final = settings.get("index.final_pipeline")
        final = None if final in (None, "_none") else final
        if requested == "_none":
            return None, final
        if requested:
            return requested, final
        default = settings.get("index.default_pipeline")
        return (None if default in (None, "_none") else default), final

    def write(
        self,
        op: str,
        target: str | None,
        doc_id: str | None,
        source: Any,
        *,
        pipeline: str | None = None,
        refresh: str | None = None,
        require_alias: bool = False,
        if_seq_no: Any = None,
        if_primary_term: Any = None,
        routing: str | None = None,
        update_body: dict[str, Any] | None = None,
        ingest_stats: dict[str, float] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One write (``index`` / ``create`` / ``update`` / ``delete``): ``(status, item body)``.

        Raises ``ESError`` for a failed item; the caller shapes it (bulk item error or response).

        Example::

            cluster.write("index", "images", None, {"caption": "a dog"}, pipeline="_none")
        """
        if not target:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        if doc_id is not None and doc_id == "":
            raise ESError(400, "illegal_argument_exception", "if _id is specified it must not be empty")
        if doc_id is not None and len(doc_id.encode()) > 512:
            raise ESError(
                400,
                "illegal_argument_exception",
                f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {len(doc_id.encode())}",
            )
        if op == "delete":
            return self._delete(target, doc_id, refresh)
        if op == "update":
            return self._update(target, doc_id, update_body or {}, refresh, pipeline, ingest_stats)
        if not isinstance(source, dict):
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: source is missing;")
        with self.lock:
            name = self.write_index_for(target, require_alias=require_alias)
            validate_index_name(name)
            main_pipeline, final_pipeline = self._pipeline_for(name, pipeline)
            pipelines = self.pipelines
        if main_pipeline or final_pipeline:
            started = time.monotonic()
            doc = ingest.IngestDocument(source, index=name, doc_id=doc_id, routing=routing)
            try:
                kept = True
                for pid in (main_pipeline, final_pipeline):
                    if not pid or not kept:
                        continue
                    if pid not in pipelines:
                        raise ESError(400, "illegal_argument_exception", f"pipeline with id [{pid}] does not exist")
                    kept = ingest.run_pipeline(pipelines, pid, doc, infer=self.infer)
            finally:
                if ingest_stats is not None:
                    ingest_stats["ms"] = ingest_stats.get("ms", 0.0) + (time.monotonic() - started) * 1000
            if not kept:
                return 200, {
                    "_index": name,
                    "_id": doc_id,
                    "_version": -3,
                    "result": "noop",
                    "_shards": {"total": 0, "successful": 0, "failed": 0},
                }
            source = doc.source
            new_target = doc.meta.get("_index")
            if new_target and new_target != name:
                with self.lock:
                    name = self.write_index_for(str(new_target))
                validate_index_name(name)
            if doc.meta.get("_id") is not None:
                doc_id = str(doc.meta["_id"])
        with self.lock:
            if name not in self.indices:
                self.create_index(name, {}, auto=True)
            idx = self.indices[name]
            if idx.closed:
                raise closed_index(idx)
            if idx.settings.get("index.blocks.write") == "true" or idx.settings.get("index.blocks.read_only") == "true":
                raise ESError(
                    403,
                    "cluster_block_exception",
                    f"index [{name}] blocked by: [FORBIDDEN/8/index write (api)];",
                )
            update = parse_document(idx.mappings, source, doc_id, version=self.version)
            if doc_id is None:
                doc_id = base64.urlsafe_b64encode(os.urandom(15)).decode()
            existing = idx.docs.get(doc_id)
            if op == "create" and existing is not None:
                raise self._conflict(
                    idx,
                    doc_id,
                    f"version conflict, document already exists (current version [{existing.version}])",
                )
            if if_seq_no is not None:
                self._check_seq(idx, doc_id, existing, if_seq_no, if_primary_term)
            if update:
                idx.mappings = merge_mappings(idx.mappings, update, strict_types=False)
            return self._store(idx, doc_id, source, existing, refresh)

    def _store(
        self, idx: Index, doc_id: str, source: dict[str, Any], existing: DocRecord | None, refresh: str | None
    ) -> tuple[int, dict[str, Any]]:
        idx.seq_no += 1
        version = existing.version + 1 if existing else 1
        idx.docs[doc_id] = DocRecord(source, version, idx.seq_no)
        idx.dirty = True
        body = {
            "_index": idx.name,
            "_id": doc_id,
            "_version": version,
            "result": "updated" if existing else "created",
            "_shards": idx.shards_info(),
            "_seq_no": idx.seq_no,
            "_primary_term": 1,
        }
        self._maybe_refresh(idx, refresh, body)
        return (200 if existing else 201), body

    @staticmethod
    def _maybe_refresh(idx: Index, refresh: str | None, body: dict[str, Any]) -> None:
        if refresh in ("true", "", "wait_for"):
            idx.refresh()
            if refresh != "wait_for":
                body["forced_refresh"] = True

    def _conflict(self, idx: Index, doc_id: str, detail: str) -> ESError:
        return ESError(
            409,
            "version_conflict_engine_exception",
            f"[{doc_id}]: {detail}",
            index_uuid=idx.uuid,
            shard="0",
            index=idx.name,
        )

    def _check_seq(
        self, idx: Index, doc_id: str, existing: DocRecord | None, if_seq_no: Any, if_primary_term: Any
    ) -> None:
        want_seq, want_term = int(if_seq_no), int(if_primary_term if if_primary_term is not None else 1)
        if existing is None:
            raise self._conflict(
                idx,
                doc_id,
                f"required seqNo [{want_seq}], primary term [{want_term}] but no document was found",
            )
        if existing.seq_no != want_seq or existing.primary_term != want_term:
            raise self._conflict(
                idx,
                doc_id,
                f"version conflict, required seqNo [{want_seq}], primary term "
                f"[{want_term}]. current document has seqNo [{existing.seq_no}] and "
                f"primary term [{existing.primary_term}]",
            )

    def _delete(self, target: str, doc_id: str | None, refresh: str | None) -> tuple[int, dict[str, Any]]:
        if doc_id is None:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;")
        with self.lock:
            name = self.write_index_for(target)
            if name not in self.indices:
                raise not_found_index(name)
            idx = self.indices[name]
            existing = idx.docs.pop(doc_id, None)
            idx.seq_no += 1
            if existing is not None:
                idx.dirty = True
            body = {
                "_index": name,
                "_id": doc_id,
                "_version": (existing.version + 1) if existing else 1,
                "result": "deleted" if existing else "not_found",
                "_shards": idx.shards_info(),
                "_seq_no": idx.seq_no,
                "_primary_term": 1,
            }
            self._maybe_refresh(idx, refresh, body)
            return (200 if existing else 404), body

    def _update(
        self,
        target: str,
        doc_id: str | None,
        body: dict[str, Any],
        refresh: str | None,
        pipeline: str | None = None,
        ingest_stats: dict[str, float] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        if doc_id is None:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;")
        if not isinstance(body, dict):
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: script or doc is missing;")
        unknown = [
            k
            for k in body
            if k not in ("doc", "doc_as_upsert", "upsert", "detect_noop", "_source", "scripted_upsert", "script")
        ]
        if unknown:
            raise ESError(400, "x_content_parse_exception", f"[1:2] [UpdateRequest] unknown field [{unknown[0]}]")
        if "doc" not in body and "script" not in body:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: script or doc is missing;")
        partial = body.get("doc")
        with self.lock:
            name = self.write_index_for(target)
            idx = self.indices.get(name)
            existing = idx.docs.get(doc_id) if idx is not None else None
            if existing is None and body.get("scripted_upsert") is not True:
                upsert = partial if body.get("doc_as_upsert") is True else body.get("upsert")
                if upsert is None:
                    if idx is None:
                        raise not_found_index(name)
                    raise ESError(
                        404,
                        "document_missing_exception",
                        f"[{doc_id}]: document missing",
                        index_uuid=idx.uuid,
                        shard="0",
                        index=name,
                    )
                # An upsert is a plain index request: it runs the pipelines.
                return self.write(
                    "index",
                    name,
                    doc_id,
                    copy.deepcopy(upsert),
                    refresh=refresh,
                    pipeline=pipeline,
                    ingest_stats=ingest_stats,
                )
            if "script" in body or existing is None or idx is None:
                raise ESError(400, "illegal_argument_exception", "the test cluster does not run update scripts")
            merged = _deep_merge(existing.source, partial)
            if merged == existing.source and body.get("detect_noop", True) is not False:
                return 200, {
                    "_index": name,
                    "_id": doc_id,
                    "_version": existing.version,
                    "result": "noop",
                    "_shards": {"total": 0, "successful": 0, "failed": 0},
                    "_seq_no": existing.seq_no,
                    "_primary_term": 1,
                }
            update = parse_document(idx.mappings, merged, doc_id, version=self.version)
            if update:
                idx.mappings = merge_mappings(idx.mappings, update, strict_types=False)
            status, out = self._store(idx, doc_id, merged, existing, refresh)
            return status, out

    def get_doc(self, target: str, doc_id: str) -> tuple[int, dict[str, Any], DocRecord | None, Index]:
        """Realtime get: ``(status, body without _source, record, index)``."""
        with self.lock:
            indices = self.resolve(target)
            if len(indices) != 1:
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"alias [{target}] has more than one index associated with it "
                    f"[{', '.join(i.name for i in indices)}], can't execute a single index op",
                )
            idx = indices[0]
            if idx.closed:
                raise closed_index(idx)
            rec = idx.docs.get(doc_id)
            if rec is None:
                return 404, {"_index": idx.name, "_id": doc_id, "found": False}, None, idx
            return (
                200,
                {
                    "_index": idx.name,
                    "_id": doc_id,
                    "_version": rec.version,
                    "_seq_no": rec.seq_no,
                    "_primary_term": rec.primary_term,
                    "found": True,
                },
                rec,
                idx,
            )

    # ------------------------------------------------------------------------------------------ bulk
    def bulk(self, default_index: str | None, raw: bytes, params: dict[str, str]) -> dict[str, Any]:
        """``POST [<index>/]_bulk``: NDJSON actions; item errors do not fail the request."""
        import json

        started = time.monotonic()
        text = raw.decode("utf-8")
        if not text.endswith("\n"):
            raise ESError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
        lines = text.split("\n")
        ops: list[tuple[str, dict[str, Any], Any]] = []
        i = 0
        line_no = 0
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            line_no += 1
            if not line:
                continue
            try:
                action = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ESError(400, "x_content_parse_exception", f"[{line_no}:{exc.colno}] {exc.msg}") from None
            if not isinstance(action, dict) or len(action) != 1:
                if action == {}:
                    detail = "expected FIELD_NAME but found [END_OBJECT]"
                elif isinstance(action, dict):
                    detail = "expected END_OBJECT but found [FIELD_NAME]"
                else:
                    detail = "expected START_OBJECT or END_OBJECT but found [VALUE_STRING]"
                raise ESError(
                    400, "illegal_argument_exception", f"Malformed action/metadata line [{line_no}], {detail}"
                )
            kind, meta = next(iter(action.items()))
            if kind not in ("index", "create", "update", "delete"):
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{line_no}], expected field [create], [delete], "
                    f"[index] or [update] but found [{kind}]",
                )
            if not isinstance(meta, dict):
                raise ESError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{line_no}], expected START_OBJECT but found [VALUE_STRING]",
                )
            for key in meta:
                if key not in (
                    "_index",
                    "_id",
                    "pipeline",
                    "require_alias",
                    "routing",
                    "if_seq_no",
                    "if_primary_term",
                    "version",
                    "version_type",
                    "retry_on_conflict",
                    "_source",
                    "dynamic_templates",
                    "list_executed_pipelines",
                    "require_data_stream",
                    "skip_pipeline",
                    "op_type",
                ):
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"Action/metadata line [{line_no}] contains an unknown parameter [{key}]",
                    )
            doc: Any = None
            if kind != "delete":
                while i < len(lines) and not lines[i].strip():
                    i += 1
                    line_no += 1
                if i >= len(lines):
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        "Validation Failed: 1: no requests added;"
                        if not ops
                        else "The bulk request must be terminated by a newline [\\n]",
                    )
                try:
                    doc = json.loads(lines[i])
                except json.JSONDecodeError as exc:
                    # ES fails the whole request on a malformed source line.
                    raise ESError(400, "x_content_parse_exception", f"[{line_no + 1}:{exc.colno}] {exc.msg}") from None
                i += 1
                line_no += 1
            ops.append((kind, meta, doc))
        if not ops:
            raise ESError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
        if self.faults.take_bulk_request():
            raise rejected_execution()
        refresh = params.get("refresh")
        request_pipeline = params.get("pipeline")
        request_require_alias = params.get("require_alias") == "true"
        items = []
        errors = False
        ingest_stats: dict[str, float] = {}
        touched: set[str] = set()
        for kind, meta, doc in ops:
            target = meta.get("_index", default_index)
            doc_id = meta.get("_id")
            doc_id = None if doc_id is None else str(doc_id)
            if self.faults.take_bulk_item():
                err = rejected_execution()
                items.append({kind: {"_index": target, "_id": doc_id, "status": 429, "error": err.error_object()}})
                errors = True
                continue
            try:
                if kind == "create" or (kind == "index" and meta.get("op_type") == "create"):
                    op = "create"
                else:
                    op = kind
                status, body = self.write(
                    op,
                    target,
                    doc_id,
                    doc,
                    pipeline="_none" if meta.get("skip_pipeline") is True else meta.get("pipeline", request_pipeline),
                    ingest_stats=ingest_stats,
                    require_alias=bool(meta.get("require_alias", request_require_alias)),
                    if_seq_no=meta.get("if_seq_no"),
                    if_primary_term=meta.get("if_primary_term"),
                    routing=meta.get("routing"),
                    update_body=doc if kind == "update" else None,
                )
                touched.add(body["_index"])
                body = {**body, "status": status}
                items.append({kind: body})
            except ESError as exc:
                errors = True
                index_name = target
                if exc.extra.get("index"):
                    index_name = exc.extra["index"]
                items.append(
                    {
                        kind: {
                            "_index": index_name,
                            "_id": doc_id,
                            "status": exc.status,
                            "error": exc.error_object(),
                        }
                    }
                )
        if refresh in ("true", "", "wait_for"):
            with self.lock:
                for name in touched:
                    if name in self.indices:
                        self.indices[name].refresh()
            if refresh != "wait_for":
                for item in items:
                    body = next(iter(item.values()))
                    if "error" not in body and body.get("result") != "noop":
                        body["forced_refresh"] = True
        took = int((time.monotonic() - started) * 1000)
        out: dict[str, Any] = {"errors": errors, "took": took}
        if ingest_stats:
            out["ingest_took"] = int(ingest_stats["ms"])
        out["items"] = items
        return out

    # ---------------------------------------------------------------------------------------- license
    def license_body(self) -> dict[str, Any]:
        lic: dict[str, Any] = {
            "status": "active",
            "uid": self.license_uid,
            "type": self.license_type,
            "issue_date": _iso(self.license_issued),
            "issue_date_in_millis": self.license_issued,
        }
        if self.license_type != "basic":
            expiry = self.license_issued + 30 * 86_400_000
            lic["expiry_date"] = _iso(expiry)
            lic["expiry_date_in_millis"] = expiry
        lic.update(
            {
                "max_nodes": 1000,
                "max_resource_units": None,
                "issued_to": self.cluster_name,
                "issuer": "elasticsearch",
                "start_date_in_millis": -1,
            }
        )
        return {"license": lic}

    def start_trial(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if params.get("acknowledge") != "true":
                return 200, {
                    "acknowledged": False,
                    "trial_was_started": False,
                    "error_message": "Operation failed: Needs acknowledgement.",
                    "acknowledge": {
                        "message": "This API initiates a free 30-day trial for all platinum "
                        "features. By starting this trial, you agree that it is subject to the "
                        "terms and conditions at https://www.elastic.co/legal/trial_license/. "
                        "To begin your free trial, call /start_trial again and specify the "
                        '"acknowledge=true" parameter.',
                        "x-pack": ["ML", "Security", "Watcher", "Graph"],
                    },
                }
            if self.trial_used or self.license_type != "basic":
                return 403, {
                    "acknowledged": True,
                    "trial_was_started": False,
                    "error_message": "Operation failed: Trial was already activated.",
                }
            self.license_type = "trial"
            self.trial_used = True
            self.license_uid = str(_uuid.uuid4())
            self.license_issued = _now_ms()
            return 200, {"acknowledged": True, "trial_was_started": True, "type": "trial"}

    def start_basic(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.license_type == "basic":
                return 200, {
                    "acknowledged": True,
                    "basic_was_started": False,
                    "error_message": "Operation failed: Current license is basic.",
                }
            if params.get("acknowledge") != "true":
                return 200, {
                    "acknowledged": False,
                    "basic_was_started": False,
                    "error_message": "Operation failed: Needs acknowledgement.",
                    "acknowledge": {
                        "message": "This license update requires acknowledgement. To "
                        "acknowledge the license, please read the following messages and call "
                        '/start_basic again, this time with the "acknowledge=true" parameter:'
                    },
                }
            self.license_type = "basic"
            self.license_uid = str(_uuid.uuid4())
            self.license_issued = _now_ms()
            return 200, {"acknowledged": True, "basic_was_started": True}

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /_test/config``: change ML nodes, ML memory or the license at run time."""
        with self.lock:
            for key, value in body.items():
                if key == "ml_nodes":
                    self.ml_nodes = int(value)
                elif key == "ml_memory_bytes":
                    self.ml_memory_bytes = int(value)
                elif key == "license":
                    if value not in LICENSE_TYPES:
                        raise ESError(400, "illegal_argument_exception", f"license must be one of {LICENSE_TYPES}")
                    self.license_type = value
                    self.trial_used = self.trial_used or value == "trial"
                else:
                    raise ESError(
                        400,
                        "illegal_argument_exception",
                        f"unknown config key [{key}]; known: [license, ml_memory_bytes, ml_nodes]",
                    )
            return self.config()

    def config(self) -> dict[str, Any]:
        return {
            "license": self.license_type,
            "ml_nodes": self.ml_nodes,
            "ml_memory_bytes": self.ml_memory_bytes,
        }

    # ------------------------------------------------------------------------------------ cluster info
    def health(self, expression: str | None, level: str = "cluster") -> dict[str, Any]:
        """``GET _cluster/health``: a single node, so every replica is unassigned (yellow) like real ES."""
        with self.lock:
            indices = self.resolve(expression) if expression else [self.indices[n] for n in sorted(self.indices)]
            per_index = {i.name: self._index_health(i, level) for i in indices}
            primaries = sum(h["active_primary_shards"] for h in per_index.values())
            unassigned = sum(h["unassigned_shards"] for h in per_index.values())
            status = "yellow" if any(h["status"] == "yellow" for h in per_index.values()) else "green"
            nodes = 1 + max(0, self.ml_nodes - 1)
            total = primaries + unassigned
            out: dict[str, Any] = {
                "cluster_name": self.cluster_name,
                "status": status,
                "timed_out": False,
                "number_of_nodes": nodes,
                "number_of_data_nodes": 1,
                "active_primary_shards": primaries,
                "active_shards": primaries,
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": unassigned,
                "unassigned_primary_shards": 0,
                "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0,
                "number_of_in_flight_fetch": 0,
                "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 100.0 if total == 0 else primaries * 100.0 / total,
            }
            if level in ("indices", "shards"):
                out["indices"] = per_index
            return out

    @staticmethod
    def _index_health(idx: Index, level: str) -> dict[str, Any]:
        shards = int(idx.settings.get("index.number_of_shards", "1"))
        replicas = idx.replicas() if idx.settings.get("index.auto_expand_replicas") in (None, "false") else 0
        status = "yellow" if replicas else "green"
        counts = {
            "active_shards": shards,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": shards * replicas,
            "unassigned_primary_shards": 0,
        }
        out: dict[str, Any] = {
            "status": status,
            "number_of_shards": shards,
            "number_of_replicas": idx.replicas(),
            "active_primary_shards": shards,
            **counts,
        }
        if level == "shards":
            out["shards"] = {
                str(n): {
                    "status": status,
                    "primary_active": True,
                    "active_shards": 1,
                    "relocating_shards": 0,
                    "initializing_shards": 0,
                    "unassigned_shards": replicas,
                    "unassigned_primary_shards": 0,
                }
                for n in range(shards)
            }
        return out

    def nodes(self) -> list[dict[str, Any]]:
        """The nodes: node 0 holds every role (ML too when ml_nodes >= 1); extra ML nodes hold only ``ml``."""
        out = []
        count = max(1, self.ml_nodes)
        for n in range(count):
            has_ml = self.ml_nodes >= 1
            roles = (
                [
                    "data",
                    "data_cold",
                    "data_content",
                    "data_frozen",
                    "data_hot",
                    "data_warm",
                    "ingest",
                    "master",
                    "ml",
                    "remote_cluster_client",
                    "transform",
                ]
                if n == 0
                else ["ml"]
            )
            if not has_ml:
                roles = [r for r in roles if r != "ml"]
            attributes = {
                "xpack.installed": "true",
                "transform.config_version": "10.0.0",
                "ml.config_version": "12.0.0",
            }
            if has_ml:
                attributes.update(
                    {
                        "ml.machine_memory": str(self.ml_memory_bytes),
                        "ml.max_jvm_size": str(self.ml_memory_bytes // 2),
                        "ml.allocated_processors": "4",
                        "ml.allocated_processors_double": "4.0",
                    }
                )
            out.append(
                {
                    "id": self.node_ids[n % len(self.node_ids)],
                    "name": f"node-{n}",
                    "roles": roles,
                    "attributes": attributes,
                }
            )
        return out


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _alias_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("filter", "index_routing", "search_routing", "is_write_index", "is_hidden"):
        if key in spec and spec[key] is not None:
            out[key] = spec[key]
    if "routing" in spec and spec["routing"] is not None:
        out["index_routing"] = out["search_routing"] = str(spec["routing"])
    for flag in ("is_write_index", "is_hidden"):
        if flag in out and isinstance(out[flag], str):
            out[flag] = out[flag] == "true"
    return out


def _listify(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _brackets(names: list[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _patterns_overlap(a: str, b: str) -> bool:
    if fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a):
        return True
    if "*" in a and "*" in b:
        pa, pb = a.split("*")[0], b.split("*")[0]
        return pa.startswith(pb) or pb.startswith(pa)
    return False


def _deep_merge(base: Any, overlay: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return copy.deepcopy(overlay)
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = (
            _deep_merge(out.get(key), value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else copy.deepcopy(value)
        )
    return out
