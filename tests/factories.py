"""Builders of typed events for tests.

Times are given as seconds after :data:`T0` (a timezone-aware UTC instant) so a test reads as a
timeline; :func:`ts` turns such an offset into the POSIX seconds the stores use.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent
from feature_stream.generator import GeneratorConfig

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0 + seconds`` as an aware datetime."""
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> float:
    """``T0 + seconds`` as POSIX seconds."""
    return at(seconds).timestamp()


def payment(
    event_id: str,
    t: float,
    *,
    account: str = "acc",
    card: str = "card",
    merchant: str = "merch",
    amount: float = 10.0,
    device: str | None = None,
    ip: str | None = None,
    channel: str = "ecommerce",
) -> Payment:
    return Payment(
        event_id=event_id,
        event_time=at(t),
        account_id=account,
        card_id=card,
        merchant_id=merchant,
        amount=amount,
        device_id=device,
        ip=ip,
        channel=channel,
    )


def login(
    event_id: str, t: float, *, account: str, device: str, ip: str | None = None
) -> DeviceEvent:
    return DeviceEvent(
        event_id=event_id, event_time=at(t), account_id=account, device_id=device, ip=ip
    )


def link(
    event_id: str,
    t: float,
    *,
    src: str,
    dst: str,
    kind: str = "contact",
    amount: float | None = None,
) -> SocialEvent:
    return SocialEvent(
        event_id=event_id,
        event_time=at(t),
        kind=kind,
        src_account_id=src,
        dst_account_id=dst,
        amount=amount,
    )


def label(event_id: str, t: float, *, txn: Payment, fraud: bool = True) -> LabelEvent:
    return LabelEvent(
        event_id=event_id,
        event_time=at(t),
        transaction_id=txn.event_id,
        account_id=txn.account_id,
        is_fraud=fraud,
    )


SMALL_STREAM = GeneratorConfig(
    n_accounts=300,
    n_merchants=60,
    days=14,
    rings=1,
    takeover_waves=1,
    card_testing_bursts=3,
    mule_chains=1,
    device_farm_episodes=2,
    bust_out_merchants=1,
    invalid_rate=0.01,
)
"""A two-week generated stream small enough for a test to replay end to end in seconds."""
