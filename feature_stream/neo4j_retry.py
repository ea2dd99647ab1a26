"""Write transactions with a retry policy that suits concurrent stream workers.

Two workers that create the same new entity in the same moment take Neo4j's unique-index entry
locks in opposite orders now and then; Neo4j aborts one of them with
``Neo.TransientError.Transaction.DeadlockDetected``. The driver's managed transactions
(``Session.execute_write``) retry that, but only after about a second (their first delay); two
workers on a 2-core host deadlocked in 6 of 10 runs of 55k events (``bench/RESULTS.md``,
session 10). The other worker's transaction commits within milliseconds, so the loser can try
again almost at once.

:meth:`RetryPolicy.run` runs a unit of work in an explicit transaction, as the driver's manual
suggests for a custom retry policy: an error the driver marks retryable
(:meth:`~neo4j.exceptions.Neo4jError.is_retryable`: deadlocks, lost connections, a leader
switch) is retried after ``first_delay_s``, doubling with jitter up to ``max_delay_s``, for up to
``give_up_after_s`` in all, as ``execute_write`` does with its own delays. Anything else (a
Cypher error, a constraint violation) is raised at once. The work must be safe to repeat: a
failed attempt is rolled back whole.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from neo4j import Session, Transaction
from neo4j.exceptions import DriverError, Neo4jError

log = logging.getLogger("riskgraph.neo4j")

P = ParamSpec("P")
T = TypeVar("T")


class RetryPolicy:
    """How :meth:`run` retries: ``first_delay_s``, doubled per attempt up to
    ``max_delay_s`` and jittered by ±50 % (two losers of one deadlock should not meet again),
    until ``give_up_after_s`` has passed since the first attempt."""

    def __init__(
        self, first_delay_s: float = 0.01, max_delay_s: float = 1.0, give_up_after_s: float = 30.0
    ) -> None:
        if not 0 < first_delay_s <= max_delay_s:
            raise ValueError("need 0 < first_delay_s <= max_delay_s")
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.give_up_after_s = give_up_after_s

    def run(
        self,
        session: Session,
        work: Callable[Concatenate[Transaction, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``work(tx, *args, **kwargs)`` in one write transaction, committed; retried while
        the failure is transient (see the module docs). Returns what ``work`` returned."""
        start = time.monotonic()
        delay = self.first_delay_s
        attempt = 1
        while True:
            try:
                with session.begin_transaction() as tx:
                    out = work(tx, *args, **kwargs)
                    tx.commit()
                return out
            except (Neo4jError, DriverError) as exc:
                waited = time.monotonic() - start
                if not exc.is_retryable() or waited + delay > self.give_up_after_s:
                    raise
                code = getattr(exc, "code", None) or type(exc).__name__
                pause = delay * random.uniform(0.5, 1.5)
                log.warning(
                    "neo4j write failed, retrying attempt=%d delay_s=%.3f code=%s",
                    attempt,
                    pause,
                    code,
                )
                time.sleep(pause)
                delay = min(delay * 2, self.max_delay_s)
                attempt += 1


WRITE_RETRY = RetryPolicy()  # the stores' policy
