"""InMemoryFeatureStore: the FeatureStore contract, plus what its eviction actually drops."""

from __future__ import annotations

from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore, Observation, WindowStats
from tests.feature_stream.feature_store_contract import FeatureStoreContract


class TestInMemoryFeatureStoreContract(FeatureStoreContract):
    def make_store(self) -> FeatureStore:
        return InMemoryFeatureStore()


def test_evict_before_drops_old_observations_from_windows() -> None:
    store = InMemoryFeatureStore()
    store.add([Observation("k", float(t), float(t), "m", f"o{t}") for t in range(10)])
    store.evict_before(4.0)
    assert store.window("k", 0.0, 4.0).count == 0
    assert store.window("k", 0.0, 10.0) == WindowStats(6, float(sum(range(4, 10))), 9.0)


def test_out_of_order_after_eviction_keeps_sums_right() -> None:
    store = InMemoryFeatureStore()
    store.add([Observation("k", float(t), 1.0, "m", f"o{t}") for t in (10, 20, 30)])
    store.evict_before(15.0)
    store.add([Observation("k", 25.0, 4.0, "m", "late"), Observation("k", 16.0, 2.0, "m", "x")])
    assert store.window("k", 0.0, 100.0) == WindowStats(4, 8.0, 30.0)
    assert store.window("k", 16.0, 26.0) == WindowStats(3, 7.0, 25.0)
