"""Replay a recorded stream through the scoring API over HTTP, as payment systems would call it.

Payments go to ``POST /v1/score`` with up to ``concurrency`` of them in flight, so the server's
micro-batcher sees real concurrency. Two payments that share an account, card, device or IP
are never in flight together: a payment is sent only once every earlier payment of its own
entities has been answered (and so fused into the graph). Per-entity order is therefore exact,
and a burst on one card is scored one payment at a time, as it would be online. Payments of
unrelated entities may overlap; the server's event-time filter keeps every input strictly
before each payment's own time either way, so overlap can only hide a few concurrent
neighbours, never leak the future.

Every other event (device, social, label, and records that fail validation, which the API
dead-letters) goes in event-time order, in batches, to ``POST /v1/events``; a payment is sent
only after every event before it has been accepted.

The client is meant to run in its own process (:func:`replay_in_subprocess`): on a 2-core
machine an HTTP client sharing the server's interpreter would take its CPU and its GIL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from feature_stream.event_io import FileEventSource
from feature_stream.events import InvalidEvent, Payment, parse_event


class ReplayError(RuntimeError):
    """The API refused a request the replay needs answered (anything but a 200)."""


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay and how.

    Args:
        base_url: the API, e.g. ``http://127.0.0.1:8000``.
        api_key: a payment client's key (sent as a bearer token).
        stream: a directory written by ``riskgraph generate`` (or any file event source).
        since: replay events whose event time (epoch seconds) is at or after this.
        concurrency: most payments in flight at once.
        event_batch: most non-payment events per ``/v1/events`` call.
        max_payments: stop after this many payments (``None``: all of them).
        max_retries: times a payment shed with 429 is sent again after its ``Retry-After``.
        progress: show a progress bar.
    """

    base_url: str
    api_key: str
    stream: Path
    since: float
    concurrency: int = 8
    event_batch: int = 256
    max_payments: int | None = None
    max_retries: int = 5
    progress: bool = True


def entity_keys(p: Payment) -> tuple[str, ...]:
    """The entities whose order a replay keeps: account, card, device and IP."""
    keys = [f"a:{p.account_id}", f"c:{p.card_id}"]
    if p.device_id is not None:
        keys.append(f"d:{p.device_id}")
    if p.ip is not None:
        keys.append(f"i:{p.ip}")
    return tuple(keys)


def score_body(raw: dict[str, Any]) -> dict[str, Any]:
    """A ``/v1/score`` body from a recorded payment event."""
    skip = ("event_id", "type", "schema_version")
    return {"transaction_id": raw["event_id"], **{k: v for k, v in raw.items() if k not in skip}}


def _records(cfg: ReplayConfig) -> Iterator[tuple[Payment | None, Any]]:
    """``(payment, raw)`` for payments, ``(None, raw)`` for every other record to send."""
    for rec in FileEventSource(cfg.stream):
        raw = rec.value
        try:
            ev = parse_event(raw)
        except InvalidEvent:
            yield None, raw if isinstance(raw, dict) else {"raw": raw}
            continue
        if ev.event_time.timestamp() < cfg.since:
            continue
        yield (ev if isinstance(ev, Payment) else None), raw


async def _replay(cfg: ReplayConfig) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    pending: list[Any] = []
    busy: dict[str, asyncio.Event] = {}  # entity key → set when its in-flight payment is done
    slots = asyncio.Semaphore(cfg.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    limits = httpx.Limits(
        max_connections=cfg.concurrency + 1, max_keepalive_connections=cfg.concurrency + 1
    )
    headers = {"Authorization": f"Bearer {cfg.api_key}"}
    bar = tqdm(desc="score over HTTP", unit="tx", disable=not cfg.progress, total=cfg.max_payments)

    async with httpx.AsyncClient(
        base_url=cfg.base_url, headers=headers, limits=limits, timeout=60.0
    ) as client:

        async def flush() -> None:
            if pending:
                batch = list(pending)
                pending.clear()
                r = await client.post("/v1/events", json=batch)
                if r.status_code != 200:
                    raise ReplayError(f"/v1/events answered {r.status_code}: {r.text[:500]}")

        async def score(body: dict[str, Any], keys: tuple[str, ...], done: asyncio.Event) -> None:
            try:
                t0 = time.perf_counter()
                r = await client.post("/v1/score", json=body)
                retries = 0
                while r.status_code == 429 and retries < cfg.max_retries:
                    # Shed before any work (nothing ingested): wait as told, send it again.
                    await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
                    r = await client.post("/v1/score", json=body)
                    retries += 1
                t1 = time.perf_counter()
                if r.status_code != 200:
                    raise ReplayError(f"/v1/score answered {r.status_code}: {r.text[:500]}")
                out = r.json()
                out["rtt_ms"] = (t1 - t0) * 1e3
                out["client_span_s"] = (t0, t1)
                out["client_retries"] = retries
                results.append(out)
                bar.update(1)
            except BaseException as exc:
                failures.append(exc)
            finally:
                for k in keys:
                    if busy.get(k) is done:
                        del busy[k]
                done.set()
                slots.release()

        sent = 0
        for payment, raw in _records(cfg):
            if failures:
                break
            if payment is None:
                pending.append(raw)
                if len(pending) >= cfg.event_batch:
                    await flush()
                continue
            await flush()
            keys = entity_keys(payment)
            for k in keys:  # only this loop marks keys busy, so one pass over them suffices
                ev = busy.get(k)
                if ev is not None:
                    await ev.wait()
            await slots.acquire()
            done = asyncio.Event()
            for k in keys:
                busy[k] = done
            task = asyncio.create_task(score(score_body(raw), keys, done))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            if cfg.max_payments is not None and sent >= cfg.max_payments:
                break
        await asyncio.gather(*tasks)
        if not failures:
            await flush()
    bar.close()
    if failures:
        raise failures[0]
    return results


def replay_over_http(cfg: ReplayConfig) -> list[dict[str, Any]]:
    """Replay ``cfg.stream`` from ``cfg.since``; returns every ``/v1/score`` answer, in the
    order the answers arrived, with the client's round trip in ``rtt_ms`` and the
    ``(sent, answered)`` ``time.perf_counter()`` seconds of this process in ``client_span_s``.

    Raises :class:`ReplayError` on the first non-200 answer (after the requests in flight
    finish)."""
    return asyncio.run(_replay(cfg))


def replay_in_subprocess(cfg: ReplayConfig) -> list[dict[str, Any]]:
    """:func:`replay_over_http` in a fresh (spawned) process, for a server in this one."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(replay_over_http, cfg).result()
