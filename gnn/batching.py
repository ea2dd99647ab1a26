"""Dynamic micro-batching: many callers, one inference worker thread, bounded queue.

Callers :meth:`MicroBatcher.submit` an item and get a :class:`concurrent.futures.Future` back
(``asyncio.wrap_future`` turns it into an awaitable on an event loop). One worker thread takes
items off the queue in arrival order and hands them to ``process`` as one batch when either

* ``max_batch`` items are waiting (flush on size), or
* the oldest waiting item has waited ``max_wait_ms`` (flush on time), or an item's own
  ``flush_by`` time has come (a tight deadline).

``process(items, info, resolve)`` answers item ``i`` by calling ``resolve(i, result)`` –
as soon as that item is ready, so cheap answers need not wait for the rest of the batch. A
result may be an ``Exception``, which is set on that caller's future only. If ``process``
raises, every item not yet resolved gets the exception; an item it never resolves gets a
``RuntimeError``. Either way no caller waits forever.

The queue holds at most ``capacity`` items: beyond that :meth:`submit` raises
:class:`QueueFull` at once (load shedding) – the queue never grows without bound, and a caller
that is refused has not consumed any worker time.

:meth:`MicroBatcher.expected_wait_s` says how long an item queued now would wait. A batch's
cost is mostly fixed (dispatch, tensor set-up, one forward pass) plus a little per item, so
the batcher fits ``seconds ≈ fixed + per_item · n`` to the batches it has run
(:class:`BatchCost`): ten queued items are one batch, not ten batches of one.

Why one worker thread: the embedded graph and feature stores are single-writer, and on a
2-core host the other core is busy with HTTP parsing; batching amortises the per-batch costs
(Python dispatch, tensor set-up, the forward pass) instead of adding threads that would only
contend for the GIL and the store lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(RuntimeError):
    """The batcher's queue is at capacity; ``retry_after_s`` is a hint for the caller."""

    def __init__(self, capacity: int, retry_after_s: float) -> None:
        super().__init__(f"inference queue full ({capacity} waiting)")
        self.capacity = capacity
        self.retry_after_s = retry_after_s


@dataclass
class Pending(Generic[T, R]):
    """One queued item; times are ``time.perf_counter()`` seconds: at submit, and when the
    batch holding it must flush at the latest."""

    item: T
    enqueued_at: float
    flush_by: float
    future: Future[R] = field(default_factory=Future)


@dataclass
class BatchInfo:
    """What the worker knows about the batch it hands to ``process``.

    ``started_at`` is ``time.perf_counter()`` seconds when the batch was taken off the queue;
    ``queue_wait_ms[i]`` is how long item ``i`` waited in the queue (milliseconds).
    """

    size: int
    started_at: float
    queue_wait_ms: list[float]


class BatchCost:
    """Seconds a batch of ``n`` items takes, ``fixed + per_item · n``, fitted by least squares
    over the batches seen, each weighing ``1 − alpha`` as much as the one after it.

    While the sizes seen are (nearly) all the same, the two terms cannot be told apart; the
    fit then charges the whole cost per item (``fixed = 0``), which overestimates larger
    batches – the cautious side for shedding. Not thread-safe: one writer (the worker).
    """

    def __init__(self, alpha: float = 0.05, prior_s: float = 0.005) -> None:
        self.alpha = alpha
        # Weighted sums of 1, n, n², t, n·t; the prior is one batch of one taking prior_s.
        self._s = [1.0, 1.0, 1.0, prior_s, prior_s]
        self.fixed_s, self.per_item_s = 0.0, prior_s

    def observe(self, n: int, seconds: float) -> None:
        """A batch of ``n`` items took ``seconds``."""
        keep = 1.0 - self.alpha
        s = [x * keep for x in self._s]
        for k, x in enumerate((1.0, n, n * n, seconds, n * seconds)):
            s[k] += x
        self._s = s
        w, sn, snn, st, snt = s
        spread = w * snn - sn * sn  # w² · the weighted variance of n
        if spread > 0.05 * w * w:  # sizes vary enough to separate the two terms
            per_item = (w * snt - sn * st) / spread
            fixed = (st - per_item * sn) / w
            if fixed < 0:  # a line through the origin, rather than a negative fixed cost
                fixed, per_item = 0.0, snt / snn
            elif per_item < 0:  # larger batches were no slower: all of it is fixed
                fixed, per_item = st / w, 0.0
        else:
            fixed, per_item = 0.0, st / sn
        self.fixed_s, self.per_item_s = fixed, per_item

    def seconds(self, n: int) -> float:
        """Estimated seconds for a batch of ``n`` (0 for none)."""
        return self.fixed_s + self.per_item_s * n if n > 0 else 0.0


