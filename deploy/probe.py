"""Readiness probes for deploy/*.sh. Standard library only; uses the neo4j driver when importable.

    probe.py kafka PORT [HOST]      Kafka Metadata request; ready when >= 1 live broker is listed
    probe.py neo4j PORT [HOST]      neo4j driver: RETURN 1 (fallback: Bolt handshake + the
                                    launcher's ready line in $RISKGRAPH_PROBE_READY_LOG)
    probe.py http URL               HTTP GET answers 200

Exit status 0 = ready, 1 = not ready (reason on stderr).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import urllib.request

TIMEOUT = 3.0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


def kafka(port: int, host: str) -> str:
    # Metadata v1 (supported by every broker since 0.10), empty topic list: brokers + controller.
    client_id = b"riskgraph-deploy-probe"
    body = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        resp = _recv_exact(s, size)
    corr, n_brokers = struct.unpack_from(">ii", resp, 0)
    if corr != 7:
        raise RuntimeError(f"unexpected correlation id {corr}")
    off = 8
    brokers = []
    for _ in range(n_brokers):
        node_id, hlen = struct.unpack_from(">ih", resp, off)
        off += 6
        bhost = resp[off : off + hlen].decode()
        off += hlen
        (bport, rlen) = struct.unpack_from(">ih", resp, off)
        off += 6 + max(rlen, 0)
        brokers.append(f"{node_id}@{bhost}:{bport}")
    (controller,) = struct.unpack_from(">i", resp, off)
    if not brokers:
        raise RuntimeError("metadata lists no live broker yet")
    return f"brokers={','.join(brokers)} controller={controller}"


def neo4j(port: int, host: str) -> str:
    try:
        from neo4j import GraphDatabase

        have_driver = True
    except ImportError:
        have_driver = False
    if have_driver:
        uri = f"bolt://{host}:{port}"
        # One auto-commit query, no driver retries: a probe must answer within seconds.
        with (
            GraphDatabase.driver(
                uri, auth=None, connection_timeout=TIMEOUT, max_transaction_retry_time=0
            ) as drv,
            drv.session() as session,
        ):
            record = session.run("RETURN 1 AS ok").single()
            if record is None or record["ok"] != 1:
                raise RuntimeError("RETURN 1 did not return 1")
        return "cypher RETURN 1 ok"
    # No driver: Bolt handshake (magic + proposals 5.4..5.0 and 4.4) proves the connector is up,
    # and the launcher's log line proves the database answered RETURN 1 in-process.
    ready_log = os.environ.get("RISKGRAPH_PROBE_READY_LOG")
    if ready_log:
        try:
            with open(ready_log, encoding="utf-8", errors="replace") as f:
                if not any(line.startswith("riskgraph-neo4j: ready ") for line in f):
                    raise RuntimeError(f"no ready line in {ready_log} yet")
        except FileNotFoundError as exc:
            raise RuntimeError(f"{ready_log} missing") from exc
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(b"\x60\x60\xb0\x17" + struct.pack(">IIII", 0x00040405, 0x00000404, 0, 0))
        agreed = _recv_exact(s, 4)
    if agreed == b"\x00\x00\x00\x00":
        raise RuntimeError("server agreed on no Bolt version")
    return f"bolt handshake ok (version bytes {agreed.hex()}; neo4j driver not installed)"


def http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}")
        return f"HTTP {r.status}"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    kind, arg = argv[0], argv[1]
    host = argv[2] if len(argv) > 2 else "127.0.0.1"
    try:
        if kind == "kafka":
            msg = kafka(int(arg), host)
        elif kind == "neo4j":
            msg = neo4j(int(arg), host)
        elif kind == "http":
            msg = http(arg)
        else:
            print(f"unknown probe {kind!r}", file=sys.stderr)
            return 2
    except Exception as exc:  # any failure means "not ready yet"
        print(f"{kind}: not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{kind}: {msg}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
