"""Replay at ``speed`` times real time: event-time gaps divided by ``speed``, slept.

Only the scored window is paced (the history before it is replayed as fast as possible), so a
paced backtest of a week after a month of history starts scoring at once and then takes a
week divided by ``speed``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Pacer:
    """Sleeps so that the event at time ``t`` is released no earlier than
    ``wall_0 + (t - t_0) / speed``, where ``t_0`` is the first event time paced and
    ``wall_0`` the monotonic clock when it was. Events that are late already go at once (the
    pacer never speeds up to catch up on a backlog beyond that: lost time is not made up
    twice, and an out-of-order event never waits).

    >>> pacer = Pacer(60.0)  # one minute of event time per second
    """

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a positive finite number, got {speed!r}")
        self.speed = speed
        self._clock = clock
        self._sleep = sleep
        self._t0: float | None = None
        self._wall0 = 0.0
        self.slept_s = 0.0

    def wait(self, t: float) -> None:
        """Block until event time ``t`` is due (epoch seconds)."""
        if self._t0 is None:
            self._t0, self._wall0 = t, self._clock()
            return
        ahead = self._wall0 + (t - self._t0) / self.speed - self._clock()
        if ahead > 0:
            self._sleep(ahead)
            self.slept_s += ahead
