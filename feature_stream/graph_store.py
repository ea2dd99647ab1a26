"""The ``GraphStore`` port: a fused temporal graph with point-in-time neighbour sampling.

Implementations: :class:`~feature_stream.graph_memory.InMemoryGraphStore` (embedded default)
and the Neo4j store (service mode). Both pass ``tests/feature_stream/graph_store_contract.py``.

Sampling contract (the rule that keeps online scoring and backtests honest):

* A query is a payment about to be scored, at its event time ``t``. The query transaction's own
  links to its account, card, merchant, device and IP come from the payment itself.
* From those entities the sampler walks ``len(fanouts)`` hops through stored edges whose time is
  **strictly before** ``t``, most recent first, at most ``fanouts[h]`` per node at hop ``h`` (so a
  hub merchant with a million payments costs the same as a quiet one).
* Neighbour labels are reported only if their label time is strictly before ``t``.
* ``Subgraph.max_time_used`` is the latest timestamp of any stored edge or label the sample used;
  it is always ``< t`` (or ``-inf`` when nothing was used). The backtest leakage guard checks it.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent

LABEL_UNKNOWN, LABEL_LEGIT, LABEL_FRAUD = -1, 0, 1


class TxnRecord(NamedTuple):
    """What the graph remembers about a payment."""

    transaction_id: str
    ts: float
    account_id: str
    card_id: str
    merchant_id: str
    device_id: str | None
    ip: str | None
    amount: float
    channel: str


@dataclass(slots=True)
class Subgraph:
    """The sampled temporal neighbourhood of one query transaction.

    Local node 0 is the query transaction itself. For node ``i``:

    * ``node_type[i]`` – code into :data:`feature_stream.graph_schema.NODE_TYPES`
    * ``node_id[i]``   – the entity id
    * ``node_attr[i]`` – raw attributes as of ``t``:
      transactions ``(amount, age_s, label, channel_code)`` where ``label`` is
      ``LABEL_FRAUD``/``LABEL_LEGIT`` if known before ``t`` else ``LABEL_UNKNOWN`` and ``age_s`` is
      ``t - txn time`` in seconds; entities ``(degree, age_s, 0, 0)`` with ``degree`` the number of
      stored edges before ``t`` and ``age_s`` the seconds since the most recent of them
      (``-1`` if none).
    * ``node_hop[i]``  – 0 for the query, 1 for its own entities, 2.. for sampled hops.

    Edges are message edges ``src → dst`` (``src`` sampled from ``dst``), relation code ``rel``,
    edge time ``edge_ts`` (the query's own edges carry ``t``).
    """

    t: float
    node_type: list[int] = field(default_factory=list)
    node_id: list[str] = field(default_factory=list)
    node_attr: list[tuple[float, float, float, float]] = field(default_factory=list)
    node_hop: list[int] = field(default_factory=list)
    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    rel: list[int] = field(default_factory=list)
    edge_ts: list[float] = field(default_factory=list)
    max_time_used: float = -math.inf

    @property
    def num_nodes(self) -> int:
        return len(self.node_type)

    @property
    def num_edges(self) -> int:
        return len(self.src)


class StoredLabel(NamedTuple):
    """A label event as the graph keeps it: its id, its time and whether it says fraud."""

    event_id: str
    ts: float
    is_fraud: bool


class GraphStore(abc.ABC):
    """Port for the fused payment/device/social graph.

    Writes are idempotent by event id (a replayed event changes nothing). Public methods
    validate their arguments; ``_``-prefixed methods do the work in each implementation.
    """

    def add(self, event: Payment | DeviceEvent | SocialEvent | LabelEvent) -> None:
        """Fuse one validated event into the graph."""
        if isinstance(event, Payment):
            self._add_payment(event)
        elif isinstance(event, DeviceEvent):
            self._add_device(event)
        elif isinstance(event, SocialEvent):
            self._add_social(event)
        elif isinstance(event, LabelEvent):
            self._add_label(event)
        else:
            raise TypeError(f"not an event: {type(event).__name__}")

    def add_many(self, events: Sequence[Payment | DeviceEvent | SocialEvent | LabelEvent]) -> None:
        """Fuse a batch of events (implementations may write them in one round trip)."""
        for e in events:
            self.add(e)

    def sample(self, queries: Sequence[Payment], fanouts: Sequence[int]) -> list[Subgraph]:
        """Sample the point-in-time neighbourhood of each query payment (see module docs).

        ``fanouts`` gives the per-hop cap, e.g. ``(15, 10)``; each must be ≥ 1.
        """
        if not fanouts or any(int(f) < 1 for f in fanouts):
            raise ValueError(f"fanouts must be a non-empty sequence of ints >= 1, got {fanouts!r}")
        return self._sample(queries, tuple(int(f) for f in fanouts))

    def transaction(self, transaction_id: str) -> TxnRecord | None:
        """The stored payment, or ``None`` if unknown or evicted."""
        return self._transaction(transaction_id)

    def transactions(self, transaction_ids: Sequence[str]) -> dict[str, TxnRecord]:
        """The stored payments among ``transaction_ids`` by id (unknown or evicted ones are left
        out); implementations may answer in one round trip."""
        found = {tid: self._transaction(tid) for tid in dict.fromkeys(transaction_ids)}
        return {tid: rec for tid, rec in found.items() if rec is not None}

    def label(self, transaction_id: str, as_of: float) -> int:
        """The label of a payment as known strictly before ``as_of`` (``LABEL_*``)."""
        return self._label(transaction_id, as_of)

    def labels_for(self, transaction_ids: Sequence[str]) -> dict[str, list[StoredLabel]]:
        """Every label stored for each payment id, oldest first; ids without labels are left
        out. A label may be stored before its payment is (a backlog released out of order):
        the payment's arrival uses this to catch up on what the label contributes."""
        return self._labels_for(list(dict.fromkeys(transaction_ids)))

    def evict_before(self, ts: float) -> int:
        """Drop edges and payments older than ``ts``; returns the number of edges dropped."""
        return self._evict_before(ts)

    def expect_queries_from(self, t: float) -> None:  # noqa: B027 - a hint; most keep all
        """From now on no query comes before event time ``t``.

        A replay says so at each chunk before ingesting it, since the chunk's events run ahead
        of the queries scored after them; training history says ``-inf`` (its payments are
        sampled at their own times), a server ``inf`` (it scores at the newest event). A store
        that drops old edges to bound its memory (the in-memory degree cap and retention
        sweep) then keeps what a query at ``t`` or later reads as it would online, instead of
        dropping it for edges that came after the query. Until it is called, queries are
        taken to come at the newest event time. Nothing dropped comes back when ``t`` falls."""

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counts of nodes per type and stored edges (``edges`` key)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing to release
        """Release connections."""

    @abc.abstractmethod
    def _add_payment(self, e: Payment) -> None: ...
    @abc.abstractmethod
    def _add_device(self, e: DeviceEvent) -> None: ...
    @abc.abstractmethod
    def _add_social(self, e: SocialEvent) -> None: ...
    @abc.abstractmethod
    def _add_label(self, e: LabelEvent) -> None: ...
    @abc.abstractmethod
    def _sample(self, queries: Sequence[Payment], fanouts: tuple[int, ...]) -> list[Subgraph]: ...
    @abc.abstractmethod
    def _transaction(self, transaction_id: str) -> TxnRecord | None: ...
    @abc.abstractmethod
    def _labels_for(self, transaction_ids: list[str]) -> dict[str, list[StoredLabel]]: ...
    @abc.abstractmethod
    def _label(self, transaction_id: str, as_of: float) -> int: ...
    @abc.abstractmethod
    def _evict_before(self, ts: float) -> int: ...
