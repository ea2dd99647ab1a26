"""Nearest cases within a tenant from an index every tenant shares: a small tenant still gets
its own nearest cases when a big tenant's crowd the neighbourhood."""

from __future__ import annotations

import numpy as np
import pytest

from services.cases.similar import SimilarCaseIndex
from services.cases.store_sqlite import SqliteCaseStore
from services.cases.tenant_nearest import nearest_in_tenant
from tests.services.cases.case_store_contract import make_case

DIM = 8


@pytest.fixture
def crowded() -> tuple[SimilarCaseIndex, SqliteCaseStore, np.ndarray]:
    """300 cases of tenant ``big`` right around the query, 6 of tenant ``small`` further off."""
    rng = np.random.default_rng(0)
    query = np.zeros(DIM, dtype=np.float32)
    query[0] = 1.0
    index, store = SimilarCaseIndex(DIM), SqliteCaseStore()
    for i in range(300):
        v = query + 0.05 * rng.standard_normal(DIM).astype(np.float32)
        store.add(make_case(f"big-{i}", tenant="big"))
        index.add(make_case(f"big-{i}").case_id, v)
    for i in range(6):
        v = query + (0.5 + 0.1 * i) * np.eye(DIM, dtype=np.float32)[1 + i]
        store.add(make_case(f"small-{i}", tenant="small"))
        index.add(make_case(f"small-{i}").case_id, v)
    return index, store, query


def test_a_crowded_out_tenant_still_gets_its_nearest_cases(
    crowded: tuple[SimilarCaseIndex, SqliteCaseStore, np.ndarray],
) -> None:
    index, store, query = crowded
    # The 50 nearest overall are all the big tenant's: filtering them would leave nothing.
    assert all(cid.startswith("case-big-") for cid, _ in index.search(query, 50))
    got = nearest_in_tenant(index, store, query, "small", 4)
    assert [c.transaction_id for c, _ in got] == [f"small-{i}" for i in range(4)]
    assert all(c.tenant == "small" for c, _ in got)
    distances = [d for _, d in got]
    assert distances == sorted(distances)


def test_fewer_than_asked_when_the_tenant_has_fewer_and_excluded_ones_stay_out(
    crowded: tuple[SimilarCaseIndex, SqliteCaseStore, np.ndarray],
) -> None:
    index, store, query = crowded
    excluded = make_case("small-0").case_id
    got = nearest_in_tenant(index, store, query, "small", 50, exclude=[excluded])
    assert sorted(c.transaction_id for c, _ in got) == [f"small-{i}" for i in range(1, 6)]
    assert nearest_in_tenant(index, store, query, "nobody", 5) == []


def test_a_single_tenant_answer_is_the_plain_nearest(
    crowded: tuple[SimilarCaseIndex, SqliteCaseStore, np.ndarray],
) -> None:
    index, store, query = crowded
    got = nearest_in_tenant(index, store, query, "big", 20)
    plain = index.search(query, 20)
    assert [(c.case_id, d) for c, d in got] == plain
