"""The scoring engine: features + sampled neighbourhood → GNN (or a cheaper rung) → score.

One code path for the scoring API, training-set construction and backtests: all of them call
:func:`prepare` and :meth:`ScoringEngine.infer` (or its two-rung shorthand
:meth:`ScoringEngine.score`) on payments at their event time.

The engine scores a whole micro-batch at once: one batched sample, one tensorisation, one
forward pass under :func:`torch.inference_mode`. On CUDA the batch is staged in pinned host
memory and copied with ``non_blocking=True``; scores come back with one synchronising copy.
The rungs of the degradation ladder (:mod:`gnn.ladder`) are different calls of the same
engine, so they all keep the point-in-time rule. The GNN rungs also return each payment's case
embedding (the head's input, for similar-case retrieval) from the pass that scored it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from feature_stream.events import Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore, FeatureStoreUnavailable
from feature_stream.features import FeatureVector, compute_features
from feature_stream.graph_schema import NODE_TYPES
from feature_stream.graph_store import GraphStore, Subgraph
from gnn.artifact import ModelBundle
from gnn.fused import Forward, FusedForward
from gnn.ladder import SERVED_BY, Rung
from gnn.numpy_forward import NumpyForward
from gnn.reasons import reason_codes, rule_score
from gnn.tensorize import GraphBatch

_NO_FEATURES = InMemoryFeatureStore()  # stays empty: what "nothing known yet" looks like

ServedBy = str  # "gnn", "baseline" or "policy" (see gnn.ladder.SERVED_BY)


@dataclass
class Prepared:
    """Point-in-time inputs for a batch of payments."""

    features: list[FeatureVector]
    subgraphs: list[Subgraph]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def max_time_used(self, i: int) -> float:
        """Newest timestamp any input of payment ``i`` used (must be < its event time)."""
        return max(self.features[i].as_of, self.subgraphs[i].max_time_used)


@dataclass
class Scored:
    """The model's answer for one payment; ``rung`` names the ladder rung that served it."""

    score: float
    served_by: ServedBy
    reasons: list[str]
    max_time_used: float
    features: dict[str, float]
    rung: Rung = "full"
    degraded: tuple[str, ...] = ()  # e.g. "features_unavailable": scored without online features
    # The GNN's case embedding (see :meth:`ScoringEngine.embed`): ``embedding_dim`` floats from
    # the pass that scored it on the full, reduced and cached rungs, ``None`` on tree and
    # policy. A tuple: immutable, comparable, and ``json.dumps`` writes it as a list.
    embedding: tuple[float, ...] | None = field(default=None, repr=False)


def set_math_threads(n: int) -> None:
    """Intra-op threads of this process's math, ``n ≥ 1``: torch's and the BLAS behind numpy
    (with one thread the engine's CPU pass is numpy's). A serving process on a small host
    wants 1: idle BLAS threads spin for a while after each product and take the cores that
    HTTP and the other process need (at 200 requests/s on 2 cores, two BLAS threads made p99
    half as long again)."""
    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")


def prepare(
    payments: Sequence[Payment],
    graph: GraphStore,
    features: FeatureStore,
    fanouts: Sequence[int],
    with_subgraphs: bool = True,
) -> Prepared:
    """Online features and sampled neighbourhoods of payments, each at its own event time.

    ``timings_ms`` holds ``features`` and ``sampling``: milliseconds for the whole batch.
    """
    t0 = time.perf_counter()
    feats = [compute_features(p, features) for p in payments]
    t1 = time.perf_counter()
    subgraphs = (
        graph.sample(payments, fanouts)
        if with_subgraphs
        else [Subgraph(t=p.event_time.timestamp()) for p in payments]
    )
    t2 = time.perf_counter()
    return Prepared(feats, subgraphs, {"features": (t1 - t0) * 1e3, "sampling": (t2 - t1) * 1e3})


def one_hop(g: Subgraph) -> Subgraph:
    """The query and its own entities only (hop ≤ 1) of a sampled subgraph.

    Only the edges into the query are kept (entity → entity edges only change entity
    embeddings, which the ``cached`` rung takes from the cache). The sampler adds nodes and
    edges breadth first, so both are prefixes of the lists. ``max_time_used`` is kept from the
    full sample: an upper bound, still before ``t``.
    """
    k = sum(1 for h in g.node_hop if h <= 1)
    e = 0
    while e < len(g.dst) and g.dst[e] == 0:
        e += 1
    return Subgraph(
        t=g.t,
        node_type=g.node_type[:k],
        node_id=g.node_id[:k],
        node_attr=g.node_attr[:k],
        node_hop=g.node_hop[:k],
        src=g.src[:e],
        dst=g.dst[:e],
        rel=g.rel[:e],
        edge_ts=g.edge_ts[:e],
        max_time_used=g.max_time_used,
    )


