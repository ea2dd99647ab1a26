"""Cypher statements of :class:`~feature_stream.graph_neo4j.Neo4jGraphStore` (data model there).

Every statement takes its values as parameters (``$ns``, ``$rows``, ``$t`` …); the only text built
here is from the fixed schema in :mod:`feature_stream.graph_schema` (labels, relationship types),
never from input.
"""

from __future__ import annotations

from feature_stream.graph_schema import (
    ACCOUNT,
    CARD,
    DEVICE,
    IP,
    MERCHANT,
    RELATION_CODE,
    RELATION_NAMES,
    SOCIAL_KIND_RELATION,
    TXN,
)

LABEL_OF: dict[int, str] = {
    TXN: "Transaction",
    ACCOUNT: "Account",
    CARD: "Card",
    MERCHANT: "Merchant",
    DEVICE: "Device",
    IP: "IP",
}
REL_TYPE: dict[str, str] = {name: name.upper() for name in RELATION_NAMES}
REL_CODE_OF_TYPE: dict[str, int] = {REL_TYPE[n]: RELATION_CODE[n] for n in RELATION_NAMES}
# Edges that do not hang off a Transaction: evicted through a relationship index on ``ts``.
_LOOSE_RELS = ("logged_in_on", "logged_in_from", "p2p", "contact", "shared_identity")


# Write rows travel as lists, not maps: the driver packs a list of scalars several times faster
# than a map with the same values. Each statement turns a row back into a map ``r`` first.
PAYMENT_ROW = (
    *("id", "ts", "seq", "amount", "channel"),
    *("account", "card", "merchant", "device", "ip"),
)
LOGIN_ROW = ("id", "ts", "seq", "account", "device", "ip")
SOCIAL_ROW = ("id", "ts", "seq", "src", "dst")
LABEL_ROW = ("id", "ts", "txn", "value")
KEY_ROW = ("i", "id", "t")


def _rows(fields: tuple[str, ...], param: str = "rows") -> str:
    """``UNWIND`` a list-of-lists parameter into maps ``r`` with the given field names."""
    body = ", ".join(f"{f}: row[{i}]" for i, f in enumerate(fields))
    return f"UNWIND ${param} AS row WITH {{{body}}} AS r"


def _vis(n: str, e: str) -> str:
    """Cypher predicate: edge ``e`` is visible from node ``n`` (not hidden by the degree cap)."""
    return (
        f"({n}.cut_ts IS NULL OR {e}.ts > {n}.cut_ts"
        f" OR ({e}.ts = {n}.cut_ts AND {e}.seq > {n}.cut_seq))"
    )


def _one(cond: str) -> str:
    return f"CASE WHEN {cond} THEN 1 ELSE 0 END"


def schema() -> list[tuple[str, str]]:
    """``(name, statement)`` of every constraint and index, each idempotent (``IF NOT EXISTS``).

    A uniqueness constraint's backing index carries the constraint's name.
    """
    out: list[tuple[str, str]] = []
    for lbl in LABEL_OF.values():
        name = f"rg_{lbl.lower()}_key"
        out.append(
            (
                name,
                f"CREATE CONSTRAINT {name} IF NOT EXISTS "
                f"FOR (n:{lbl}) REQUIRE (n.ns, n.id) IS UNIQUE",
            )
        )
    out += [
        (
            "rg_fraudlabel_key",
            "CREATE CONSTRAINT rg_fraudlabel_key IF NOT EXISTS "
            "FOR (l:FraudLabel) REQUIRE (l.ns, l.eid) IS UNIQUE",
        ),
        (
            "rg_seqcounter_key",
            "CREATE CONSTRAINT rg_seqcounter_key IF NOT EXISTS "
            "FOR (c:SeqCounter) REQUIRE c.ns IS UNIQUE",
        ),
        (
            "rg_fraudlabel_txn",
            "CREATE INDEX rg_fraudlabel_txn IF NOT EXISTS FOR (l:FraudLabel) ON (l.ns, l.txn)",
        ),
        (
            "rg_transaction_ts",
            "CREATE INDEX rg_transaction_ts IF NOT EXISTS FOR (t:Transaction) ON (t.ns, t.ts)",
        ),
    ]
    for rel in _LOOSE_RELS:
        name = f"rg_{rel}_ts"
        out.append(
            (name, f"CREATE INDEX {name} IF NOT EXISTS FOR ()-[e:{REL_TYPE[rel]}]-() ON (e.ts)")
        )
    for rel in ("logged_in_on", *SOCIAL_RELS):
        name = f"rg_{rel}_eid"
        out.append(
            (name, f"CREATE INDEX {name} IF NOT EXISTS FOR ()-[e:{REL_TYPE[rel]}]-() ON (e.eid)")
        )
    return out


