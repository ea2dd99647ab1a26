"""Neo4j case store: the service-mode :class:`~services.cases.store.CaseStore`.

Cases live beside the payment graph so an analyst's question "what else touches this card?" is
a graph walk, not a join:

* one ``:Case`` node per case, unique on ``(ns, id)``, holding every field of
  :class:`~services.cases.model.Case` (entities flattened to ``account_id`` … ``ip``, the
  embedding as a list of floats);
* ``(:Case)-[:INVOLVES]->(entity)`` to the ``Account``, ``Card``, ``Merchant``, ``Device`` and
  ``IP`` nodes of the :class:`~feature_stream.graph_neo4j.Neo4jGraphStore` with the same
  namespace (MERGEd if the graph has not written them yet: same labels and ``(ns, id)`` key);
* ``(:Case)-[:ABOUT]->(:Transaction)`` once the payment is in the graph.

**Living beside the graph store.** Case relationships carry no ``ts``, and every sampling
query of the graph store keeps only edges with ``e.ts < t``, so cases never enter a sampled
neighbourhood. The transaction node is never created here: the graph store writes a payment's
edges only when its own ``MERGE`` creates the transaction node, so a bare node made first by a
case would cost the graph that payment. The ``ABOUT`` link is therefore made when the payment
is already in the graph, and retried on every later write of the case (assignment, verdict).
Not yet isolated: the graph store's bookkeeping counts every relationship of a node, so in a
shared namespace its ``stats()["edges"]``, the edges :meth:`evict_before` reports, and the
degree cap (``max_degree``) see case links too, and an entity linked to a case outlives its
last payment edge. Sampling is unaffected (``tests/services/test_case_store.py`` checks it).

**Namespaces** work as in the graph store: every node has ``ns``, every query matches on it;
:func:`delete_cases` drops one namespace's cases.

Cypher is always parameterised; the only text built here comes from fixed maps (labels, sort
columns), never from input.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from neo4j import Driver, GraphDatabase, RoutingControl

from feature_stream import graph_neo4j_cypher as graph_cy
from feature_stream.graph_schema import ACCOUNT, CARD, DEVICE, IP, MERCHANT, TXN
from services.cases.model import ENTITY_KINDS, VERDICT_STATUS, Case, CaseStatus, SortKey, Verdict
from services.cases.store import CaseList, CaseStore, Shared

# Entity key of Case.entities → label of the graph store's node for it.
ENTITY_LABEL: dict[str, str] = {
    "account_id": graph_cy.LABEL_OF[ACCOUNT],
    "card_id": graph_cy.LABEL_OF[CARD],
    "merchant_id": graph_cy.LABEL_OF[MERCHANT],
    "device_id": graph_cy.LABEL_OF[DEVICE],
    "ip": graph_cy.LABEL_OF[IP],
}
_TXN = graph_cy.LABEL_OF[TXN]
_FIELDS = (
    "transaction_id",
    "tenant",
    "created_at",
    "score",
    "action",
    "reasons",
    "served_by",
    "model_version",
    "amount",
    "currency",
    "status",
    "assignee",
    "verdict_by",
    "verdict_note",
    "verdict_at",
    "scenario",
    "embedding",
)


def schema() -> list[tuple[str, str]]:
    """``(name, statement)`` of every constraint and index the case store needs.

    Includes the graph store's key constraints on the transaction and entity labels: the
    ``MERGE`` of an entity node here must use the same unique index (and be as race-free) even
    when the case store starts first on an empty database.
    """
    graph_keys = {f"rg_{lbl.lower()}_key" for lbl in graph_cy.LABEL_OF.values()}
    return [(n, s) for n, s in graph_cy.schema() if n in graph_keys] + [
        (
            "rg_case_key",
            "CREATE CONSTRAINT rg_case_key IF NOT EXISTS "
            "FOR (c:Case) REQUIRE (c.ns, c.id) IS UNIQUE",
        ),
        (
            "rg_case_tenant",
            "CREATE INDEX rg_case_tenant IF NOT EXISTS FOR (c:Case) ON (c.ns, c.tenant)",
        ),
        (
            "rg_case_status",
            "CREATE INDEX rg_case_status IF NOT EXISTS FOR (c:Case) ON (c.ns, c.status)",
        ),
    ]


_LINK_TXN = f"""
WITH c
CALL (c) {{
  MATCH (t:{_TXN} {{ns: $ns, id: c.transaction_id}})
  MERGE (c)-[:ABOUT]->(t)
}}
"""

# ``wtoken`` tells the write that created the node from one that found it: only the creator
# sees its own token (removed again in the same transaction), so a replay links nothing.
Q_ADD = (
    """
