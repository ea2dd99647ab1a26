"""In-memory temporal graph: the embedded default :class:`GraphStore`.

Each node is one object that keeps its incident edges in three parallel lists sorted by edge
time (times, relation codes, and the neighbour node objects themselves), so

* an append in event-time order is ``O(1)`` (out-of-order events are inserted with ``bisect``),
* "the ``k`` most recent edges strictly before ``t``" is one ``bisect_left`` (or one comparison
  when the node has nothing at or after ``t``) and a slice,
* sampling follows edges by reference: no key is hashed or looked up per edge, and a sampled
  neighbourhood's local index is keyed by object identity,
* memory is bounded by a retention window (edges older than ``now - retention`` are dropped as
  time advances) and by ``max_degree`` edges kept per node; a sweep pops the nodes and
  payments due from two heaps ordered by oldest edge and by time, so it costs what it drops.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Sequence
from typing import Any

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

NodeKey = tuple[int, str]  # (node type code, node id)


class _Node:
    """One node and its edges, sorted by time: edge ``i`` goes to ``nbrs[i]`` over relation
    ``rels[i]`` at ``times[i]``. ``rec`` is a payment node's record (``None`` for entities and
    once the payment is evicted). ``due`` is the time under which the store's expiry heap
    holds the node (``inf``: not queued); it is at most ``times[0]``."""

    __slots__ = ("due", "id", "nbrs", "rec", "rels", "times", "type")

    def __init__(self, key: NodeKey) -> None:
        self.type, self.id = key
        self.times: list[float] = []
        self.rels: list[int] = []
        self.nbrs: list[_Node] = []
        self.rec: TxnRecord | None = None
        self.due = math.inf

    def add(self, ts: float, rel: int, nbr: _Node, max_degree: int, keep_from: float) -> int:
        """Insert in time order; returns how many old entries the degree cap dropped.

        The cap keeps the ``max_degree`` most recent edges before ``keep_from`` (the earliest
        query time still to come) and every edge at or after it."""
        times = self.times
        if not times or ts >= times[-1]:
            times.append(ts)
            self.rels.append(rel)
            self.nbrs.append(nbr)
        else:
            i = bisect.bisect_right(times, ts)
            times.insert(i, ts)
            self.rels.insert(i, rel)
            self.nbrs.insert(i, nbr)
        if len(times) > max_degree:
            before = len(times) if times[-1] < keep_from else bisect.bisect_left(times, keep_from)
            if before > max_degree:
                drop = before - max_degree
                del times[:drop]
                del self.rels[:drop]
                del self.nbrs[:drop]
                return drop
        return 0

    def drop_before(self, ts: float) -> int:
        """Drop the edges older than ``ts``; returns how many."""
        k = bisect.bisect_left(self.times, ts)
        del self.times[:k]
        del self.rels[:k]
        del self.nbrs[:k]
        return k

    def before(self, t: float) -> int:
        """How many edges are strictly before ``t`` (they are the first that many)."""
        times = self.times
        # Fast path: online, and for most nodes of a replay, nothing is at or after t.
        if times and times[-1] < t:
            return len(times)
        return bisect.bisect_left(times, t)


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
        self._adj: dict[NodeKey, _Node] = {}
        self._txns: dict[str, TxnRecord] = {}
        # transaction id → (label time, label); the latest label wins
        self._labels: dict[str, list[tuple[float, int, str]]] = {}  # (time, label, event id)
        self._seen_edges: set[str] = set()  # event ids already fused (idempotency)
        self._half_edges = 0  # stored adjacency entries; an edge has one at each end
        self._now = -math.inf
        self._next_sweep = -math.inf
        self._queries_from = math.inf  # see expect_queries_from; inf: at the newest event
        # What a sweep must visit, oldest first, so that it costs what it drops and not the
        # size of the graph (a full pass over the nodes stalled scoring for 16-90 ms):
        # (time of the node's oldest edge when queued, push count, node), and (time, id) of
        # every stored payment. Rebuilt, not pickled.
        self._expiry: list[tuple[float, int, _Node]] = []
        self._pushes = 0
        self._txn_expiry: list[tuple[float, str]] = []

    # -- pickling -------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Nodes as flat rows with neighbours by index: pickling the linked nodes as they are
        recurses once per hop and overflows the stack on a real graph (the inference process
        of :mod:`gnn.engine_process` starts from a pickled store)."""
        index: dict[int, int] = {}
        nodes: list[_Node] = []
        for node in self._adj.values():
            index[id(node)] = len(nodes)
            nodes.append(node)
        rows = []
        i = 0
        while i < len(nodes):  # nodes reached only as neighbours (evicted ones) come last
            node = nodes[i]
            nbrs = []
            for nbr in node.nbrs:
                j = index.get(id(nbr))
                if j is None:
                    j = index[id(nbr)] = len(nodes)
                    nodes.append(nbr)
                nbrs.append(j)
            rows.append((node.type, node.id, node.times, node.rels, nbrs, node.rec))
            i += 1
        state = dict(self.__dict__)
        del state["_expiry"], state["_txn_expiry"]
        state["_adj"] = len(self._adj)  # the first that many rows, in the dict's order
        state["_nodes"] = rows
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        rows = state.pop("_nodes")
        in_adj = state.pop("_adj")
        nodes = [_Node((t, nid)) for t, nid, *_ in rows]
        for node, (_, _, times, rels, nbrs, rec) in zip(nodes, rows, strict=True):
            node.times, node.rels, node.rec = times, rels, rec
            node.nbrs = [nodes[j] for j in nbrs]
        state.setdefault("_queries_from", math.inf)  # a store pickled before it existed
        self.__dict__.update(state)
        self._adj = {(n.type, n.id): n for n in nodes[:in_adj]}
        self._expiry, self._pushes = [], 0
        for node in self._adj.values():
            self._queue(node)
        self._txn_expiry = [(rec.ts, tid) for tid, rec in self._txns.items()]
        heapq.heapify(self._txn_expiry)

    # -- writes ---------------------------------------------------------------------------------
    def _node(self, key: NodeKey) -> _Node:
        node = self._adj.get(key)
        if node is None:
            node = self._adj[key] = _Node(key)
        return node

    def expect_queries_from(self, t: float) -> None:
        self._queries_from = t

    def _link(self, ts: float, rel: int, a: _Node, b: _Node) -> None:
        keep_from = self._queries_from
        dropped = a.add(ts, rel, b, self.max_degree, keep_from)
        dropped += b.add(ts, rel, a, self.max_degree, keep_from)
        self._half_edges += 2 - dropped
        if ts < a.due:  # a new node, or an edge older than any it had
            self._queue(a)
        if ts < b.due:
            self._queue(b)

    def _queue(self, node: _Node) -> None:
        """(Re)queue ``node`` under its oldest edge; an entry it held before goes stale."""
        node.due = node.times[0]
        heapq.heappush(self._expiry, (node.due, self._pushes, node))
        self._pushes += 1

    def _first_time(self, event_id: str) -> bool:
        if event_id in self._seen_edges:
            return False
        self._seen_edges.add(event_id)
        return True

    def _advance(self, ts: float) -> None:
        if ts > self._now:
            self._now = ts
            if ts >= self._next_sweep:
                # Sweep every tenth of the retention window: amortised O(1) per event. Not
                # past what a query still to come keeps (a replay's chunk runs ahead of it).
                self._evict_before(min(ts, self._queries_from) - self.retention_s)
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
        heapq.heappush(self._txn_expiry, (ts, e.event_id))
        t = self._node((TXN, e.event_id))
        t.rec = rec
        self._link(ts, _R_ACCOUNT, t, self._node((ACCOUNT, e.account_id)))
        self._link(ts, _R_CARD, t, self._node((CARD, e.card_id)))
        self._link(ts, _R_MERCHANT, t, self._node((MERCHANT, e.merchant_id)))
        if e.device_id is not None:
            self._link(ts, _R_DEVICE, t, self._node((DEVICE, e.device_id)))
        if e.ip is not None:
            self._link(ts, _R_IP, t, self._node((IP, e.ip)))
        self._advance(ts)

    def _add_device(self, e: DeviceEvent) -> None:
        if not self._first_time(e.event_id):
            return
        ts = e.event_time.timestamp()
        acct = self._node((ACCOUNT, e.account_id))
        self._link(ts, _R_LOGIN_DEVICE, acct, self._node((DEVICE, e.device_id)))
        if e.ip is not None:
            self._link(ts, _R_LOGIN_IP, acct, self._node((IP, e.ip)))
        self._advance(ts)

    def _add_social(self, e: SocialEvent) -> None:
        if not self._first_time(e.event_id):
            return
        ts = e.event_time.timestamp()
        rel = RELATION_CODE[SOCIAL_KIND_RELATION[e.kind]]
        src, dst = self._node((ACCOUNT, e.src_account_id)), self._node((ACCOUNT, e.dst_account_id))
        self._link(ts, rel, src, dst)
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
        unknown = float(LABEL_UNKNOWN)
        # The query's own attributes come from the payment itself, not from the store.
        node_type: list[int] = [TXN]
        node_id: list[str] = [q.event_id]
        node_attr: list[tuple[float, float, float, float]] = [
            (q.amount, 0.0, unknown, float(CHANNEL_CODE[q.channel]))
        ]
        node_hop: list[int] = [0]
        src: list[int] = []
        dst: list[int] = []
        rels: list[int] = []
        edge_ts: list[float] = []
        adj = self._adj
        labels = self._labels
        me = adj.get((TXN, q.event_id))  # the query's own node, if the store holds it (a replay)
        local: dict[_Node, int] = {} if me is None else {me: 0}  # node → its index here
        max_used = -math.inf
        max_degree = self.max_degree
        no_history = (0.0, -1.0, 0.0, 0.0)
        bisect_left = bisect.bisect_left

        def add_node(node: _Node, hop: int) -> int:
            """Append a node not seen yet with its attributes as of ``t``; its local index."""
            nonlocal max_used
            i = len(node_type)
            local[node] = i
            ntype = node.type
            node_type.append(ntype)
            node_id.append(node.id)
            node_hop.append(hop)
            if ntype == TXN:
                rec = node.rec
                if rec is None:  # evicted payment: keep the node, attributes unknown
                    node_attr.append((0.0, -1.0, unknown, 0.0))
                    return i
                label = unknown
                hist = labels.get(node.id)
                if hist:
                    k = bisect_left(hist, (t, -2))  # labels strictly before t
                    if k:
                        lts, code, _ = hist[k - 1]
                        label = float(code)
                        if lts > max_used:
                            max_used = lts
                node_attr.append((rec.amount, t - rec.ts, label, float(CHANNEL_CODE[rec.channel])))
                return i
            k = node.before(t)
            if k:
                last = node.times[k - 1]
                if last > max_used:
                    max_used = last
                # Online a node holds at most max_degree edges; a replay's store may hold more
                # before t (see expect_queries_from): the count is the one seen online.
                node_attr.append((float(k if k <= max_degree else max_degree), t - last, 0.0, 0.0))
            else:
                node_attr.append(no_history)
            return i

        own: list[tuple[NodeKey, int]] = [
            ((ACCOUNT, q.account_id), _R_ACCOUNT),
            ((CARD, q.card_id), _R_CARD),
            ((MERCHANT, q.merchant_id), _R_MERCHANT),
        ]
        if q.device_id is not None:
            own.append(((DEVICE, q.device_id), _R_DEVICE))
        if q.ip is not None:
            own.append(((IP, q.ip), _R_IP))
        frontier: list[_Node] = []
        for key, rel in own:  # of distinct node types: never the same node twice
            node = adj.get(key)
            if node is None:  # never seen: a node without history, nothing to expand
                i = len(node_type)
                node_type.append(key[0])
                node_id.append(key[1])
                node_hop.append(1)
                node_attr.append(no_history)
            else:
                i = add_node(node, 1)
                frontier.append(node)
            src.append(i)
            dst.append(0)
            rels.append(rel)
            edge_ts.append(t)

        local_get = local.get
        src_append = src.append
        for hop, fanout in enumerate(fanouts, start=2):
            nxt: list[_Node] = []
            # Never more than the max_degree a node holds online (see add_node).
            take = fanout if fanout < max_degree else max_degree
            for node in frontier:
                k = node.before(t)  # edges strictly before t
                if not k:
                    continue
                lo = k - take if k > take else 0
                # The node's ``fanout`` most recent edges before t, most recent first.
                nbrs = node.nbrs[lo:k]
                nbrs.reverse()
                times = node.times[lo:k]
                times.reverse()
                codes = node.rels[lo:k]
                codes.reverse()
                if me is not None and me in nbrs:  # a replayed query never samples itself
                    keep = [j for j, nb in enumerate(nbrs) if nb is not me]
                    if not keep:
                        continue
                    nbrs = [nbrs[j] for j in keep]
                    times = [times[j] for j in keep]
                    codes = [codes[j] for j in keep]
                if times[0] > max_used:
                    max_used = times[0]
                for nb in nbrs:
                    at = local_get(nb)
                    if at is None:
                        at = add_node(nb, hop)
                        nxt.append(nb)
                    src_append(at)
                dst.extend([local[node]] * len(nbrs))
                rels.extend(codes)
                edge_ts.extend(times)
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
        is counted as half an edge until its other end goes too.)

        Visits only the nodes whose oldest edge is older than ``ts`` (the expiry heap), so
        a sweep with nothing to drop costs nothing."""
        dropped = 0
        heap = self._expiry
        # An edge has the same time at both ends, so one sweep drops both halves: no node
        # left in the store still points at a node removed here.
        while heap and heap[0][0] < ts:
            due, _, node = heapq.heappop(heap)
            if due != node.due:
                continue  # stale: the node was queued again under an older edge
            dropped += node.drop_before(ts)
            if node.times:
                self._queue(node)  # its oldest edge now, or later ones the degree cap left
                continue
            node.due = math.inf
            key = (node.type, node.id)
            if self._adj.get(key) is node:
                del self._adj[key]
        txns = self._txn_expiry
        while txns and txns[0][0] < ts:
            _, tid = heapq.heappop(txns)
            del self._txns[tid]
            self._labels.pop(tid, None)
            gone = self._adj.get((TXN, tid))
            if gone is not None:
                gone.rec = None
        self._half_edges -= dropped
        return dropped // 2  # each edge is stored at both ends

    def stats(self) -> dict[str, int]:
        out = {name: 0 for name in NODE_TYPES}
        for ntype, _ in self._adj:
            out[NODE_TYPES[ntype]] += 1
        out["edges"] = (self._half_edges + 1) // 2
        out["labels"] = len(self._labels)
        return out
