"""Legitimate behaviour: habitual payments with a daily rhythm, logins, and social links.

Vectorised over (account, day) cells: per-cell Poisson counts, then one array draw per attribute.
"""

from __future__ import annotations

import numpy as np

from feature_stream.generator_world import (
    CARD_PRESENT,
    CONTACT,
    DAY,
    ECOMMERCE,
    ENROLMENT,
    HOUR,
    HOURLY,
    P2P,
    SHARED_ADDRESS,
    EventLog,
    World,
)

P2P_PER_PAIR_DAY = 0.01
"""Rate of P2P transfers between two members of a friend group."""


def simulate_payments(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Payments and the logins around them, at each account's own rate and habits."""
    acc, t = _daily_events(world, rng, world.pay_rate * world.activity)
    n = len(acc)
    habit = rng.random(n) < world.p_habitual[acc]
    slot = (world.n_habitual[acc] * rng.random(n) ** 2).astype(np.int64)  # favourites first
    explore = rng.choice(world.n_legit_merchants, size=n, p=world.merchant_popularity)
    merchant = np.where(habit, world.habitual[acc, slot], explore)
    channel = np.where(rng.random(n) < world.merchant_ecommerce[merchant], ECOMMERCE, CARD_PRESENT)
    # Card-present payments carry a device only when made with a phone wallet.
    has_device = (channel == ECOMMERCE) | (rng.random(n) < 0.15)
    device = np.where(has_device, _device_at(world, rng, acc, t), -1)
    ip = np.where(has_device, world.ip_of(rng, acc), -1)
    # A few online payments come from public devices, so a device shared by many accounts is
    # suspicious but not proof.
    kiosk = (channel == ECOMMERCE) & (rng.random(n) < 0.004)
    which = rng.integers(0, len(world.kiosks), n)
    device = np.where(kiosk, world.kiosks[which], device)
    ip = np.where(kiosk, world.kiosk_ips[which], ip)
    amount = world.amount_scale[acc] * world.merchant_scale[merchant] * rng.lognormal(0, 0.55, n)
    splurge = rng.random(n) < 0.012  # the long tail: furniture, travel, rent
    amount = np.where(splurge, amount * rng.lognormal(np.log(6.0), 0.7, n), amount)
    log.pay(
        t, acc, world.card_of(rng, acc), merchant, np.clip(amount, 0.3, 50_000), channel, device, ip
    )

    before = (channel == ECOMMERCE) & (rng.random(n) < 0.6)
    t_login = t[before] - rng.uniform(20, 900, before.sum())
    keep = t_login >= 0
    log.login(t_login[keep], acc[before][keep], device[before][keep], ip[before][keep])


def simulate_logins(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Logins without a payment, and the enrolment of devices adopted mid-stream."""
    acc, t = _daily_events(world, rng, world.login_rate * world.activity)
    log.login(t, acc, _device_at(world, rng, acc, t), world.ip_of(rng, acc))

    movers = np.flatnonzero(world.new_device >= 0)
    at = world.new_device_at[movers]
    ips = world.home_ips[movers, 0]
    log.login(at, movers, world.new_device[movers], ips, kind=ENROLMENT)
    log.login(at + rng.uniform(5, 120, len(movers)), movers, world.new_device[movers], ips)


def simulate_social(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Contacts and P2P transfers inside friend groups; shared addresses inside households."""
    src, dst = _pairs(world.friend_groups)
    contact = rng.random(len(src)) < 0.55
    s, d = _shuffle_direction(rng, src[contact], dst[contact])
    log.link(_link_times(world, rng, len(s)), CONTACT, s, d)

    per_pair = rng.poisson(P2P_PER_PAIR_DAY * world.days, len(src))
    s, d = _shuffle_direction(rng, np.repeat(src, per_pair), np.repeat(dst, per_pair))
    day = rng.integers(0, world.days, len(s))
    t = day * DAY + rng.choice(24, size=len(s), p=HOURLY) * HOUR + rng.uniform(0, HOUR, len(s))
    log.link(t, P2P, s, d, np.clip(rng.lognormal(np.log(30.0), 0.8, len(s)), 1.0, 5_000))

    src, dst = _pairs(world.households)
    log.link(_link_times(world, rng, len(src)), SHARED_ADDRESS, src, dst)


def _daily_events(
    world: World, rng: np.random.Generator, rate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accounts and times of events drawn at ``rate`` per day, with the daily rhythm."""
    weekday = (world.weekday0 + np.arange(world.days)) % 7
    day_factor = np.select([weekday == 5, weekday == 6], [1.15, 0.85], 1.0)
    counts = rng.poisson(rate[:, None] * day_factor[None, :])
    cell = np.repeat(np.arange(counts.size), counts.ravel())
    acc, day = np.divmod(cell, world.days)
    hour = rng.choice(24, size=len(cell), p=HOURLY) + rng.random(len(cell))
    seconds = ((hour + world.hour_shift[acc]) * HOUR) % DAY
    return acc, day * DAY + seconds


def _device_at(
    world: World, rng: np.random.Generator, acc: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """A home device; a device adopted mid-stream takes over most use from its adoption on."""
    home = world.home_device_of(rng, acc)
    adopted = (world.new_device[acc] >= 0) & (t > world.new_device_at[acc] + 120)
    return np.where(adopted & (rng.random(len(acc)) < 0.6), world.new_device[acc], home)


def _pairs(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    src, dst = [], []
    for group in groups:
        i, j = np.triu_indices(len(group), 1)
        src.append(group[i])
        dst.append(group[j])
    if not src:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(src), np.concatenate(dst)


def _shuffle_direction(
    rng: np.random.Generator, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    flip = rng.random(len(a)) < 0.5
    return np.where(flip, b, a), np.where(flip, a, b)


def _link_times(world: World, rng: np.random.Generator, n: int) -> np.ndarray:
    """Most existing relationships surface in the first two days, the rest over the period."""
    early = rng.random(n) < 0.7
    return np.where(early, rng.uniform(0, 2 * DAY, n), rng.uniform(0, world.span, n))