MERGE (c:Case {ns: $ns, id: $id})
ON CREATE SET c += $props, c.wtoken = $token
WITH c, coalesce(c.wtoken = $token, false) AS created
REMOVE c.wtoken
WITH c WHERE created
"""
    + "\n".join(
        f"FOREACH (_ IN CASE WHEN $props.{key} IS NULL THEN [] ELSE [1] END |\n"
        f"  MERGE (n:{label} {{ns: $ns, id: $props.{key}}}) CREATE (c)-[:INVOLVES]->(n))"
        for key, label in ENTITY_LABEL.items()
    )
    + _LINK_TXN
    + "RETURN true AS created"
)

Q_GET = "MATCH (c:Case {ns: $ns, id: $id}) RETURN c {.*} AS props"

Q_VERDICT = (
    """
MATCH (c:Case {ns: $ns, id: $id})
SET c.status = $status, c.verdict_by = $by, c.verdict_note = $note, c.verdict_at = $at
"""
    + _LINK_TXN
    + "RETURN c {.*} AS props"
)

Q_ASSIGN = (
    "MATCH (c:Case {ns: $ns, id: $id}) SET c.assignee = $user\n"
    + _LINK_TXN
    + "RETURN c {.*} AS props"
)

_FILTER = """
MATCH (c:Case) WHERE c.ns = $ns AND c.tenant = $tenant
  AND ($status IS NULL OR c.status = $status)
  AND ($reason IS NULL OR $reason IN c.reasons)
  AND ($min_score IS NULL OR c.score >= $min_score)
"""
_SORT_PROPERTY: dict[SortKey, str] = {"score": "score", "amount": "amount", "age": "created_at"}
Q_LIST: dict[tuple[SortKey, bool], str] = {
    (sort, desc): _FILTER
    + f"WITH c ORDER BY c.{prop} {'DESC' if desc else 'ASC'}, c.id ASC SKIP $offset LIMIT $limit\n"
    + "RETURN c {.*} AS props"
    for sort, prop in _SORT_PROPERTY.items()
    for desc in (True, False)
}
"""``(sort, descending in property order)`` → statement."""
Q_COUNT = _FILTER + "RETURN count(c) AS n"

Q_SHARING = (
    "CALL () {\n"
    + "\nUNION ALL\n".join(
        f"  MATCH (:{label} {{ns: $ns, id: $entities.{key}}})<-[:INVOLVES]-(c:Case)\n"
        f"  WHERE c.tenant = $tenant RETURN c, '{ENTITY_KINDS[key]}' AS kind"
        for key, label in ENTITY_LABEL.items()
    )
    + """
}
WITH c, collect(kind) AS kinds WHERE $exclude IS NULL OR c.id <> $exclude
WITH c, kinds ORDER BY size(kinds) DESC, c.created_at DESC, c.id ASC LIMIT $limit
RETURN c {.*} AS props, kinds
"""
)

Q_RESOLVED = """
MATCH (c:Case) WHERE c.ns = $ns AND c.status IN ['fraud', 'legit'] AND c.embedding IS NOT NULL
  AND c.id > $after
WITH c ORDER BY c.id LIMIT $page
RETURN c {.*} AS props
"""


def _props(case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {f: getattr(case, f) for f in _FIELDS}
    out["embedding"] = None if case.embedding is None else list(case.embedding)
    out.update(case.entities)
    return out


def _case(p: dict[str, Any]) -> Case:
    """The case from its node's properties (an absent property is ``None``)."""
    emb = p.get("embedding")
    return Case(
        case_id=p["id"],
        transaction_id=p["transaction_id"],
        tenant=p["tenant"],
        created_at=p["created_at"],
        score=p["score"],
        action=p["action"],
        reasons=list(p.get("reasons") or []),
        served_by=p["served_by"],
        model_version=p["model_version"],
        amount=p["amount"],
        currency=p["currency"],
        entities={key: p[key] for key in ENTITY_KINDS if p.get(key) is not None},
        status=p["status"],
        assignee=p.get("assignee"),
        verdict_by=p.get("verdict_by"),
        verdict_note=p.get("verdict_note"),
        verdict_at=p.get("verdict_at"),
        scenario=p.get("scenario"),
        embedding=None if emb is None else tuple(emb),
    )


def delete_cases(driver: Driver, namespace: str, database: str = "neo4j") -> int:
    """Delete every case of ``namespace`` (and its links); returns the number deleted.

    Entity nodes are left alone: they belong to the graph store
    (:func:`feature_stream.graph_neo4j.delete_namespace` removes them).
    """
    total = 0
    with driver.session(database=database) as s:
        while True:
            rec = s.run(
                "MATCH (c:Case) WHERE c.ns = $ns WITH c LIMIT 5000 DETACH DELETE c "
                "RETURN count(*) AS n",
                ns=namespace,
            ).single()
            n = int(rec["n"]) if rec else 0
            total += n
            if n < 5000:
                return total


