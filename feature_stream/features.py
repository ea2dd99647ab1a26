"""Online features as pure functions over events and a :class:`FeatureStore`.

Two halves, both free of I/O of their own:

* :func:`observations_for` – what an event adds to the store (the write side);
* :func:`compute_features` – the feature vector of a payment at its event time ``t`` (the read
  side), from window queries over ``[t - w, t)`` only. It never sees the payment itself or
  anything at or after ``t``; :attr:`FeatureVector.as_of` is the newest time it used.

Label-derived risk ("how many frauds were confirmed on this card/device/... before now") counts
fraud labels by their *label time*, so a chargeback that arrives after ``t`` cannot leak in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent
from feature_stream.feature_store import FeatureStore, Observation
from feature_stream.graph_schema import CHANNELS
from feature_stream.graph_store import StoredLabel, TxnRecord

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

FEATURE_NAMES: tuple[str, ...] = (
    "amount_log",
    "hour_sin",
    "hour_cos",
    *(f"channel_{c}" for c in CHANNELS),
    "card_count_1m",
    "card_count_1h",
    "card_count_24h",
    "card_sum_1h_log",
    "card_sum_24h_log",
    "account_count_1h",
    "account_count_24h",
    "account_sum_24h_log",
    "amount_to_account_mean_30d",
    "device_count_1h",
    "device_count_24h",
    "device_distinct_accounts_5m",
    "device_distinct_accounts_24h",
    "ip_distinct_accounts_24h",
    "first_seen_device_for_account",
    "first_seen_ip_for_account",
    "first_seen_merchant_for_card",
    "device_age_days_log",
    "merchant_age_days_log",
    "p2p_in_count_24h",
    "p2p_in_sum_24h_log",
    "fraud_labels_card_30d",
    "fraud_labels_account_30d",
    "fraud_labels_device_30d",
    "fraud_labels_ip_30d",
    "fraud_labels_merchant_30d",
    "card_count_7d",
    "card_count_30d",
    "card_mean_amount_7d_log",
    "card_mean_amount_30d_log",
    "amount_to_card_mean_7d",
    "merchant_count_1d_settled_log",
    "merchant_count_7d_settled_log",
    "merchant_count_30d_settled_log",
    "merchant_fraud_rate_1d",
    "merchant_fraud_rate_7d",
    "merchant_fraud_rate_30d",
    "merchant_fraud_streak_days",
)
"""Feature schema, in vector order. Versioned with the model artifact."""

FEATURE_SCHEMA_VERSION = 3

SETTLE_DAYS = 7.0
"""Days after which most of a payment's fraud labels have arrived. A merchant's fraud rate
over ``w`` days divides the fraud labels that *arrived* in ``[t - w, t)`` by its payments in
``[t - w - SETTLE_DAYS, t - SETTLE_DAYS)``, the payments those labels are mostly about. Only
labels known before ``t`` are counted, whatever the real delay, so it stays point in time;
when labels come later than this the rate is merely an underestimate."""

STREAK_DAYS = (1, 2, 3, 4, 5, 7, 10, 14, 17, 21, 24, 28)
"""Windows tried, shortest first, for ``merchant_fraud_streak_days``: the longest window
``w`` over which the merchant has settled payments and every one of them has a fraud label
(labels arrived in ``[t - w, t)`` ≥ payments in ``[t - w - SETTLE_DAYS, t - SETTLE_DAYS)``).
A merchant that has been compromised since some day keeps this growing day by day, and the
time since the compromise began is about ``SETTLE_DAYS`` more; the fraud *rates* above cannot
tell a run of frauds that started a week ago from one that is ending, and a histogram tree
cannot rebuild that from three ratios."""


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """Feature values in :data:`FEATURE_NAMES` order; ``as_of`` is the newest time used."""

    values: tuple[float, ...]
    as_of: float

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.values, strict=True))


def observations_for(
    event: Payment | DeviceEvent | SocialEvent | LabelEvent,
    lookup_txn: Callable[[str], TxnRecord | None],
    earlier_labels: Sequence[StoredLabel] = (),
) -> list[Observation]:
    """The observations an event contributes. Labels need the labelled payment's entities,
    found with ``lookup_txn``; a label for a payment not stored yet contributes nothing then,
    and its fraud observations come with the payment instead: pass a payment the labels
    already stored for it as ``earlier_labels`` (each observation carries the label's own
    time and event id, so whichever comes second writes nothing new).
    """
    eid = event.event_id
    ts = event.event_time.timestamp()
    if isinstance(event, Payment):
        a, c, m, amt = event.account_id, event.card_id, event.merchant_id, event.amount
        obs = [
            Observation(f"card:{c}", ts, amt, m, eid),
            Observation(f"acct:{a}", ts, amt, m, eid),
            Observation(f"card_merch:{c}", ts, 0.0, m, eid),
            Observation("merchants", ts, 0.0, m, eid),
            Observation(f"merch:{m}", ts, amt, c, eid),
        ]
        if event.device_id is not None:
            obs.append(Observation(f"dev:{event.device_id}", ts, amt, a, eid))
        for lab in earlier_labels:
            if lab.is_fraud:
                obs += _fraud_observations(_record(event), lab.ts, lab.event_id)
        return obs + _seen_on(a, event.device_id, event.ip, ts, eid)
    if isinstance(event, DeviceEvent):
        return _seen_on(event.account_id, event.device_id, event.ip, ts, eid)
    if isinstance(event, SocialEvent):
        if event.kind != "p2p_transfer":
            return []
        return [
            Observation(
                f"p2p_in:{event.dst_account_id}", ts, event.amount or 0.0, event.src_account_id, eid
            )
        ]
    if isinstance(event, LabelEvent):
        if not event.is_fraud:
            return []
        rec = lookup_txn(event.transaction_id)
        if rec is None:
            return []
        return _fraud_observations(rec, ts, eid)
    raise TypeError(f"not an event: {type(event).__name__}")


def _record(p: Payment) -> TxnRecord:
    return TxnRecord(
        p.event_id,
        p.event_time.timestamp(),
        p.account_id,
        p.card_id,
        p.merchant_id,
        p.device_id,
        p.ip,
        p.amount,
        p.channel,
    )


def _fraud_observations(rec: TxnRecord, ts: float, label_id: str) -> list[Observation]:
    """A fraud label known from ``ts`` on, on every entity of the labelled payment."""
    keys = [
        f"fraud:card:{rec.card_id}",
        f"fraud:acct:{rec.account_id}",
        f"fraud:merch:{rec.merchant_id}",
    ]
    if rec.device_id is not None:
        keys.append(f"fraud:dev:{rec.device_id}")
    if rec.ip is not None:
        keys.append(f"fraud:ip:{rec.ip}")
    return [Observation(k, ts, 1.0, rec.transaction_id, label_id) for k in keys]


def _seen_on(
    account: str, device: str | None, ip: str | None, ts: float, eid: str
) -> list[Observation]:
    """An account seen on a device and/or IP (a login or a payment): the shared-device,
    shared-IP and first-seen keys."""
    obs = []
    if device is not None:
        obs += [
            Observation(f"dev_acct:{device}", ts, 0.0, account, eid),
            Observation(f"acct_dev:{account}", ts, 0.0, device, eid),
            Observation("devices", ts, 0.0, device, eid),
        ]
    if ip is not None:
        obs += [
            Observation(f"ip_acct:{ip}", ts, 0.0, account, eid),
            Observation(f"acct_ip:{account}", ts, 0.0, ip, eid),
        ]
    return obs


def compute_features(p: Payment, store: FeatureStore) -> FeatureVector:
    """Features of payment ``p`` at its event time, from observations strictly before it."""
    t = p.event_time.timestamp()
    latest = -math.inf

    def win(key: str, w: float) -> tuple[int, float]:
        nonlocal latest
        s = store.window(key, t - w, t)
        if s.latest > latest:
            latest = s.latest
        return s.count, s.total

    def span(key: str, lo: float, hi: float) -> tuple[int, float]:
        nonlocal latest
        s = store.window(key, lo, hi)
        if s.latest > latest:
            latest = s.latest
        return s.count, s.total

    def distinct(key: str, w: float) -> int:
        nonlocal latest
        n, last = store.distinct(key, t - w, t)
        if last > latest:
            latest = last
        return n

    def seen_before(key: str, member: str) -> float:
        """Seconds since ``member`` was first seen under ``key`` before t, or -1 if never."""
        nonlocal latest
        first = store.first_seen(key, member)
        if first >= t:
            return -1.0
        if first > latest:
            latest = first
        return t - first

    a, c, m, d, ip = p.account_id, p.card_id, p.merchant_id, p.device_id, p.ip
    hour = (t % DAY) / HOUR
    v: list[float] = [
        math.log1p(p.amount),
        math.sin(2 * math.pi * hour / 24),
        math.cos(2 * math.pi * hour / 24),
        *(1.0 if p.channel == ch else 0.0 for ch in CHANNELS),
    ]
    card_1m, _ = win(f"card:{c}", MINUTE)
    card_1h, card_sum_1h = win(f"card:{c}", HOUR)
    card_24h, card_sum_24h = win(f"card:{c}", DAY)
    acct_1h, _ = win(f"acct:{a}", HOUR)
    acct_24h, acct_sum_24h = win(f"acct:{a}", DAY)
    acct_30d, acct_sum_30d = win(f"acct:{a}", 30 * DAY)
    mean_30d = acct_sum_30d / acct_30d if acct_30d else p.amount
    v += [
        card_1m,
        card_1h,
        card_24h,
        math.log1p(card_sum_1h),
        math.log1p(card_sum_24h),
        acct_1h,
        acct_24h,
        math.log1p(acct_sum_24h),
        p.amount / max(mean_30d, 0.01),
    ]
    if d is not None:
        dev_1h, _ = win(f"dev:{d}", HOUR)
        dev_24h, _ = win(f"dev:{d}", DAY)
        v += [
            dev_1h,
            dev_24h,
            distinct(f"dev_acct:{d}", 5 * MINUTE),
            distinct(f"dev_acct:{d}", DAY),
        ]
    else:
        v += [0.0, 0.0, 0.0, 0.0]
    v.append(distinct(f"ip_acct:{ip}", DAY) if ip is not None else 0.0)
    dev_for_acct = seen_before(f"acct_dev:{a}", d) if d is not None else 0.0
    ip_for_acct = seen_before(f"acct_ip:{a}", ip) if ip is not None else 0.0
    merch_for_card = seen_before(f"card_merch:{c}", m)
    device_age = seen_before("devices", d) if d is not None else 0.0
    merchant_age = seen_before("merchants", m)
    v += [
        1.0 if dev_for_acct < 0 else 0.0,
        1.0 if ip_for_acct < 0 else 0.0,
        1.0 if merch_for_card < 0 else 0.0,
        math.log1p(max(device_age, 0.0) / DAY),
        math.log1p(max(merchant_age, 0.0) / DAY),
    ]
    p2p_n, p2p_sum = win(f"p2p_in:{a}", DAY)
    v += [p2p_n, math.log1p(p2p_sum)]
    v += [
        win(f"fraud:card:{c}", 30 * DAY)[0],
        win(f"fraud:acct:{a}", 30 * DAY)[0],
        win(f"fraud:dev:{d}", 30 * DAY)[0] if d is not None else 0.0,
        win(f"fraud:ip:{ip}", 30 * DAY)[0] if ip is not None else 0.0,
        win(f"fraud:merch:{m}", 30 * DAY)[0],
    ]
    card_7d, card_sum_7d = win(f"card:{c}", 7 * DAY)
    card_30d, card_sum_30d = win(f"card:{c}", 30 * DAY)
    mean_7d = card_sum_7d / card_7d if card_7d else p.amount
    v += [
        card_7d,
        card_30d,
        math.log1p(mean_7d),
        math.log1p(card_sum_30d / card_30d if card_30d else p.amount),
        p.amount / max(mean_7d, 0.01),
    ]
    settled = t - SETTLE_DAYS * DAY
    counts, rates = [], []
    for days in (1, 7, 30):
        n, _ = span(f"merch:{m}", settled - days * DAY, settled)
        frauds, _ = win(f"fraud:merch:{m}", days * DAY)
        counts.append(math.log1p(n))
        rates.append(min(1.0, frauds / n) if n else 0.0)
    v += counts + rates
    streak = 0.0
    for days in STREAK_DAYS:
        n, _ = span(f"merch:{m}", settled - days * DAY, settled)
        frauds, _ = win(f"fraud:merch:{m}", days * DAY)
        if frauds < n:  # a settled payment in this window has no fraud label
            break
        if n:
            streak = float(days)
    v.append(streak)
    return FeatureVector(tuple(float(x) for x in v), latest)