EntityRows = dict[str, tuple[list[tuple[str, float]], list[int]]]


def hop1_rows(subgraphs: Sequence[Subgraph]) -> EntityRows:
    """Where each query's own entities sit in the batch :func:`tensorize` builds.

    Returns ``{node type: ([(entity id, query time t)], [row in x[type]])}``. Rows follow
    tensorize's order (subgraph by subgraph, node by node within its type).
    """
    count = [0] * len(NODE_TYPES)
    out: EntityRows = {}
    for g in subgraphs:
        for nt, nid, hop in zip(g.node_type, g.node_id, g.node_hop, strict=True):
            if hop == 1:
                keys, rows = out.setdefault(NODE_TYPES[nt], ([], []))
                keys.append((nid, g.t))
                rows.append(count[nt])
            count[nt] += 1
    return out


class EmbeddingCache:
    """Per-layer input embeddings of entities, captured on full GNN passes (bounded, FIFO).

    For an entity ``e`` that was one of a scored query's own entities, the cache holds
    ``h⁰(e) … h^{L-1}(e)`` – what ``e`` fed into each of the ``L`` message-passing layers –
    ``[L, hidden]`` float32 on the model's device, and the query time it was computed at.
    Messages in a sampled subgraph only flow toward the query, so a query's embedding depends
    on its own entities only through those inputs; the ``cached`` rung samples one hop and
    injects them, which reproduces the full pass exactly when the neighbourhood has not
    changed since, and approximates it (a stale neighbourhood) when it has.

    Point in time: an entry computed at query time ``t'`` used only data before ``t'``, so it
    is served only to queries with ``t >= t'`` (a backtest replaying older events misses).

    Storage is a ring buffer of ``capacity`` slots; a new entity takes the oldest slot.
    """

    def __init__(
        self, capacity: int, layers: int, hidden: int, device: torch.device | str = "cpu"
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.buf = torch.zeros((capacity, layers, hidden), device=device)
        self._slot: dict[tuple[str, str], int] = {}
        self._time = [math.inf] * capacity
        self._owner: list[tuple[str, str] | None] = [None] * capacity
        self._next = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._slot)

    def put(self, ntype: str, keys: Sequence[tuple[str, float]], emb: torch.Tensor) -> None:
        """Store ``emb[i]`` (``[n, L, hidden]``) for entity ``keys[i] = (id, computed at)``."""
        slots = []
        for nid, t in keys:
            k = (ntype, nid)
            s = self._slot.get(k)
            if s is None:
                s = self._next
                self._next = (self._next + 1) % self.capacity
                old = self._owner[s]
                if old is not None:
                    del self._slot[old]
                self._owner[s] = k
                self._slot[k] = s
            self._time[s] = t
            slots.append(s)
        if slots:
            idx = torch.tensor(slots, device=self.buf.device)
            self.buf.index_copy_(0, idx, emb.to(self.buf.device, non_blocking=True))

    def get(
        self, ntype: str, keys: Sequence[tuple[str, float]]
    ) -> tuple[list[int], torch.Tensor | None]:
        """``(positions in keys that hit, their embeddings [hits, L, hidden])``."""
        pos, slots = [], []
        for i, (nid, t) in enumerate(keys):
            s = self._slot.get((ntype, nid))
            if s is not None and self._time[s] <= t:
                pos.append(i)
                slots.append(s)
        self.hits += len(pos)
        self.misses += len(keys) - len(pos)
        if not slots:
            return pos, None
        return pos, self.buf.index_select(0, torch.tensor(slots, device=self.buf.device))


def to_device(batch: GraphBatch, device: torch.device) -> GraphBatch:
    """Move a CPU batch to ``device``: via pinned host memory with non-blocking copies on
    CUDA, as is on CPU."""
    if device.type != "cuda":
        return batch
    pinned = GraphBatch(
        {k: v.pin_memory() for k, v in batch.x.items()},
        {k: v.pin_memory() for k, v in batch.edge_index.items()},
        batch.root.pin_memory(),
        batch.features.pin_memory(),
        None if batch.prior is None else batch.prior.pin_memory(),
    )
    return pinned.to(device)


