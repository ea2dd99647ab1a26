"""A lean open-loop HTTP/1.1 load generator (keep-alive connections over raw asyncio streams).

Request ``i`` is due at ``start + i / rate`` whatever happened before; its latency counts from
that *scheduled* time, so queueing anywhere (waiting for a free connection, the socket, the
server's queue) shows in the numbers instead of slowing the arrivals down.

Why not httpx: on the 2-core benchmark host the generator shares the CPU with the server under
test. httpx's async client spent ≈ 6 ms of CPU per request (94 % of a core at 150 requests/s),
so the benchmark measured the generator as much as the server. Here every request's bytes are
built before the clock starts, a response is read as status line + ``Content-Length`` body
(what uvicorn sends for JSON answers), and bodies are parsed only after the run.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import time
from typing import Any

# one row per request: (scheduled offset s, latency ms from schedule, status (-1: no answer),
# rung of a 200 / error text, send lag ms, server-side ms from receipt to response built,
# the 200's per-stage server latencies in ms (empty for other answers))
Row = tuple[float, float, int, str, float, float, dict[str, float]]
# the same while running: the body bytes of an answer, or the client's error text
RawRow = tuple[float, float, int, bytes | str, float]


class ProtocolError(Exception):
    """The server's answer was not an HTTP/1.1 response this client can read."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request; returns (status, body)."""
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise ProtocolError(f"not an HTTP/1.1 status line: {head[:40]!r}")
        status = int(head[9:12])
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise ProtocolError("response without Content-Length")
        end = head.index(b"\r\n", at + 2)
        body = await self.reader.readexactly(int(head[at + 17 : end]))
        return status, body

    def close(self) -> None:
        self.writer.close()


def encode_request(host: str, path: str, api_key: str, body: dict[str, Any] | None) -> bytes:
    """The bytes of one request: POST with a JSON body, or GET when ``body`` is None."""
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def parse_row(row: RawRow) -> Row:
    """Read a raw row after the run: the rung and server-side latencies of a 200."""
    due, latency, status, raw, lag = row
    rung, server_ms, stages = "", math.nan, {}
    if isinstance(raw, str):  # the client's own error
        rung = raw
    elif status == 200:
        out = json.loads(raw)
        rung, stages = out["rung"], out["latency_ms"]
        server_ms = stages["http"]
    elif status != 429:
        rung = raw[:200].decode(errors="replace")  # the first few errors are printed
    return (due, latency, status, rung, lag, server_ms, stages)


async def run_open_loop(
    addr: tuple[str, int], requests: list[bytes], probe: bytes, rate: float, connections: int
) -> tuple[list[RawRow], float]:
    """Send ``requests[i]`` at ``start + i / rate`` over a pool of ``connections`` keep-alive
    connections (each first sends ``probe``); one raw row per request, and ``start`` as Unix
    time (to line offsets up with server-side logs)."""
    clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution
    # FIFO, so every connection stays in use: an idle one would hit the server's keep-alive
    # timeout and be closed under us
    pool: asyncio.Queue[Connection | None] = asyncio.Queue()
    for _ in range(connections):  # open the pool first: connection set-up is not measured
        conn = await Connection.open(*addr)
        await conn.request(probe)
        pool.put_nowait(conn)

    raw: list[RawRow] = [(0.0, 0.0, -1, "", 0.0)] * len(requests)

    async def one(i: int, due: float, lag: float) -> None:
        conn = await pool.get()
        status: int = -1
        out: bytes | str
        try:
            if conn is None:  # a connection broken earlier: reconnect (counted in latency)
                conn = await Connection.open(*addr)
            try:
                status, out = await conn.request(requests[i])
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                # closed by the server before it read this request (keep-alive expiry):
                # like any HTTP client, send it once more on a new connection
                conn.close()
                conn = await Connection.open(*addr)
                status, out = await conn.request(requests[i])
        except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
            out = type(exc).__name__
            if conn is not None:
                conn.close()
            conn = None
        pool.put_nowait(conn)
        raw[i] = (due - start, (clock() - due) * 1e3, status, out, lag * 1e3)

    start = clock() + 0.1
    start_unix = time.time() + (start - clock())
    tasks = []
    for i in range(len(requests)):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due, max(0.0, clock() - due))))
    await asyncio.gather(*tasks)
    while not pool.empty():
        c = pool.get_nowait()
        if c is not None:
            c.close()
    return raw, start_unix


def open_loop(
    url: str, api_key: str, bodies: list[dict[str, Any]], rate: float, connections: int
) -> dict[str, Any]:
    """Send ``bodies`` to ``POST /v1/score`` with :func:`run_open_loop` on a fresh event loop
    (uvloop when installed); returns one :data:`Row` per body, the generator's CPU seconds
    and wall time while sending (encoding and parsing happen outside that window), and the
    Unix time of offset 0."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    requests = [encode_request(host, "/v1/score", api_key, b) for b in bodies]
    probe = encode_request(host, "/healthz", api_key, None)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        runner = asyncio.Runner()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with runner:
        raw, start_unix = runner.run(
            run_open_loop((host, int(port)), requests, probe, rate, connections)
        )
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {
        "rows": [parse_row(r) for r in raw],
        "generator_cpu_s": cpu,
        "wall_s": wall,
        "started_unix": start_unix,
    }
