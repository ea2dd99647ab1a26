"""Nearest cases within one tenant from an index shared by every tenant.

The FAISS index holds every tenant's cases, and which tenant a case belongs to lives in the
case store. Taking the ``n`` nearest overall and then keeping the tenant's would leave a small
tenant with few or no precedents whenever a big tenant's cases crowd its neighbourhood. The
search here widens instead (4× each round) until it has ``n`` of the tenant's cases or has
covered the whole index, so the answer is the tenant's ``n`` nearest, as a per-tenant index
would give. In a single-tenant deployment the first round is the only one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.cases.model import Case
from services.cases.similar import SimilarCaseIndex
from services.cases.store import CaseStore

WIDEN = 4


def nearest_in_tenant(
    index: SimilarCaseIndex,
    store: CaseStore,
    vector: Sequence[float] | npt.NDArray[np.floating],
    tenant: str,
    n: int,
    exclude: Sequence[str] = (),
) -> list[tuple[Case, float]]:
    """The ``n`` cases of ``tenant`` nearest to ``vector`` as ``(case, cosine distance)``,
    nearest first, leaving out ``exclude``; fewer when the tenant has fewer indexed cases."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    checked: dict[str, Case | None] = {}  # case id → the case if it is the tenant's
    want = n
    while True:
        hits = index.search(vector, want, exclude=exclude)
        out: list[tuple[Case, float]] = []
        for cid, distance in hits:
            if cid not in checked:
                case = store.get(cid)
                checked[cid] = case if case is not None and case.tenant == tenant else None
            mine = checked[cid]
            if mine is not None:
                out.append((mine, distance))
                if len(out) == n:
                    return out
        if len(hits) < want or want >= len(index):
            return out  # the whole index was searched
        want = min(want * WIDEN, len(index))
