"""A bounded, order-keeping thread map shared by downloads (ingest) and image decoding (embedder)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(func: Callable[[T], R], items: Iterable[T], *, workers: int, depth: int | None = None,
                thread_name: str = "worker") -> Generator[tuple[T, R | BaseException], None, None]:
    """``(item, func(item) or the exception it raised)`` in input order, ``workers`` threads at a time.

    At most ``depth`` (default ``2 * workers``) items are in flight, so a slow item holds back the
    output but never lets the input run ahead without bound. Pending work is cancelled when the
    consumer stops early.

    Example:
        >>> [r for _, r in ordered_map(len, ["a", "bb"], workers=2)]
        [1, 2]
    """
    depth = max(1, depth or 2 * workers)
    in_flight: deque[tuple[T, Future[R]]] = deque()
    iterator = iter(items)
    exhausted = False
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=thread_name)
    try:
        while True:
            while not exhausted and len(in_flight) < depth:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                in_flight.append((item, pool.submit(func, item)))
            if not in_flight:
                return
            item, future = in_flight.popleft()
            result: R | BaseException
            try:
                result = future.result()
            except Exception as exc:  # the item's own failure, returned in its place
                result = exc
            yield item, result
    finally:
        for _, future in in_flight:
            future.cancel()
        # Do not wait for slow work (a download, a decode) to finish when the run stops.
        pool.shutdown(wait=False, cancel_futures=True)
