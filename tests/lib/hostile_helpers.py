"""Shared pieces of the hostile-input tests: run a call that must not block, make files that are not regular."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any


def finishes(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a thread and return its result (or raise its error); fail, instead of hanging
    the suite, if it is still running after 60 seconds.

    Example: ``finishes(fetch, "/dev/zero")`` raises the ``FetchError`` that ``fetch`` raised.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), f"{fn} blocked"
    if "error" in result:
        raise result["error"]
    return result["value"]


def make_special(path: Path, kind: str) -> Path:
    """Make ``path`` a file that is not a regular file: ``"fifo"`` (a read blocks until a writer comes),
    ``"dev_zero"`` (a link to /dev/zero: a read never ends) or ``"folder"``. Returns ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        raise ValueError(f"unknown special file kind {kind!r}")
    return path
