"""The contract every :class:`~feature_stream.feature_store.FeatureStore` passes.

Subclass :class:`FeatureStoreContract` in a ``test_*.py`` module and override :meth:`make_store`
to return a fresh, empty store. Property tests call :meth:`make_store` once per example and
compare the store with a brute-force reading of the same observations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_stream.feature_store import FeatureStore, Observation, WindowStats

KEYS = ("k1", "k2", "k3")
MEMBERS = ("m1", "m2", "m3", "m4")
TIMES = (0.0, 1.0, 5.0, 5.0, 10.0, 59.5, 60.0, 100.0, 3600.0)


@st.composite
def observation_batches(draw: st.DrawFn) -> list[list[Observation]]:
    """Batches of observations in arbitrary time order, with exact replays mixed in."""
    n = draw(st.integers(1, 30))
    unique = [
        Observation(
            key=draw(st.sampled_from(KEYS)),
            ts=draw(st.sampled_from(TIMES)) + draw(st.sampled_from((0.0, 0.25))),
            value=draw(st.sampled_from((0.0, 1.0, 2.5, 10.01, 999.99))),
            member=draw(st.sampled_from(MEMBERS)),
            obs_id=f"o{i}",
        )
        for i in range(n)
    ]
    replays = draw(st.lists(st.sampled_from(unique), max_size=5))
    stream = draw(st.permutations(unique + replays))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def brute_window(obs: list[Observation], key: str, start: float, end: float) -> WindowStats:
    hit = [o for o in obs if o.key == key and start <= o.ts < end]
    return WindowStats(
        len(hit), sum(o.value for o in hit), max((o.ts for o in hit), default=-math.inf)
    )


class FeatureStoreContract:
    """Tests every feature store passes. Override :meth:`make_store`."""

    def make_store(self) -> FeatureStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> Iterator[FeatureStore]:
        s = self.make_store()
        yield s
        s.close()

    # -- windows -------------------------------------------------------------------------------
    def test_window_is_half_open(self, store: FeatureStore) -> None:
        store.add([Observation("k", t, 1.0, "m", f"o{t}") for t in (10.0, 20.0, 30.0)])
        assert store.window("k", 10.0, 30.0) == WindowStats(2, 2.0, 20.0)
        assert store.window("k", 10.5, 30.5) == WindowStats(2, 2.0, 30.0)
        assert store.window("k", 30.0, 30.0).count == 0
        assert store.window("k", 0.0, 10.0).count == 0
        assert store.distinct("k", 10.0, 30.0) == (1, 20.0)

    def test_empty_and_unknown_keys(self, store: FeatureStore) -> None:
        store.add([Observation("k", 5.0, 1.0, "m", "o1")])
        for key, start, end in (("unknown", 0.0, 10.0), ("k", 6.0, 10.0), ("k", 0.0, 5.0)):
            w = store.window(key, start, end)
            assert (w.count, w.total, w.latest) == (0, 0.0, -math.inf)
            assert store.distinct(key, start, end) == (0, -math.inf)

    def test_window_sums_values_and_counts_duplicates_of_members(self, store: FeatureStore) -> None:
        store.add(
            [
                Observation("card", 1.0, 10.0, "m1", "a"),
                Observation("card", 2.0, 5.5, "m1", "b"),
                Observation("card", 3.0, 4.5, "m2", "c"),
                Observation("other", 2.0, 100.0, "m1", "d"),
            ]
        )
        w = store.window("card", 0.0, 10.0)
        assert (w.count, w.total, w.latest) == (3, pytest.approx(20.0), 3.0)
        assert store.distinct("card", 0.0, 10.0) == (2, 3.0)
        assert store.distinct("card", 0.0, 2.5) == (1, 2.0)

    # Every implementation's subclass runs this one method: Hypothesis sees the same test called
    # on instances of different classes ("differing executors"), which is the point here.
    @settings(
        max_examples=75, deadline=None, suppress_health_check=[HealthCheck.differing_executors]
    )
    @given(
        batches=observation_batches(),
        start=st.sampled_from(TIMES),
        width=st.sampled_from((0.0, 0.25, 1.0, 5.0, 60.0, 4000.0)),
    )
    def test_windows_match_brute_force(
        self, batches: list[list[Observation]], start: float, width: float
    ) -> None:
        store = self.make_store()
        try:
            for batch in batches:
                store.add(batch)
            seen: dict[tuple[str, str], Observation] = {}
            for o in (o for b in batches for o in b):
                seen.setdefault((o.key, o.obs_id), o)
            obs = list(seen.values())
            end = start + width
            for key in KEYS:
                expected = brute_window(obs, key, start, end)
                got = store.window(key, start, end)
                assert (got.count, got.latest) == (expected.count, expected.latest)
                assert got.total == pytest.approx(expected.total, rel=1e-12, abs=1e-9)
                members = {o.member for o in obs if o.key == key and start <= o.ts < end}
                assert store.distinct(key, start, end) == (len(members), expected.latest)
                for m in MEMBERS:
                    first = min(
                        (o.ts for o in obs if o.key == key and o.member == m), default=math.inf
                    )
                    assert store.first_seen(key, m) == first
        finally:
            store.close()

    # -- first seen ----------------------------------------------------------------------------
    def test_first_seen_is_the_minimum_time_even_out_of_order(self, store: FeatureStore) -> None:
        store.add([Observation("k", 100.0, 0.0, "m", "late")])
        assert store.first_seen("k", "m") == 100.0
        store.add([Observation("k", 50.0, 0.0, "m", "early")])
        store.add([Observation("k", 75.0, 0.0, "m", "middle")])
        assert store.first_seen("k", "m") == 50.0
        assert store.first_seen("k", "never") == math.inf
        assert store.first_seen("unknown", "m") == math.inf

    def test_first_seen_is_per_key(self, store: FeatureStore) -> None:
        store.add([Observation("a", 10.0, 0.0, "m", "o1"), Observation("b", 20.0, 0.0, "m", "o1")])
        assert (store.first_seen("a", "m"), store.first_seen("b", "m")) == (10.0, 20.0)

    # -- idempotency ---------------------------------------------------------------------------
    def test_readding_an_obs_id_is_a_no_op(self, store: FeatureStore) -> None:
        o = Observation("k", 10.0, 3.0, "m", "o1")
        store.add([o])
        store.add([o, o])
        assert store.window("k", 0.0, 100.0) == WindowStats(1, 3.0, 10.0)
        assert store.distinct("k", 0.0, 100.0) == (1, 10.0)

    def test_readding_an_obs_id_with_other_content_changes_nothing(
        self, store: FeatureStore
    ) -> None:
        """The first write of an ``obs_id`` wins everywhere, first-seen times included."""
        store.add([Observation("k", 100.0, 3.0, "m", "o1")])
        store.add([Observation("k", 50.0, 7.0, "n", "o1")])
        assert store.window("k", 0.0, 1000.0) == WindowStats(1, 3.0, 100.0)
        assert store.first_seen("k", "m") == 100.0
        assert store.first_seen("k", "n") == math.inf

    def test_same_obs_id_under_different_keys_counts_once_per_key(
        self, store: FeatureStore
    ) -> None:
        store.add([Observation("a", 1.0, 1.0, "m", "evt"), Observation("b", 1.0, 2.0, "m", "evt")])
        assert store.window("a", 0.0, 2.0).total == 1.0
        assert store.window("b", 0.0, 2.0).total == 2.0

    def test_mark_seen_is_an_idempotency_gate(self, store: FeatureStore) -> None:
        assert store.mark_seen("e1") is True
        assert store.mark_seen("e1") is False
        assert store.mark_seen("e2") is True
        assert store.mark_seen("e1") is False

    # -- eviction ------------------------------------------------------------------------------
    def test_evict_before_keeps_newer_windows_and_first_seen(self, store: FeatureStore) -> None:
        store.add([Observation("k", float(t), 1.0, f"m{t % 3}", f"o{t}") for t in range(10)])
        store.evict_before(5.0)
        assert store.window("k", 5.0, 10.0) == WindowStats(5, 5.0, 9.0)
        assert store.distinct("k", 5.0, 10.0) == (3, 9.0)
        assert [store.first_seen("k", f"m{i}") for i in range(3)] == [0.0, 1.0, 2.0]

    # -- validation ----------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "bad",
        [
            Observation("", 1.0, 1.0, "m", "o"),
            Observation("k", 1.0, 1.0, "m", ""),
            Observation("k", math.nan, 1.0, "m", "o"),
            Observation("k", math.inf, 1.0, "m", "o"),
        ],
        ids=["no-key", "no-obs-id", "nan-time", "inf-time"],
    )
    def test_add_validates_the_whole_batch_first(
        self, store: FeatureStore, bad: Observation
    ) -> None:
        good = Observation("k", 1.0, 1.0, "m", "good")
        with pytest.raises(ValueError):
            store.add([good, bad])
        assert store.window("k", 0.0, 10.0).count == 0
        assert store.first_seen("k", "m") == math.inf

    def test_intervals_are_validated(self, store: FeatureStore) -> None:
        with pytest.raises(ValueError, match="after end"):
            store.window("k", 2.0, 1.0)
        with pytest.raises(ValueError, match="after end"):
            store.distinct("k", 2.0, 1.0)

    def test_mark_seen_needs_an_id(self, store: FeatureStore) -> None:
        with pytest.raises(ValueError):
            store.mark_seen("")
