"""Analyst endpoints (``/v1/me``, ``/v1/cases``, ``/v1/rings``) and the review UI at ``/review/``.

Routes are thin: :class:`~services.cases.review.ReviewService` authorises every action with the
review policy and audits it. Handlers are plain ``def``: they touch SQLite and may wait for the
inference worker's lock, so they run in the thread pool, never on the event loop.
"""

# No ``from __future__ import annotations``: FastAPI must see the route signatures' real
# types, and ``Who`` below is local to :func:`add_review_routes`.
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from services.api.schemas import ErrorResponse, VerdictRequest
from services.auth import Principal
from services.cases.review import Forbidden, ReviewService
from services.policy import PolicyUnavailable

UI_DIR = Path(__file__).resolve().parent.parent / "review_ui"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"description": 'The review policy refused: {"detail": {"reasons": [...]}}'},
    404: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}
T = TypeVar("T")


def _answer(call: Callable[[], T]) -> T | JSONResponse:
    """Run a review action, turning refusals and unknown ids into their HTTP answers."""
    try:
        return call()
    except Forbidden as exc:
        return JSONResponse({"detail": {"reasons": exc.reasons}}, status_code=403)
    except KeyError as exc:
        return JSONResponse({"detail": f"not found: {exc.args[0]}"}, status_code=404)
    except PolicyUnavailable as exc:  # fail closed: no policy answer, no action
        return JSONResponse({"detail": f"review policy unavailable: {exc}"}, status_code=503)


def add_review_routes(app: FastAPI, principal_dep: Any, review: ReviewService) -> None:
    """Mount the analyst API and the UI on ``app``; ``principal_dep`` authenticates."""
    router = APIRouter(prefix="/v1", tags=["review"], responses=ERRORS)
    Who = Annotated[Principal, principal_dep]

    @router.get("/me")
    def me(who: Who) -> dict[str, Any]:
        """Who the credential says the caller is."""
        return {"user": who.id, "tenant": who.tenant, "roles": list(who.roles), "kind": who.kind}

    @router.get("/cases")
    def cases(
        who: Who,
        status: Literal["open", "escalated", "fraud", "legit", "all"] = "open",
        reason: Annotated[str | None, Query(max_length=64)] = None,
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        sort: Literal["score", "amount", "age"] = "score",
        descending: bool = True,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        """The review queue of the caller's tenant: one page, filtered and sorted."""
        return _answer(
            lambda: review.queue(
                who,
                status=None if status == "all" else status,
                reason=reason or None,
                min_score=min_score,
                sort=sort,
                descending=descending,
                limit=limit,
                offset=offset,
            )
        )

    @router.get("/cases/{case_id}")
    def case(case_id: str, who: Who) -> Any:
        """A case with its evidence pack, the scored subgraph and the timeline."""
        return _answer(lambda: review.detail(who, case_id))

    @router.post("/cases/{case_id}/verdict")
    def verdict(case_id: str, body: VerdictRequest, who: Who) -> Any:
        """Confirm fraud, mark legitimate or escalate. Fraud and legitimate become labels
        in the graph and precedents for later cases; the answer carries the audit receipt."""
        return _answer(lambda: review.verdict(who, case_id, body.verdict, body.note))

    @router.get("/rings")
    def rings(who: Who) -> Any:
        """Open alerts tied together by shared accounts, cards, devices or IPs."""
        return _answer(lambda: review.rings(who))

    @router.post("/rings/{ring_id}/verdict")
    def ring_verdict(ring_id: str, body: VerdictRequest, who: Who) -> Any:
        """One verdict for every case of a ring (needs the bulk_label permission)."""
        return _answer(lambda: review.ring_verdict(who, ring_id, body.verdict, body.note))

    app.include_router(router)

    @app.get("/review", include_in_schema=False)
    def review_root() -> RedirectResponse:
        return RedirectResponse("/review/")

    app.mount("/review", StaticFiles(directory=UI_DIR, html=True, check_dir=False), name="review")
