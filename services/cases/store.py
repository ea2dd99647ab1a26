"""The ``CaseStore`` port: the analysts' review queue and the precedents behind similar cases.

Implementations: :class:`~services.cases.store_sqlite.SqliteCaseStore` (embedded default, a
file or ``:memory:``) and :class:`~services.cases.store_neo4j.Neo4jCaseStore` (service mode,
cases linked to the entity nodes of the Neo4j graph). Both pass
``tests/services/case_store_contract.py``.

Contract:

* :meth:`CaseStore.add` is idempotent by ``case_id``: the first write wins and a replay changes
  nothing (a rescored or replayed payment never reopens or overwrites its case).
* Queue order is total: ties on the sort key are broken by ``case_id`` ascending, so pages from
  :meth:`CaseStore.list` never repeat or skip a case while the queue is not being written.
* A verdict is recorded as given; the last one wins. ``escalate`` keeps the case reviewable,
  ``fraud``/``legit`` resolve it (and make it a precedent once it has an embedding). Whether an
  analyst may overturn a resolved case is the review service's decision, not the store's.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Mapping

from services.cases.model import (
    ENTITY_KINDS,
    SORT_KEYS,
    STATUSES,
    VERDICTS,
    Case,
    CaseStatus,
    SortKey,
    Verdict,
    normalise_entities,
)

CaseList = list[Case]
"""A page of cases (aliased: inside :class:`CaseStore` the name ``list`` is a method)."""
Shared = list[tuple[Case, list[str]]]
"""Cases with the entity kinds each shares, as :meth:`CaseStore.sharing` answers."""

MAX_PAGE = 1000
"""Largest ``limit`` accepted by :meth:`CaseStore.list` and :meth:`CaseStore.sharing`."""


class CaseStore(abc.ABC):
    """Port for review cases. Public methods validate; ``_``-prefixed methods do the work.

    Implementations are safe to share between threads (the API serves analysts concurrently).
    """

    def add(self, case: Case) -> bool:
        """Store ``case``; ``True`` if it was new, ``False`` (and nothing changed) if its
        ``case_id`` was already stored."""
        if not isinstance(case, Case):
            raise TypeError(f"not a Case: {type(case).__name__}")
        return self._add(case)

    def get(self, case_id: str) -> Case | None:
        """The case, or ``None`` if unknown."""
        return self._get(case_id)

    def list(
        self,
        tenant: str,
        *,
        status: CaseStatus | None = None,
        reason: str | None = None,
        min_score: float | None = None,
        sort: SortKey = "score",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> CaseList:
        """A page of the tenant's cases, filtered and sorted.

        Filters combine with AND: ``status`` exact, ``reason`` among the case's reasons,
        ``score >= min_score``. ``sort="age"`` orders by age, so descending puts the *oldest*
        payment (smallest ``created_at``) first; ``score`` and ``amount`` put the largest first
        when descending. Ties: ``case_id`` ascending. ``1 <= limit <= MAX_PAGE``,
        ``offset >= 0``.
        """
        self._check_filters(tenant, status, min_score)
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {list(SORT_KEYS)}, got {sort!r}")
        _check_page(limit, offset)
        return self._list(tenant, status, reason, min_score, sort, bool(descending), limit, offset)

    def count(
        self,
        tenant: str,
        status: CaseStatus | None = None,
        reason: str | None = None,
        min_score: float | None = None,
    ) -> int:
        """How many cases :meth:`list` would page through with the same filters."""
        self._check_filters(tenant, status, min_score)
        return self._count(tenant, status, reason, min_score)

    def set_verdict(self, case_id: str, verdict: Verdict, by: str, note: str, at: float) -> Case:
        """Record an analyst's verdict at ``at`` (POSIX seconds); returns the updated case.

        Raises ``KeyError`` for an unknown case, ``ValueError`` for an unknown verdict or an
        empty ``by``.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {list(VERDICTS)}, got {verdict!r}")
        if not isinstance(by, str) or not by:
            raise ValueError("by must name the analyst")
        at = float(at)
        if not math.isfinite(at):
            raise ValueError(f"at must be a finite time, got {at!r}")
        return self._set_verdict(case_id, verdict, by, str(note), at)

    def assign(self, case_id: str, user: str | None) -> Case:
        """Give the case to ``user`` (``None`` returns it to the pool); returns the updated case.

        Raises ``KeyError`` for an unknown case.
        """
        if user is not None and (not isinstance(user, str) or not user):
            raise ValueError("user must be a non-empty string or None")
        return self._assign(case_id, user)

    def sharing(
        self,
        tenant: str,
        entities: Mapping[str, str | None],
        exclude_case_id: str | None = None,
        limit: int = 50,
    ) -> Shared:
        """The tenant's cases that share an entity with ``entities``, and which kinds they share.

        ``entities`` has the shape of :attr:`Case.entities` (``None`` values are ignored); a
        case shares a kind when its value for the same key is equal (an account id never
        matches a card id). Kinds are named as in :data:`ENTITY_KINDS` (``account``, ``card``,
        ``merchant``, ``device``, ``ip``), in that order. Order: most kinds shared first, then
        the most recent payment, then ``case_id``.
        """
        if not tenant:
            raise ValueError("tenant must be non-empty")
        given = normalise_entities(dict(entities), require=False)
        _check_page(limit, 0)
        if not given:
            return []
        return self._sharing(tenant, given, exclude_case_id, limit)

    def resolved_with_embeddings(self, page_size: int = 1000) -> Iterator[Case]:
        """Every case resolved as fraud or legit that has an embedding, by ``case_id``.

        Read ``page_size`` cases per query (keyset on ``case_id``), so the store is not held
        while the caller works; the similarity index is rebuilt from this at start-up.
        """
        if int(page_size) < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        return self._resolved_with_embeddings(int(page_size))

    def close(self) -> None:  # noqa: B027 - optional hook, an in-process store may hold nothing
        """Release connections."""

    @staticmethod
    def _check_filters(tenant: str, status: CaseStatus | None, min_score: float | None) -> None:
        if not tenant:
            raise ValueError("tenant must be non-empty")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {status!r}")
        if min_score is not None and (
            not isinstance(min_score, int | float) or not math.isfinite(min_score)
        ):
            raise ValueError(f"min_score must be a finite number, got {min_score!r}")

    @abc.abstractmethod
    def _add(self, case: Case) -> bool: ...
    @abc.abstractmethod
    def _get(self, case_id: str) -> Case | None: ...
    @abc.abstractmethod
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
    ) -> CaseList: ...
    @abc.abstractmethod
    def _count(
        self, tenant: str, status: CaseStatus | None, reason: str | None, min_score: float | None
    ) -> int: ...
    @abc.abstractmethod
    def _set_verdict(self, case_id: str, verdict: Verdict, by: str, note: str, at: float) -> Case:
        """Raise ``KeyError(case_id)`` when the case is unknown."""

    @abc.abstractmethod
    def _assign(self, case_id: str, user: str | None) -> Case:
        """Raise ``KeyError(case_id)`` when the case is unknown."""

    @abc.abstractmethod
    def _sharing(
        self, tenant: str, entities: dict[str, str], exclude_case_id: str | None, limit: int
    ) -> Shared:
        """``entities`` is normalised and non-empty."""

    @abc.abstractmethod
    def _resolved_with_embeddings(self, page_size: int) -> Iterator[Case]: ...


def shared_kinds(case: Case, entities: Mapping[str, str]) -> list[str]:
    """The entity kinds ``case`` shares with ``entities``, in :data:`ENTITY_KINDS` order."""
    return [
        kind
        for key, kind in ENTITY_KINDS.items()
        if key in entities and case.entities.get(key) == entities[key]
    ]


def _check_page(limit: int, offset: int) -> None:
    if not 1 <= int(limit) <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if int(offset) < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
