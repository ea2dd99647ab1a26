"""Legitimate behaviour: habitual payments with a daily rhythm, logins, and social links.

Vectorised over (account, day) cells: per-cell Poisson counts, then one array draw per attribute.

Real customers trip most single-entity fraud rules now and then, and so do these:

=========================  ====================================================================
device churn               ≈ 20 % of sessions with a device come from a fingerprint nobody has
                           used before (incognito windows, cleared cookies, a new browser, a
                           borrowed phone); 15 % of accounts adopt a new phone or laptop
                           mid-stream. Exploring merchants new to the card is common (≈ 35 %).
travel                     during a trip (40 % of accounts, 2–6 days) payments go to merchants
                           new to the card, are 1.5× larger, come through the hotel's Wi-Fi or
                           roaming, and for a third of trips from a rarely used device.
big purchases              ≈ 2.5 % of payments are 5–20× the account's usual amount (travel,
                           electronics, furniture), half of them at high-value merchants.
micro-payment bursts       8 % of accounts now and then make 5–15 payments of 0.5–5 within a
                           few minutes: in-game and app-store purchases at the same digital-goods
                           merchants card testers use, or vending, laundry and transit taps.
family tablets             households with a shared tablet have sessions in which 3–5 members
                           log in within a few minutes and one or more of them pays from it
                           (see :func:`simulate_households`).
funded purchases           a household member sends 50–3000 by P2P and the receiver spends most
                           of it within hours (a parent paying for a laptop or a deposit), so
                           "P2P in, then a large payment" is not only a mule pattern.
shared IPs                 carrier NAT and public Wi-Fi (see :mod:`generator_world`).
=========================  ====================================================================
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
    times_in_window,
)

P2P_PER_PAIR_DAY = 0.025
"""Rate of P2P transfers between two members of a friend group."""
FUNDED_PER_PAIR_DAY = 0.02
"""Rate of money sent between two household members for a purchase the receiver then makes."""
FRESH_DEVICE_SHARE = 0.2
"""Share of sessions with a device that use a fingerprint never seen before."""
BURSTS_PER_DAY = 0.07
"""Micro-payment bursts per day of an account prone to them."""
TABLET_SESSIONS_PER_DAY = 0.25
"""Sessions per day in which several household members use the family tablet together."""


def simulate_payments(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Payments and the logins around them, at each account's own rate and habits."""
    acc, t = _daily_events(world, rng, world.pay_rate * world.activity)
    n = len(acc)
    away = (t >= world.trip_start[acc]) & (t < world.trip_end[acc])
    habit = (rng.random(n) < world.p_habitual[acc]) & ~away
    slot = (world.n_habitual[acc] * rng.random(n) ** 2).astype(np.int64)  # favourites first
    explore = rng.choice(world.n_legit_merchants, size=n, p=world.merchant_popularity)
    merchant = np.where(habit, world.habitual[acc, slot], explore)
    # The long tail: travel, electronics, furniture – 5–20× the usual amount, often at a shop
    # the card has never used.
    splurge = rng.random(n) < 0.025
    big_shop = splurge & (rng.random(n) < 0.5)
    merchant[big_shop] = rng.choice(world.high_value_merchants, int(big_shop.sum()))
    merchant = world.open_merchants(rng, merchant, t)
    channel = np.where(rng.random(n) < world.merchant_ecommerce[merchant], ECOMMERCE, CARD_PRESENT)
    # Card-present payments carry a device only when made with a phone wallet.
    has_device = (channel == ECOMMERCE) | (rng.random(n) < 0.15)
    device = np.where(has_device, _device_at(world, rng, acc, t), -1)
    fresh = has_device & (rng.random(n) < FRESH_DEVICE_SHARE)
    device[fresh] = world.new_devices(int(fresh.sum()))
    ip = np.where(has_device, world.ip_of(rng, acc), -1)
    on_trip = has_device & away
    ip[on_trip] = np.where(
        rng.random(int(on_trip.sum())) < 0.6,
        world.trip_ip[acc[on_trip]],
        world.shared_ips(rng, int(on_trip.sum())),
    )
    travel_device = on_trip & (world.trip_device[acc] >= 0) & (rng.random(n) < 0.5)
    device[travel_device] = world.trip_device[acc[travel_device]]
    # A few online payments come from public devices, so a device shared by many accounts is
    # suspicious but not proof.
    kiosk = (channel == ECOMMERCE) & (rng.random(n) < 0.004)
    which = rng.integers(0, len(world.kiosks), n)
    device = np.where(kiosk, world.kiosks[which], device)
    ip = np.where(kiosk, world.kiosk_ips[which], ip)
    amount = world.amount_scale[acc] * world.merchant_scale[merchant] * rng.lognormal(0, 0.55, n)
    amount = np.where(splurge, amount * rng.uniform(5.0, 20.0, n), amount)
    amount = np.where(away, amount * 1.5, amount)
    log.pay(
        t, acc, world.card_of(rng, acc), merchant, np.clip(amount, 0.3, 50_000), channel, device, ip
    )
    _login_before(log, rng, channel == ECOMMERCE, t, acc, device, ip)


