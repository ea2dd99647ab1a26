"""Fraud scenarios injected into the synthetic stream, each with its ground-truth name.

Every scenario uses the ordinary event types; nothing in a record says "fraud". What gives fraud
away is structure that builds up over time: fraud actors reuse devices, IPs, merchants, cards and
social links across accounts and days, so a payment is often a few hops from earlier fraud whose
labels have arrived. Each scenario schedules its episodes so that every event falls inside the
simulated period.

=====================  ==================================================================
``ring``               4–8 controlled accounts share 1–2 devices and IPs and are linked as
                       contacts / shared phones; moderate payments spread over many days.
``account_takeover``   a wave takes over 3–6 victims from one new device and IP: a login,
                       then larger payments at merchants new to each victim.
``card_testing``       a stolen card: 5–20 payments of 0.5–5 at 1–3 merchants within minutes,
                       then 1–2 large ones; the bot's devices and IPs recur across bursts.
``mule_chain``         victims send P2P transfers to mule A, then A → B (→ C → D) over hours
                       or days; the mules cash out at gift-card merchants (the fraud).
``device_farm``        3–8 accounts log in on one device within two minutes, then each pays
                       from it within the next three; farm devices run many episodes.
``bust_out_merchant``  a merchant appears mid-stream; many accounts pay it inflated amounts
                       for 4–10 days. Every payment to it is fraud.
=====================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from feature_stream.generator_world import (
    CARD_PRESENT,
    CONTACT,
    DAY,
    ECOMMERCE,
    FRAUD_HOURLY,
    HOUR,
    P2P,
    SHARED_PHONE,
    EventLog,
    World,
    times_in_window,
)

SCENARIOS = (
    "ring",
    "account_takeover",
    "card_testing",
    "mule_chain",
    "device_farm",
    "bust_out_merchant",
)
"""Scenario names; a payment's scenario code is ``1 + SCENARIOS.index(name)``, 0 for legit."""

FARM_LOGIN_WINDOW = 120.0
FARM_PAY_DELAY = (5.0, 150.0)  # after the login window; logins stay < 5 min before payments


def code(name: str) -> int:
    return 1 + SCENARIOS.index(name)


def _amount(
    rng: np.random.Generator, median: float, sigma: float, n: int, lo: float, hi: float
) -> np.ndarray:
    return np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi)


def _login_before(
    log: EventLog,
    rng: np.random.Generator,
    share: float,
    t: np.ndarray,
    acc: np.ndarray,
    device: np.ndarray,
    ip: np.ndarray,
) -> None:
    mask = rng.random(len(t)) < share
    t_login = t[mask] - rng.uniform(30, 600, mask.sum())
    keep = t_login >= 0
    log.login(t_login[keep], acc[mask][keep], device[mask][keep], ip[mask][keep])


