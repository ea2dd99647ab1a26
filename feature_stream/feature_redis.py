"""Redis online features: the service-mode :class:`FeatureStore`.

Keys (``P`` is the store's ``prefix``; ``{K}`` is the feature key as a Redis Cluster hash tag,
so the three structures of one feature key live in one slot):

* ``P{K}:o`` – sorted set of observations, score = ``ts`` (POSIX seconds), member =
  ``<value>\\x1f<byte length of member>\\x1f<member><obs_id>`` (value as Python ``repr``, exact);
* ``P{K}:i`` – set of the ``obs_id`` values recorded under ``K`` (the idempotency check);
* ``P{K}:f`` – sorted set member → first time seen (``ZADD … LT`` keeps the minimum);
* ``Pseen:<event_id>`` – the :meth:`mark_seen` gate (``SET … NX EX``).

**Delivery and idempotency.** :meth:`add` is one pipelined round trip of one Lua call per
observation; each call is atomic and checks the ``obs_id`` first, so a replay (or an ``obs_id``
re-sent with other content) changes nothing, as in the in-memory store. Calls for different
observations are independent: a connection lost mid-batch leaves a prefix of it written, and
re-sending the batch completes it.

**Bounds.** Every key's TTL is reset to ``ttl_s`` (wall-clock seconds) whenever it is written, so
idle entities vanish; :meth:`evict_before` trims active keys by event time (and forgets the
evicted ``obs_id`` values, so it does not grow without bound; first-seen times are kept).
Window queries are one round trip each (a Lua script aggregates on the server).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import NoScriptError

from feature_stream.feature_store import (
    FeatureStore,
    FeatureStoreUnavailable,
    Observation,
    WindowStats,
)

# KEYS: obs zset, id set, first-seen zset. ARGV: obs_id, ts, zset member, member, ttl.
_ADD = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], 'LT', ARGV[2], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
return 1
"""

# Both read scripts answer {count or distinct, total, newest score}; numbers as %.17g strings
# (a Lua number returned bare would be truncated to an integer).
_WINDOW = """
local xs = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
local n = #xs / 2
if n == 0 then return {0, '0', '-inf'} end
local total = 0
for i = 1, #xs, 2 do
  total = total + tonumber(string.sub(xs[i], 1, string.find(xs[i], '\\31', 1, true) - 1))
end
return {n, string.format('%.17g', total), xs[#xs]}
"""

_DISTINCT = """
local xs = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
if #xs == 0 then return {0, '0', '-inf'} end
local seen, n = {}, 0
for i = 1, #xs, 2 do
  local s = xs[i]
  local a = string.find(s, '\\31', 1, true)
  local b = string.find(s, '\\31', a + 1, true)
  local len = tonumber(string.sub(s, a + 1, b - 1))
  local m = string.sub(s, b + 1, b + len)
  if not seen[m] then seen[m] = true; n = n + 1 end
end
return {n, '0', xs[#xs]}
"""

# Drop observations older than ARGV[1] from one key and forget their obs_ids.
_EVICT = """
local xs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if #xs == 0 then return 0 end
for i = 1, #xs do
  local s = xs[i]
  local a = string.find(s, '\\31', 1, true)
  local b = string.find(s, '\\31', a + 1, true)
  local len = tonumber(string.sub(s, a + 1, b - 1))
  redis.call('SREM', KEYS[2], string.sub(s, b + 1 + len))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return #xs
"""

_SEP = "\x1f"


def encode_member(o: Observation) -> str:
    """The sorted-set member of an observation (value, member and obs_id, unambiguously)."""
    return f"{o.value!r}{_SEP}{len(o.member.encode())}{_SEP}{o.member}{o.obs_id}"


def _score(x: float) -> str:
    return repr(float(x))  # exact: Redis parses scores with strtod


