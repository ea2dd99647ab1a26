"""Fraud scenarios injected into the synthetic stream, each with its ground-truth name.

Every scenario uses the ordinary event types; nothing in a record says "fraud". Organised fraud
rotates what it pays with – fresh accounts, device fingerprints (anti-detect browsers, wiped
phones), residential proxies and carrier NAT addresses – because a chargeback burns the card,
account, device or IP it lands on. What persists is the organisation: people recruited through
the same contacts, synthetic identities reusing a phone number or address, money consolidated
by P2P, accounts set up on the ring's own phones. So a new fraudulent payment's own card,
device and IP usually carry no fraud history, while its account is one or two hops from
accounts, devices or transfers whose fraud labels have already arrived. Each scenario schedules
its episodes so that every event falls inside the simulated period, spread over the whole
period (the last week included).

=====================  ==================================================================
``ring``               organised first-party fraud that runs for most of the period and
                       burns through 14–22 accounts, each active for 0.5–3 days: 2–6
                       payments of ordinary amounts at ordinary merchants (often the
                       member's usual ones), in shops or online – online mostly from fresh
                       fingerprints via proxies or carrier NAT, sometimes from home. Each new
                       account shares a phone number or address with 2–3 recent members
                       and knows the organiser, was set up on one of the ring's phones, and
                       passes proceeds on by P2P.
``account_takeover``   a crew's device logs into 3–6 victims (and a few accounts it only
                       probes) over 4–10 days, each session through another residential
                       proxy or carrier IP; half the payments mimic the victim (usual
                       merchants, usual amounts), the rest go to high-value shops. 70 % of the
                       victims are also drained by P2P to a drop account of the crew, which
                       cashes out within hours.
``card_testing``       a stolen card: 5–20 payments of 0.5–5 at 1–3 merchants within minutes,
                       then 1–2 large ones; the bot's devices and IPs recur across bursts.
``mule_chain``         scam victims send P2P transfers to mule A, who forwards part to B
                       (→ C → D) within hours and spends the rest; each mule cashes out what
                       it kept at electronics or gift-card merchants (the fraud), in amounts
                       close to what it received. Mules are fresh recruits of a herder:
                       contacts of the herder and of earlier mules, set up on the herder's
                       phone.
``device_farm``        3–8 accounts log in on one device within two minutes, then each pays
                       from it within the next three; farm devices run many episodes.
``bust_out_merchant``  a merchant appears mid-stream; many accounts pay it inflated amounts
                       for 4–10 days, colluders among them linked to each other and paid
                       kickbacks by P2P. Every payment to it is fraud. Start times are
                       staggered from 30 % to 90 % of the period.
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
    HOUR,
    P2P,
    SHARED_ADDRESS,
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


def _spread(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` fractions of the period, one in each of ``count`` equal strata (in random
    order), so episodes cover the whole period – the last week included – without clumping."""
    return (rng.permutation(count) + rng.random(count)) / max(count, 1)


