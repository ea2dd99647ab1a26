"""The scoring engine in a process of its own: the API's HTTP work and the model's work stop
sharing one interpreter lock.

On a 2-core host the API process answered at most about 150–200 requests/s: its HTTP thread
and its inference thread each used 40–45 % of a core and, sharing one interpreter, together
never much more than one core (``bench/RESULTS.md``, session 9). :class:`EngineProcess` runs a
:class:`~gnn.engine.ScoringEngine` in a child process over its own copy of the embedded stores:

* at start the parent sends a snapshot (pickled model bundle, graph store and feature store);
* every event the parent's :class:`~feature_stream.ingest.Ingestor` applies afterwards is
  forwarded (:class:`MirroredIngestor`), and requests go down the same pipe in the same order,
  so the child scores each batch against exactly the events applied before it was sent: the
  point-in-time rule holds as in one process;
* :meth:`EngineProcess.infer` is :meth:`ScoringEngine.infer` (the same answers, the child's
  stage timings); the parent keeps its own engine for explanations and the review UI.
* :class:`RungRouter` sends only the GNN rungs to the child. The tree and policy rungs read
  online features and nothing else, and the parent's stores have every event the child's
  have (the parent applies an event before forwarding it), so the parent answers those rungs
  itself: the same scores, without a round trip through the pipe and the child's queue.
  Those are the rungs of requests whose deadline is nearly spent.

Embedded mode only: in service mode every replica already follows the graph changelog.
Opt in with ``RISKGRAPH_INFERENCE_PROCESS=true``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import pickle
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from feature_stream.event_io import EventSink, InMemoryEventSink
from feature_stream.events import Payment
from feature_stream.feature_store import FeatureStore
from feature_stream.graph_store import GraphStore
from feature_stream.ingest import AnyEvent, Ingestor
from gnn.artifact import ModelBundle
from gnn.engine import Scored, ScoringEngine, set_math_threads
from gnn.ladder import Rung

log = logging.getLogger("riskgraph.engine_process")

_APPLY, _INFER, _STOP = "apply", "infer", "stop"


class EngineProcessDied(RuntimeError):
    """The inference process is gone; requests fail until the API restarts."""


def _serve(
    conn: Connection,
    snapshot: bytes,
    engine_kw: dict[str, Any],
    threads: int,
    on_loaded: Callable[[], None] | None,
    on_quiet: Callable[[], object] | None,
) -> None:
    """The child: rebuild the stores and the engine, then answer messages in order, calling
    ``on_quiet`` before each (nothing of the last message is alive then)."""
    if threads > 0:
        set_math_threads(threads)
    bundle, graph, features = pickle.loads(snapshot)
    if on_loaded is not None:
        on_loaded()
    ingestor = Ingestor(graph, features, InMemoryEventSink())
    engine = ScoringEngine(bundle, graph, features, **engine_kw)
    conn.send(("ready", None))
    while True:
        if on_quiet is not None:
            on_quiet()
        kind, body = conn.recv()
        if kind == _APPLY:
            ingestor.apply(body)
        elif kind == _INFER:
            payments, rung = body
            try:
                conn.send(("ok", engine.infer(payments, rung)))
            except Exception as exc:  # the parent re-raises it for this batch
                conn.send(("error", exc))
        else:
            conn.close()
            return


class EngineProcess:
    """A :class:`ScoringEngine` in a child process, fed the parent's ingested events.

    ``on_loaded`` runs in the child once the snapshot is loaded, before it serves (a
    module-level function: it is pickled by name), e.g. :func:`services.heap.settle_heap`
    so that the collector does not scan the loaded stores while requests wait. ``on_quiet``
    (pickled too) runs in the child between messages, e.g. the ``quiet_point`` of a
    :class:`services.heap.Refreezer`.

    Thread-safe: the pipe is used under one lock, and an :meth:`infer` holds it until its
    answer is back (the parent's :class:`~services.scoring.ScoringService` runs one batch at a
    time anyway).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        graph: GraphStore,
        features: FeatureStore,
        *,
        torch_threads: int = 1,
        on_loaded: Callable[[], None] | None = None,
        on_quiet: Callable[[], object] | None = None,
        start_timeout_s: float = 600.0,
        **engine_kw: Any,
    ) -> None:
        """``engine_kw``: the child's :class:`ScoringEngine` arguments (``device``,
        ``reduced_fanouts``, ``cache_size``)."""
        snapshot = pickle.dumps((bundle, graph, features), protocol=pickle.HIGHEST_PROTOCOL)
        ctx = mp.get_context("spawn")  # no fork of a process that holds threads and torch state
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve,
            args=(child, snapshot, engine_kw, torch_threads, on_loaded, on_quiet),
            name="riskgraph-inference",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise EngineProcessDied(f"inference process not ready in {start_timeout_s:.0f} s")
        self._recv()
        log.info(
            "inference process ready pid=%s snapshot_mb=%.1f", self._proc.pid, len(snapshot) / 1e6
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def _recv(self) -> Any:
        try:
            status, body = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise EngineProcessDied(f"inference process exited ({self._proc.exitcode})") from exc
        if status == "error":
            raise body
        return body

    def _send(self, msg: tuple[str, Any]) -> None:
        try:
            self._conn.send(msg)
        except (BrokenPipeError, OSError) as exc:
            raise EngineProcessDied(f"inference process exited ({self._proc.exitcode})") from exc

    def apply(self, event: AnyEvent) -> None:
        """Forward an event the parent has applied (in the parent's order)."""
        with self._lock:
            self._send((_APPLY, event))

    def infer(
        self, payments: Sequence[Payment], rung: Rung
    ) -> tuple[list[Scored], dict[str, float]]:
        """:meth:`ScoringEngine.infer` in the child, on the events forwarded so far."""
        if not payments:
            return [], {}
        with self._lock:
            self._send((_INFER, (list(payments), rung)))
            out: tuple[list[Scored], dict[str, float]] = self._recv()
        return out

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(BrokenPipeError, OSError):  # already gone: nothing to stop
                self._conn.send((_STOP, None))
            self._conn.close()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


# Rungs that need no graph, no GNN and no embedding cache (which lives in the child).
LOCAL_RUNGS: frozenset[Rung] = frozenset({"tree", "policy"})


class RungRouter:
    """``infer(payments, rung)``: :data:`LOCAL_RUNGS` on ``local`` (the parent's engine), the
    GNN rungs on ``remote`` (see the module docstring for why the answers are the same)."""

    def __init__(self, local: ScoringEngine, remote: EngineProcess) -> None:
        self.local, self.remote = local, remote

    def infer(
        self, payments: Sequence[Payment], rung: Rung
    ) -> tuple[list[Scored], dict[str, float]]:
        if rung in LOCAL_RUNGS:
            return self.local.infer(payments, rung)
        return self.remote.infer(payments, rung)


class MirroredIngestor(Ingestor):
    """An :class:`Ingestor` that forwards every event it applies to an :class:`EngineProcess`."""

    def __init__(
        self,
        graph: GraphStore,
        features: FeatureStore,
        dead_letters: EventSink,
        mirror: EngineProcess | None = None,
    ) -> None:
        super().__init__(graph, features, dead_letters)
        self.mirror = mirror

    def apply(self, event: AnyEvent) -> bool:
        new = super().apply(event)
        if self.mirror is not None:
            self.mirror.apply(event)  # a replay too: the child dedupes as the parent did
        return new
