"""Idempotency for ``POST /v1/score``: a retry gets the first answer, not a second scoring.

Keys are scoped by caller. The cache is bounded (LRU) and entries expire, so memory stays flat
under any load; an entry also remembers the request's hash so a key reused with a different
body is refused rather than silently answered with someone else's decision. Once scored, a
transaction id is bound to its body the same way (:meth:`IdempotencyCache.check_transaction`),
so another payment under an id already scored is refused whatever key it comes with: the
stores key payments by id and would keep only the first.

An answer is kept pickled: one bytes object, which the garbage collector does not track,
instead of the outcome's dict, payment model, lists and sets (about five tracked objects per
request that every collector pass would scan while they live; see
:class:`services.heap.Refreezer`). Unpickling happens only for a retry.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from typing import Any

_TX = "\x00tx:"  # bind_transaction()'s slots; an Idempotency-Key header holds no NUL


class IdempotencyConflict(Exception):
    """The key was used before with a different request body."""


class IdempotencyCache:
    def __init__(self, max_entries: int = 100_000, ttl_s: float = 24 * 3600) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._items: OrderedDict[tuple[str, str], tuple[float, str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, caller: str, key: str, body_hash: str) -> dict[str, Any] | None:
        """A copy of the stored response for ``(caller, key)``, or ``None``; raises on a body
        mismatch."""
        now = time.monotonic()
        with self._lock:
            item = self._items.get((caller, key))
            if item is None:
                return None
            at, stored_hash, response = item
            if now - at > self.ttl_s:
                del self._items[(caller, key)]
                return None
            if stored_hash != body_hash:
                raise IdempotencyConflict(f"idempotency key {key!r} was used with another body")
            self._items.move_to_end((caller, key))
        stored: dict[str, Any] = pickle.loads(response)
        return stored

    def check_transaction(self, caller: str, transaction_id: str, body_hash: str) -> None:
        """Raise :class:`IdempotencyConflict` if ``transaction_id`` was scored with a body other
        than the one hashed ``body_hash``, under its own key (the default) or any other."""
        now = time.monotonic()
        with self._lock:
            for known in ((caller, _TX + transaction_id), (caller, transaction_id)):
                item = self._items.get(known)
                if item is not None and now - item[0] <= self.ttl_s and item[1] != body_hash:
                    raise IdempotencyConflict(
                        f"transaction id {transaction_id!r} was scored with another body"
                    )

    def bind_transaction(self, caller: str, transaction_id: str, body_hash: str) -> None:
        """Record that ``transaction_id`` was scored as the body hashed ``body_hash`` (for a
        request under another key than the id; :meth:`put` records the id's own key)."""
        self._store((caller, _TX + transaction_id), body_hash, b"")

    def put(self, caller: str, key: str, body_hash: str, response: dict[str, Any]) -> None:
        self._store((caller, key), body_hash, pickle.dumps(response, pickle.HIGHEST_PROTOCOL))

    def _store(self, slot: tuple[str, str], body_hash: str, blob: bytes) -> None:
        with self._lock:
            self._items[slot] = (time.monotonic(), body_hash, blob)
            self._items.move_to_end(slot)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
