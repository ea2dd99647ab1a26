"""Neo4j temporal graph: the service-mode :class:`GraphStore` (durable system of record).

Same answers as :class:`~feature_stream.graph_memory.InMemoryGraphStore` for the same events in
the same order (``tests/feature_stream/test_graph_neo4j.py`` checks node for node), stored as:

* one node per entity, labelled by type (``Transaction``, ``Account``, ``Card``, ``Merchant``,
  ``Device``, ``IP``), unique on ``(ns, id)``; a ``Transaction`` also holds its payment record;
* one relationship per stored edge, typed by relation (``PAID_BY`` … ``SHARED_IDENTITY``, the
  upper-cased names of :data:`~feature_stream.graph_schema.RELATIONS`), with ``ts`` (event time,
  POSIX seconds) and ``seq`` (write order: breaks ties between equal times like the in-memory
  store's arrival order); device and social edges also carry their event id ``eid``
  (indexed);
* ``FraudLabel`` nodes ``{ns, eid, txn, ts, value}``, one per label event (a label may arrive
  for a payment the graph has not seen), and one ``SeqCounter`` per namespace.

**Namespaces.** Every node has an ``ns`` property that is part of each uniqueness constraint,
and every query matches on it, so stores with different ``namespace`` values share one database
(Community edition has only one) without seeing each other. :func:`delete_namespace` drops one.

**Delivery and idempotency.** Writes are at-least-once safe, keyed by event id: payments
``MERGE`` on ``(ns, id)`` of the transaction, labels on ``(ns, eid)``, and device and social
edges are created only when no edge of the namespace holds their ``eid`` yet (an index seek).
A replayed event changes nothing; for every event the first write wins. An event replayed
*after* :meth:`evict_before` removed it is written again (the ingest gate
:meth:`FeatureStore.mark_seen` drops replays upstream).

**Bounds.** By default nothing is dropped (``retention_s=None``, ``max_degree=None``): Neo4j keeps
the full history. Given values reproduce the in-memory store exactly: the retention sweep runs at
the same points of the stream, and the degree cap hides, per node, every edge end beyond the
``max_degree`` most recent (``cut_ts``/``cut_seq`` on the node mark the newest hidden end; an
edge hidden at both ends is deleted). Sampling cost grows with the stored degree of the visited
nodes (Neo4j has no per-node time index on relationships), so hub entities cost more here than in
the in-memory window the scoring replicas use. Neo4j reuses the IDs of deleted records, and writes
into them cost it more CPU than writes into fresh space (284–630 against 165–218 µs per event
after a mass delete, ``bench/RESULTS.md``), so expect slower ingest with a retention window.

Cypher is always parameterised; labels and relationship types come from the fixed schema.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neo4j import Driver, GraphDatabase, Record, Transaction
from neo4j.exceptions import ClientError

from feature_stream import graph_neo4j_cypher as cy
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
from feature_stream.neo4j_retry import WRITE_RETRY

AnyEvent = Payment | DeviceEvent | SocialEvent | LabelEvent
NodeKey = tuple[int, str]

_SEQ_PER = {Payment: 5, DeviceEvent: 2, SocialEvent: 1, LabelEvent: 0}


def _apply_schema(driver: Driver, database: str) -> None:
    """Create the constraints and indexes that are missing (one round trip when none is).

    Workers that start together on a fresh database create them at the same moment: two
    ``CREATE … IF NOT EXISTS`` can deadlock on the label's schema lock (each statement is its
    own retried write transaction), and the later of two can fail because the other has just
    created the same rule (which is what it was for)."""
    with driver.session(database=database) as s:
        have = {r["name"] for r in s.run("SHOW INDEXES YIELD name, state WHERE state = 'ONLINE'")}
        todo = [stmt for name, stmt in cy.schema() if name not in have]
        for stmt in todo:
            try:
                WRITE_RETRY.run(s, _run_statement, stmt)
            except ClientError as exc:
                if exc.code not in _CREATED_MEANWHILE:
                    raise
        if todo:
            s.run("CALL db.awaitIndexes(300)").consume()


_CREATED_MEANWHILE = {
    "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists",
    "Neo.ClientError.Schema.ConstraintAlreadyExists",
    "Neo.ClientError.Schema.IndexAlreadyExists",
}


def _run_statement(tx: Transaction, stmt: str) -> None:
    tx.run(stmt).consume()


def delete_namespace(driver: Driver, namespace: str, database: str = "neo4j") -> int:
    """Delete every node (and so every relationship) of ``namespace``; returns nodes deleted."""
    total = 0
    with driver.session(database=database) as s:
        for lbl, key in [*((lbl, "id") for lbl in cy.LABEL_OF.values()), ("FraudLabel", "eid")]:
            while True:
                q = (
                    f"MATCH (n:{lbl}) WHERE n.ns = $ns AND n.{key} IS NOT NULL "
                    "WITH n LIMIT 5000 DETACH DELETE n RETURN count(*) AS n"
                )
                rec = s.run(q, ns=namespace).single()
                n = int(rec["n"]) if rec else 0
                total += n
                if n < 5000:
                    break
        s.run("MATCH (c:SeqCounter {ns: $ns}) DELETE c", ns=namespace).consume()
    return total


class Neo4jGraphStore(GraphStore):
    """Temporal graph in Neo4j (see the module docs for the data model and guarantees).

    Args:
        uri: Bolt URI, e.g. ``bolt://127.0.0.1:7687`` (``RISKGRAPH_NEO4J_URI``).
        auth: ``(user, password)`` or ``None`` when the server runs without authentication.
        namespace: isolates this store's data from others in the same database.
        retention_s: like the in-memory store's, or ``None`` (default) to keep everything.
        max_degree: like the in-memory store's, or ``None`` (default) for no cap.
        batch_size: most events written per transaction by :meth:`add_many`.
        database: the Neo4j database (Community edition has only ``neo4j``).

    Creates its constraints and indexes on start (idempotent). Not thread-safe: use one store
    per worker thread (the driver underneath is).
    """

    def __init__(
        self,
        uri: str,
        auth: tuple[str, str] | None = None,
        namespace: str = "default",
        retention_s: float | None = None,
        max_degree: int | None = None,
        batch_size: int = 2000,
        database: str = "neo4j",
    ) -> None:
        if not namespace:
            raise ValueError("namespace must be non-empty")
        if retention_s is not None and retention_s <= 0:
            raise ValueError("retention_s must be > 0 (or None)")
        if max_degree is not None and max_degree < 1:
            raise ValueError("max_degree must be >= 1 (or None)")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.namespace = namespace
        self.retention_s = retention_s
        self.max_degree = max_degree
        self.batch_size = batch_size
        self.database = database
        self._driver = GraphDatabase.driver(uri, auth=auth, notifications_min_severity="OFF")
        try:
            self._driver.verify_connectivity()
            _apply_schema(self._driver, database)
        except Exception:
            self._driver.close()
            raise
        self._now = -math.inf
        self._next_sweep = -math.inf

    # -- plumbing -------------------------------------------------------------------------------
    def _read(self, query: str, **params: Any) -> list[dict[str, Any]]:
        with self._driver.session(database=self.database) as s:
            return s.run(query, ns=self.namespace, **params).data()

    def close(self) -> None:
        self._driver.close()

    def clear(self) -> int:
        """Delete everything in this store's namespace; returns the number of nodes deleted."""
        self._now = self._next_sweep = -math.inf
        return delete_namespace(self._driver, self.namespace, self.database)

    # -- writes ---------------------------------------------------------------------------------
    def _add_payment(self, e: Payment) -> None:
        self.add_many([e])

    def _add_device(self, e: DeviceEvent) -> None:
        self.add_many([e])

    def _add_social(self, e: SocialEvent) -> None:
        self.add_many([e])

    def _add_label(self, e: LabelEvent) -> None:
        self.add_many([e])

    def add_many(self, events: Sequence[AnyEvent]) -> None:
        """Write events in order, in transactions of up to ``batch_size`` events.

        Each transaction commits whole or not at all (transient failures such as deadlocks
        are retried, see :mod:`feature_stream.neo4j_retry`); if this raises, the transactions
        before the failing one are committed and re-sending all ``events`` is safe (writes are
        idempotent). The whole list is type-checked first (``TypeError``, nothing written).
        With a retention window, the stream is cut where the in-memory store would sweep, so
        both evict the same edges.
        """
        for e in events:
            if not isinstance(e, Payment | DeviceEvent | SocialEvent | LabelEvent):
                raise TypeError(f"not an event: {type(e).__name__}")
        pending: list[AnyEvent] = []
        for e in events:
            pending.append(e)
            sweep_at: float | None = None
            if not isinstance(e, LabelEvent):
                ts = e.event_time.timestamp()
                if ts > self._now:
                    self._now = ts
                    if self.retention_s is not None and ts >= self._next_sweep:
                        sweep_at = ts - self.retention_s
                        self._next_sweep = ts + self.retention_s / 10
            if sweep_at is not None or len(pending) >= self.batch_size:
                self._flush(pending)
                pending = []
            if sweep_at is not None:
                self._evict_before(sweep_at)
        if pending:
            self._flush(pending)

    def _flush(self, events: list[AnyEvent]) -> None:
        seen: set[str] = set()
        batch = []
        for e in events:
            if e.event_id not in seen:  # first occurrence wins, as in the in-memory store
                seen.add(e.event_id)
                batch.append(e)
        need = sum(_SEQ_PER[type(e)] for e in batch)
        with self._driver.session(database=self.database) as s:
            # The seq block is reserved in its own short transaction, so concurrent writers of
            # one namespace hold the counter's lock for a moment, not for a whole batch.
            base = WRITE_RETRY.run(s, self._reserve, need)
            WRITE_RETRY.run(s, self._write, batch, base)

    def _reserve(self, tx: Transaction, n: int) -> int:
        rec = tx.run(cy.Q_SEQ, ns=self.namespace, n=n).single()
        return int(rec["base"]) if rec else 0

    def _write(self, tx: Transaction, batch: list[AnyEvent], seq: int) -> None:
        ns = self.namespace
        # Rows follow cy.PAYMENT_ROW, LOGIN_ROW, SOCIAL_ROW and LABEL_ROW field for field.
        pays: list[list[Any]] = []
        logins: list[list[Any]] = []
        social: dict[str, list[list[Any]]] = {rel: [] for rel in cy.SOCIAL_RELS}
        labels: list[list[Any]] = []
        for e in batch:
            ts = e.event_time.timestamp()
            if isinstance(e, Payment):
                ents = [e.account_id, e.card_id, e.merchant_id, e.device_id, e.ip]
                pays.append([e.event_id, ts, seq, e.amount, e.channel, *ents])
            elif isinstance(e, DeviceEvent):
                logins.append([e.event_id, ts, seq, e.account_id, e.device_id, e.ip])
            elif isinstance(e, SocialEvent):
                rel = SOCIAL_KIND_RELATION[e.kind]
                social[rel].append([e.event_id, ts, seq, e.src_account_id, e.dst_account_id])
            else:
                value = LABEL_FRAUD if e.is_fraud else LABEL_LEGIT
                labels.append([e.event_id, ts, e.transaction_id, value])
            seq += _SEQ_PER[type(e)]
        for query, rows in (
            (cy.Q_PAYMENTS, pays),
            (cy.Q_LOGINS, logins),
            *((cy.Q_SOCIAL[rel], social[rel]) for rel in cy.SOCIAL_RELS),
            (cy.Q_LABELS, labels),
        ):
            if rows:
                tx.run(query, ns=ns, rows=rows).consume()
        if self.max_degree is not None:
            for code, ids in _touched(batch).items():
                if ids:
                    tx.run(cy.Q_CAP[cy.LABEL_OF[code]], ns=ns, ids=list(ids), k=self.max_degree)

    # -- reads ----------------------------------------------------------------------------------
    def _transaction(self, transaction_id: str) -> TxnRecord | None:
        return self.transactions([transaction_id]).get(transaction_id)

    def transactions(self, transaction_ids: Sequence[str]) -> dict[str, TxnRecord]:
        ids = list(dict.fromkeys(transaction_ids))
        if not ids:
            return {}
        return {
            r["id"]: TxnRecord(
                r["id"],
                float(r["ts"]),
                r["account"],
                r["card"],
                r["merchant"],
                r["device"],
                r["ip"],
                float(r["amount"]),
                r["channel"],
            )
            for r in self._read(cy.Q_TXNS, ids=ids)
        }

    def _labels_for(self, transaction_ids: list[str]) -> dict[str, list[StoredLabel]]:
        out: dict[str, list[StoredLabel]] = {}
        if not transaction_ids:
            return out
        for r in self._read(cy.Q_LABELS_FOR, ids=transaction_ids):
            label = StoredLabel(r["eid"], float(r["ts"]), int(r["value"]) == LABEL_FRAUD)
            out.setdefault(r["id"], []).append(label)
        return out

    def _label(self, transaction_id: str, as_of: float) -> int:
        rows = self._read(cy.Q_LABEL, id=transaction_id, t=as_of)
        return int(rows[0]["value"]) if rows else LABEL_UNKNOWN

    def _sample(self, queries: Sequence[Payment], fanouts: tuple[int, ...]) -> list[Subgraph]:
        walks = [_Walk(q) for q in queries]
        # Hop 1 fetches the query's own entities, and the query itself (a stored replay's label
        # time counts in max_time_used, as in the in-memory store); each later hop the nodes
        # the previous one added. ``slots[i]`` is the (walk, local node) of row ``i``.
        fetch = [(w, w.start()) for w in walks]
        with self._driver.session(database=self.database) as session:
            for hop, k in enumerate((*fanouts, 0), start=2):
                params: dict[str, Any] = {f"g{code}": [] for code in cy.LABEL_OF}
                slots: list[tuple[_Walk, int]] = []
                for w, nodes in fetch:
                    for local, (ntype, nid) in nodes:
                        params[f"g{ntype}"].append([len(slots), nid, w.t])  # cy.KEY_ROW
                        slots.append((w, local))
                if slots:
                    query = cy.SAMPLE_EXPAND if k else cy.SAMPLE_ATTRS
                    for r in session.run(query, ns=self.namespace, k=k, **params):
                        w, local = slots[r["i"]]
                        w.set_attrs(local, r)
                if not k:
                    break
                fetch = [(w, w.expand(hop)) for w in walks]
        return [w.g for w in walks]

    # -- housekeeping ---------------------------------------------------------------------------
    def _evict_before(self, ts: float) -> int:
        ends = 0
        batch = 5000
        with self._driver.session(database=self.database) as s:
            for query in (cy.Q_EVICT_TXNS, *cy.Q_EVICT_EDGES.values()):
                while True:
                    n, e = WRITE_RETRY.run(s, self._evict_step, query, ts, batch)
                    ends += e
                    if n < batch:
                        break
        return ends // 2

    def _evict_step(self, tx: Transaction, query: str, ts: float, batch: int) -> tuple[int, int]:
        rec = tx.run(query, ns=self.namespace, c=ts, batch=batch).single()
        if rec is None or not rec["n"]:
            return 0, 0
        touched = [x for group in rec["touched"] for x in group]
        tx.run(cy.Q_EVICT_TIDY, touched=touched, c=ts).consume()
        return int(rec["n"]), int(rec["ends"] or 0)

    def stats(self) -> dict[str, int]:
        rows = {r["what"]: r for r in self._read(cy.Q_STATS)}
        out = {name: int(rows[cy.LABEL_OF[code]]["nodes"]) for code, name in enumerate(NODE_TYPES)}
        visible = sum(
            int(rows[lbl]["ends"]) - int(rows[lbl]["hidden"]) for lbl in cy.LABEL_OF.values()
        )
        out["edges"] = (visible + 1) // 2
        out["labels"] = int(rows["labels"]["nodes"])
        return out


