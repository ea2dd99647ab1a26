"""The hash-chained audit log: every kind of tampering is caught at the right record."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.audit import (
    GENESIS,
    AuditSink,
    FileAuditSink,
    InMemoryAuditSink,
    Receipt,
    chain_hash,
    head_path,
    verify_audit_log,
)

N = 6


def bodies(n: int = N, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"kind": "inference", "request_id": f"tx-{i}", "caller": "alice", "score": i / 10}
        for i in range(start, start + n)
    ]


class AuditSinkContract:
    """What every audit sink does: a gap-free sequence, each hash chained on the previous."""

    def make_sink(self, path: Path) -> AuditSink:
        raise NotImplementedError

    def records(self, sink: AuditSink, path: Path) -> list[dict[str, Any]]:
        raise NotImplementedError

    @pytest.fixture
    def sink(self, tmp_path: Path) -> Iterator[AuditSink]:
        s = self.make_sink(tmp_path / "audit.log")
        yield s
        s.close()

    def test_receipts_chain_from_genesis(self, sink: AuditSink, tmp_path: Path) -> None:
        receipts = [sink.append(b) for b in bodies()]
        sink.flush()
        assert [r.seq for r in receipts] == list(range(N))
        prev = GENESIS
        stored = self.records(sink, tmp_path / "audit.log")
        for receipt, body, rec in zip(receipts, bodies(), stored, strict=True):
            expected = chain_hash(prev, {"seq": receipt.seq, "prev": prev, **body})
            assert receipt == Receipt(receipt.seq, expected)
            assert rec == {"seq": receipt.seq, "prev": prev, **body, "hash": expected}
            prev = expected

    @pytest.mark.parametrize("bad", [{}, [("kind", "x")], None])
    def test_rejects_empty_or_non_mapping_bodies(self, sink: AuditSink, bad: Any) -> None:
        with pytest.raises(ValueError):
            sink.append(bad)


class TestInMemoryAuditSink(AuditSinkContract):
    def make_sink(self, path: Path) -> AuditSink:
        return InMemoryAuditSink()

    def records(self, sink: AuditSink, path: Path) -> list[dict[str, Any]]:
        assert isinstance(sink, InMemoryAuditSink)
        return sink.records


class TestFileAuditSink(AuditSinkContract):
    def make_sink(self, path: Path) -> AuditSink:
        return FileAuditSink(path, sync_every=4)

    def records(self, sink: AuditSink, path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text().splitlines()]


def test_in_memory_records_verify_as_a_log(tmp_path: Path) -> None:
    sink = InMemoryAuditSink()
    for b in bodies():
        sink.append(b)
    path = tmp_path / "copy.log"
    path.write_text("".join(json.dumps(r) + "\n" for r in sink.records))
    assert verify_audit_log(path).ok


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, list[Receipt]]:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, sync_every=4)
    receipts = [sink.append(b) for b in bodies()]
    sink.close()
    return path, receipts


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_an_untouched_log_verifies(log: tuple[Path, list[Receipt]]) -> None:
    path, receipts = log
    result = verify_audit_log(path)
    assert (result.ok, result.records, result.last_hash, result.first_bad) == (
        True,
        N,
        receipts[-1].hash,
        None,
    )


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    (tmp_path / "empty.log").write_text("")
    result = verify_audit_log(tmp_path / "empty.log")
    assert (result.ok, result.records, result.last_hash) == (True, 0, GENESIS)


def test_a_flipped_byte_is_caught_at_its_record(log: tuple[Path, list[Receipt]]) -> None:
    path, _ = log
    ls = lines(path)
    i = ls[2].index('"alice"') + 1
    ls[2] = ls[2][:i] + chr(ord(ls[2][i]) ^ 1) + ls[2][i + 1 :]  # "alice" → "`lice"
    path.write_text("".join(ls))
    result = verify_audit_log(path)
    assert (result.ok, result.first_bad, result.records) == (False, 2, 2)
    assert "hash" in result.error


def test_a_rehashed_edit_breaks_the_next_link(log: tuple[Path, list[Receipt]]) -> None:
    path, _ = log
    ls = lines(path)
    rec = json.loads(ls[2])
    rec.pop("hash")
    rec["score"] = 0.0
    ls[2] = json.dumps({**rec, "hash": chain_hash(rec["prev"], rec)}) + "\n"
    path.write_text("".join(ls))
    result = verify_audit_log(path)
    assert (result.ok, result.first_bad) == (False, 3)
    assert "prev" in result.error


def test_a_deleted_record_is_caught(log: tuple[Path, list[Receipt]]) -> None:
    path, _ = log
    ls = lines(path)
    del ls[3]
    path.write_text("".join(ls))
    assert (verify_audit_log(path).ok, verify_audit_log(path).first_bad) == (False, 3)


def test_swapped_records_are_caught_at_the_first(log: tuple[Path, list[Receipt]]) -> None:
    path, _ = log
    ls = lines(path)
    ls[1], ls[4] = ls[4], ls[1]
    path.write_text("".join(ls))
    assert (verify_audit_log(path).ok, verify_audit_log(path).first_bad) == (False, 1)


def test_a_torn_last_record_is_caught(log: tuple[Path, list[Receipt]]) -> None:
    path, _ = log
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    result = verify_audit_log(path)
    assert (result.ok, result.first_bad, result.records) == (False, N - 1, N - 1)


def test_dropped_tail_records_are_caught_by_the_anchor(log: tuple[Path, list[Receipt]]) -> None:
    """A log cut at a record boundary is still a valid chain; the anchor written at each durable
    commit shows that records are missing and names the first one."""
    path, _ = log
    path.write_text("".join(lines(path)[:-2]))
    result = verify_audit_log(path)
    assert (result.ok, result.first_bad) == (False, N - 2)
    assert "truncated" in result.error


def test_without_the_anchor_a_cut_tail_shows_against_the_last_receipt(
    log: tuple[Path, list[Receipt]],
) -> None:
    """If the anchor is deleted too, the receipt held by the caller still reveals the cut."""
    path, receipts = log
    path.write_text("".join(lines(path)[:-2]))
    Path(str(path) + ".head").unlink()
    result = verify_audit_log(path)
    assert result.ok
    assert result.records == N - 2
    assert result.last_hash != receipts[-1].hash


def test_reopening_resumes_the_chain(log: tuple[Path, list[Receipt]]) -> None:
    path, receipts = log
    sink = FileAuditSink(path)
    more = [sink.append(b) for b in bodies(3, start=N)]
    sink.close()
    assert [r.seq for r in more] == [N, N + 1, N + 2]
    result = verify_audit_log(path)
    assert (result.ok, result.records, result.last_hash) == (True, N + 3, more[-1].hash)
    assert json.loads(lines(path)[N])["prev"] == receipts[-1].hash


def test_refuses_to_extend_a_broken_log(log: tuple[Path, list[Receipt]]) -> None:
    path, _ = log
    ls = lines(path)
    del ls[0]
    path.write_text("".join(ls))
    with pytest.raises(ValueError, match="broken audit log"):
        FileAuditSink(path)
    assert lines(path) == ls  # nothing appended


def test_a_quiet_log_is_synced_within_its_delay(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, sync_every=1000, max_delay_s=0.05)
    receipts = [sink.append(b) for b in bodies()[:3]]
    deadline = time.monotonic() + 5
    while not head_path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    # far fewer than sync_every records, yet the anchor (written after the fsync) is there
    assert json.loads(head_path(path).read_text()) == {"seq": 2, "hash": receipts[-1].hash}
    sink.close()


def test_appends_do_not_wait_for_a_slow_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    syncs: list[float] = []

    def slow_fsync(fd: int) -> None:  # a busy disk: each fsync takes 150 ms
        time.sleep(0.15)
        real_fsync(fd)
        syncs.append(time.monotonic())

    monkeypatch.setattr(os, "fsync", slow_fsync)
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, sync_every=2, max_delay_s=0.05)
    waits, receipts = [], []
    for b in bodies():
        t0 = time.monotonic()
        receipts.append(sink.append(b))
        waits.append(time.monotonic() - t0)
    assert max(waits) < 0.05  # no append paid for an fsync
    sink.flush()  # durable on return: every record, anchor included
    assert syncs
    assert json.loads(head_path(path).read_text()) == {"seq": N - 1, "hash": receipts[-1].hash}
    sink.close()
    assert verify_audit_log(path).ok


def test_without_the_thread_the_append_that_fills_a_group_commits_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, sync_every=3, max_delay_s=None)
    receipts = [sink.append(b) for b in bodies()[:4]]
    assert json.loads(head_path(path).read_text()) == {"seq": 2, "hash": receipts[2].hash}
    sink.close()
    assert json.loads(head_path(path).read_text()) == {"seq": 3, "hash": receipts[3].hash}


def test_a_body_cannot_override_seq_or_prev(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path)
    sink.append({"kind": "x"})
    receipt = sink.append({"kind": "y", "seq": 0, "prev": GENESIS})
    sink.close()
    assert receipt.seq == 1
    assert verify_audit_log(path).ok