Resolve = Callable[[int, R | Exception], None]
ProcessFn = Callable[[Sequence[T], BatchInfo, Resolve[R]], None]


class MicroBatcher(Generic[T, R]):
    """Queue + one worker thread that calls ``process`` on batches (see the module docstring).

    Args:
        process: ``(items, info, resolve) -> None``; calls ``resolve(i, result)`` once per item.
        max_batch: flush as soon as this many items wait (``B``), ≥ 1.
        max_wait_ms: flush when the oldest item has waited this long (``τ``, milliseconds),
            ≥ 0; 0 means "take whatever is queued when the worker is free".
        capacity: most items waiting at once; more are refused with :class:`QueueFull`.
        name: the worker thread's name.

    The worker starts on the first :meth:`submit` (so an app built without running its
    lifespan still serves) and stops at :meth:`close`, after finishing what is queued.
    """

    def __init__(
        self,
        process: ProcessFn[T, R],
        max_batch: int,
        max_wait_ms: float,
        capacity: int,
        name: str = "inference",
    ) -> None:
        if max_batch < 1 or capacity < 1 or max_wait_ms < 0:
            raise ValueError("need max_batch >= 1, capacity >= 1, max_wait_ms >= 0")
        self.process = process
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1e3
        self.capacity = capacity
        self.name = name
        self._queue: deque[Pending[T, R]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._in_progress = 0  # items of the batch being processed
        self._started_at = 0.0  # when that batch was taken (perf_counter seconds)
        self.cost = BatchCost()  # fitted from the batches run (Retry-After, shedding)

    def __len__(self) -> int:
        return len(self._queue)

    def expected_wait_s(self) -> float:
        """Rough seconds a request queued now waits before its batch starts: the rest of the
        batch in progress, then the full batches of ``max_batch`` that the items queued
        ahead of it make, at the fitted :class:`BatchCost` (the flush time ``τ`` is not
        included: a request can shorten it with ``flush_by``)."""
        ahead = len(self._queue) // self.max_batch
        wait = ahead * self.cost.seconds(self.max_batch)
        if self._in_progress:
            elapsed = time.perf_counter() - self._started_at
            wait += max(0.0, self.cost.seconds(self._in_progress) - elapsed)
        return wait

    def submit(self, item: T, flush_by: float | None = None) -> Future[R]:
        """Queue ``item``; its result (or exception) arrives on the returned future.

        ``flush_by`` (``time.perf_counter()`` seconds) makes the batch holding this item
        flush no later than then, even before ``τ`` (for an item with a tight deadline).

        Raises :class:`QueueFull` when ``capacity`` items already wait, and ``RuntimeError``
        after :meth:`close`.
        """
        now = time.perf_counter()
        due = now + self.max_wait_s if flush_by is None else min(now + self.max_wait_s, flush_by)
        pending: Pending[T, R] = Pending(item, now, due)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if len(self._queue) >= self.capacity:
                raise QueueFull(self.capacity, max(0.001, self.expected_wait_s()))
            self._queue.append(pending)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return pending.future

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting items, drain the queue, join the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _take(self) -> list[Pending[T, R]] | None:
        """Block until a batch is due; ``None`` once closed and drained."""
        with self._cond:
            while True:
                if self._queue:
                    full = len(self._queue) >= self.max_batch
                    # FIFO: the oldest item's τ is due first, but a later one may be tighter.
                    due = 0.0 if full else min(p.flush_by for p in self._queue)
                    now = time.perf_counter()
                    if full or now >= due or self._closed:
                        n = min(self.max_batch, len(self._queue))
                        self._started_at, self._in_progress = now, n
                        return [self._queue.popleft() for _ in range(n)]
                    self._cond.wait(due - now)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            self._run_batch(batch)
            # Hold nothing of it while waiting for the next: the callers' futures are theirs
            # now (see services.heap.Refreezer for why that matters).
            del batch

    def _run_batch(self, batch: list[Pending[T, R]]) -> None:
        started = time.perf_counter()
        info = BatchInfo(len(batch), started, [(started - p.enqueued_at) * 1e3 for p in batch])

        def resolve(i: int, result: R | Exception) -> None:
            fut = batch[i].future
            if fut.done():
                raise RuntimeError(f"item {i} of the batch was resolved twice")
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

        error: BaseException | None = None
        try:
            self.process([p.item for p in batch], info, resolve)
        except BaseException as exc:  # every caller of the batch must hear about it
            error = exc
        self.cost.observe(len(batch), time.perf_counter() - started)
        self._in_progress = 0
        for p in batch:
            if not p.future.done():
                p.future.set_exception(
                    error if error is not None else RuntimeError("item left unanswered")
                )
