"""Building the Elasticsearch client and reading the cluster facts the toolkit depends on.

Everything here talks to a real cluster through the official client; failures come out as
``toolkit.errors`` types (see ``toolkit.errors.mapped``).
"""

from __future__ import annotations

import base64
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from toolkit.errors import ConfigError, MLNodeError, UnsupportedVersion, mapped
from toolkit.settings import Settings, mask_url

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

MIN_VERSION = (9, 1)
ML_LICENSES = ("platinum", "enterprise", "trial")
ENTERPRISE_LICENSES = ("enterprise", "trial")
# libtorch bundled with Elasticsearch's ML native code, by ES version (from the release notes).
_LIBTORCH: list[tuple[tuple[int, int, int], str]] = [
    ((9, 2, 0), "2.7.1"),
    ((8, 18, 0), "2.5.1"),
    ((8, 15, 2), "2.3.1"),
    ((8, 13, 0), "2.1.2"),
]
# Memory an ML node needs for one deployment: a fixed overhead plus twice the model file.
DEPLOYMENT_OVERHEAD_BYTES = 240 * 1024 * 1024


def make_client(settings: Settings) -> Elasticsearch:
    """The official client, configured from settings (secrets never leave this function).

    Example::

        client = make_client(load_settings())
        client.info()
    """
    from elasticsearch import Elasticsearch

    es = settings.elasticsearch
    kwargs: dict[str, Any] = {"request_timeout": es.request_timeout}
    if es.api_key is not None:
        key = es.api_key.get_secret_value()
        # "id:api_key" is sent as base64("id:api_key") (a tuple tells the client to encode it); the
        # "encoded" form is already that base64.
        kwargs["api_key"] = tuple(key.split(":", 1)) if ":" in key else key
    elif es.username:
        password = es.password.get_secret_value() if es.password else ""
        # The client encodes "user:password" as ASCII and fails on any other character; Elasticsearch
        # decodes Basic credentials as UTF-8 (UsernamePasswordToken.extractToken), so encode them so here.
        kwargs["basic_auth"] = base64.b64encode(f"{es.username}:{password}".encode()).decode("ascii")
    if es.ca_certs:
        # Else the client reports a missing CA file as "cannot reach the cluster ([Errno 2] ...)".
        ca = Path(es.ca_certs).expanduser()
        if not ca.is_file():
            what = "is a directory" if ca.is_dir() else "is not a file" if ca.exists() else "does not exist"
            raise ConfigError(f"the CA certificate file {es.ca_certs} {what}", key="elasticsearch.ca_certs",
                              hint="point ES_CA_CERTS (elasticsearch.ca_certs) at the cluster's CA file "
                                   "(http_ca.crt)")
        try:
            ssl.create_default_context(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"the CA certificate file {es.ca_certs} holds no PEM certificate ({exc})",
                              key="elasticsearch.ca_certs",
                              hint="point ES_CA_CERTS at the cluster's CA certificate (http_ca.crt, PEM)") from None
        kwargs["ca_certs"] = str(ca)
    if urlsplit(es.url).scheme.lower() == "https":
        kwargs["verify_certs"] = es.verify_certs
    try:
        with mapped("connecting"):
            return Elasticsearch(es.url, **kwargs)
    except ValueError:
        # The client's own message repeats the URL, password included: word it here, masked, and do not chain it.
        raise ConfigError(f"elasticsearch.url '{mask_url(es.url)}' is not a URL the client can use: it needs "
                          "a scheme (http or https), a host and, for http, a port",
                          key="elasticsearch.url",
                          hint="set ES_URL / --es-url like http://localhost:9200 or https://host:443") from None


