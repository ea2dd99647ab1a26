"""In-memory temporal graph: the embedded default :class:`GraphStore`.

Each node keeps its incident edges in two parallel lists sorted by edge time, so

* an append in event-time order is ``O(1)`` (out-of-order events are inserted with ``bisect``),
* "the ``k`` most recent edges strictly before ``t``" is one ``bisect_left`` and a slice,
* memory is bounded by a retention window (edges older than ``now - retention`` are dropped as
  time advances) and by ``max_degree`` edges kept per node.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent
from feature_stream.graph_schema import (
    ACCOUNT,
    CARD,
    CHANNEL_CODE,
    DEVICE,
    IP,
    MERCHANT,
    NODE_TYPES,
    RELATION_CODE,
    SOCIAL_KIND_RELATION,
    TXN,
)
from feature_stream.graph_store import (
    LABEL_FRAUD,
    LABEL_LEGIT,
    LABEL_UNKNOWN,
    GraphStore,
    StoredLabel,
    Subgraph,
    TxnRecord,
)

_R_ACCOUNT = RELATION_CODE["paid_by"]
_R_CARD = RELATION_CODE["paid_with"]
_R_MERCHANT = RELATION_CODE["paid_at"]
_R_DEVICE = RELATION_CODE["paid_from_device"]
_R_IP = RELATION_CODE["paid_from_ip"]
_R_LOGIN_DEVICE = RELATION_CODE["logged_in_on"]
_R_LOGIN_IP = RELATION_CODE["logged_in_from"]

NodeKey = tuple[int, str]
Neighbour = tuple[int, int, str]  # (relation code, node type code, node id)


class _Adjacency:
    """Edges of one node, sorted by time: ``times[i]`` is the time of ``nbrs[i]``."""

    __slots__ = ("nbrs", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.nbrs: list[Neighbour] = []

    def add(self, ts: float, nbr: Neighbour, max_degree: int) -> int:
        """Insert in time order; returns how many old entries the degree cap dropped."""
        if not self.times or ts >= self.times[-1]:
            self.times.append(ts)
            self.nbrs.append(nbr)
        else:
            i = bisect.bisect_right(self.times, ts)
            self.times.insert(i, ts)
            self.nbrs.insert(i, nbr)
        if len(self.times) > max_degree:
            drop = len(self.times) - max_degree
            del self.times[:drop]
            del self.nbrs[:drop]
            return drop
        return 0


class InMemoryGraphStore(GraphStore):
    """Embedded temporal graph.

    Args:
        retention_s: edges older than the newest event time minus this are dropped (seconds).
        max_degree: most recent edges kept per node; older ones are dropped first.
    """

    def __init__(self, retention_s: float = 60 * 86400.0, max_degree: int = 5000) -> None:
        if retention_s <= 0 or max_degree < 1:
            raise ValueError("retention_s must be > 0 and max_degree >= 1")
        self.retention_s = retention_s
        self.max_degree = max_degree
        self._adj: dict[NodeKey, _Adjacency] = {}
        self._txns: dict[str, TxnRecord] = {}
        # transaction id → (label time, label); the latest label wins
        self._labels: dict[str, list[tuple[float, int, str]]] = {}  # (time, label, event id)
        self._seen_edges: set[str] = set()  # event ids already fused (idempotency)
        self._half_edges = 0  # stored adjacency entries; an edge has one at each end
        self._now = -math.inf
        self._next_sweep = -math.inf

    # -- writes ---------------------------------------------------------------------------------
    def _link(self, ts: float, rel: int, a: NodeKey, b: NodeKey) -> None:
        adj = self._adj
        na = adj.get(a)
        if na is None:
            na = adj[a] = _Adjacency()
        nb = adj.get(b)
        if nb is None:
            nb = adj[b] = _Adjacency()
        dropped = na.add(ts, (rel, b[0], b[1]), self.max_degree)
        dropped += nb.add(ts, (rel, a[0], a[1]), self.max_degree)
        self._half_edges += 2 - dropped

    def _first_time(self, event_id: str) -> bool:
        if event_id in self._seen_edges:
            return False
        self._seen_edges.add(event_id)
        return True

    def _advance(self, ts: float) -> None:
        if ts > self._now:
            self._now = ts
            if ts >= self._next_sweep:
                # Sweep every tenth of the retention window: amortised O(1) per event.
                self._evict_before(ts - self.retention_s)
                self._next_sweep = ts + self.retention_s / 10

    def _add_payment(self, e: Payment) -> None:
        if not self._first_time(e.event_id):
            return
        ts = e.event_time.timestamp()
        rec = TxnRecord(
            e.event_id,
            ts,
            e.account_id,
            e.card_id,
            e.merchant_id,
            e.device_id,
            e.ip,
            e.amount,
            e.channel,
        )
        self._txns[e.event_id] = rec
        t = (TXN, e.event_id)
        self._link(ts, _R_ACCOUNT, t, (ACCOUNT, e.account_id))
        self._link(ts, _R_CARD, t, (CARD, e.card_id))
        self._link(ts, _R_MERCHANT, t, (MERCHANT, e.merchant_id))
        if e.device_id is not None:
            self._link(ts, _R_DEVICE, t, (DEVICE, e.device_id))
        if e.ip is not None:
            self._link(ts, _R_IP, t, (IP, e.ip))
        self._advance(ts)

    def _add_device(self, e: DeviceEvent) -> None:
        if not self._first_time(e.event_id):
            return
        ts = e.event_time.timestamp()
        acct = (ACCOUNT, e.account_id)
        self._link(ts, _R_LOGIN_DEVICE, acct, (DEVICE, e.device_id))
        if e.ip is not None:
            self._link(ts, _R_LOGIN_IP, acct, (IP, e.ip))
        self._advance(ts)

    def _add_social(self, e: SocialEvent) -> None:
        if not self._first_time(e.event_id):
            return
        ts = e.event_time.timestamp()
        rel = RELATION_CODE[SOCIAL_KIND_RELATION[e.kind]]
        self._link(ts, rel, (ACCOUNT, e.src_account_id), (ACCOUNT, e.dst_account_id))
        self._advance(ts)

    def _add_label(self, e: LabelEvent) -> None:
        if not self._first_time(e.event_id):
            return
        ts = e.event_time.timestamp()
        hist = self._labels.setdefault(e.transaction_id, [])
        bisect.insort(hist, (ts, LABEL_FRAUD if e.is_fraud else LABEL_LEGIT, e.event_id))

    # -- reads ----------------------------------------------------------------------------------
    def _transaction(self, transaction_id: str) -> TxnRecord | None:
        return self._txns.get(transaction_id)

    def _labels_for(self, transaction_ids: list[str]) -> dict[str, list[StoredLabel]]:
        out = {}
        for tid in transaction_ids:
            hist = self._labels.get(tid)
            if hist:
                out[tid] = [StoredLabel(eid, ts, lab == LABEL_FRAUD) for ts, lab, eid in hist]
        return out

    def _label_with_time(self, transaction_id: str, as_of: float) -> tuple[int, float]:
        hist = self._labels.get(transaction_id)
        if not hist:
            return LABEL_UNKNOWN, -math.inf
        i = bisect.bisect_left(hist, (as_of, -2))  # labels strictly before as_of
        if i == 0:
            return LABEL_UNKNOWN, -math.inf
        ts, label, _ = hist[i - 1]
        return label, ts

    def _label(self, transaction_id: str, as_of: float) -> int:
        return self._label_with_time(transaction_id, as_of)[0]

    def _sample(self, queries: Sequence[Payment], fanouts: tuple[int, ...]) -> list[Subgraph]:
        return [self._sample_one(q, fanouts) for q in queries]

    def _sample_one(self, q: Payment, fanouts: tuple[int, ...]) -> Subgraph:
        t = q.event_time.timestamp()
        node_type: list[int] = []
        node_id: list[str] = []
        node_attr: list[tuple[float, float, float, float]] = []
        node_hop: list[int] = []
        src: list[int] = []
        dst: list[int] = []
        rels: list[int] = []
        edge_ts: list[float] = []
        local: dict[NodeKey, int] = {}
        adj = self._adj
        txns = self._txns
        labels = self._labels
        max_used = -math.inf
        unknown = float(LABEL_UNKNOWN)
        no_history = (0.0, -1.0, 0.0, 0.0)
        bisect_left = bisect.bisect_left

        def add_node(key: NodeKey, hop: int) -> int:
            """Append a node not seen yet with its attributes as of ``t``; its local index."""
            nonlocal max_used
            i = len(node_type)
            local[key] = i
            ntype, nid = key
            node_type.append(ntype)
            node_id.append(nid)
            node_hop.append(hop)
            if ntype == TXN:
                rec = txns.get(nid)
                if rec is None:  # evicted payment: keep the node, attributes unknown
                    node_attr.append((0.0, -1.0, unknown, 0.0))
                    return i
                label = unknown
                hist = labels.get(nid)
                if hist:
                    k = bisect_left(hist, (t, -2))  # labels strictly before t
                    if k:
                        lts, code, _ = hist[k - 1]
                        label = float(code)
                        if lts > max_used:
                            max_used = lts
                node_attr.append((rec.amount, t - rec.ts, label, float(CHANNEL_CODE[rec.channel])))
                return i
            a = adj.get(key)
            k = bisect_left(a.times, t) if a is not None else 0
            if k:
                last = a.times[k - 1]  # type: ignore[union-attr]
                if last > max_used:
                    max_used = last
                node_attr.append((float(k), t - last, 0.0, 0.0))
            else:
                node_attr.append(no_history)
            return i

        me = (TXN, q.event_id)
        add_node(me, 0)
        # The query's own attributes come from the payment itself, not from the store.
        node_attr[0] = (q.amount, 0.0, unknown, float(CHANNEL_CODE[q.channel]))
        own: list[tuple[NodeKey, int]] = [
            ((ACCOUNT, q.account_id), _R_ACCOUNT),
            ((CARD, q.card_id), _R_CARD),
            ((MERCHANT, q.merchant_id), _R_MERCHANT),
        ]
        if q.device_id is not None:
            own.append(((DEVICE, q.device_id), _R_DEVICE))
        if q.ip is not None:
            own.append(((IP, q.ip), _R_IP))
        frontier: list[NodeKey] = []
        for key, rel in own:
            i = local.get(key)
            if i is None:
                i = add_node(key, 1)
                frontier.append(key)
            src.append(i)
            dst.append(0)
            rels.append(rel)
            edge_ts.append(t)

        for hop, fanout in enumerate(fanouts, start=2):
            nxt: list[NodeKey] = []
            for key in frontier:
                a = adj.get(key)
                if a is None:
                    continue
                times = a.times
                k = bisect_left(times, t)  # edges strictly before t
                if not k:
                    continue
                lo = k - fanout if k > fanout else 0
                d = local[key]
                nbrs = a.nbrs
                for j in range(k - 1, lo - 1, -1):  # most recent first
                    rel, ntype, nid = nbrs[j]
                    nkey = (ntype, nid)
                    if nkey == me:
                        continue  # a replayed query never samples itself
                    ets = times[j]
                    if ets > max_used:
                        max_used = ets
                    i = local.get(nkey)
                    if i is None:
                        i = add_node(nkey, hop)
                        nxt.append(nkey)
                    src.append(i)
                    dst.append(d)
                    rels.append(rel)
                    edge_ts.append(ets)
            frontier = nxt
        return Subgraph(
            t=t,
            node_type=node_type,
            node_id=node_id,
            node_attr=node_attr,
            node_hop=node_hop,
            src=src,
            dst=dst,
            rel=rels,
            edge_ts=edge_ts,
            max_time_used=max_used,
        )

    # -- housekeeping ---------------------------------------------------------------------------
    def _evict_before(self, ts: float) -> int:
        """Drop entries older than ``ts``. (An edge the degree cap already dropped at one end
        is counted as half an edge until its other end goes too.)"""
        dropped = 0
        empty: list[NodeKey] = []
        for key, a in self._adj.items():
            if a.times and a.times[0] < ts:
                k = bisect.bisect_left(a.times, ts)
                del a.times[:k]
                del a.nbrs[:k]
                dropped += k
                if not a.times:
                    empty.append(key)
        for key in empty:
            del self._adj[key]
        old = [tid for tid, rec in self._txns.items() if rec.ts < ts]
        for tid in old:
            del self._txns[tid]
            self._labels.pop(tid, None)
        self._half_edges -= dropped
        return dropped // 2  # each edge is stored at both ends

    def stats(self) -> dict[str, int]:
        out = {name: 0 for name in NODE_TYPES}
        for ntype, _ in self._adj:
            out[NODE_TYPES[ntype]] += 1
        out["edges"] = (self._half_edges + 1) // 2
        out["labels"] = len(self._labels)
        return out