class ScoringEngine:
    """Scores payments against a graph store and a feature store with a loaded artifact.

    Args:
        device: ``"cpu"`` or ``"cuda[:i]"`` (the caller resolves ``"auto"``; CUDA is only
            used when :func:`torch.cuda.is_available`).
        reduced_fanouts: per-hop caps of the ``reduced`` rung, each capped by the artifact's.
        cache_size: entity slots of the :class:`EmbeddingCache` (0: no ``cached`` rung).

    Not thread-safe: one inference worker owns an engine (the stores are single-writer).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        graph: GraphStore,
        features: FeatureStore,
        device: str = "cpu",
        reduced_fanouts: Sequence[int] = (5, 3),
        cache_size: int = 100_000,
    ) -> None:
        self.bundle = bundle
        self.graph = graph
        self.features = features
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for but CUDA is not available")
        self.device = torch.device(device)
        self.gnn = bundle.gnn.to(self.device).eval()
        full = bundle.fanouts
        self.reduced_fanouts = tuple(
            min(r, f) for r, f in zip(reduced_fanouts, full, strict=False)
        ) + tuple(full[len(reduced_fanouts) :])
        self.fused = FusedForward(self.gnn)
        # On a CPU with one math thread (a serving process, see set_math_threads) the same
        # pass in numpy, about twice as fast from one query to hundreds (gnn/numpy_forward.py).
        # Torch keeps CUDA, the cached rung's injected states, and a CPU where it has more
        # threads than one: numpy's pass is single-threaded, and in the handbook backtest
        # (torch on two threads, batches of up to 512 queries) it took 6.9 s to torch's 5.8.
        self.numpy_pass = NumpyForward(self.fused) if self.device.type == "cpu" else None
        cfg = self.gnn.config
        self.cache = (
            EmbeddingCache(cache_size, int(cfg["layers"]), int(cfg["hidden"]), self.device)
            if cache_size > 0
            else None
        )

    def prepare(self, payments: Sequence[Payment], with_subgraphs: bool = True) -> Prepared:
        return prepare(payments, self.graph, self.features, self.bundle.fanouts, with_subgraphs)

    @property
    def embedding_dim(self) -> int:
        """Width ``D`` of a case embedding: ``2 · hidden`` (128 for the default config)."""
        return 2 * int(self.gnn.config["hidden"])

    def embed(self, payments: Sequence[Payment]) -> np.ndarray:
        """Case embeddings ``[B, D]`` float32 of payments, each at its own event time.

        The full rung's inputs and pass: row ``i`` equals ``Scored.embedding`` of
        ``infer(payments, "full")[0][i]`` (the same batch; a payment's pass depends a little
        on its batch mates, see :class:`~gnn.fused.FusedForward`). Only data from before each
        payment's time is used. Unlike :meth:`infer` it leaves the embedding cache alone, and it
        raises :class:`FeatureStoreUnavailable` rather than embed without online features.
        """
        if not payments:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        prep = self.prepare(payments)
        batch = to_device(
            self.bundle.batch(prep.subgraphs, [f.values for f in prep.features]), self.device
        )
        with torch.inference_mode():
            emb = self.run_pass(batch).embedding
        return emb.float().cpu().numpy()

    def score(
        self, payments: Sequence[Payment], use_gnn: bool = True
    ) -> tuple[list[Scored], dict[str, float]]:
        """Score a batch on the full GNN, or with ``use_gnn=False`` on the tree fallback
        (which skips sampling)."""
        return self.infer(payments, "full" if use_gnn else "tree")

    def infer(
        self, payments: Sequence[Payment], rung: Rung, prepared: Prepared | None = None
    ) -> tuple[list[Scored], dict[str, float]]:
        """Score a batch on one rung of the ladder (see :mod:`gnn.ladder`).

        Returns the answers in input order and the batch's stage timings (ms): ``features``
        always; ``sampling`` and ``gnn`` on GNN rungs; ``fallback`` on the tree rung;
        ``rules`` on the policy rung. If the feature store cannot be reached the batch is
        scored with the features of entities never seen before and each answer says so in
        ``degraded`` (the graph still informs the GNN rungs).

        ``prepared``: these payments' inputs from :meth:`prepare` (the artifact's fan-outs),
        for a caller that scores one batch on several rungs; it is used on the ``full``,
        ``tree`` and ``policy`` rungs (the last two take only its features) and left as it
        was. Other rungs sample their own.
        """
        if not payments:
            return [], {}
        uses_graph = rung in ("full", "reduced", "cached")
        fanouts = {"full": self.bundle.fanouts, "reduced": self.reduced_fanouts}.get(rung, (1,))
        degraded: tuple[str, ...] = ()
        if prepared is not None and len(prepared.features) != len(payments):
            raise ValueError(f"{len(prepared.features)} prepared inputs for {len(payments)}")
        if prepared is not None and rung == "full":
            prep = Prepared(prepared.features, prepared.subgraphs, dict(prepared.timings_ms))
        elif prepared is not None and not uses_graph:
            nothing = [Subgraph(t=p.event_time.timestamp()) for p in payments]
            prep = Prepared(prepared.features, nothing, {"features": 0.0, "sampling": 0.0})
        else:
            try:
                prep = prepare(payments, self.graph, self.features, fanouts, uses_graph)
            except FeatureStoreUnavailable:
                # Score on the graph alone: features as for entities never seen before, flagged.
                prep = prepare(payments, self.graph, _NO_FEATURES, fanouts, uses_graph)
                degraded = ("features_unavailable",)
        if rung == "cached":
            prep.subgraphs = [one_hop(g) for g in prep.subgraphs]
        rows = [list(f.values) for f in prep.features]
        t0 = time.perf_counter()
        embeddings: list[tuple[float, ...] | None] = [None] * len(payments)
        if uses_graph:
            scores, embeddings = self._forward(prep.subgraphs, rows, rung)
            stage = "gnn"
        elif rung == "tree":
            scores = self.bundle.baseline.predict(rows).tolist()
            stage = "fallback"
        else:
            rates = self.bundle.rule_rates
            scores = [rule_score(f.as_dict(), rates) for f in prep.features]
            stage = "rules"
        prep.timings_ms[stage] = (time.perf_counter() - t0) * 1e3
        out = []
        for i, s in enumerate(scores):
            fd = prep.features[i].as_dict()
            sg = prep.subgraphs[i] if uses_graph else None
            out.append(
                Scored(
                    score=min(1.0, max(0.0, float(s))) if math.isfinite(s) else 1.0,
                    served_by=SERVED_BY[rung],
                    reasons=reason_codes(fd, sg),
                    max_time_used=prep.max_time_used(i),
                    features=fd,
                    rung=rung,
                    degraded=degraded,
                    embedding=embeddings[i],
                )
            )
        return out, prep.timings_ms

    def run_pass(
        self, batch: GraphBatch, capture: dict[str, torch.Tensor] | None = None
    ) -> Forward:
        """The GNN pass over a batch already on the engine's device: numpy on a CPU where
        torch has one thread, torch otherwise (the two agree to float32 rounding; the tests
        hold them together)."""
        if self.numpy_pass is not None and torch.get_num_threads() == 1:
            return self.numpy_pass.run(batch, capture)
        return self.fused.run(batch, capture=capture)

    def _forward(
        self, subgraphs: Sequence[Subgraph], rows: Sequence[Sequence[float]], rung: Rung
    ) -> tuple[list[float], list[tuple[float, ...] | None]]:
        """Scores and case embeddings of a batch, from one pass and one copy to the host."""
        batch = to_device(self.bundle.batch(subgraphs, rows), self.device)
        with torch.inference_mode():
            if self.cache is None or rung == "reduced":
                out = self.run_pass(batch)
            elif rung == "full":
                entities = hop1_rows(subgraphs)
                capture = {t: torch.tensor(r, device=self.device) for t, (_, r) in entities.items()}
                out = self.run_pass(batch, capture)
                for t, (keys, _) in entities.items():
                    self.cache.put(t, keys, out.captured[t])
            else:  # cached: one hop, entity embeddings from earlier full passes
                inject = {}
                for t, (keys, r) in hop1_rows(subgraphs).items():
                    hit, emb = self.cache.get(t, keys)
                    if emb is not None:
                        rows_t = torch.tensor([r[i] for i in hit], device=self.device)
                        inject[t] = (rows_t, emb)
                out = self.fused.run(batch, inject=inject)
            host = torch.cat([torch.sigmoid(out.logits).unsqueeze(1), out.embedding], 1)
            host = host.float().cpu()
        return host[:, 0].tolist(), [tuple(e) for e in host[:, 1:].tolist()]