def parse_version(number: str) -> tuple[int, int, int]:
    """``"9.2.0-SNAPSHOT"`` -> ``(9, 2, 0)``."""
    parts = [int(p) for p in re.findall(r"\d+", number)[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def libtorch_for(version: tuple[int, int, int]) -> str | None:
    """The libtorch version an Elasticsearch version runs models with (None when unknown)."""
    for since, torch_version in _LIBTORCH:
        if version >= since:
            return torch_version
    return None


@dataclass(frozen=True)
class MLCapacity:
    nodes: int
    max_node_memory_bytes: int
    """The largest model memory one ML node can give a deployment (0 when unknown)."""


@dataclass(frozen=True)
class ClusterFacts:
    version: str
    license_type: str
    license_status: str

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_version(self.version)

    @property
    def ml_allowed(self) -> bool:
        return self.license_status == "active" and self.license_type in ML_LICENSES

    @property
    def rrf_allowed(self) -> bool:
        return self.license_status == "active" and self.license_type in ENTERPRISE_LICENSES

    @property
    def libtorch(self) -> str | None:
        return libtorch_for(self.version_tuple)


def cluster_facts(client: Elasticsearch) -> ClusterFacts:
    """Version and license, in two cheap requests."""
    with mapped("reading cluster info"):
        info = client.info()
    with mapped("reading the license"):
        lic = client.license.get()["license"]
    return ClusterFacts(version=str(info["version"]["number"]), license_type=str(lic.get("type", "")),
                        license_status=str(lic.get("status", "")))


def require_supported(facts: ClusterFacts) -> None:
    """Raise UnsupportedVersion below 9.1."""
    if facts.version_tuple[:2] < MIN_VERSION:
        raise UnsupportedVersion(
            f"Elasticsearch {facts.version} is not supported (toolkit needs 9.1 or later)",
            hint="upgrade the cluster; docker-compose.yml starts a supported version")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3,
          "gb": 1024**3, "t": 1024**4, "tb": 1024**4, "p": 1024**5, "pb": 1024**5}


def parse_bytes(value: Any) -> int:
    """ES byte sizes (``"1.5gb"``, ``"512mb"``, ints) to bytes; 0 when unparseable."""
    if isinstance(value, int | float):
        return int(value)
    m = _SIZE_RE.match(str(value or ""))
    if not m:
        return 0
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def ml_capacity(client: Elasticsearch) -> MLCapacity:
    """ML nodes and the memory they offer, from ``GET _nodes`` (roles) and ``GET _ml/info`` (limits)."""
    with mapped("listing nodes"):
        nodes = client.nodes.info(metric="settings,os")["nodes"]
    ml_nodes = [n for n in nodes.values() if "ml" in n.get("roles", [])]
    with mapped("reading ML info"):
        info = client.ml.info()
    limits = info.get("limits", {})
    memory = parse_bytes(limits.get("effective_max_model_memory_limit")
                         or limits.get("max_model_memory_limit") or 0)
    if not memory:
        for node in ml_nodes:
            memory = max(memory, parse_bytes(node.get("attributes", {}).get("ml.machine_memory", 0)) // 2)
    return MLCapacity(nodes=len(ml_nodes), max_node_memory_bytes=memory)


def deployment_memory_bytes(model_file_bytes: int) -> int:
    """Memory one deployment needs: about 240 MB plus twice the model file."""
    return DEPLOYMENT_OVERHEAD_BYTES + 2 * model_file_bytes


def require_ml_capacity(capacity: MLCapacity, needed_bytes: int) -> None:
    """Raise MLNodeError when there is no ML node or none has ``needed_bytes`` of model memory."""
    if capacity.nodes == 0:
        raise MLNodeError("the cluster has no ML node, so it cannot run the text model",
                          hint="add a node with the `ml` role (docker-compose.yml runs one)")
    if capacity.max_node_memory_bytes and capacity.max_node_memory_bytes < needed_bytes:
        raise MLNodeError(
            f"the model needs about {needed_bytes / 1024**2:.0f} MB on an ML node but the largest "
            f"allowance is {capacity.max_node_memory_bytes / 1024**2:.0f} MB",
            hint="give the ML node more memory (xpack.ml.max_machine_memory_percent or a bigger node)")
