"""SimilarCaseIndex: exact answers while flat, recall while HNSW, ids kept across the switch and
a save/load round trip, checked against a numpy brute force."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from services.cases.similar import SimilarCaseIndex, build_from
from services.cases.store_sqlite import SqliteCaseStore
from tests.factories import ts
from tests.services.cases.case_store_contract import make_case

Matrix = npt.NDArray[np.float32]


def unit(x: Matrix) -> Matrix:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, centres: Matrix, n: int) -> Matrix:
    """``n`` points around random ``centres`` (noise half as long as a centre, per axis)."""
    noise = rng.standard_normal((n, centres.shape[1])).astype(np.float32)
    return (centres[rng.integers(0, len(centres), n)] + 0.5 * noise).astype(np.float32)


def brute(base: Matrix, queries: Matrix, k: int) -> tuple[npt.NDArray[np.int64], Matrix]:
    """Exact top-k by cosine: row indices and cosine distances, nearest first."""
    sims = unit(queries) @ unit(base).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, (1.0 - np.take_along_axis(sims, order, axis=1)).astype(np.float32)


def names(n: int, start: int = 0) -> list[str]:
    return [f"case-{i}" for i in range(start, start + n)]


def test_flat_index_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3000, 32)).astype(np.float32) * 3.0  # not unit length
    queries = rng.standard_normal((40, 32)).astype(np.float32)
    index = SimilarCaseIndex(32)
    assert index.add_many(names(3000), base) == 3000
    assert index.kind == "flat"
    order, dist = brute(base, queries, 10)
    for q, o, d in zip(queries, order, dist, strict=True):
        got = index.search(q, 10)
        assert [cid for cid, _ in got] == [f"case-{i}" for i in o]
        np.testing.assert_allclose([x for _, x in got], d, atol=1e-5)


@pytest.mark.slow
def test_hnsw_recall_at_10_on_30k_clustered_vectors() -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((300, 96)).astype(np.float32)
    base = clustered(rng, centres, 30_000)
    queries = clustered(rng, centres, 300)
    index = SimilarCaseIndex(96)
    for start in range(0, 30_000, 10_000):
        index.add_many(names(10_000, start), base[start : start + 10_000])
    assert index.kind == "hnsw"
    order, _ = brute(base, queries, 10)
    hits = 0
    for q, o in zip(queries, order, strict=True):
        got = {cid for cid, _ in index.search(q, 10)}
        hits += len(got & {f"case-{i}" for i in o})
    assert hits / (10 * len(queries)) >= 0.95


@pytest.mark.parametrize("threshold", [10_000, 100])
def test_exclude_leaves_out_ids_and_still_answers_k(threshold: int) -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((500, 16)).astype(np.float32)
    index = SimilarCaseIndex(16, hnsw_threshold=threshold)
    index.add_many(names(500), base)
    assert index.kind == ("flat" if threshold > 500 else "hnsw")
    q = base[7]
    first = index.search(q, 5)
    assert first[0][0] == "case-7" and first[0][1] == pytest.approx(0.0, abs=1e-5)
    skip = [first[0][0], first[2][0], "case-not-indexed"]
    got = index.search(q, 5, exclude=skip)
    assert len(got) == 5
    assert not {cid for cid, _ in got} & set(skip)
    assert [cid for cid, _ in got][:3] == [first[1][0], first[3][0], first[4][0]]
    assert index.search(q, 3, exclude="case-7")[0][0] == first[1][0]


def test_exclude_everything_gives_nothing() -> None:
    index = SimilarCaseIndex(2)
    index.add("case-a", [1.0, 0.0])
    index.add("case-b", [0.0, 1.0])
    assert index.search([1.0, 1.0], 10, exclude=("case-a", "case-b")) == []
    assert [cid for cid, _ in index.search([1.0, 0.2], 10)] == ["case-a", "case-b"]


def test_add_is_idempotent_per_case_id() -> None:
    index = SimilarCaseIndex(2)
    assert index.add("case-a", [1.0, 0.0]) is True
    assert index.add("case-a", [0.0, 1.0]) is False  # the first vector wins
    assert len(index) == 1
    assert index.search([1.0, 0.0], 1) == [("case-a", pytest.approx(0.0, abs=1e-6))]
    rows = np.array([[0.0, 1.0], [5.0, 5.0], [1.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    assert index.add_many(["case-b", "case-a", "case-b", "case-c"], rows) == 2
    assert index.ids() == ["case-a", "case-b", "case-c"]
    # case-b keeps its first row (0, 1), not the repeat's (1, 1).
    assert index.search([0.0, 1.0], 1) == [("case-b", pytest.approx(0.0, abs=1e-6))]
    assert index.search([-1.0, 0.0], 1)[0][0] == "case-c"


def test_cosine_distance_ignores_length() -> None:
    index = SimilarCaseIndex(2)
    index.add("case-a", [10.0, 0.0])
    index.add("case-b", [-1.0, 0.0])
    index.add("case-c", [0.0, 0.5])
    got = index.search([3.0, 2.0], 3)
    assert [cid for cid, _ in got] == ["case-a", "case-c", "case-b"]
    r = np.sqrt(13.0)
    np.testing.assert_allclose([d for _, d in got], [1 - 3 / r, 1 - 2 / r, 1 + 3 / r], atol=1e-6)


@pytest.mark.parametrize("threshold", [10_000, 300])
def test_save_and_load_give_identical_answers(tmp_path: Path, threshold: int) -> None:
    rng = np.random.default_rng(4)
    base = rng.standard_normal((1000, 24)).astype(np.float32)
    index = SimilarCaseIndex(24, hnsw_threshold=threshold, ef_search=40)
    index.add_many(names(1000), base)
    index.save(tmp_path / "idx")
    again = SimilarCaseIndex.load(tmp_path / "idx")
    assert (again.kind, len(again), again.ids()) == (index.kind, 1000, index.ids())
    assert again.ef_search == 40
    for q in rng.standard_normal((50, 24)).astype(np.float32):
        assert again.search(q, 10, exclude=["case-3"]) == index.search(q, 10, exclude=["case-3"])
    # The loaded index goes on growing, idempotently.
    assert again.add("case-0", base[1]) is False
    assert again.add("case-new", base[1] * 2) is True
    assert again.search(base[1], 2)[1][0] in {"case-1", "case-new"}


def test_load_refuses_a_mismatched_id_map(tmp_path: Path) -> None:
    index = SimilarCaseIndex(2)
    index.add("case-a", [1.0, 0.0])
    index.save(tmp_path)
    other = SimilarCaseIndex(2)
    other.add_many(["case-a", "case-b"], np.eye(2, dtype=np.float32))
    faiss.write_index(other._index, str(tmp_path / "index.faiss"))
    with pytest.raises(ValueError, match="id map"):
        SimilarCaseIndex.load(tmp_path)


def test_switch_to_hnsw_keeps_every_id_in_order() -> None:
    rng = np.random.default_rng(5)
    base = rng.standard_normal((3000, 32)).astype(np.float32)
    index = SimilarCaseIndex(32, hnsw_threshold=1000)
    kinds = []
    for start in range(0, 3000, 250):
        index.add_many(names(250, start), base[start : start + 250])
        kinds.append(index.kind)
    assert kinds == ["flat"] * 4 + ["hnsw"] * 8
    assert index.ids() == names(3000)
    own = [index.search(base[i], 1)[0][0] == f"case-{i}" for i in range(3000)]
    assert sum(own) >= 2997  # HNSW is approximate, but a stored vector finds itself


def test_adds_and_searches_from_many_threads_across_the_switch() -> None:
    rng = np.random.default_rng(6)
    base = rng.standard_normal((4000, 16)).astype(np.float32)
    index = SimilarCaseIndex(16, hnsw_threshold=1500)
    index.add_many(names(1000), base[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0, 0]  # per reader

    def writer(lo: int, hi: int) -> None:
        try:
            for start in range(lo, hi, 100):
                index.add_many(names(100, start), base[start : start + 100])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def reader(me: int) -> None:
        try:
            while not stop.is_set():
                got = index.search(base[0], 3)
                assert got[0][0] == "case-0"
                searches[me] += 1
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    writers = [threading.Thread(target=writer, args=(a, a + 1500)) for a in (1000, 2500)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert min(searches) > 0  # each reader searched while the writers ran
    assert index.kind == "hnsw"
    assert sorted(index.ids()) == sorted(names(4000))
    assert len(index) == 4000


def test_search_runs_on_one_thread_and_puts_the_setting_back() -> None:
    index = SimilarCaseIndex(2)
    index.add("case-a", [1.0, 0.0])
    before = faiss.omp_get_max_threads()
    index.search([1.0, 0.0], 1)
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize(
    ("vector", "match"),
    [([1.0, 0.0, 0.0], "shape"), ([0.0, 0.0], "zero vector"), ([np.nan, 1.0], "finite")],
)
def test_bad_vectors_are_refused(vector: list[float], match: str) -> None:
    index = SimilarCaseIndex(2)
    with pytest.raises(ValueError, match=match):
        index.add("case-a", vector)
    with pytest.raises(ValueError, match=match):
        index.search(vector, 1)
    assert len(index) == 0


def test_empty_index_and_bad_k() -> None:
    index = SimilarCaseIndex(2)
    assert index.search([1.0, 0.0], 5) == []
    with pytest.raises(ValueError, match="k must be"):
        index.search([1.0, 0.0], 0)


def test_build_from_indexes_only_resolved_cases_with_embeddings() -> None:
    store = SqliteCaseStore(":memory:")
    for txn, emb, verdict in [
        ("f1", (1.0, 0.0, 0.0), "fraud"),
        ("l1", (0.0, 1.0, 0.0), "legit"),
        ("o1", (0.0, 0.0, 1.0), None),
        ("e1", (1.0, 1.0, 0.0), "escalate"),
        ("n1", None, "fraud"),
    ]:
        store.add(make_case(txn, embedding=emb))
        if verdict is not None:
            store.set_verdict(f"case-{txn}", verdict, "ann", "", ts(10))  # type: ignore[arg-type]
    index = build_from(store, 3, hnsw_threshold=100)
    assert index.ids() == ["case-f1", "case-l1"]
    assert index.search([0.9, 0.1, 0.0], 1)[0][0] == "case-f1"
    assert index.add_from(store) == 0
    with pytest.raises(ValueError, match="case-f1: embedding dimension 3, expected 4"):
        build_from(store, 4)
    store.close()
