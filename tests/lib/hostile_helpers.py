"""Shared pieces of the hostile-input tests: run a call that must not block."""

from __future__ import annotations

import threading
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