Q_SEQ = """
MERGE (c:SeqCounter {ns: $ns}) ON CREATE SET c.next = 0
SET c.next = c.next + $n
RETURN c.next - $n AS base
"""

# ``wseq`` is the seq reserved for this write: only the row that created the transaction sees
# its own value, so a replayed (or conflicting) payment adds no edges.
Q_PAYMENTS = f"""
{_rows(PAYMENT_ROW)}
MERGE (t:Transaction {{ns: $ns, id: r.id}})
ON CREATE SET t.ts = r.ts, t.amount = r.amount, t.channel = r.channel, t.account = r.account,
  t.card = r.card, t.merchant = r.merchant, t.device = r.device, t.ip = r.ip, t.wseq = r.seq
WITH t, r WHERE t.wseq = r.seq
MERGE (a:Account {{ns: $ns, id: r.account}})
MERGE (c:Card {{ns: $ns, id: r.card}})
MERGE (m:Merchant {{ns: $ns, id: r.merchant}})
CREATE (t)-[:{REL_TYPE["paid_by"]} {{ts: r.ts, seq: r.seq}}]->(a)
CREATE (t)-[:{REL_TYPE["paid_with"]} {{ts: r.ts, seq: r.seq + 1}}]->(c)
CREATE (t)-[:{REL_TYPE["paid_at"]} {{ts: r.ts, seq: r.seq + 2}}]->(m)
FOREACH (_ IN CASE WHEN r.device IS NULL THEN [] ELSE [1] END |
  MERGE (d:Device {{ns: $ns, id: r.device}})
  CREATE (t)-[:{REL_TYPE["paid_from_device"]} {{ts: r.ts, seq: r.seq + 3}}]->(d))
FOREACH (_ IN CASE WHEN r.ip IS NULL THEN [] ELSE [1] END |
  MERGE (i:IP {{ns: $ns, id: r.ip}})
  CREATE (t)-[:{REL_TYPE["paid_from_ip"]} {{ts: r.ts, seq: r.seq + 4}}]->(i))
"""


# Device and social edges are idempotent through their event id ``eid``: an index seek on it
# (then a check of the namespace) tells whether the event was written, where MERGE on the
# pattern would scan every edge between the two endpoints (hundreds for an account's usual
# device). The first write of an event id wins, as in the in-memory store. A login writes its
# device edge and its IP edge in one transaction, so the device edge alone says whether the
# login was written.
def _written(rel_type: str) -> str:
    return f"EXISTS {{ MATCH (x)-[w:{rel_type}]->() WHERE w.eid = r.id AND x.ns = $ns }}"


Q_LOGINS = f"""
{_rows(LOGIN_ROW)}
WHERE NOT {_written(REL_TYPE["logged_in_on"])}
MERGE (a:Account {{ns: $ns, id: r.account}})
MERGE (d:Device {{ns: $ns, id: r.device}})
CREATE (a)-[:{REL_TYPE["logged_in_on"]} {{eid: r.id, ts: r.ts, seq: r.seq}}]->(d)
FOREACH (_ IN CASE WHEN r.ip IS NULL THEN [] ELSE [1] END |
  MERGE (i:IP {{ns: $ns, id: r.ip}})
  CREATE (a)-[:{REL_TYPE["logged_in_from"]} {{eid: r.id, ts: r.ts, seq: r.seq + 1}}]->(i))
"""

