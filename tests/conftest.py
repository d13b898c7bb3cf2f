"""Shared pytest fixtures.

``escluster``: a fresh Elasticsearch-compatible test cluster (trial license) per test; use ``.url``.
``escluster_factory``: start clusters with options (``license``, ``api_key``, ``version``, ``ml_nodes``,
``ml_memory_bytes``, ``password``); all are stopped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.escluster.testing import Handle, start_cluster


@pytest.fixture
def escluster_factory() -> Iterator[Callable[..., Handle]]:
    """Factory: ``escluster_factory(license="basic", api_key="k")`` -> a running cluster handle."""
    started: list[Handle] = []

    def make(**options: Any) -> Handle:
        handle = start_cluster(**options)
        started.append(handle)
        return handle

    yield make
    for handle in started:
        handle.stop()


@pytest.fixture
def escluster(escluster_factory: Callable[..., Handle]) -> Handle:
    """A running test cluster with a trial license (``escluster.url``, ``escluster.state``)."""
    return escluster_factory(license="trial")


# --- isolation (lead) -----------------------------------------------------------------------------
import os as _os  # noqa: E402

#: The real cluster for ``real_cluster`` tests, read before any test clears the environment.
REAL_ES_URL = _os.environ.get("ES_URL")
_ISOLATED_VARS = (
    "ES_URL",
    "ES_API_KEY",
    "ES_USERNAME",
    "ES_PASSWORD",
    "ES_CA_CERTS",
    "ES_VERIFY_CERTS",
    "TOOLKIT_CONFIG",
)


@pytest.fixture(autouse=True)
def _isolated(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every test starts in an empty working directory with no toolkit environment variables
    (``real_cluster`` tests keep the connection variables: they are how those tests find the cluster)."""
    if request.node.get_closest_marker("real_cluster") is None:
        for name in _ISOLATED_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def real_es_url() -> str:
    """The real cluster's URL (``ES_URL`` when the session started); skips when there is none."""
    if not REAL_ES_URL:
        pytest.skip("needs a real Elasticsearch: set ES_URL (docker compose up, or CI's service)")
    return REAL_ES_URL