def _login_before(
    log: EventLog,
    rng: np.random.Generator,
    share: float | np.ndarray,
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
    """Fraud rings: a persistent organisation burning through short-lived accounts."""
    for _ in range(count):
        n = int(rng.integers(14, 23))
        members = world.take_controlled(rng, n)
        hub = members[0]  # the organiser: recruits, collects the proceeds
        phones = world.new_devices(int(rng.integers(1, 3)))
        base_ip = world.new_ips(1)[0]
        start = rng.uniform(0.0, 0.1) * world.span
        act = np.sort(rng.uniform(start, world.span - DAY / 2, n))
        act[0] = start
        end = np.minimum(act + rng.uniform(0.5, 3.0, n) * DAY, world.span - 1.0)

        # Recruitment: a new identity reuses the phone number or address of a recent member,
        # or was introduced by one; most know the organiser.
        for k in range(1, n):
            recent = members[max(0, k - 8) : k]
            peers = rng.choice(
                recent, size=min(len(recent), int(rng.integers(2, 4))), replace=False
            )
            kinds = rng.choice(
                [SHARED_PHONE, SHARED_ADDRESS, CONTACT], len(peers), p=[0.4, 0.25, 0.35]
            )
            t_link = np.maximum(act[k] - rng.uniform(0.05, 2.0, len(peers)) * DAY, 0.0)
            log.link(t_link, kinds, members[k], peers)
            if hub not in peers and rng.random() < 0.6:
                log.link(max(0.0, act[k] - rng.uniform(0.05, 2.0) * DAY), CONTACT, hub, members[k])
        # Set-up: most accounts are first opened on one of the ring's own phones.
        setup = rng.random(n) < 0.7
        t_setup = np.maximum(act[setup] - rng.uniform(60, 6 * HOUR, int(setup.sum())), 0.0)
        log.login(t_setup, members[setup], rng.choice(phones, int(setup.sum())), base_ip)

        per = rng.integers(2, 7, n)
        who = np.repeat(np.arange(n), per)
        acc = members[who]
        m = len(acc)
        t = times_in_window(rng, act[who], end[who], m)
        # Members buy where they usually shop and, to resell, at high-value shops; online
        # mostly, in shops too.
        slot = (world.n_habitual[acc] * rng.random(m) ** 2).astype(np.int64)
        where = rng.random(m)
        merchant = np.select(
            [where < 0.55, where < 0.8],
            [world.habitual[acc, slot], rng.choice(world.high_value_merchants, m)],
            rng.choice(world.n_legit_merchants, size=m, p=world.merchant_popularity),
        )
        merchant = world.open_merchants(rng, merchant, t)
        online = rng.random(m) < 0.5 + 0.5 * world.merchant_ecommerce[merchant]
        # Online: a fresh fingerprint every one or two payments through a proxy or carrier NAT,
        # now and then one of the ring's phones, or the member's own device at home.
        sessions = (per + 1) // 2
        first = np.repeat(np.cumsum(sessions) - sessions, per)
        nth = np.arange(m) - np.repeat(np.cumsum(per) - per, per)
        device = world.new_devices(int(sessions.sum()))[first + nth // 2]
        ip = np.where(rng.random(m) < 0.5, world.new_ips(m), world.shared_ips(rng, m))
        at_home = rng.random(m) < 0.25
        device[at_home] = world.home_device_of(rng, acc[at_home])
        ip[at_home] = world.home_ips[acc[at_home], 0]
        on_phone = ~at_home & (rng.random(m) < 0.1)
        device[on_phone] = rng.choice(phones, int(on_phone.sum()))
        ip[on_phone] = base_ip
        device[~online] = -1
        ip[~online] = -1
        amount = (
            world.amount_scale[acc] * world.merchant_scale[merchant] * rng.lognormal(0.3, 0.5, m)
        )
        log.pay(
            t,
            acc,
            world.card_of(rng, acc),
            merchant,
            np.clip(amount, 5, 3_000),
            np.where(online, ECOMMERCE, CARD_PRESENT),
            device,
            ip,
            code("ring"),
        )
        _login_before(log, rng, 0.6 * online, t, acc, device, ip)

        # Proceeds are passed on to the organiser, sometimes to another member.
        k_sent = rng.integers(1, 3, n - 1)
        src = np.repeat(np.arange(1, n), k_sent)
        dst = np.where(rng.random(len(src)) < 0.75, 0, rng.integers(0, n, len(src)))
        ok = dst != src
        src, dst = src[ok], dst[ok]
        t_p2p = np.minimum(
            times_in_window(rng, act[src], end[src] + DAY, len(src)), world.span - 1.0
        )
        log.link(
            t_p2p, P2P, members[src], members[dst], _amount(rng, 150, 0.7, len(src), 10, 3_000)
        )


def account_takeover(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Takeover campaigns: one crew device across victims, rotating proxy IPs, mimicry, drains."""
    if count == 0:
        return
    drops = world.take_controlled(rng, max(2, count // 3))
    for when in _spread(rng, count):
        device = world.new_devices(1)[0]
        drop = rng.choice(drops)
        victims = world.take_victims(rng, int(rng.integers(3, 7)))
        probed = world.take_victims(rng, int(rng.integers(1, 4)))
        campaign = rng.uniform(4, 10) * DAY
        start = when * (world.span - campaign - DAY)
        # Credential-stuffing hits the crew only checks, without paying.
        log.login(
            start + rng.uniform(0, campaign, len(probed)),
            probed,
            device,
            _proxies(world, rng, len(probed)),
        )
        for victim, t0 in zip(
            victims, np.sort(start + rng.uniform(0, campaign, len(victims))), strict=True
        ):
            n = int(rng.integers(2, 6))
            ips = _proxies(world, rng, n + 1)
            log.login(t0, victim, device, ips[0])
            t = t0 + np.cumsum(rng.uniform(120, 3 * HOUR, n))
            known = world.habitual[victim, : world.n_habitual[victim]]
            fresh = np.setdiff1d(world.high_value_merchants, known)
            fresh = fresh if len(fresh) else world.high_value_merchants
            mimic = rng.random(n) < 0.5
            merchant = np.where(mimic, rng.choice(known, n), rng.choice(fresh, n))
            merchant = world.open_merchants(rng, merchant, t)
            usual = world.amount_scale[victim] * world.merchant_scale[merchant]
            amount = usual * np.where(
                mimic, rng.lognormal(np.log(1.5), 0.5, n), rng.lognormal(np.log(4.0), 0.5, n)
            )
            acc = np.full(n, victim)
            log.pay(
                t,
                acc,
                world.card_of(rng, acc),
                merchant,
                np.clip(amount, 10, 8_000),
                ECOMMERCE,
                device,
                ips[1:],
                code("account_takeover"),
            )
            _login_before(log, rng, 0.5, t, acc, np.full(n, device), ips[1:])
            if rng.random() < 0.7:
                _drain(world, log, rng, victim, drop, t0 + rng.uniform(60, 1800))


def _proxies(world: World, rng: np.random.Generator, n: int) -> np.ndarray:
    """Residential proxy exits (new addresses) or carrier NAT, one per session."""
    return np.where(rng.random(n) < 0.6, world.new_ips(n), world.shared_ips(rng, n))


def _drain(
    world: World, log: EventLog, rng: np.random.Generator, victim: int, drop: int, t: float
) -> None:
    """A P2P transfer from a taken-over account to a drop, cashed out by the drop within hours."""
    sent = float(_amount(rng, 450, 0.6, 1, 50, 5_000)[0])
    log.link(t, P2P, victim, drop, sent)
    n = int(rng.integers(1, 3))
    t_out = t + np.cumsum(rng.uniform(0.5, 8.0, n)) * HOUR
    _cash_out(world, log, rng, drop, t_out, sent * rng.uniform(0.8, 0.97), code("account_takeover"))


def _cash_out(
    world: World,
    log: EventLog,
    rng: np.random.Generator,
    account: int,
    t: np.ndarray,
    total: float,
    scenario: int,
    herder: tuple[int, int] | None = None,
) -> None:
    """Spend ``total`` in ``len(t)`` payments at electronics or gift-card shops, from the
    account's own device or, when ``herder`` (device, IP) is given and chosen, the herder's."""
    n = len(t)
    merchant = np.where(
        rng.random(n) < 0.35,
        rng.choice(world.cash_out_merchants, n),
        rng.choice(world.high_value_merchants, n),
    )
    merchant = world.open_merchants(rng, merchant, t)
    share = rng.dirichlet(np.full(n, 3.0))
    acc = np.full(n, account)
    if herder is not None and rng.random() < 0.3:
        device, ip = np.full(n, herder[0]), np.full(n, herder[1])
    else:
        device = np.full(n, world.home_device_of(rng, acc[:1])[0])
        ip = world.ip_of(rng, acc)
    log.pay(
        t,
        acc,
        world.card_of(rng, acc),
        merchant,
        np.clip(total * share, 5, 10_000),
        ECOMMERCE,
        device,
        ip,
        scenario,
    )
    _login_before(log, rng, 0.6, t, acc, device, ip)


def card_testing(world: World, log: EventLog, rng: np.random.Generator, count: int) -> None:
    """Stolen cards tried with tiny payments within minutes, then cashed with large ones."""
    if count == 0:
        return
    bots = world.new_devices(count // 10 + 1)
    bot_ips = world.new_ips(count // 6 + 2)
    victims = world.take_victims(rng, count)
    for victim, when in zip(victims, _spread(rng, count), strict=True):
        card = world.card_of(rng, np.array([victim]))[0]
        device, ip = rng.choice(bots), rng.choice(bot_ips)
        t0 = when * (world.span - HOUR)
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
    """Money moved from scam victims through chains of freshly recruited mules, each cashing
    out what it keeps."""
    if count == 0:
        return
    n_nets = max(1, round(count / 10))
    herders = world.take_controlled(rng, n_nets)
    herder_devices = world.new_devices(n_nets)
    herder_ips = world.new_ips(n_nets)
    recruits: list[list[int]] = [[] for _ in range(n_nets)]
    for t0 in np.sort(_spread(rng, count)) * (world.span - 2.5 * DAY):
        net = int(rng.integers(n_nets))
        mules = world.take_controlled(rng, int(rng.integers(2, 5)))
        earlier = recruits[net][-8:]
        for mule in mules:
            # Recruited through the herder, often introduced by an earlier mule or registered
            # with the phone number the herder hands out.
            t_rec = max(0.0, t0 - rng.uniform(0.5, 6.0) * DAY)
            log.link(t_rec, CONTACT, herders[net], mule)
            if earlier and rng.random() < 0.8:
                peers = rng.choice(
                    earlier, size=min(len(earlier), int(rng.integers(1, 3))), replace=False
                )
                kinds = np.where(rng.random(len(peers)) < 0.4, SHARED_PHONE, CONTACT)
                log.link(t_rec + rng.uniform(0, HOUR, len(peers)), kinds, mule, peers)
            if rng.random() < 0.6:  # the herder sets the account up on their own phone
                log.login(
                    t_rec + rng.uniform(HOUR, 6 * HOUR), mule, herder_devices[net], herder_ips[net]
                )
        recruits[net].extend(int(m) for m in mules)

        victims = world.take_victims(rng, int(rng.integers(1, 4)))
        t_victim = t0 + rng.uniform(0, 0.5 * DAY, len(victims))
        sent = _amount(rng, 500, 0.6, len(victims), 50, 10_000)
        log.link(t_victim, P2P, victims, mules[0], sent)
        received, holding = t_victim.max(), float(sent.sum())
        herder = (int(herder_devices[net]), int(herder_ips[net]))
        for k, mule in enumerate(mules):
            last = k == len(mules) - 1
            keep = holding if last else holding * rng.uniform(0.3, 0.5)
            n = int(rng.integers(1, 4))
            t = received + np.cumsum(rng.uniform(0.3, 6.0, n)) * HOUR
            _cash_out(
                world, log, rng, mule, t, keep * rng.uniform(0.85, 0.98), code("mule_chain"), herder
            )
            if not last:
                received += rng.uniform(0.5, 8.0) * HOUR
                holding = (holding - keep) * rng.uniform(0.9, 0.98)
                log.link(received, P2P, mule, mules[k + 1], holding)


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
    for episode, when in enumerate(_spread(rng, count)):
        f = episode % n_farms
        t0 = when * (world.span - 600)
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
    for i, merchant in enumerate(world.new_merchants(count)):
        start = (0.3 + 0.6 * (i + rng.uniform()) / count) * world.span
        end = min(world.span, start + rng.uniform(4, 10) * DAY)
        k = int(rng.integers(10, 26))
        n_coll = min(len(colluders), round(0.4 * k))
        inside = rng.choice(colluders, n_coll, replace=False)
        payers = np.concatenate([inside, rng.choice(ordinary, k - n_coll, replace=False)])
        # The colluders know each other (a chain keeps them connected) and get kickbacks.
        i_, j_ = np.triu_indices(n_coll, 1)
        pair = (j_ == i_ + 1) | (rng.random(len(i_)) < 0.2)
        kind = rng.choice(
            [CONTACT, SHARED_ADDRESS, SHARED_PHONE], int(pair.sum()), p=[0.6, 0.2, 0.2]
        )
        t_link = np.maximum(start - rng.uniform(1, 10, int(pair.sum())) * DAY, 0.0)
        log.link(t_link, kind, inside[i_[pair]], inside[j_[pair]])
        owner = inside[0]
        paid = inside[1:][rng.random(n_coll - 1) < 0.6]
        t_kick = times_in_window(rng, start, end, len(paid))
        log.link(t_kick, P2P, owner, paid, _amount(rng, 200, 0.5, len(paid), 20, 2_000))

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