def _touched(batch: list[AnyEvent]) -> dict[int, set[str]]:
    """Ids of the nodes a batch adds edges to, per node type (the degree cap re-checks them)."""
    out: dict[int, set[str]] = {code: set() for code in cy.LABEL_OF}
    for e in batch:
        if isinstance(e, Payment):
            out[TXN].add(e.event_id)
            out[ACCOUNT].add(e.account_id)
            out[CARD].add(e.card_id)
            out[MERCHANT].add(e.merchant_id)
            if e.device_id is not None:
                out[DEVICE].add(e.device_id)
            if e.ip is not None:
                out[IP].add(e.ip)
        elif isinstance(e, DeviceEvent):
            out[ACCOUNT].add(e.account_id)
            out[DEVICE].add(e.device_id)
            if e.ip is not None:
                out[IP].add(e.ip)
        elif isinstance(e, SocialEvent):
            out[ACCOUNT].update((e.src_account_id, e.dst_account_id))
    return out


class _Walk:
    """The breadth-first walk of one query, step for step ``InMemoryGraphStore._sample_one``.

    The store fetches, per hop, the attributes and the newest edges of the nodes this walk
    added; the walk applies the in-memory store's rules (dedupe by node key, hops, skipping the
    query itself, ``max_time_used``) in the same order, so the subgraphs come out identical.
    """

    def __init__(self, q: Payment) -> None:
        self.q = q
        self.t = q.event_time.timestamp()
        self.g = Subgraph(t=self.t)
        self.local: dict[NodeKey, int] = {}
        self.frontier: list[int] = []
        self.nbrs: dict[int, list[list[Any]]] = {}

    def _node(self, key: NodeKey, hop: int) -> tuple[int, bool]:
        i = self.local.get(key)
        if i is not None:
            return i, False
        g = self.g
        i = self.local[key] = g.num_nodes
        g.node_type.append(key[0])
        g.node_id.append(key[1])
        g.node_hop.append(hop)
        # What the in-memory store shows for a node it does not hold; replaced once fetched.
        unknown = float(LABEL_UNKNOWN) if key[0] == TXN else 0.0
        g.node_attr.append((0.0, -1.0, unknown, 0.0))
        return i, True

    def _edge(self, src: int, dst: int, rel: int, ts: float) -> None:
        g = self.g
        g.src.append(src)
        g.dst.append(dst)
        g.rel.append(rel)
        g.edge_ts.append(ts)

    def _used(self, ts: float) -> None:
        if ts > self.g.max_time_used:
            self.g.max_time_used = ts

    def start(self) -> list[tuple[int, NodeKey]]:
        """Add the query and its own entities; returns the nodes to fetch, by key."""
        q = self.q
        root, _ = self._node((TXN, q.event_id), 0)
        self.g.node_attr[root] = (
            q.amount,
            0.0,
            float(LABEL_UNKNOWN),
            float(CHANNEL_CODE[q.channel]),
        )
        own: list[tuple[NodeKey, str]] = [
            ((ACCOUNT, q.account_id), "paid_by"),
            ((CARD, q.card_id), "paid_with"),
            ((MERCHANT, q.merchant_id), "paid_at"),
        ]
        if q.device_id is not None:
            own.append(((DEVICE, q.device_id), "paid_from_device"))
        if q.ip is not None:
            own.append(((IP, q.ip), "paid_from_ip"))
        fetch = [(root, (TXN, q.event_id))]
        for key, rel in own:
            i, new = self._node(key, 1)
            self._edge(i, root, RELATION_CODE[rel], self.t)
            if new:
                self.frontier.append(i)
                fetch.append((i, key))
        return fetch

    def set_attrs(self, local: int, r: Record) -> None:
        """Record what the store answered for node ``local`` (attributes, newest edges)."""
        self.nbrs[local] = r["nbrs"]
        if self.g.node_type[local] == TXN:
            label, lts = (r["lab"][0][0], r["lab"][0][1]) if r["lab"] else (LABEL_UNKNOWN, None)
            if lts is not None:
                self._used(lts)
            if local == 0:
                return  # the query's own attributes come from the payment
            channel = float(CHANNEL_CODE[r["channel"]])
            self.g.node_attr[local] = (r["amount"], self.t - r["ts"], float(label), channel)
        elif r["deg"]:
            self._used(r["last"])
            self.g.node_attr[local] = (float(r["deg"]), self.t - r["last"], 0.0, 0.0)

    def expand(self, hop: int) -> list[tuple[int, NodeKey]]:
        """Walk one hop from the frontier; returns the nodes it added, to fetch."""
        own = (TXN, self.q.event_id)
        fetch: list[tuple[int, NodeKey]] = []
        nxt: list[int] = []
        for dst in self.frontier:
            for rel, ets, ntype, nid in self.nbrs.get(dst, ()):
                key = (ntype, nid)
                if key == own:
                    continue  # a replayed query never samples itself
                self._used(ets)
                i, new = self._node(key, hop)
                self._edge(i, dst, rel, ets)
                if new:
                    nxt.append(i)
                    fetch.append((i, key))
        self.frontier = nxt
        return fetch
