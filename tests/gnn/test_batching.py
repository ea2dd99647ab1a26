"""The micro-batcher: flush on size, on time and on an item's own deadline; results routed to
their callers; a bounded queue that refuses rather than grows."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from gnn.batching import BatchCost, BatchInfo, MicroBatcher, QueueFull

WAIT_S = 10.0  # generous: only a broken batcher gets near it on a busy machine


class Recorder:
    """A process function that answers ``10 * x`` (or raises for negative ``x``) and keeps
    every batch it saw."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[tuple[list[int], BatchInfo]] = []
        self.started = threading.Event()
        self.gate = gate

    def __call__(
        self, items: Sequence[int], info: BatchInfo, resolve: Callable[[int, object], None]
    ) -> None:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S)
        self.batches.append((list(items), info))
        for i, x in enumerate(items):
            resolve(i, ValueError(f"bad {x}") if x < 0 else 10 * x)


def test_flushes_when_the_batch_is_full() -> None:
    rec = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(rec, max_batch=4, max_wait_ms=60_000, capacity=16)
    futures = [b.submit(x) for x in range(4)]
    # τ is a minute: only the size rule can answer inside the wait.
    assert [f.result(WAIT_S) for f in futures] == [0, 10, 20, 30]
    assert [items for items, _ in rec.batches] == [[0, 1, 2, 3]]
    b.close()


def test_flushes_a_partial_batch_after_max_wait() -> None:
    rec = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(rec, max_batch=100, max_wait_ms=30, capacity=16)
    assert b.submit(7).result(WAIT_S) == 70
    (items, info), *rest = rec.batches
    assert (items, rest) == ([7], [])
    assert info.size == 1
    assert info.queue_wait_ms[0] >= 30.0  # it waited for peers, as long as τ and no less
    b.close()


def test_an_items_flush_by_cuts_the_wait_short() -> None:
    import time

    rec = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(rec, max_batch=100, max_wait_ms=60_000, capacity=16)
    assert b.submit(1, flush_by=time.perf_counter() + 0.005).result(WAIT_S) == 10
    assert [items for items, _ in rec.batches] == [[1]]
    b.close()


def test_results_and_errors_reach_their_own_callers() -> None:
    rec = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(rec, max_batch=8, max_wait_ms=2, capacity=1000)
    xs = [x if x % 7 else -x - 1 for x in range(200)]
    with ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(b.submit, xs))
    for x, f in zip(xs, futures, strict=True):
        if x < 0:
            with pytest.raises(ValueError, match=f"bad {x}$"):
                f.result(WAIT_S)
        else:
            assert f.result(WAIT_S) == 10 * x
    assert sorted(x for items, _ in rec.batches for x in items) == sorted(xs)
    assert max(len(items) for items, _ in rec.batches) <= 8
    b.close()


def test_a_full_queue_refuses_with_a_retry_hint_and_recovers() -> None:
    gate = threading.Event()
    rec = Recorder(gate)
    b: MicroBatcher[int, int] = MicroBatcher(rec, max_batch=2, max_wait_ms=0, capacity=3)
    first = b.submit(0)
    assert rec.started.wait(WAIT_S)  # the worker holds item 0 and is blocked on the gate
    queued = [b.submit(x) for x in (1, 2, 3)]
    with pytest.raises(QueueFull) as exc:
        b.submit(4)
    assert exc.value.capacity == 3
    assert exc.value.retry_after_s > 0
    assert len(b) == 3
    gate.set()
    assert [f.result(WAIT_S) for f in [first, *queued]] == [0, 10, 20, 30]
    assert b.submit(5).result(WAIT_S) == 50  # room again once drained
    b.close()


def test_a_failing_process_fails_every_unanswered_caller() -> None:
    def boom(items: Sequence[int], info: BatchInfo, resolve: Callable[[int, object], None]) -> None:
        resolve(0, 1)
        raise RuntimeError("engine bug")

    b: MicroBatcher[int, int] = MicroBatcher(boom, max_batch=3, max_wait_ms=60_000, capacity=8)
    futures = [b.submit(x) for x in range(3)]
    assert futures[0].result(WAIT_S) == 1
    for f in futures[1:]:
        with pytest.raises(RuntimeError, match="engine bug"):
            f.result(WAIT_S)
    b.close()


def test_close_drains_then_refuses() -> None:
    rec = Recorder()
    b: MicroBatcher[int, int] = MicroBatcher(rec, max_batch=100, max_wait_ms=60_000, capacity=8)
    pending = b.submit(3)
    b.close()
    assert pending.result(WAIT_S) == 30
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(4)


def test_the_batch_cost_separates_the_fixed_part_from_the_per_item_part() -> None:
    cost = BatchCost()
    for k in range(300):
        n = 1 + (7 * k) % 32
        cost.observe(n, 0.004 + 0.0002 * n)
    assert cost.fixed_s == pytest.approx(0.004, abs=1e-5)
    assert cost.per_item_s == pytest.approx(0.0002, abs=1e-6)
    assert cost.seconds(10) == pytest.approx(0.006, abs=1e-5)
    assert cost.seconds(0) == 0.0


def test_one_batch_size_only_charges_the_whole_cost_per_item() -> None:
    cost = BatchCost()
    for _ in range(50):
        cost.observe(1, 0.005)
    assert cost.fixed_s == 0.0
    assert cost.seconds(10) == pytest.approx(0.05)


def test_the_expected_wait_counts_whole_batches_not_items() -> None:
    gate = threading.Event()
    rec = Recorder(gate)
    b: MicroBatcher[int, int] = MicroBatcher(rec, max_batch=4, max_wait_ms=0, capacity=16)
    for k in range(100):  # batches have cost 20 ms plus 1 ms per item
        n = 1 + k % 4
        b.cost.observe(n, 0.020 + 0.001 * n)
    assert b.expected_wait_s() == 0.0  # nothing queued, nothing running
    first = b.submit(0)
    assert rec.started.wait(WAIT_S)  # the worker holds item 0 and waits on the gate
    rest = [b.submit(x) for x in range(1, 7)]  # six queued: one full batch of four ahead
    wait = b.expected_wait_s()
    assert b.cost.seconds(4) <= wait <= b.cost.seconds(4) + b.cost.seconds(1)
    assert wait < 6 * b.cost.seconds(1)  # what counting items one by one would say
    gate.set()
    assert [f.result(WAIT_S) for f in [first, *rest]] == [10 * x for x in range(7)]
    b.close()
