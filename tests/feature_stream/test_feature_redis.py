"""RedisFeatureStore against a real Redis: the FeatureStore contract, then the same features as
the in-memory store on a random stream, plus the Redis-only guarantees (round trips, TTLs).

Needs the server from ``deploy/services.sh up redis`` (``RISKGRAPH_REDIS_URL``, default
``redis://127.0.0.1:6379/0``); a missing server fails these tests, it never skips them. Every
store gets a fresh random key prefix, whose keys are deleted after the test.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from feature_stream.events import Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_redis import RedisFeatureStore
from feature_stream.feature_store import FeatureStore, Observation, WindowStats
from feature_stream.features import compute_features, observations_for
from feature_stream.graph_memory import InMemoryGraphStore
from tests.feature_stream.feature_store_contract import FeatureStoreContract
from tests.feature_stream.test_graph_neo4j import random_stream

pytestmark = pytest.mark.integration

URL = os.environ.get("RISKGRAPH_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except Exception as exc:  # any failure to reach the server is a test failure
        client.close()
        pytest.fail(
            f"Redis is not reachable at {URL} ({exc}); start it with deploy/services.sh up redis"
        )
    yield client
    client.close()


class Prefixes:
    """Hands out fresh key prefixes under one per-module root; deletes the root's keys at the end
    (one SCAN for the module rather than one per store: the database may hold many other keys)."""

    def __init__(self) -> None:
        self.root = f"rg:test:{uuid.uuid4().hex[:12]}:"
        self.stores: list[RedisFeatureStore] = []

    def store(self, **kw: object) -> RedisFeatureStore:
        prefix = f"{self.root}{uuid.uuid4().hex[:8]}:"
        s = RedisFeatureStore(URL, prefix=prefix, **kw)  # type: ignore[arg-type]
        self.stores.append(s)
        return s

    def drop(self) -> None:
        for s in self.stores:
            s.close()
        cleaner = RedisFeatureStore(URL, prefix=self.root)
        cleaner.clear()
        cleaner.close()


@pytest.fixture(scope="module")
def prefixes(redis_client: redis.Redis) -> Iterator[Prefixes]:
    p = Prefixes()
    yield p
    p.drop()


class TestRedisFeatureStoreContract(FeatureStoreContract):
    @pytest.fixture(autouse=True)
    def _prefixes(self, prefixes: Prefixes) -> None:
        self.prefixes = prefixes

    def make_store(self) -> FeatureStore:
        return self.prefixes.store()


def test_features_match_the_in_memory_store(prefixes: Prefixes) -> None:
    events = random_stream(5, n=800)
    graph = InMemoryGraphStore()
    mem, red = InMemoryFeatureStore(), prefixes.store()
    payments: list[Payment] = []
    for i in range(0, len(events), 50):  # batches, as a worker would write them
        obs: list[Observation] = []
        for e in events[i : i + 50]:
            graph.add(e)
            obs += observations_for(e, graph.transaction)
            if isinstance(e, Payment):
                payments.append(e)
        mem.add(obs)
        red.add(obs)
    red.add(obs)  # a replayed batch changes nothing
    for p in payments[::3]:
        a, b = compute_features(p, mem), compute_features(p, red)
        assert b.as_of == a.as_of
        assert b.values == pytest.approx(a.values, rel=1e-12, abs=1e-12)


def test_add_is_one_round_trip(prefixes: Prefixes, monkeypatch: pytest.MonkeyPatch) -> None:
    store = prefixes.store()
    calls: list[int] = []
    original = redis.client.Pipeline.execute

    def counting(self: redis.client.Pipeline, *a: object, **kw: object) -> object:
        calls.append(len(self.command_stack))
        return original(self, *a, **kw)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    store.add([Observation(f"k{i % 7}", float(i), 1.0, f"m{i}", f"o{i}") for i in range(500)])
    assert calls == [500]
    assert store.window("k0", 0.0, 1000.0).count == len(range(0, 500, 7))


def test_keys_expire(prefixes: Prefixes, redis_client: redis.Redis) -> None:
    store = prefixes.store(ttl_s=120)
    store.add([Observation("k", 1.0, 1.0, "m", "o1")])
    assert store.mark_seen("e1")
    keys = list(redis_client.scan_iter(match=f"{store.prefix}*", count=10_000))
    assert len(keys) == 4  # observations, ids, first seen, the seen gate
    assert all(0 < int(redis_client.ttl(k)) <= 120 for k in keys)


def test_values_round_trip_exactly_and_odd_members_are_safe(prefixes: Prefixes) -> None:
    store = prefixes.store()
    odd = "m\x1f3\x1fé}{*"  # the encoding's separator, digits, non-ASCII, glob characters
    store.add(
        [
            Observation("k", 0.1, 0.1, odd, "o1"),
            Observation("k", 0.2, 1e-300, "", "o\x1f2"),
            Observation("k", 0.3, 123456.789, odd, "o3"),
        ]
    )
    assert store.window("k", 0.1, 0.3) == WindowStats(2, 0.1 + 1e-300, 0.2)
    assert store.distinct("k", 0.0, 1.0) == (2, 0.3)
    assert store.first_seen("k", odd) == 0.1
    assert store.first_seen("k", "") == math.inf  # empty members are not tracked
    store.evict_before(0.25)
    assert store.window("k", 0.0, 1.0) == WindowStats(1, 123456.789, 0.3)


def test_evict_forgets_the_ids_of_evicted_observations(prefixes: Prefixes) -> None:
    store = prefixes.store()
    store.add([Observation("k", float(t), 1.0, "m", f"o{t}") for t in range(10)])
    store.evict_before(5.0)
    store.add([Observation("k", 2.0, 1.0, "m", "o2"), Observation("k", 7.0, 1.0, "m", "o7")])
    assert store.window("k", 0.0, 10.0) == WindowStats(6, 6.0, 9.0)


def test_prefixes_do_not_see_each_other(prefixes: Prefixes) -> None:
    a, b = prefixes.store(), prefixes.store()
    a.add([Observation("k", 1.0, 1.0, "m", "o1")])
    assert a.mark_seen("e")
    assert b.window("k", 0.0, 2.0).count == 0
    assert b.first_seen("k", "m") == math.inf
    assert b.mark_seen("e")


@pytest.mark.parametrize("kw", [{"prefix": ""}, {"ttl_s": 0}])
def test_constructor_validates(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RedisFeatureStore(URL, **kw)  # type: ignore[arg-type]
