"""The FastAPI application factory. Routes are thin: they translate HTTP to the pipeline."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from feature_stream.event_io import RawRecord
from feature_stream.events import TOPICS, Payment
from services.api.metrics import ApiMetrics
from services.api.review import add_review_routes
from services.api.schemas import ErrorResponse, EventsResponse, ScoreRequest, ScoreResponse
from services.auth import AuthError, Principal, bearer
from services.container import Container
from services.heap import Refreezer
from services.idempotency import IdempotencyConflict
from services.policy import PolicyUnavailable
from services.scoring import GateDenied, Overloaded

log = logging.getLogger("riskgraph.api")


async def get_container(request: Request) -> Container:
    """The process's wired ports (set on ``app.state`` by :func:`create_app`).

    Dependencies here are ``async`` on purpose: they do no I/O, and a sync dependency would
    cost every request a hop through the thread pool."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def authenticate(
    request: Request,
    c: ContainerDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <API key or analyst token>`` or ``X-API-Key``.

    Sets ``request.state.auth_ms`` (milliseconds spent authenticating)."""
    t0 = time.perf_counter()
    try:
        return c.auth.authenticate(bearer(authorization, x_api_key))
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    finally:
        request.state.auth_ms = (time.perf_counter() - t0) * 1e3


PrincipalDep = Annotated[Principal, Depends(authenticate)]
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse}}


class BodyLimit:
    """ASGI middleware: stamps when a request arrived (``request.state.received_at``, where
    its deadline starts) and answers 413 to a body declared over ``max_bytes``.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    costs every request a task group and a streamed response, about a millisecond here."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["received_at"] = time.perf_counter()
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit():
                    if int(value) > self.max_bytes:
                        await self._too_big(scope, receive, send)
                        return
                    break
            else:  # no declared length (chunked): read up to the limit before the app does
                body = await self._read_at_most(receive)
                if body is _GONE:
                    return  # the client left mid-body: nothing to answer, nothing to run
                if body is None:
                    await self._too_big(scope, receive, send)
                    return
                await self.app(scope, _replay(body, receive), send)
                return
        await self.app(scope, receive, send)

    async def _too_big(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = JSONResponse({"detail": f"body over {self.max_bytes} bytes"}, status_code=413)
        await answer(scope, receive, send)

    async def _read_at_most(self, receive: Receive) -> bytes | None:
        """The whole body, ``None`` once it passes ``max_bytes``, or :data:`_GONE` if the
        client disconnected before sending all of it."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: a partial body
                return _GONE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


_GONE = b"\x00client disconnected"  # compared by identity, never a body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Any:
        return pending.pop() if pending else await receive()

    return replayed


class QuietPoints:
    """ASGI middleware: counts the HTTP requests in progress and, when the last one has
    finished, gives the collector its quiet point (:class:`services.heap.Refreezer`) on the
    next turn of the event loop, after that request's task is done: nothing transient of a
    request is alive then, so the freeze keeps no garbage."""

    def __init__(self, app: ASGIApp, refreezer: Refreezer) -> None:
        self.app = app
        self.refreezer = refreezer
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            if self.active == 0:
                asyncio.get_running_loop().call_soon(self._quiet)

    def _quiet(self) -> None:
        if self.active == 0:  # none has started since
            self.refreezer.quiet_point()


def create_app(container: Container) -> FastAPI:
    """An app over a built :class:`~services.container.Container`."""
    app = FastAPI(
        title="riskgraph scoring API",
        version="0.1.0",
        description="Real-time fraud scoring with a GNN over a streaming graph of payments, "
        "devices and social links. Every endpoint but /healthz (and these docs) needs a "
        "credential.",
    )
    metrics = ApiMetrics()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad value back, and a NaN or an Infinity (which
        # JSON bodies may carry) cannot be encoded in the answer: that was a 500.
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        route = getattr(request.scope.get("route"), "path", "unmatched")
        for e in detail:
            metrics.invalid.labels(route, str(e["loc"][-1]) if e["loc"] else "").inc()
        return JSONResponse({"detail": detail}, status_code=422)

    app.state.container = container
    app.state.metrics = metrics
    container.register_metrics(metrics.registry)  # the stores' own (service mode)
    settings = container.settings
    container.scoring.on_batch = metrics.batch_size.observe

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(QuietPoints, refreezer=container.refreezer)
    container.refreezer.on_pause = lambda s: metrics.heap_refreeze_ms.observe(s * 1e3)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        responses={
            **AUTH_ERRORS,
            503: {"model": ErrorResponse, "description": "Not ready: the reasons are listed"},
        },
    )
    def readyz(c: ContainerDep, _: PrincipalDep) -> dict[str, Any]:
        reasons = c.not_ready()
        if reasons:
            raise HTTPException(503, detail="not ready: " + "; ".join(reasons))
        return {
            "status": "ready",
            "model_version": c.bundle.version,
            "policy_revision": c.policy.revision,
            "graph": c.graph.stats(),
        }

    @app.get("/metrics", tags=["ops"], responses=AUTH_ERRORS)
    def prometheus(_: PrincipalDep) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        tags=["scoring"],
        responses={
            **AUTH_ERRORS,
            403: {"model": ErrorResponse},
            409: {"model": ErrorResponse},
            422: {"description": "Invalid body: the field at fault is in detail[].loc"},
            429: {
                "model": ErrorResponse,
                "description": "Overloaded: shed before any work; retry after Retry-After s",
            },
            503: {"model": ErrorResponse},
        },
    )
    async def score(
        body: ScoreRequest,
        request: Request,
        c: ContainerDep,
        principal: PrincipalDep,
        idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
    ) -> Any:
        """Score one payment within its deadline (``deadline_ms``, default and cap from the
        settings, counted from when the server received the request). ``rung`` in the answer
        says which rung of the degradation ladder served it. A retry with the same
        ``Idempotency-Key`` (default: the transaction id) returns the first decision and
        ingests nothing twice."""
        t0 = getattr(request.state, "received_at", time.perf_counter())
        payload = body.model_dump(mode="json")
        event = {k: v for k, v in payload.items() if k not in ("deadline_ms", "transaction_id")}
        event["event_id"] = body.transaction_id
        event["type"] = "payment"
        event["event_time"] = (body.event_time or datetime.now(UTC)).isoformat()
        try:
            payment = Payment.model_validate(event)
        except ValidationError as err:
            first = err.errors()[0]
            metrics.invalid.labels("/v1/score", str(first["loc"][0]) if first["loc"] else "").inc()
            return JSONResponse(
                {"detail": [{"loc": ["body", *map(str, first["loc"])], "msg": first["msg"]}]},
                status_code=422,
            )
        problem = c.ingestor.time_problem(payment)
        if problem is not None:
            metrics.invalid.labels("/v1/score", "event_time").inc()
            return JSONResponse(
                {"detail": [{"loc": ["body", "event_time"], "msg": problem}]}, status_code=422
            )
        deadline = min(body.deadline_ms or settings.default_deadline_ms, settings.max_deadline_ms)
        try:
            future = c.scoring.submit(payment, principal, deadline, payload, idempotency_key, t0)
            out = await asyncio.wrap_future(future)
        except Overloaded as exc:
            metrics.requests.labels("shed").inc()
            metrics.shed.inc()
            return JSONResponse(
                {"detail": f"overloaded, not scored: {exc}"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))},
            )
        except IdempotencyConflict as exc:
            metrics.requests.labels("conflict").inc()
            return JSONResponse({"detail": str(exc)}, status_code=409)
        except GateDenied as exc:
            metrics.requests.labels("denied").inc()
            return JSONResponse({"detail": f"denied by gate policy: {exc}"}, status_code=403)
        except PolicyUnavailable as exc:
            metrics.requests.labels("failed_closed").inc()
            c.scoring.audit_failure(body.transaction_id, principal, payload, str(exc))
            log.error("policy unavailable, failing closed: %s", exc)
            return JSONResponse(
                {"detail": f"policy unavailable, not scored: {exc}"}, status_code=503
            )
        latency = dict(out.latency_ms)
        if out.replayed:
            metrics.requests.labels("replayed").inc()
        else:
            metrics.requests.labels("scored").inc()
            metrics.served.labels(out.rung, out.served_by, out.action).inc()
            for reason in out.degraded:
                metrics.degraded.labels(reason).inc()
            latency["auth"] = getattr(request.state, "auth_ms", 0.0)
            now = time.perf_counter()
            latency["handoff"] = (now - out.answered_at) * 1e3
            latency["http"] = (now - t0) * 1e3
            for stage, ms in latency.items():
                metrics.stage_ms.labels(stage).observe(ms)
        return ScoreResponse(
            transaction_id=body.transaction_id,
            score=out.score,
            action=out.action,
            reasons=out.reasons,
            model_version=out.model_version,
            served_by=out.served_by,
            rung=out.rung,
            policy_revision=out.policy_revision,
            latency_ms={k: round(v, 3) for k, v in latency.items()},
            receipt=out.receipt,
            shadow_scores=out.shadow_scores,
            shadow_rules=out.shadow_rules,
            degraded=out.degraded,
            similar_cases=out.similar_cases,
        )

    @app.post("/v1/events", response_model=EventsResponse, tags=["ingest"], responses=AUTH_ERRORS)
    def events(records: list[Any], c: ContainerDep, _: PrincipalDep) -> EventsResponse:
        """Ingest raw events (device, social, label, payment); invalid ones are dead-lettered
        and listed back with the field at fault."""
        accepted = duplicates = 0
        rejected: list[dict[str, Any]] = []
        with c.scoring.lock:
            for i, raw in enumerate(records):
                kind = raw.get("type") if isinstance(raw, dict) else None
                topic = TOPICS.get(kind, "") if isinstance(kind, str) else ""
                # An invalid record is dead-lettered with its reason and listed back.
                ev, letter = c.ingestor.parse_or_reject(RawRecord(topic, raw, i))
                if ev is None:
                    assert letter is not None
                    rejected.append(
                        {"index": i, "field": letter["field"], "reason": letter["reason"]}
                    )
                    continue
                if c.ingestor.apply(ev):
                    accepted += 1
                else:
                    duplicates += 1
        metrics.events.labels("accepted").inc(accepted)
        metrics.events.labels("duplicate").inc(duplicates)
        metrics.events.labels("dead_letter").inc(len(rejected))
        return EventsResponse(accepted=accepted, duplicates=duplicates, rejected=rejected)

    add_review_routes(app, Depends(authenticate), container.review)
    return app