SOCIAL_RELS = sorted(set(SOCIAL_KIND_RELATION.values()))
# One statement per social relation (the type cannot be a parameter); an event id is looked up
# under every social type, so a replay under another kind is still the same event.
_SOCIAL_WRITTEN = " OR ".join(_written(REL_TYPE[rel]) for rel in SOCIAL_RELS)
Q_SOCIAL = {
    rel: f"""
{_rows(SOCIAL_ROW)}
WHERE NOT ({_SOCIAL_WRITTEN})
MERGE (s:Account {{ns: $ns, id: r.src}})
MERGE (d:Account {{ns: $ns, id: r.dst}})
CREATE (s)-[:{REL_TYPE[rel]} {{eid: r.id, ts: r.ts, seq: r.seq}}]->(d)
"""
    for rel in SOCIAL_RELS
}


Q_LABELS = f"""
{_rows(LABEL_ROW)}
MERGE (l:FraudLabel {{ns: $ns, eid: r.id}})
ON CREATE SET l.txn = r.txn, l.ts = r.ts, l.value = r.value
"""

# Degree cap: hide every end beyond the ``$k`` newest visible ones, drop edges hidden at both.
# Graph edges are the relationships with a ``ts``; an analyst case's links (ABOUT, INVOLVES,
# services/cases/store_neo4j.py) have none and count nowhere here.
Q_CAP = {
    lbl: f"""
UNWIND $ids AS id
MATCH (n:{lbl} {{ns: $ns, id: id}})
WHERE COUNT {{ (n)-[e]-() WHERE e.ts IS NOT NULL }} > $k
CALL (n) {{
  MATCH (n)-[e]-() WHERE e.ts IS NOT NULL AND {_vis("n", "e")}
  WITH e ORDER BY e.ts DESC, e.seq DESC SKIP $k LIMIT 1
  RETURN e.ts AS cts, e.seq AS cseq
}}
SET n.cut_ts = cts, n.cut_seq = cseq
WITH n
MATCH (n)-[e]-(m)
WHERE NOT {_vis("n", "e")} AND NOT {_vis("m", "e")}
DELETE e
"""
    for lbl in LABEL_OF.values()
}

_ENDS = f"{_one(_vis('a', 'e'))} + {_one(_vis('b', 'e'))}"
Q_EVICT_TXNS = f"""
MATCH (a:Transaction) WHERE a.ns = $ns AND a.ts < $c
WITH a LIMIT $batch
CALL (a) {{
  MATCH (a)-[e]-(b) WHERE e.ts IS NOT NULL  // graph edges, not the links of analyst cases
  RETURN sum({_ENDS}) AS ends, collect(elementId(b)) AS touched
}}
CALL (a) {{
  MATCH (l:FraudLabel) WHERE l.ns = $ns AND l.txn = a.id
  DELETE l
}}
DETACH DELETE a
RETURN count(*) AS n, sum(ends) AS ends, collect(touched) AS touched
"""
Q_EVICT_EDGES = {
    rel: f"""
MATCH (a)-[e:{REL_TYPE[rel]}]->(b) WHERE e.ts < $c AND a.ns = $ns
WITH a, e, b LIMIT $batch
WITH e, {_ENDS} AS ends, elementId(a) AS ea, elementId(b) AS eb
DELETE e
RETURN count(*) AS n, sum(ends) AS ends, collect([ea, eb]) AS touched
"""
    for rel in _LOOSE_RELS
}
# After an eviction: a cut older than the cutoff hides nothing any more; empty nodes go.
Q_EVICT_TIDY = """
UNWIND $touched AS x
MATCH (n) WHERE elementId(n) = x
WITH DISTINCT n
FOREACH (_ IN CASE WHEN n.cut_ts < $c THEN [1] ELSE [] END | REMOVE n.cut_ts, n.cut_seq)
WITH n WHERE NOT EXISTS { (n)--() }
DELETE n
"""