def simulate_bursts(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Micro-payment bursts: 5–15 payments of 0.5–5 within minutes on one card.

    Six in ten are in-game or app-store purchases online, from the account's own device, at the
    digital-goods merchants that card testers also favour; the rest are card-present taps
    (vending and laundry machines, a group's transit fares on one card).
    """
    prone = np.flatnonzero(world.burst_prone)
    counts = rng.poisson(BURSTS_PER_DAY * world.days * world.activity[prone])
    who = np.repeat(prone, counts)
    b = len(who)
    if b == 0:
        return
    t0 = times_in_window(rng, 0.0, world.span - HOUR, b)
    size = rng.integers(5, 16, b)
    digital = rng.random(b) < 0.6
    in_store = np.flatnonzero(world.merchant_ecommerce[: world.n_legit_merchants] < 0.2)
    shop = np.where(
        digital,
        rng.choice(world.testing_merchants, b),
        rng.choice(in_store, b),
    )
    other = rng.choice(world.testing_merchants, b)
    card = world.card_of(rng, who)
    home = world.home_device_of(rng, who)
    ip = world.ip_of(rng, who)

    burst = np.repeat(np.arange(b), size)
    n = len(burst)
    t = t0[burst] + _group_cumsum(rng.uniform(8.0, 90.0, n), size)
    keep = t < world.span
    second = digital[burst] & (rng.random(n) < 0.2)
    merchant = np.where(second, other[burst], shop[burst])
    wallet = digital[burst] | (rng.random(n) < 0.3)
    channel = np.where(digital[burst], ECOMMERCE, CARD_PRESENT)
    device = np.where(wallet, home[burst], -1)
    ips = np.where(wallet, ip[burst], -1)
    acc = who[burst]
    log.pay(
        t[keep],
        acc[keep],
        card[burst][keep],
        merchant[keep],
        rng.uniform(0.5, 5.0, n)[keep],
        channel[keep],
        device[keep],
        ips[keep],
    )
    opened = digital & (rng.random(b) < 0.7)  # the app or shop session starts with a login
    t_login = t0[opened] - rng.uniform(10, 300, int(opened.sum()))
    ok = t_login >= 0
    log.login(t_login[ok], who[opened][ok], home[opened][ok], ip[opened][ok])


def simulate_households(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Family-tablet sessions: 3–5 household members log in on the shared tablet within a few
    minutes (one after another at the kitchen table), and one or more of them pays from it at
    one of their usual merchants, through the home connection."""
    for members, tablet in world.family_tablets:
        if len(members) < 3:
            continue
        ip = world.home_ips[members[0], 0]
        n_sessions = int(rng.poisson(TABLET_SESSIONS_PER_DAY * world.days))
        for t0 in times_in_window(rng, 0.0, world.span - 600.0, n_sessions):
            k = int(rng.integers(3, len(members) + 1))
            who = rng.choice(members, k, replace=False)
            t_login = t0 + np.sort(rng.uniform(0, 200, k))
            log.login(t_login, who, tablet, ip)
            pays = rng.random(k) < 0.4
            pays[rng.integers(k)] = True
            payers = who[pays]
            m = len(payers)
            slot = (world.n_habitual[payers] * rng.random(m) ** 2).astype(np.int64)
            merchant = world.open_merchants(
                rng, world.habitual[payers, slot], np.full(m, t_login[-1])
            )
            amount = (
                world.amount_scale[payers]
                * world.merchant_scale[merchant]
                * rng.lognormal(0, 0.55, m)
            )
            log.pay(
                t_login[-1] + rng.uniform(5, 150, m),
                payers,
                world.card_of(rng, payers),
                merchant,
                np.clip(amount, 0.3, 50_000),
                ECOMMERCE,
                tablet,
                ip,
            )


def simulate_logins(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Logins without a payment, and the enrolment of devices adopted mid-stream."""
    acc, t = _daily_events(world, rng, world.login_rate * world.activity)
    device = _device_at(world, rng, acc, t)
    fresh = rng.random(len(acc)) < FRESH_DEVICE_SHARE / 2
    device[fresh] = world.new_devices(int(fresh.sum()))
    log.login(t, acc, device, world.ip_of(rng, acc))

    movers = np.flatnonzero(world.new_device >= 0)
    at = world.new_device_at[movers]
    ips = world.home_ips[movers, 0]
    log.login(at, movers, world.new_device[movers], ips, kind=ENROLMENT)
    log.login(at + rng.uniform(5, 120, len(movers)), movers, world.new_device[movers], ips)


def simulate_social(world: World, log: EventLog, rng: np.random.Generator) -> None:
    """Contacts and P2P transfers inside friend groups; shared addresses inside households;
    money sent inside households for a purchase the receiver makes soon after."""
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

    per_pair = rng.poisson(FUNDED_PER_PAIR_DAY * world.days, len(src))
    s, d = _shuffle_direction(rng, np.repeat(src, per_pair), np.repeat(dst, per_pair))
    n = len(s)
    t = times_in_window(rng, 0.0, world.span - DAY, n)
    sent = np.clip(rng.lognormal(np.log(350.0), 0.7, n), 50, 3_000)
    log.link(t, P2P, s, d, sent)
    t_pay = t + rng.uniform(0.3, 20.0, n) * HOUR
    merchant = np.where(
        rng.random(n) < 0.6,
        rng.choice(world.high_value_merchants, n),
        rng.choice(world.n_legit_merchants, size=n, p=world.merchant_popularity),
    )
    merchant = world.open_merchants(rng, merchant, t_pay)
    online = rng.random(n) < 0.7
    device = np.where(online, _device_at(world, rng, d, t_pay), -1)
    ip = np.where(online, world.ip_of(rng, d), -1)
    log.pay(
        t_pay,
        d,
        world.card_of(rng, d),
        merchant,
        sent * rng.uniform(0.75, 1.05, n),
        np.where(online, ECOMMERCE, CARD_PRESENT),
        device,
        ip,
    )
    _login_before(log, rng, online, t_pay, d, device, ip)


def _login_before(
    log: EventLog,
    rng: np.random.Generator,
    eligible: np.ndarray,
    t: np.ndarray,
    acc: np.ndarray,
    device: np.ndarray,
    ip: np.ndarray,
) -> None:
    """Six in ten online payments follow a login on the same device a few minutes earlier."""
    before = eligible & (rng.random(len(t)) < 0.6)
    t_login = t[before] - rng.uniform(20, 900, int(before.sum()))
    keep = t_login >= 0
    log.login(t_login[keep], acc[before][keep], device[before][keep], ip[before][keep])


def _group_cumsum(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at each group of consecutive ``sizes`` elements."""
    total = np.cumsum(values)
    starts = np.cumsum(sizes) - sizes
    offset = np.repeat(total[starts] - values[starts], sizes)
    return total - offset


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
