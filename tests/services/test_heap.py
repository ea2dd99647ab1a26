"""The collector's upkeep in a serving process: a full pass and a freeze at a quiet point,
no more often than asked, that frees the garbage there is and freezes only what is alive."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from gnn.artifact import ModelBundle
from services.heap import Refreezer
from tests.services.api_harness import make_app


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def thawed() -> Iterator[None]:
    """Leave the test process as found: what a test froze goes back to the collector."""
    yield
    gc.unfreeze()


def test_a_quiet_point_collects_then_freezes_what_is_alive(thawed: None) -> None:
    clock = Clock()
    pauses: list[float] = []
    r = Refreezer(5.0, clock)
    r.on_pause = pauses.append
    live, dead = Cycle(), Cycle()
    gone = weakref.ref(dead)
    del dead  # a reference cycle: only the collector can free it
    assert r.quiet_point() is None  # not due yet
    assert gone() is not None
    clock.now = 5.0
    before = gc.get_freeze_count()
    pause = r.quiet_point()
    assert pause is not None and pause >= 0
    assert pauses == [pause] and r.passes == 1
    assert gone() is None  # collected, not frozen
    assert gc.get_freeze_count() > before
    assert not any(o is live for o in gc.get_objects())  # frozen: out of the collector's reach
    clock.now = 9.9
    assert r.quiet_point() is None  # the next one only 5 s after this one
    clock.now = 10.0
    assert r.quiet_point() is not None
    assert r.passes == 2


def test_every_s_zero_turns_it_off(thawed: None) -> None:
    clock = Clock()
    r = Refreezer(0.0, clock)
    clock.now = 1e9
    before = gc.get_freeze_count()
    assert r.quiet_point() is None
    assert (r.passes, gc.get_freeze_count()) == (0, before)


def test_the_api_refreezes_between_requests_and_reports_the_pause(
    tmp_path: Path, thawed: None, bundle: ModelBundle
) -> None:
    with make_app(tmp_path, bundle, heap_refreeze_s=1e-9) as a:  # due at every quiet point
        assert a.c.refreezer.every_s == 1e-9
        for _ in range(100):  # the quiet point runs on the loop just after a request ends
            assert a.client.get("/healthz").status_code == 200
            if a.c.refreezer.passes:
                break
        assert a.c.refreezer.passes >= 1
        metrics = a.client.get("/metrics").text
        count = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("riskgraph_heap_refreeze_ms_count")
        )
        assert count >= 1