def ring(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Fraud rings: shared devices and IPs connect members across many days."""
    for _ in range(count):
        members = world.take_controlled(rng, int(rng.integers(4, 9)))
        devices = world.new_devices(int(rng.integers(1, 3)))
        ips = world.new_ips(int(rng.integers(1, 3)))
        merchants = rng.choice(
            world.n_legit_merchants, size=int(rng.integers(4, 9)), p=world.merchant_popularity
        )
        start = rng.uniform(0, 0.5) * world.span
        end = start + rng.uniform(0.5, 1.0) * (world.span - start)

        i, j = np.triu_indices(len(members), 1)
        keep = (j == i + 1) | (rng.random(len(i)) < 0.5)  # a chain keeps the ring connected
        kind = np.where(rng.random(keep.sum()) < 0.3, SHARED_PHONE, CONTACT)
        t_link = rng.uniform(max(0.0, start - 3 * DAY), start + DAY, keep.sum())
        log.link(t_link, kind, members[i[keep]], members[j[keep]])

        active_days = (end - start) / DAY
        per_member = np.maximum(rng.poisson(rng.uniform(0.35, 0.6) * active_days, len(members)), 1)
        acc = np.repeat(members, per_member)
        n = len(acc)
        t = times_in_window(rng, start, end, n, FRAUD_HOURLY)
        device, ip = rng.choice(devices, n), rng.choice(ips, n)
        log.pay(
            t,
            acc,
            world.cards[acc, 0],
            rng.choice(merchants, n),
            _amount(rng, 90, 0.7, n, 8, 2_000),
            ECOMMERCE,
            device,
            ip,
            code("ring"),
        )
        _login_before(log, rng, 0.75, t, acc, device, ip)

        # Members also check in on the shared devices without paying.
        visits = np.repeat(members, rng.poisson(0.25 * active_days, len(members)))
        t_visit = times_in_window(rng, start, end, len(visits), FRAUD_HOURLY)
        log.login(t_visit, visits, rng.choice(devices, len(visits)), rng.choice(ips, len(visits)))


def account_takeover(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Takeover waves: one new device and IP per wave, reused across its victims."""
    for _ in range(count):
        device, ip = world.new_devices(1)[0], world.new_ips(1)[0]
        victims = world.take_victims(rng, int(rng.integers(3, 7)))
        wave = rng.uniform(1, 4) * DAY
        start = rng.uniform(0, world.span - wave - DAY)
        for victim, t0 in zip(
            victims, np.sort(start + rng.uniform(0, wave, len(victims))), strict=True
        ):
            log.login(t0, victim, device, ip)
            n = int(rng.integers(2, 6))
            t = t0 + np.cumsum(rng.uniform(120, 3 * HOUR, n))
            known = world.habitual[victim, : world.n_habitual[victim]]
            fresh = np.setdiff1d(world.high_value_merchants, known)
            fresh = fresh if len(fresh) else world.high_value_merchants
            amount = np.clip(
                world.amount_scale[victim] * rng.lognormal(np.log(5.0), 0.5, n), 25, 8_000
            )
            acc = np.full(n, victim)
            log.pay(
                t,
                acc,
                world.cards[victim, 0],
                rng.choice(fresh, n),
                amount,
                ECOMMERCE,
                device,
                ip,
                code("account_takeover"),
            )
            _login_before(log, rng, 0.5, t, acc, np.full(n, device), np.full(n, ip))


def card_testing(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Stolen cards tried with tiny payments within minutes, then cashed with large ones."""
    if count == 0:
        return
    bots = world.new_devices(count // 10 + 1)
    bot_ips = world.new_ips(count // 6 + 2)
    victims = world.take_victims(rng, count)
    for victim in victims:
        card = world.card_of(rng, np.array([victim]))[0]
        device, ip = rng.choice(bots), rng.choice(bot_ips)
        t0 = rng.uniform(0, world.span - HOUR)
        n_tiny = int(rng.integers(5, 21))
        t_tiny = t0 + np.cumsum(rng.uniform(3, 30, n_tiny))
        shops = rng.choice(world.testing_merchants, size=int(rng.integers(1, 4)), replace=False)
        n_big = int(rng.integers(1, 3))
        t_big = t_tiny[-1] + np.cumsum(rng.uniform(60, 480, n_big))
        t = np.concatenate([t_tiny, t_big])
        merchant = np.concatenate(
            [rng.choice(shops, n_tiny), rng.choice(world.high_value_merchants, n_big)]
        )
        amount = np.concatenate(
            [rng.uniform(0.5, 5.0, n_tiny), _amount(rng, 450, 0.5, n_big, 80, 5_000)]
        )
        log.pay(t, victim, card, merchant, amount, ECOMMERCE, device, ip, code("card_testing"))


def mule_chain(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Money moved from victims through chains of mules, then cashed out at gift-card shops."""
    if count == 0:
        return
    pool = world.take_controlled(rng, max(4, round(1.5 * count)))
    herders = world.new_devices(count // 4 + 1)
    herder_ips = world.new_ips(count // 4 + 1)
    for _ in range(count):
        mules = rng.choice(pool, size=int(rng.integers(2, 5)), replace=False)
        victims = world.take_victims(rng, int(rng.integers(1, 5)))
        t0 = rng.uniform(0, world.span - 9 * DAY)
        t_victim = t0 + rng.uniform(0, DAY, len(victims))
        sent = _amount(rng, 400, 0.6, len(victims), 50, 10_000)
        log.link(t_victim, P2P, victims, mules[0], sent)

        received = np.empty(len(mules))
        received[0], total = t_victim.max(), sent.sum()
        for k in range(1, len(mules)):
            received[k] = received[k - 1] + rng.uniform(1, 36) * HOUR
            total *= rng.uniform(0.85, 0.97)
            log.link(received[k], P2P, mules[k - 1], mules[k], total)

        h = rng.integers(len(herders))
        for k, mule in enumerate(mules):
            last = k == len(mules) - 1
            n = int(rng.integers(2, 5)) if last else int(rng.integers(1, 4))
            t = received[k] + np.cumsum(rng.uniform(0.5, 20, n)) * HOUR
            herded = rng.random() < 0.5
            device = herders[h] if herded else world.devices[mule, 0]
            ip = herder_ips[h] if herded else world.home_ips[mule, 0]
            acc = np.full(n, mule)
            log.pay(
                t,
                acc,
                world.cards[mule, 0],
                rng.choice(world.cash_out_merchants, n),
                _amount(rng, 220, 0.5, n, 40, 3_000),
                ECOMMERCE,
                device,
                ip,
                code("mule_chain"),
            )
            _login_before(log, rng, 0.7, t, acc, np.full(n, device), np.full(n, ip))


def device_farm(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Farm devices: bursts of ≥ 3 accounts logging in within minutes, then paying from it."""
    if count == 0:
        return
    n_farms = -(-count // 6)
    farms = world.new_devices(n_farms)
    farm_ips = world.new_ips(2 * n_farms).reshape(n_farms, 2)
    pools = [world.take_controlled(rng, int(rng.integers(8, 15))) for _ in range(n_farms)]
    shops = [
        rng.choice(
            world.n_legit_merchants, size=int(rng.integers(2, 5)), p=world.merchant_popularity
        )
        for _ in range(n_farms)
    ]
    for episode in range(count):
        f = episode % n_farms
        t0 = rng.uniform(0, world.span - 600)
        accounts = rng.choice(pools[f], size=int(rng.integers(3, 9)), replace=False)
        ip = rng.choice(farm_ips[f])
        log.login(
            t0 + np.sort(rng.uniform(0, FARM_LOGIN_WINDOW, len(accounts))), accounts, farms[f], ip
        )
        acc = np.repeat(accounts, rng.integers(1, 3, len(accounts)))
        n = len(acc)
        t = t0 + FARM_LOGIN_WINDOW + rng.uniform(*FARM_PAY_DELAY, n)
        log.pay(
            t,
            acc,
            world.cards[acc, 0],
            rng.choice(shops[f], n),
            _amount(rng, 75, 0.6, n, 5, 1_500),
            ECOMMERCE,
            farms[f],
            ip,
            code("device_farm"),
        )


def bust_out_merchant(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Colluding merchants that appear mid-stream and take inflated payments from many accounts."""
    if count == 0:
        return
    colluders = world.take_controlled(rng, max(5, 8 * count))
    ordinary = np.flatnonzero(~world.controlled)
    for merchant in world.new_merchants(count):
        start = rng.uniform(0.3, 0.65) * world.span
        end = min(world.span, start + rng.uniform(4, 10) * DAY)
        k = int(rng.integers(15, 41))
        n_coll = min(len(colluders), round(0.4 * k))
        payers = np.concatenate(
            [
                rng.choice(colluders, n_coll, replace=False),
                rng.choice(ordinary, k - n_coll, replace=False),
            ]
        )
        acc = np.repeat(payers, rng.integers(1, 4, len(payers)))
        n = len(acc)
        online = rng.random(n) < 0.4
        device = np.where(online, world.devices[acc, 0], -1)
        ip = np.where(online, world.home_ips[acc, 0], -1)
        log.pay(
            times_in_window(rng, start, end, n),
            acc,
            world.card_of(rng, acc),
            merchant,
            _amount(rng, 180, 0.6, n, 20, 5_000),
            np.where(online, ECOMMERCE, CARD_PRESENT),
            device,
            ip,
            code("bust_out_merchant"),
        )


SIMULATE: dict[str, Callable[[World, EventLog, np.random.Generator, int], None]] = {
    "ring": ring,
    "account_takeover": account_takeover,
    "card_testing": card_testing,
    "mule_chain": mule_chain,
    "device_farm": device_farm,
    "bust_out_merchant": bust_out_merchant,
}
