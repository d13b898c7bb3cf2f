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