@contextmanager
def _reachable() -> Iterator[None]:
    """Connection trouble becomes the port's :class:`FeatureStoreUnavailable`."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise FeatureStoreUnavailable(f"Redis unreachable: {exc}") from exc


class RedisFeatureStore(FeatureStore):
    """Feature store in Redis (see the module docs for the key layout and guarantees).

    Args:
        url: ``redis://host:port/db`` (``RISKGRAPH_REDIS_URL``).
        prefix: starts every key this store touches; stores with different prefixes are
            independent (tests use a fresh one each).
        ttl_s: seconds a key lives after its last write; also how long :meth:`mark_seen`
            remembers an event id. Longer than the widest feature window (30 days).
        socket_timeout_s: longest wait for the server on one call; an unreachable server
            raises :class:`~feature_stream.feature_store.FeatureStoreUnavailable` this fast.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "rg:default:",
        ttl_s: int = 35 * 86400,
        socket_timeout_s: float = 0.5,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must be non-empty")
        if ttl_s < 1:
            raise ValueError("ttl_s must be >= 1 second")
        self.prefix = prefix
        self.ttl_s = int(ttl_s)
        self._r = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
        )
        self._sha: dict[str, str] = {}
        self._scripts = {"add": _ADD, "window": _WINDOW, "distinct": _DISTINCT, "evict": _EVICT}
        self._load_scripts()

    def add(self, observations: Sequence[Observation]) -> None:
        with _reachable():
            super().add(observations)

    def window(self, key: str, start: float, end: float) -> WindowStats:
        with _reachable():
            return super().window(key, start, end)

    def distinct(self, key: str, start: float, end: float) -> tuple[int, float]:
        with _reachable():
            return super().distinct(key, start, end)

    def first_seen(self, key: str, member: str) -> float:
        with _reachable():
            return super().first_seen(key, member)

    def mark_seen(self, event_id: str) -> bool:
        with _reachable():
            return super().mark_seen(event_id)

    def _load_scripts(self) -> None:
        for name, src in self._scripts.items():
            self._sha[name] = str(self._r.script_load(src))

    def _keys(self, key: str) -> tuple[str, str, str]:
        base = f"{self.prefix}{{{key}}}"
        return f"{base}:o", f"{base}:i", f"{base}:f"

    def _eval(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        try:
            return self._r.evalsha(self._sha[name], len(keys), *keys, *args)
        except NoScriptError:  # the server restarted or its script cache was flushed
            self._load_scripts()
            return self._r.evalsha(self._sha[name], len(keys), *keys, *args)

    # -- writes ---------------------------------------------------------------------------------
    def _add(self, observations: Sequence[Observation]) -> None:
        if not observations:
            return
        for attempt in (0, 1):
            pipe = self._r.pipeline(transaction=False)
            for o in observations:
                o_key, i_key, f_key = self._keys(o.key)
                pipe.evalsha(
                    self._sha["add"],
                    3,
                    o_key,
                    i_key,
                    f_key,
                    o.obs_id,
                    _score(o.ts),
                    encode_member(o),
                    o.member,
                    self.ttl_s,
                )
            results = pipe.execute(raise_on_error=False)
            errors = [r for r in results if isinstance(r, Exception)]
            if not errors:
                return
            if attempt == 0 and all(isinstance(r, NoScriptError) for r in errors):
                self._load_scripts()  # every call is idempotent: re-sending the batch is safe
                continue
            raise errors[0]

    def _mark_seen(self, event_id: str) -> bool:
        return bool(self._r.set(f"{self.prefix}seen:{event_id}", 1, nx=True, ex=self.ttl_s))

    # -- reads ----------------------------------------------------------------------------------
    def _window(self, key: str, start: float, end: float) -> WindowStats:
        n, total, latest = self._eval("window", self._keys(key)[:1], _score(start), _score(end))
        if not n:
            return WindowStats(0, 0.0)
        return WindowStats(int(n), float(total), float(latest))

    def _distinct(self, key: str, start: float, end: float) -> tuple[int, float]:
        n, _, latest = self._eval("distinct", self._keys(key)[:1], _score(start), _score(end))
        return (int(n), float(latest)) if n else (0, -math.inf)

    def _first_seen(self, key: str, member: str) -> float:
        score = self._r.zscore(self._keys(key)[2], member)
        return math.inf if score is None else float(score)

    # -- housekeeping ---------------------------------------------------------------------------
    def _scan(self, pattern: str) -> Any:
        return self._r.scan_iter(match=_glob_escape(self.prefix) + pattern, count=1000)

    def evict_before(self, ts: float) -> None:
        """Drop observations older than ``ts`` from every key of this store (one pipelined
        round trip per thousand keys); first-seen times are kept."""
        self._load_scripts()  # idempotent; spares the per-page NOSCRIPT handling below
        batch: list[str] = []
        for o_key in self._scan("{*}:o"):
            batch.append(o_key)
            if len(batch) >= 1000:
                self._evict_keys(batch, ts)
                batch = []
        if batch:
            self._evict_keys(batch, ts)

    def _evict_keys(self, o_keys: list[str], ts: float) -> None:
        pipe = self._r.pipeline(transaction=False)
        for o_key in o_keys:
            pipe.evalsha(self._sha["evict"], 2, o_key, o_key[:-1] + "i", _score(ts))
        pipe.execute()

    def clear(self) -> int:
        """Delete every key under this store's prefix; returns how many were deleted."""
        n = 0
        batch: list[str] = []
        for k in self._scan("*"):
            batch.append(k)
            if len(batch) >= 1000:
                n += int(self._r.unlink(*batch))
                batch = []
        if batch:
            n += int(self._r.unlink(*batch))
        return n

    def close(self) -> None:
        self._r.close()


def _glob_escape(s: str) -> str:
    """``s`` with Redis glob metacharacters escaped, for ``SCAN MATCH``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)
