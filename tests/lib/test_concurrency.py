"""ordered_map: input order kept, failures in their place, bounded read-ahead, early stop."""

from __future__ import annotations

import threading
import time

from toolkit.concurrency import ordered_map


def test_results_keep_input_order_even_when_later_items_finish_first() -> None:
    def slow_first(n: int) -> int:
        time.sleep(0.05 if n == 0 else 0)
        return n * 10

    assert [(i, r) for i, r in ordered_map(slow_first, range(6), workers=3)] == [(i, i * 10) for i in range(6)]


def test_an_item_that_raises_comes_out_in_its_place() -> None:
    def fail_on_two(n: int) -> int:
        if n == 2:
            raise ValueError("bad item")
        return n

    out = list(ordered_map(fail_on_two, range(4), workers=2))
    assert [i for i, _ in out] == [0, 1, 2, 3]
    assert isinstance(out[2][1], ValueError) and out[3][1] == 3


def test_read_ahead_is_bounded_by_depth() -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for n in range(100):
            pulled += 1
            yield n

    results = ordered_map(lambda n: n, source(), workers=2, depth=4)
    next(results)
    assert pulled <= 5  # depth in flight, plus the one handed out
    results.close()


def test_stopping_early_cancels_work_not_started() -> None:
    started: list[int] = []
    gate = threading.Event()

    def work(n: int) -> int:
        started.append(n)
        if n:
            gate.wait(2)  # item 1 holds the only worker; items 2.. wait in the queue
        return n

    results = ordered_map(work, range(50), workers=1, depth=10)
    assert next(results) == (0, 0)
    results.close()  # the consumer stops (Ctrl-C, a lost cluster)
    gate.set()
    time.sleep(0.2)
    assert started[0] == 0 and max(started) <= 1  # item 1 may have started; none queued behind it did
