"""SQLite case store: the embedded default (one file, or ``:memory:`` for tests and demos).

Layout: one ``cases`` row per case (reasons and entities also as JSON, to give them back in
their original order; the embedding as a float32 BLOB), with an index per queue sort key under
``(tenant, status)``; ``case_reasons`` for the reason filter and ``case_entities``
``(tenant, kind, value, case_id)`` for :meth:`~services.cases.store.CaseStore.sharing`, so both
are index lookups rather than scans of JSON.

One connection, shared between threads under a lock (``check_same_thread=False``): SQLite
serialises writers anyway, and the review queue's load is far below what one connection
serves. WAL lets a second process (a backup, an analyst's ad-hoc query) read while we write.
Every write is one transaction, in the OS when it commits (a crash of this process loses
nothing). What it takes to be on disk differs:

* a verdict or an assignment is an analyst's work: its commit is fsync'd before the call
  returns, so it survives a power cut;
* a new case comes from the scoring path, where an fsync per case (0.6 ms median, 2 ms p99 on
  the 2-core host) would hold up every payment in the batch. Adds are group-committed like the
  audit log (:class:`~services.audit.FileAuditSink`): a background thread fsyncs the
  write-ahead log about ``max_delay_s`` after the first unsynced add. The audit record of the
  payment names the case either way.

SQLite's own automatic checkpoint still runs inside a commit about every hundredth add (it
bounds the log's size; run beside the writer instead, a passive checkpoint never caught up
with a steady stream of adds and the log grew without bound).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from services.cases.model import ENTITY_KINDS, VERDICT_STATUS, Case, CaseStatus, SortKey, Verdict
from services.cases.store import CaseList, CaseStore, Shared

SCHEMA_VERSION = 1
log = logging.getLogger("riskgraph.cases")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    case_id        TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    tenant         TEXT NOT NULL,
    created_at     REAL NOT NULL,
    score          REAL NOT NULL,
    action         TEXT NOT NULL,
    reasons        TEXT NOT NULL,
    served_by      TEXT NOT NULL,
    model_version  TEXT NOT NULL,
    amount         REAL NOT NULL,
    currency       TEXT NOT NULL,
    entities       TEXT NOT NULL,
    status         TEXT NOT NULL,
    assignee       TEXT,
    verdict_by     TEXT,
    verdict_note   TEXT,
    verdict_at     REAL,
    scenario       TEXT,
    embedding      BLOB
);
CREATE INDEX IF NOT EXISTS cases_queue_score ON cases (tenant, status, score);
CREATE INDEX IF NOT EXISTS cases_queue_amount ON cases (tenant, status, amount);
CREATE INDEX IF NOT EXISTS cases_queue_age ON cases (tenant, status, created_at);
CREATE INDEX IF NOT EXISTS cases_precedents ON cases (case_id)
    WHERE status IN ('fraud', 'legit') AND embedding IS NOT NULL;
CREATE TABLE IF NOT EXISTS case_reasons (
    reason  TEXT NOT NULL,
    case_id TEXT NOT NULL,
    PRIMARY KEY (reason, case_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS case_entities (
    tenant  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    value   TEXT NOT NULL,
    case_id TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, value, case_id)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "case_id, transaction_id, tenant, created_at, score, action, reasons, served_by, "
    "model_version, amount, currency, entities, status, assignee, verdict_by, verdict_note, "
    "verdict_at, scenario, embedding"
)
_INSERT = f"INSERT OR IGNORE INTO cases ({_COLUMNS}) VALUES ({', '.join('?' * 19)})"
_SELECT = f"SELECT {_COLUMNS} FROM cases"
_C_COLUMNS = ", ".join("c." + col.strip() for col in _COLUMNS.split(","))
# The ORDER BY text comes from these fixed maps only, never from the caller.
_SORT_COLUMN: dict[SortKey, str] = {"score": "score", "amount": "amount", "age": "created_at"}


def _row(case: Case) -> tuple[Any, ...]:
    emb = None if case.embedding is None else np.asarray(case.embedding, np.float32).tobytes()
    return (
        case.case_id,
        case.transaction_id,
        case.tenant,
        case.created_at,
        case.score,
        case.action,
        json.dumps(case.reasons),
        case.served_by,
        case.model_version,
        case.amount,
        case.currency,
        json.dumps(case.entities),
        case.status,
        case.assignee,
        case.verdict_by,
        case.verdict_note,
        case.verdict_at,
        case.scenario,
        emb,
    )


def _case(r: tuple[Any, ...]) -> Case:
    emb = None if r[18] is None else tuple(np.frombuffer(r[18], np.float32).tolist())
    return Case(
        case_id=r[0],
        transaction_id=r[1],
        tenant=r[2],
        created_at=r[3],
        score=r[4],
        action=r[5],
        reasons=json.loads(r[6]),
        served_by=r[7],
        model_version=r[8],
        amount=r[9],
        currency=r[10],
        entities=json.loads(r[11]),
        status=r[12],
        assignee=r[13],
        verdict_by=r[14],
        verdict_note=r[15],
        verdict_at=r[16],
        scenario=r[17],
        embedding=emb,
    )


def _where(
    tenant: str, status: CaseStatus | None, reason: str | None, min_score: float | None
) -> tuple[str, list[Any]]:
    sql: list[str] = ["tenant = ?"]
    args: list[Any] = [tenant]
    if status is not None:
        sql.append("status = ?")
        args.append(status)
    if reason is not None:
        sql.append(
            "EXISTS (SELECT 1 FROM case_reasons r WHERE r.reason = ? AND r.case_id = cases.case_id)"
        )
        args.append(reason)
    if min_score is not None:
        sql.append("score >= ?")
        args.append(float(min_score))
    return " WHERE " + " AND ".join(sql), args


class SqliteCaseStore(CaseStore):
    """Cases in one SQLite database.

    Args:
        path: a database file (created with its parent folders if absent) or ``":memory:"``.
        max_delay_s: longest time a new case waits to be fsync'd (``None``: only by the next
            verdict, assignment or :meth:`close`).

    Raises ``ValueError`` when the file holds a case schema of another version.
    """

    def __init__(self, path: str | Path = ":memory:", max_delay_s: float | None = 0.05) -> None:
        target = str(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self.path = target
        self._lock = threading.Lock()
        self._unsynced = 0
        self._wal = -1  # the write-ahead log, opened to fsync it (a file database only)
        self._stop = threading.Event()
        self._conn = sqlite3.connect(target, check_same_thread=False)
        try:
            (mode,) = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if target != ":memory:" and mode != "wal":
                raise ValueError(f"{target}: SQLite refused WAL mode (journal mode {mode})")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # fsync'd by _sync, see the module
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(
                    f"{target} holds case schema version {version}, expected {SCHEMA_VERSION}"
                )
            with self._conn:
                self._conn.executescript(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if target != ":memory:":
                # The log SQLite writes: beside the file the path resolves to (symlinks
                # followed). It exists while a connection is open in WAL mode and keeps its
                # inode (a checkpoint rewinds it, truncation happens in place), so one
                # descriptor serves until close.
                db_file = self._conn.execute("PRAGMA database_list").fetchone()[2]
                self._wal = os.open(db_file + "-wal", os.O_RDONLY)
        except Exception:
            self._conn.close()
            raise
        self._syncer: threading.Thread | None = None
        if self._wal >= 0 and max_delay_s is not None:
            self._syncer = threading.Thread(
                target=self._sync_late, args=(max_delay_s,), name="case-sync", daemon=True
            )
            self._syncer.start()

    @property
    def unsynced(self) -> int:
        """Cases added since the last fsync of the log (0 for ``":memory:"``)."""
        return self._unsynced

    def _sync(self) -> None:
        """fsync the write-ahead log: every commit before this call is on disk after it."""
        n, self._unsynced = self._unsynced, 0
        try:
            os.fsync(self._wal)
        except OSError:
            self._unsynced += n  # still not on disk
            raise

    def _sync_late(self, every_s: float) -> None:
        # No store lock: an fsync of the log is safe beside the writer, and adds never wait
        # for it. A failed fsync is logged and tried again; the adds stay counted.
        while not self._stop.wait(every_s):
            if self._unsynced:
                try:
                    self._sync()
                except OSError:
                    log.exception("fsync of the case log %s failed; retrying", self.path)

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            try:
                if self._wal >= 0:
                    self._sync()
            finally:
                if self._wal >= 0:
                    os.close(self._wal)
                    self._wal = -1
                self._conn.close()

    # -- writes ---------------------------------------------------------------------------------
    def _add(self, case: Case) -> bool:
        with self._lock:
            if not self._insert(case):
                return False
            if self._wal >= 0:
                self._unsynced += 1  # after the commit: a sync that clears it covers it
            return True

    def _insert(self, case: Case) -> bool:
        with self._conn:
            if self._conn.execute(_INSERT, _row(case)).rowcount == 0:
                return False
            self._conn.executemany(
                "INSERT OR IGNORE INTO case_reasons (reason, case_id) VALUES (?, ?)",
                [(r, case.case_id) for r in case.reasons],
            )
            self._conn.executemany(
                "INSERT INTO case_entities (tenant, kind, value, case_id) VALUES (?, ?, ?, ?)",
                [
                    (case.tenant, ENTITY_KINDS[key], value, case.case_id)
                    for key, value in case.entities.items()
                ],
            )
            return True

    def _update(self, case_id: str, assignments: str, args: list[Any]) -> Case:
        with self._lock:
            with self._conn:
                cur = self._conn.execute(
                    f"UPDATE cases SET {assignments} WHERE case_id = ?", [*args, case_id]
                )
                if cur.rowcount == 0:
                    raise KeyError(case_id)
                row = self._conn.execute(f"{_SELECT} WHERE case_id = ?", (case_id,)).fetchone()
            if self._wal >= 0:
                self._sync()  # an analyst's work: on disk before the call returns
        return _case(row)

    def _set_verdict(self, case_id: str, verdict: Verdict, by: str, note: str, at: float) -> Case:
        return self._update(
            case_id,
            "status = ?, verdict_by = ?, verdict_note = ?, verdict_at = ?",
            [VERDICT_STATUS[verdict], by, note, at],
        )

    def _assign(self, case_id: str, user: str | None) -> Case:
        return self._update(case_id, "assignee = ?", [user])

    # -- reads ----------------------------------------------------------------------------------
    def _get(self, case_id: str) -> Case | None:
        with self._lock:
            r = self._conn.execute(f"{_SELECT} WHERE case_id = ?", (case_id,)).fetchone()
        return None if r is None else _case(r)

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
        where, args = _where(tenant, status, reason, min_score)
        # Descending age is oldest first, i.e. ascending event time.
        desc = descending != (sort == "age")
        order = f" ORDER BY {_SORT_COLUMN[sort]} {'DESC' if desc else 'ASC'}, case_id ASC"
        with self._lock:
            rows = self._conn.execute(
                _SELECT + where + order + " LIMIT ? OFFSET ?", [*args, limit, offset]
            ).fetchall()
        return [_case(r) for r in rows]

    def _count(
        self, tenant: str, status: CaseStatus | None, reason: str | None, min_score: float | None
    ) -> int:
        where, args = _where(tenant, status, reason, min_score)
        with self._lock:
            (n,) = self._conn.execute("SELECT count(*) FROM cases" + where, args).fetchone()
        return int(n)

    def _sharing(
        self, tenant: str, entities: dict[str, str], exclude_case_id: str | None, limit: int
    ) -> Shared:
        pairs = [(ENTITY_KINDS[key], value) for key, value in entities.items()]
        # The wanted (kind, value) pairs as a table: each is then one primary-key lookup, where
        # an OR of pairs would only use the key's tenant prefix and scan the tenant.
        wanted = ", ".join(["(?, ?)"] * len(pairs))
        sql = (
            f"WITH wanted(kind, value) AS (VALUES {wanted}) "
            f"SELECT {_C_COLUMNS}, group_concat(e.kind, ',') FROM wanted w"
            " JOIN case_entities e ON e.tenant = ? AND e.kind = w.kind AND e.value = w.value"
            " JOIN cases c ON c.case_id = e.case_id WHERE c.case_id IS NOT ?"
            " GROUP BY c.case_id ORDER BY count(*) DESC, c.created_at DESC, c.case_id ASC LIMIT ?"
        )
        args: list[Any] = [*(x for p in pairs for x in p), tenant, exclude_case_id, limit]
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        order = list(ENTITY_KINDS.values())
        out: Shared = []
        for r in rows:
            kinds = set(r[19].split(","))
            out.append((_case(r[:19]), [k for k in order if k in kinds]))
        return out

    def _resolved_with_embeddings(self, page_size: int) -> Iterator[Case]:
        after = ""
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"{_SELECT} WHERE status IN ('fraud', 'legit') AND embedding IS NOT NULL"
                    " AND case_id > ? ORDER BY case_id LIMIT ?",
                    (after, page_size),
                ).fetchall()
            yield from (_case(r) for r in rows)
            if len(rows) < page_size:
                return
            after = rows[-1][0]