class Neo4jCaseStore(CaseStore):
    """Cases in Neo4j, linked to the payment graph (see the module docs for the data model).

    Args:
        uri: Bolt URI, e.g. ``bolt://127.0.0.1:7687`` (``RISKGRAPH_NEO4J_URI``).
        auth: ``(user, password)`` or ``None`` when the server runs without authentication.
        namespace: the graph store's namespace whose entity nodes the cases link to.
        database: the Neo4j database (Community edition has only ``neo4j``).

    Creates its constraints and indexes on start (idempotent). Thread-safe: every call runs in
    its own driver-managed transaction, retried on transient errors.
    """

    def __init__(
        self,
        uri: str,
        auth: tuple[str, str] | None = None,
        namespace: str = "default",
        database: str = "neo4j",
    ) -> None:
        if not namespace:
            raise ValueError("namespace must be non-empty")
        self.namespace = namespace
        self.database = database
        self._driver = GraphDatabase.driver(uri, auth=auth, notifications_min_severity="OFF")
        try:
            self._driver.verify_connectivity()
            self._apply_schema()
        except Exception:
            self._driver.close()
            raise

    def _apply_schema(self) -> None:
        with self._driver.session(database=self.database) as s:
            have = {r["name"] for r in s.run("SHOW INDEXES YIELD name")}
            todo = [stmt for name, stmt in schema() if name not in have]
            for stmt in todo:
                s.run(stmt).consume()
            if todo:
                s.run("CALL db.awaitIndexes(300)").consume()

    def _run(self, query: str, write: bool, **params: Any) -> list[dict[str, Any]]:
        records, _, _ = self._driver.execute_query(
            query,
            {"ns": self.namespace, **params},
            database_=self.database,
            routing_=RoutingControl.WRITE if write else RoutingControl.READ,
        )
        return [r.data() for r in records]

    def close(self) -> None:
        self._driver.close()

    def clear(self) -> int:
        """Delete every case in this store's namespace; returns the number deleted."""
        return delete_cases(self._driver, self.namespace, self.database)

    # -- writes ---------------------------------------------------------------------------------
    def _add(self, case: Case) -> bool:
        rows = self._run(Q_ADD, True, id=case.case_id, props=_props(case), token=uuid.uuid4().hex)
        return bool(rows)

    def _one(self, case_id: str, rows: list[dict[str, Any]]) -> Case:
        if not rows:
            raise KeyError(case_id)
        return _case(rows[0]["props"])

    def _set_verdict(self, case_id: str, verdict: Verdict, by: str, note: str, at: float) -> Case:
        rows = self._run(
            Q_VERDICT,
            True,
            id=case_id,
            status=VERDICT_STATUS[verdict],
            by=by,
            note=note,
            at=at,
        )
        return self._one(case_id, rows)

    def _assign(self, case_id: str, user: str | None) -> Case:
        return self._one(case_id, self._run(Q_ASSIGN, True, id=case_id, user=user))

    # -- reads ----------------------------------------------------------------------------------
    def _get(self, case_id: str) -> Case | None:
        rows = self._run(Q_GET, False, id=case_id)
        return _case(rows[0]["props"]) if rows else None

    def _list(
        self,
        tenant: str,
        status: CaseStatus | None,
        reason: str | None,
        min_score: float | None,
        sort: SortKey,
        descending: bool,
        limit: int,
        offset: int,
    ) -> CaseList:
        # Descending age is oldest first, i.e. ascending event time.
        desc = descending != (sort == "age")
        rows = self._run(
            Q_LIST[(sort, desc)],
            False,
            tenant=tenant,
            status=status,
            reason=reason,
            min_score=None if min_score is None else float(min_score),
            limit=limit,
            offset=offset,
        )
        return [_case(r["props"]) for r in rows]

    def _count(
        self, tenant: str, status: CaseStatus | None, reason: str | None, min_score: float | None
    ) -> int:
        rows = self._run(
            Q_COUNT,
            False,
            tenant=tenant,
            status=status,
            reason=reason,
            min_score=None if min_score is None else float(min_score),
        )
        return int(rows[0]["n"])

    def _sharing(
        self, tenant: str, entities: dict[str, str], exclude_case_id: str | None, limit: int
    ) -> Shared:
        rows = self._run(
            Q_SHARING,
            False,
            tenant=tenant,
            entities=entities,
            exclude=exclude_case_id,
            limit=limit,
        )
        order = list(ENTITY_KINDS.values())
        return [(_case(r["props"]), [k for k in order if k in set(r["kinds"])]) for r in rows]

    def _resolved_with_embeddings(self, page_size: int) -> Iterator[Case]:
        after = ""
        while True:
            rows = self._run(Q_RESOLVED, False, after=after, page=page_size)
            yield from (_case(r["props"]) for r in rows)
            if len(rows) < page_size:
                return
            after = rows[-1]["props"]["id"]
