"""Local files in ingest's fetch stage: only regular files are read (a FIFO or /dev/zero never hangs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.hostile_helpers import finishes, make_special
from toolkit.ingest.fetch import FetchError, fetch


@pytest.mark.parametrize("make", ["fifo", "dev_zero"])
def test_a_manifest_row_naming_a_fifo_or_a_device_fails_at_read(tmp_path: Path, make: str) -> None:
    # A manifest row (or --retry-failures record) pointing at a FIFO hung the run forever; one
    # pointing at a link to /dev/zero read forever.
    path = make_special(tmp_path / "x.jpg", make)
    with pytest.raises(FetchError) as info:
        finishes(fetch, str(path))
    assert info.value.stage == "read" and "not a regular file" in info.value.reason
