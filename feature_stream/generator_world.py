"""The synthetic world behind the stream generator: entities, their habits, and an event log.

Entities are integer indices into per-kind tables (accounts, cards, merchants, devices, IPs).
Their string ids are assigned only when writing, through a seeded permutation, so an id never
reveals when or why an entity was created (fraud devices are allocated last, for instance).

Times inside the simulation are float seconds since the start of the simulated period.

Shared infrastructure that makes per-entity signals ambiguous, as in real payment data:

* **Households** of 2–5 accounts share an address and usually the home IP; almost half of them
  share a family tablet on which several members log in within minutes of each other (see
  :func:`~feature_stream.generator_legit.simulate_households`). So "≥ 3 accounts on one device
  within five minutes" is not proof of a device farm.
* **Mobile carrier NAT** addresses and **public Wi-Fi** (cafés, hotels, offices, campuses) are
  shared by many unrelated accounts, so an IP seen with many accounts is not proof of abuse and
  an IP new to an account is common.
* **Travel**: 40 % of accounts take a 2–6 day trip during the period, paying at merchants new
  to the card, through hotel Wi-Fi or roaming, sometimes from a device they rarely use.
* **Merchants opening mid-stream**: a few legitimate shops start trading during the period, so a
  young merchant is not proof of a bust-out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

DAY = 86_400.0
HOUR = 3_600.0

# Relative activity per hour of day: quiet nights, a midday and an evening peak.
HOURLY = np.array(
    [0.25, 0.12, 0.06, 0.05, 0.05, 0.10, 0.30, 0.60, 0.90, 1.00, 1.10, 1.30,
     1.60, 1.50, 1.10, 1.00, 1.10, 1.40, 1.60, 1.70, 1.50, 1.10, 0.80, 0.45]
)  # fmt: skip
HOURLY = HOURLY / HOURLY.sum()
# Fraud keeps office hours less strictly: flatter, with more night activity.
FRAUD_HOURLY = np.array(
    [0.70, 0.60, 0.50, 0.50, 0.50, 0.50, 0.60, 0.70, 0.90, 1.00, 1.00, 1.10,
     1.20, 1.20, 1.10, 1.00, 1.00, 1.10, 1.20, 1.20, 1.20, 1.10, 1.00, 0.80]
)  # fmt: skip
FRAUD_HOURLY = FRAUD_HOURLY / FRAUD_HOURLY.sum()

CARD_PRESENT, ECOMMERCE = 0, 1
CHANNELS = ("card_present", "ecommerce", "p2p")
LOGIN, ENROLMENT = 0, 1
DEVICE_KINDS = ("login", "enrolment")
P2P, CONTACT, SHARED_PHONE, SHARED_ADDRESS = 0, 1, 2, 3
SOCIAL_KINDS = ("p2p_transfer", "contact", "shared_phone", "shared_address")
HABIT_SLOTS = 16  # most habitual merchants an account can have


class Table:
    """Append-only columnar table: each ``add`` appends equal-length arrays (scalars broadcast)."""

    def __init__(self, **dtypes: type | str) -> None:
        self._dtypes = {name: np.dtype(dt) for name, dt in dtypes.items()}
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}

    def add(self, **cols: ArrayLike) -> None:
        if set(cols) != set(self._dtypes):
            raise KeyError(f"expected columns {sorted(self._dtypes)}, got {sorted(cols)}")
        sizes = [np.size(v) for v in cols.values() if np.ndim(v) > 0]
        n = max(sizes) if sizes else 1
        for name, value in cols.items():
            arr = np.broadcast_to(np.asarray(value, dtype=self._dtypes[name]), (n,))
            self._parts[name].append(np.array(arr))

    def build(self) -> dict[str, np.ndarray]:
        return {
            name: np.concatenate(parts) if parts else np.empty(0, self._dtypes[name])
            for name, parts in self._parts.items()
        }


@dataclass
class EventLog:
    """Everything that happened, one table per event type, in no particular order.

    ``payments.scenario`` is 0 for legitimate payments, else ``1 + SCENARIOS.index(name)``.
    Device and IP columns hold -1 where absent; ``social.amount`` is NaN except for transfers.
    """

    payments: Table = field(
        default_factory=lambda: Table(
            t="f8",
            account="i8",
            card="i8",
            merchant="i8",
            amount="f8",
            channel="i1",
            device="i8",
            ip="i8",
            scenario="i1",
        )
    )
    devices: Table = field(
        default_factory=lambda: Table(t="f8", kind="i1", account="i8", device="i8", ip="i8")
    )
    social: Table = field(
        default_factory=lambda: Table(t="f8", kind="i1", src="i8", dst="i8", amount="f8")
    )

    def pay(
        self,
        t: ArrayLike,
        account: ArrayLike,
        card: ArrayLike,
        merchant: ArrayLike,
        amount: ArrayLike,
        channel: ArrayLike,
        device: ArrayLike,
        ip: ArrayLike,
        scenario: int = 0,
    ) -> None:
        self.payments.add(
            t=t,
            account=account,
            card=card,
            merchant=merchant,
            amount=np.round(np.asarray(amount, float), 2),
            channel=channel,
            device=device,
            ip=ip,
            scenario=scenario,
        )

    def login(
        self, t: ArrayLike, account: ArrayLike, device: ArrayLike, ip: ArrayLike, kind: int = LOGIN
    ) -> None:
        self.devices.add(t=t, kind=kind, account=account, device=device, ip=ip)

    def link(
        self,
        t: ArrayLike,
        kind: ArrayLike,
        src: ArrayLike,
        dst: ArrayLike,
        amount: ArrayLike = np.nan,
    ) -> None:
        self.social.add(
            t=t, kind=kind, src=src, dst=dst, amount=np.round(np.asarray(amount, float), 2)
        )


@dataclass
class World:
    """Accounts with their cards, devices, home IPs and habits; merchants; social groups.

    Per-account arrays have shape ``(n_accounts,)``; ``cards``, ``devices`` and ``home_ips`` have
    shape ``(n_accounts, 2)`` with the second column valid where ``n_cards`` (etc.) is 2;
    ``habitual`` has shape ``(n_accounts, HABIT_SLOTS)``, its first ``n_habitual`` entries valid.
    """

    days: int
    span: float  # length of the simulated period in seconds
    weekday0: int  # weekday of day 0, Monday = 0
    cards: np.ndarray
    n_cards: np.ndarray
    devices: np.ndarray
    n_devices: np.ndarray
    home_ips: np.ndarray
    n_home_ips: np.ndarray
    habitual: np.ndarray
    n_habitual: np.ndarray
    p_habitual: np.ndarray
    amount_scale: np.ndarray
    pay_rate: np.ndarray
    login_rate: np.ndarray
    hour_shift: np.ndarray  # hours, the account's personal offset to HOURLY
    new_device: np.ndarray  # a device the account adopts mid-stream, or -1
    new_device_at: np.ndarray
    merchant_popularity: np.ndarray  # over legitimate merchants, sums to 1
    merchant_scale: np.ndarray  # over all merchants, bust-out ones included
    merchant_ecommerce: np.ndarray  # share of a merchant's payments made online
    testing_merchants: np.ndarray  # cheap digital goods and donations, where stolen cards are tried
    cash_out_merchants: np.ndarray  # gift cards and vouchers
    high_value_merchants: np.ndarray
    carrier_ips: np.ndarray  # mobile carrier NAT addresses, shared by many accounts
    carrier_popularity: np.ndarray
    public_ips: np.ndarray  # café, hotel, office and campus Wi-Fi, shared by many accounts
    public_popularity: np.ndarray
    merchant_open_at: np.ndarray  # over legitimate merchants: when each starts trading (0 for most)
    burst_prone: np.ndarray  # accounts with a habit of micro-payment bursts (games, vending)
    family_tablets: list[tuple[np.ndarray, int]]  # (household members, their shared device)
    trip_start: np.ndarray  # per account; trip_start == trip_end where the account stays home
    trip_end: np.ndarray
    trip_ip: np.ndarray  # the hotel or holiday-flat Wi-Fi of the trip
    trip_device: np.ndarray  # a travel tablet or borrowed laptop, or -1
    kiosks: np.ndarray  # public devices (hotel, library) that many accounts use now and then
    kiosk_ips: np.ndarray  # the IP behind each kiosk
    friend_groups: list[np.ndarray]
    households: list[np.ndarray]
    n_card_ids: int
    n_device_ids: int
    n_ip_ids: int
    n_merchant_ids: int
    activity: np.ndarray = field(init=False)  # multiplier on legitimate activity
    controlled: np.ndarray = field(init=False)  # held by fraudsters (rings, mules, farms)
    victim: np.ndarray = field(init=False)  # already a victim of some scenario

    @property
    def n_accounts(self) -> int:
        return len(self.pay_rate)

    @property
    def n_legit_merchants(self) -> int:
        return len(self.merchant_popularity)

    def __post_init__(self) -> None:
        self.activity = np.ones(self.n_accounts)
        self.controlled = np.zeros(self.n_accounts, bool)
        self.victim = np.zeros(self.n_accounts, bool)

    def new_devices(self, k: int) -> np.ndarray:
        out = np.arange(self.n_device_ids, self.n_device_ids + k)
        self.n_device_ids += k
        return out

    def new_ips(self, k: int) -> np.ndarray:
        out = np.arange(self.n_ip_ids, self.n_ip_ids + k)
        self.n_ip_ids += k
        return out

    def new_merchants(self, k: int) -> np.ndarray:
        out = np.arange(self.n_merchant_ids, self.n_merchant_ids + k)
        self.n_merchant_ids += k
        self.merchant_scale = np.concatenate([self.merchant_scale, np.ones(k)])
        self.merchant_ecommerce = np.concatenate([self.merchant_ecommerce, np.full(k, 0.4)])
        return out

    def take_controlled(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """Hand ``k`` ordinary accounts to fraudsters; they keep a little legitimate activity."""
        out = self._take(rng, k, "fraud-controlled accounts")
        self.controlled[out] = True
        self.activity[out] = 0.3
        return out

    def take_victims(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """``k`` ordinary accounts not yet used by any scenario."""
        out = self._take(rng, k, "victim accounts")
        self.victim[out] = True
        return out

    def _take(self, rng: np.random.Generator, k: int, what: str) -> np.ndarray:
        free = np.flatnonzero(~self.controlled & ~self.victim)
        # Keep most of the population untouched so that fraud stays rare.
        if k > len(free) - self.n_accounts // 2:
            raise ValueError(
                f"n_accounts={self.n_accounts} is too small for the fraud knobs: cannot take "
                f"{k} more {what}; raise n_accounts or lower the scenario counts"
            )
        return np.sort(rng.choice(free, size=k, replace=False))

    def card_of(self, rng: np.random.Generator, accounts: np.ndarray) -> np.ndarray:
        """One of each account's cards, the first (main) one three times out of four."""
        second = (self.n_cards[accounts] == 2) & (rng.random(len(accounts)) < 0.25)
        return self.cards[accounts, second.astype(int)]

    def home_device_of(self, rng: np.random.Generator, accounts: np.ndarray) -> np.ndarray:
        second = (self.n_devices[accounts] == 2) & (rng.random(len(accounts)) < 0.35)
        return self.devices[accounts, second.astype(int)]

    def ip_of(self, rng: np.random.Generator, accounts: np.ndarray) -> np.ndarray:
        """A home IP most of the time, else a shared mobile carrier or public Wi-Fi address."""
        n = len(accounts)
        second = (self.n_home_ips[accounts] == 2) & (rng.random(n) < 0.3)
        ips = self.home_ips[accounts, second.astype(int)]
        where = rng.random(n)
        carrier = rng.choice(self.carrier_ips, size=n, p=self.carrier_popularity)
        public = rng.choice(self.public_ips, size=n, p=self.public_popularity)
        return np.select([where < 0.28, where < 0.36], [carrier, public], ips)

    def shared_ips(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` addresses behind which many accounts hide: carrier NAT or public Wi-Fi."""
        carrier = rng.choice(self.carrier_ips, size=n, p=self.carrier_popularity)
        public = rng.choice(self.public_ips, size=n, p=self.public_popularity)
        return np.where(rng.random(n) < 0.75, carrier, public)

    def open_merchants(
        self, rng: np.random.Generator, merchant: np.ndarray, t: np.ndarray
    ) -> np.ndarray:
        """``merchant`` (legitimate ones) with those not yet trading at ``t`` replaced by
        popular open ones; changes ``merchant`` in place and returns it."""
        closed = t < self.merchant_open_at[merchant]
        for _ in range(4):
            if not closed.any():
                break
            merchant[closed] = rng.choice(
                self.n_legit_merchants, size=int(closed.sum()), p=self.merchant_popularity
            )
            closed = t < self.merchant_open_at[merchant]
        merchant[closed] = np.flatnonzero(self.merchant_open_at == 0)[0]
        return merchant


def zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Zipf-like popularity over ``n`` items in random order, summing to 1."""
    w = 1.0 / (rng.permutation(n) + 1.0) ** exponent
    return w / w.sum()


def split_groups(
    rng: np.random.Generator, members: np.ndarray, lo: int, hi: int
) -> list[np.ndarray]:
    """Shuffle ``members`` and cut them into groups of ``lo``..``hi``; singletons are dropped."""
    members = rng.permutation(members)
    sizes = rng.integers(lo, hi + 1, size=len(members) // lo + 1)
    cuts = np.cumsum(sizes)
    return [g for g in np.split(members, cuts[cuts < len(members)]) if len(g) >= 2]


def build_world(
    rng: np.random.Generator,
    *,
    n_accounts: int,
    n_merchants: int,
    days: int,
    weekday0: int,
    payments_per_day: float,
    logins_per_day: float,
) -> World:
    """Draw the population. Every account starts legitimate; scenarios take some over later."""
    a = n_accounts
    span = days * DAY

    def two_slots(p_second: float, first: int) -> tuple[np.ndarray, np.ndarray, int]:
        n = 1 + (rng.random(a) < p_second)
        slots = np.full((a, 2), -1, np.int64)
        slots[:, 0] = first + np.arange(a)
        second = np.flatnonzero(n == 2)
        slots[second, 1] = first + a + np.arange(len(second))
        return slots, n, first + a + len(second)

    cards, n_cards, n_card_ids = two_slots(0.35, 0)
    devices, n_devices, n_device_ids = two_slots(0.4, 0)
    home_ips, n_home_ips, n_ip_ids = two_slots(0.3, 0)
    n_carrier = max(20, a // 15)
    carrier_ips = np.arange(n_ip_ids, n_ip_ids + n_carrier)
    n_ip_ids += n_carrier

    # Households share an address, usually the home IP, often a family tablet.
    households = split_groups(rng, rng.choice(a, size=a // 4, replace=False), 2, 5)
    family_tablets: list[tuple[np.ndarray, int]] = []
    for members in households:
        if rng.random() < 0.75:
            home_ips[members, 0] = home_ips[members[0], 0]
        if rng.random() < 0.45:
            devices[members, 1] = n_device_ids
            n_devices[members] = 2
            family_tablets.append((members, n_device_ids))
            n_device_ids += 1

    popularity = zipf_weights(rng, n_merchants, 1.1)
    scale = rng.lognormal(0.0, 0.6, n_merchants)
    kind = rng.choice(3, size=n_merchants, p=[0.35, 0.4, 0.25])  # online, in store, both
    ecommerce = np.array([0.95, 0.08, 0.5])[kind]
    online = np.flatnonzero(kind == 0)
    special = rng.choice(online, size=min(len(online), 9), replace=False)
    testing, cash_out = special[:5], special[5:]
    scale[testing] = rng.uniform(0.15, 0.4, len(testing))
    scale[cash_out] = rng.uniform(2.0, 3.5, len(cash_out))
    ordinary = np.setdiff1d(np.arange(n_merchants), special)
    high_value = ordinary[scale[ordinary] >= np.quantile(scale[ordinary], 0.75)]
    # A few ordinary shops open during the period (new outlets, pop-ups, newly onboarded).
    open_at = np.zeros(n_merchants)
    newcomers = ordinary[rng.random(len(ordinary)) < 0.05]
    open_at[newcomers] = rng.uniform(0.15, 0.9, len(newcomers)) * span

    slots = HABIT_SLOTS
    cumulative = np.cumsum(popularity)
    habitual = np.searchsorted(cumulative, rng.random((a, slots)) * cumulative[-1])
    habitual = np.minimum(habitual, n_merchants - 1)

    new_device = np.full(a, -1, np.int64)
    movers = np.flatnonzero(rng.random(a) < 0.15)  # new phone, new laptop, new browser
    new_device[movers] = n_device_ids + np.arange(len(movers))
    n_device_ids += len(movers)
    new_device_at = rng.uniform(2 * DAY, span - 2 * DAY, a)

    carrier_popularity = zipf_weights(rng, n_carrier, 0.8)
    trip_start = rng.uniform(0, span - 2 * DAY, a)
    trip_end = np.where(
        rng.random(a) < 0.4, np.minimum(trip_start + rng.uniform(2, 6, a) * DAY, span), trip_start
    )
    trip_ip = np.arange(n_ip_ids, n_ip_ids + a)
    n_ip_ids += a
    trip_device = np.full(a, -1, np.int64)
    borrowed = np.flatnonzero((trip_end > trip_start) & (rng.random(a) < 0.3))
    trip_device[borrowed] = n_device_ids + np.arange(len(borrowed))
    n_device_ids += len(borrowed)
    n_public = max(10, a // 60)
    public_ips = np.arange(n_ip_ids, n_ip_ids + n_public)
    n_ip_ids += n_public
    n_kiosks = max(3, a // 800)
    kiosks = np.arange(n_device_ids, n_device_ids + n_kiosks)
    kiosk_ips = np.arange(n_ip_ids, n_ip_ids + n_kiosks)
    n_device_ids += n_kiosks
    n_ip_ids += n_kiosks
    return World(
        days=days,
        span=span,
        weekday0=weekday0,
        cards=cards,
        n_cards=n_cards,
        devices=devices,
        n_devices=n_devices,
        home_ips=home_ips,
        n_home_ips=n_home_ips,
        habitual=habitual,
        n_habitual=rng.integers(3, slots + 1, a),
        p_habitual=rng.beta(6.0, 2.0, a),
        amount_scale=rng.lognormal(np.log(22.0), 0.6, a),
        pay_rate=rng.gamma(2.0, payments_per_day / 2.0, a),
        login_rate=rng.gamma(2.0, logins_per_day / 2.0, a),
        hour_shift=rng.normal(0.0, 0.7, a),
        new_device=new_device,
        new_device_at=new_device_at,
        merchant_popularity=popularity,
        merchant_scale=scale,
        merchant_ecommerce=ecommerce,
        testing_merchants=np.sort(testing),
        cash_out_merchants=np.sort(cash_out),
        high_value_merchants=high_value,
        carrier_ips=carrier_ips,
        carrier_popularity=carrier_popularity,
        public_ips=public_ips,
        public_popularity=zipf_weights(rng, n_public, 0.9),
        merchant_open_at=open_at,
        burst_prone=rng.random(a) < 0.08,
        family_tablets=family_tablets,
        trip_start=trip_start,
        trip_end=trip_end,
        trip_ip=trip_ip,
        trip_device=trip_device,
        kiosks=kiosks,
        kiosk_ips=kiosk_ips,
        friend_groups=split_groups(rng, np.arange(a), 2, 8),
        households=households,
        n_card_ids=n_card_ids,
        n_device_ids=n_device_ids,
        n_ip_ids=n_ip_ids,
        n_merchant_ids=n_merchants,
    )


def times_in_window(
    rng: np.random.Generator,
    lo: np.ndarray | float,
    hi: np.ndarray | float,
    n: int,
    profile: np.ndarray = HOURLY,
) -> np.ndarray:
    """``n`` times in ``[lo, hi)`` whose hour of day follows ``profile`` where the window allows."""
    lo = np.broadcast_to(np.asarray(lo, float), (n,))
    hi = np.broadcast_to(np.asarray(hi, float), (n,))
    flat = lo + rng.random(n) * (hi - lo)
    hour = rng.choice(24, size=n, p=profile)
    shaped = np.floor(flat / DAY) * DAY + (hour + rng.random(n)) * HOUR
    return np.where((shaped >= lo) & (shaped < hi), shaped, flat)
