"""The audit port and its hash-chained, append-only file implementation.

Each line is a JSON record with ``seq``, ``prev`` (the previous record's hash) and ``hash`` =
SHA-256 over ``prev`` and the canonical JSON of the record body. Editing, removing or
reordering records breaks the chain at the first bad one, which :func:`verify_audit_log` names.

A chain alone cannot show that records were cut from its *end* (a shorter chain is still a
chain), so every durable group commit also rewrites an anchor file ``<log>.head`` holding the
last durable ``seq`` and ``hash``; verification fails if the log stops short of the anchor or
disagrees with it. Receipts returned to callers are a second, external anchor.

Writes are grouped: records are flushed to the OS at once, and fsync'd (with the anchor) by a
background thread once ``sync_every`` records wait or ``max_delay_s`` after the first of them,
and on :meth:`AuditSink.flush` / close; an append never waits for an fsync.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

GENESIS = "0" * 64


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain_hash(prev: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + _canonical(body)).hexdigest()


def chained_line(seq: int, prev: str, body: dict[str, Any]) -> tuple[bytes, str]:
    """The log line for ``body`` at ``seq`` after ``prev``, and its hash.

    The line is the canonical JSON that was hashed with ``"hash"`` added as its last member,
    so the record is encoded once; parsing the line and dropping ``hash`` gives back exactly
    what was hashed.
    """
    canonical = _canonical({**body, "seq": seq, "prev": prev})
    h = hashlib.sha256(prev.encode() + canonical).hexdigest()
    return canonical[:-1] + b',"hash":"' + h.encode() + b'"}\n', h


@dataclass(frozen=True)
class Receipt:
    """What a caller keeps to check its decision against the log later."""

    seq: int
    hash: str


class AuditSink(abc.ABC):
    """Port: append one record per decision or analyst action."""

    def append(self, body: dict[str, Any]) -> Receipt:
        if not isinstance(body, dict) or not body:
            raise ValueError("an audit record must be a non-empty mapping")
        return self._append(body)

    @abc.abstractmethod
    def _append(self, body: dict[str, Any]) -> Receipt: ...

    def flush(self) -> None:  # noqa: B027 - in-memory sinks have nothing to flush
        """Make every appended record durable."""

    def close(self) -> None:
        self.flush()


class InMemoryAuditSink(AuditSink):
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._prev = GENESIS
        self._lock = threading.Lock()

    def _append(self, body: dict[str, Any]) -> Receipt:
        with self._lock:
            seq = len(self.records)
            full = {**body, "seq": seq, "prev": self._prev}
            h = chain_hash(self._prev, full)
            self.records.append({**full, "hash": h})
            self._prev = h
            return Receipt(seq, h)


class FileAuditSink(AuditSink):
    """Append-only hash-chained JSON lines; resumes the chain of an existing file."""

    def __init__(
        self,
        path: Path,
        sync_every: int = 64,
        mirror: Callable[[bytes], None] | None = None,
        max_delay_s: float | None = 0.05,
    ) -> None:
        """A group commit happens once ``sync_every`` records wait, and at the latest about
        ``max_delay_s`` after the first record not yet synced, so a quiet hour does not leave
        records waiting for company; a background thread makes it. With ``max_delay_s=None``
        there is no thread, and the append that completes a group commits it.
        ``mirror`` receives every line (chain order, under the append lock) once it is
        written; the Kafka audit topic hangs here in service mode."""
        self.path = Path(path)
        self._mirror = mirror
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sync_every = sync_every
        self._seq, self._prev = 0, GENESIS
        if self.path.exists() and self.path.stat().st_size:
            result = verify_audit_log(self.path)
            if not result.ok:
                raise ValueError(f"refusing to extend a broken audit log: {result.error}")
            self._seq, self._prev = result.records, result.last_hash
        self._fh: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 - long-lived
        self._pending = 0
        self._lock = threading.Lock()  # the chain: sequence, previous hash, file position
        # One group commit at a time, outside ``_lock``: an fsync takes a millisecond or two
        # (far more on a busy disk), and appends, which run on the scoring path, go on
        # meanwhile. Held until the anchor is written, so a flush() that gets it finds every
        # earlier commit done; close() takes it before closing the file.
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._due = threading.Event()  # sync_every records wait
        self._thread: threading.Thread | None = None
        if max_delay_s is not None:
            self._thread = threading.Thread(
                target=self._sync_late, args=(max_delay_s,), name="audit-sync", daemon=True
            )
            self._thread.start()

    def _sync_late(self, every_s: float) -> None:
        while not self._stop.is_set():
            self._due.wait(every_s)
            self._due.clear()
            if not self._stop.is_set():
                self._sync()

    def _append(self, body: dict[str, Any]) -> Receipt:
        with self._lock:
            line, h = chained_line(self._seq, self._prev, body)
            self._fh.write(line)
            self._fh.flush()  # in the OS at once: a crash of this process loses nothing
            receipt = Receipt(self._seq, h)
            self._seq += 1
            self._prev = h
            self._pending += 1
            due = self._pending >= self.sync_every
            if self._mirror is not None:
                # After the chain moved on: the line is in the log whatever the mirror does,
                # and a failing mirror (the caller then fails closed) cannot make the next
                # record reuse this one's sequence number.
                self._mirror(line)
        if due:
            if self._thread is not None:
                self._due.set()  # the commit thread syncs; this caller does not wait for it
            else:
                self._sync()
        return receipt

    def _sync(self) -> None:
        """fsync what is written so far, then atomically replace the anchor with its last
        record; appends go on meanwhile (they are not in this commit)."""
        with self._sync_lock:
            with self._lock:
                if self._fh.closed or not self._pending:
                    return  # nothing since the last commit, whose anchor is written
                self._fh.flush()
                fd, seq, prev = self._fh.fileno(), self._seq, self._prev
                self._pending = 0
            os.fsync(fd)
            write_head(self.path, seq - 1, prev)

    def flush(self) -> None:
        self._sync()

    def close(self) -> None:
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sync()
        with self._sync_lock, self._lock:
            self._fh.close()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    last_hash: str
    first_bad: int | None = None
    error: str = ""


def head_path(path: Path) -> Path:
    return Path(str(path) + ".head")


def write_head(path: Path, seq: int, hash_: str) -> None:
    tmp = Path(str(path) + ".head.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"seq": seq, "hash": hash_}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, head_path(path))


def verify_audit_log(path: Path, check_head: bool = True) -> VerifyResult:
    """Walk the chain and check it reaches its anchor; report the first bad record (0-based).

    A log cut short of its anchor reports the first missing record as ``first_bad``.
    """
    result = _verify_chain(path)
    hp = head_path(path)
    if not result.ok or not check_head or not hp.exists():
        return result
    head = json.loads(hp.read_text())
    if result.records <= head["seq"]:
        return VerifyResult(
            False,
            result.records,
            result.last_hash,
            result.records,
            f"record {result.records}: missing — the log ends at "
            f"{result.records - 1} but its anchor says {head['seq']} "
            "(tail truncated)",
        )
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == head["seq"]:
                if json.loads(line).get("hash") != head["hash"]:
                    return VerifyResult(
                        False,
                        result.records,
                        result.last_hash,
                        i,
                        f"record {i}: hash differs from the anchor",
                    )
                break
    return result


def _verify_chain(path: Path) -> VerifyResult:
    prev, n = GENESIS, 0
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                return VerifyResult(False, n, prev, n, f"record {n}: not valid JSON")
            h = rec.pop("hash", None)
            if rec.get("seq") != n:
                return VerifyResult(False, n, prev, n, f"record {n}: seq {rec.get('seq')} != {n}")
            if rec.get("prev") != prev:
                return VerifyResult(False, n, prev, n, f"record {n}: chain broken (prev hash)")
            if chain_hash(prev, rec) != h:
                return VerifyResult(False, n, prev, n, f"record {n}: content hash mismatch")
            prev = h
        else:
            n = n + 1 if prev != GENESIS else 0
    return VerifyResult(True, n, prev)