Q_STATS = (
    "\nUNION ALL\n".join(
        f"""MATCH (n:{lbl}) WHERE n.ns = $ns AND n.id IS NOT NULL
WITH count(n) AS nodes, sum(COUNT {{ (n)-[e]-() WHERE e.ts IS NOT NULL }}) AS ends,
  sum(CASE WHEN n.cut_ts IS NULL THEN 0
      ELSE COUNT {{ MATCH (n)-[e]-() WHERE NOT {_vis("n", "e")} }} END) AS hidden
RETURN '{lbl}' AS what, nodes, ends, hidden"""
        for lbl in LABEL_OF.values()
    )
    + """
UNION ALL
MATCH (l:FraudLabel) WHERE l.ns = $ns AND l.eid IS NOT NULL
WITH count(DISTINCT l.txn) AS nodes
RETURN 'labels' AS what, nodes, 0 AS ends, 0 AS hidden"""
)

Q_TXNS = """
UNWIND $ids AS id
MATCH (t:Transaction {ns: $ns, id: id})
RETURN id, t.ts AS ts, t.account AS account, t.card AS card, t.merchant AS merchant,
  t.device AS device, t.ip AS ip, t.amount AS amount, t.channel AS channel
"""

Q_LABELS_FOR = """
UNWIND $ids AS id
MATCH (l:FraudLabel) WHERE l.ns = $ns AND l.txn = id
RETURN id, l.eid AS eid, l.ts AS ts, l.value AS value ORDER BY id, l.ts, l.eid
"""

Q_LABEL = """
MATCH (l:FraudLabel) WHERE l.ns = $ns AND l.txn = $id AND l.ts < $t
RETURN l.value AS value ORDER BY l.ts DESC, l.value DESC LIMIT 1
"""

# Sampling: one statement per hop. Rows name a node by key (``KEY_ROW``, one list per node
# type) and the query time ``r.t``; each answers the node's attributes as of ``r.t`` and, when
# expanding, its ``$k`` most recent visible edges strictly before ``r.t`` as
# ``[relation code, edge time, node type code, node id]`` (codes keep the answer small).
_TYPE_CODES = "{" + ", ".join(f"{lbl}: {code}" for code, lbl in LABEL_OF.items()) + "}"
_REL_CODES = "{" + ", ".join(f"{t}: {c}" for t, c in REL_CODE_OF_TYPE.items()) + "}"
_HEAD = (
    "CALL () {\n"
    + "\nUNION ALL\n".join(
        f"  {_rows(KEY_ROW, f'g{code}')} MATCH (n:{lbl} {{ns: $ns, id: r.id}}) RETURN r, n"
        for code, lbl in LABEL_OF.items()
    )
    + "\n}"
)
_TAIL_ATTRS = f"""
CALL (n, r) {{
  MATCH (n)-[e]-() WHERE NOT n:Transaction AND e.ts < r.t AND {_vis("n", "e")}
  RETURN count(e) AS deg, max(e.ts) AS last
}}
CALL (n, r) {{
  MATCH (l:FraudLabel) WHERE n:Transaction AND l.ns = $ns AND l.txn = n.id AND l.ts < r.t
  WITH l ORDER BY l.ts DESC, l.value DESC LIMIT 1
  RETURN collect([l.value, l.ts]) AS lab
}}
"""
_TAIL_EXPAND = f"""
CALL (n, r) {{
  MATCH (n)-[e]-(m) WHERE e.ts < r.t AND {_vis("n", "e")}
  WITH e, m ORDER BY e.ts DESC, e.seq DESC LIMIT $k
  RETURN collect([{_REL_CODES}[type(e)], e.ts, {_TYPE_CODES}[head(labels(m))], m.id]) AS nbrs
}}
"""
_RETURN = (
    "RETURN r.i AS i, n.amount AS amount, n.ts AS ts, n.channel AS channel, "
    "deg, last, lab, {nbrs} AS nbrs"
)
SAMPLE_EXPAND = _HEAD + _TAIL_ATTRS + _TAIL_EXPAND + _RETURN.format(nbrs="nbrs")
"""Attributes and newest edges of the nodes in ``$g0`` … ``$g5`` (params ``ns``, ``k``)."""
SAMPLE_ATTRS = _HEAD + _TAIL_ATTRS + _RETURN.format(nbrs="[]")
"""Attributes only, for the last hop."""
