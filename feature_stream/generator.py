"""Seeded synthetic stream of payments, device events, social links and labels, with fraud.

:func:`generate` writes one directory:

=======================  =====================================================================
``payments.jsonl``       :class:`~feature_stream.events.Payment` records (``tx-`` ids)
``device-events.jsonl``  :class:`~feature_stream.events.DeviceEvent` records (``dv-`` ids)
``social-events.jsonl``  :class:`~feature_stream.events.SocialEvent` records (``so-`` ids)
``labels.jsonl``         :class:`~feature_stream.events.LabelEvent` records (``lb-`` ids)
``ground_truth.csv``     ``transaction_id,account_id,event_time,is_fraud,scenario`` per payment;
                         ``is_fraud`` is 0/1 and ``scenario`` is empty for legitimate payments
``manifest.json``        seed, config, counts per file and per fraud scenario, time range
=======================  =====================================================================

Each ``.jsonl`` file holds one JSON object per line, sorted by ``event_time`` then ``event_id``;
times are UTC with millisecond resolution and a ``Z`` suffix. Event ids are unique across files.
Payments, device and social events fall inside ``[start, start + days)``; a label arrives
``label_delay_days_min``..``max`` days after its payment, so some land after the period.
With ``invalid_rate > 0`` malformed records (ids ``bad-…``) are inserted right after the line they
were derived from; :func:`~feature_stream.events.parse_event` rejects every one of them.

The same config gives byte-identical files. Each part of the simulation (world, legitimate
payments, logins, social links, each fraud scenario, labels, ids) draws from its own random
stream, so changing one knob perturbs the rest as little as possible. Fraud scenarios: see
:mod:`feature_stream.generator_fraud`.

>>> from pathlib import Path; import tempfile
>>> cfg = GeneratorConfig(n_accounts=300, n_merchants=60, days=14, rings=1, takeover_waves=1,
...     card_testing_bursts=2, mule_chains=1, device_farm_episodes=2, bust_out_merchants=1)
>>> generate(cfg, Path(tempfile.mkdtemp()), progress=False)["fraud"]["payments"] > 0
True
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from feature_stream.events import SCHEMA_VERSION, TOPICS
from feature_stream.generator_fraud import SCENARIOS, SIMULATE
from feature_stream.generator_legit import (
    simulate_bursts,
    simulate_households,
    simulate_logins,
    simulate_payments,
    simulate_social,
)
from feature_stream.generator_output import (
    GROUND_TRUTH_HEADER,
    RENDER,
    Malformer,
    Stream,
    entity_ids,
    ground_truth_lines,
    iso_times,
    sort_by_time,
    write_file,
)
from feature_stream.generator_world import DAY, EventLog, World, build_world

GENERATOR_VERSION = "2.0.0"

FILES = {kind: f"{topic}.jsonl" for kind, topic in TOPICS.items()}
"""Event type → output file name."""

SCENARIO_KNOBS = {
    "ring": "rings",
    "account_takeover": "takeover_waves",
    "card_testing": "card_testing_bursts",
    "mule_chain": "mule_chains",
    "device_farm": "device_farm_episodes",
    "bust_out_merchant": "bust_out_merchants",
}
"""Scenario → the config field that sets how often it happens (0 turns it off)."""

_STREAMS = (
    "world",
    "payments",
    "logins",
    "social",
    *SCENARIOS,
    "labels",
    "ids",
    "malformed",
    "bursts",
    "households",
)


class GeneratorConfig(BaseModel):
    """Everything that shapes a generated stream. Defaults: ≈110k payments, ≈255k events,
    35 days, fraud ≈1.5 % of payments, small enough to train a GNN on two cores in minutes."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(7, ge=0, description="Seed of every draw; same config → identical files.")
    n_accounts: int = Field(
        4_000,
        ge=200,
        le=10_000_000,
        description="Accounts, including those fraudsters take over or control.",
    )
    n_merchants: int = Field(
        600,
        ge=50,
        le=1_000_000,
        description="Legitimate merchants, Zipf-like popularity; bust-out merchants come on top.",
    )
    days: int = Field(
        35,
        ge=14,
        le=366,
        description="Length of the simulated period; scenarios need up to two weeks to unfold.",
    )
    start: AwareDatetime = Field(
        datetime(2026, 3, 1, tzinfo=UTC), description="Start of the simulated period."
    )
    payments_per_account_day: float = Field(
        0.74, gt=0, le=50, description="Mean legitimate payments per account and day."
    )
    logins_per_account_day: float = Field(
        0.7,
        ge=0,
        le=50,
        description="Mean logins per account and day besides those just before a payment.",
    )
    rings: int = Field(
        12,
        ge=0,
        description="Fraud rings, each burning through 14–22 socially linked accounts.",
    )
    takeover_waves: int = Field(
        12, ge=0, description="Account-takeover campaigns, each one device used on 3–6 victims."
    )
    card_testing_bursts: int = Field(
        12, ge=0, description="Stolen cards tested with 5–20 tiny payments, then 1–2 large ones."
    )
    mule_chains: int = Field(
        30, ge=0, description="Victim → mule → mule transfer chains, each mule cashing out."
    )
    device_farm_episodes: int = Field(
        14,
        ge=0,
        description="Bursts of ≥3 accounts on one farm device (a farm device per six bursts).",
    )
    bust_out_merchants: int = Field(
        3, ge=0, description="Colluding merchants appearing mid-stream, all their payments fraud."
    )
    label_delay_days_min: float = Field(
        2.0, gt=0, description="Shortest delay between a payment and its label, in days."
    )
    label_delay_days_max: float = Field(
        10.0, gt=0, description="Longest delay between a payment and its label, in days."
    )
    analyst_label_rate: float = Field(
        0.02, ge=0, le=1, description="Share of legitimate payments an analyst labels not-fraud."
    )
    invalid_rate: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="Malformed records added per valid record, in each file (dead-letter demos).",
    )

    @model_validator(mode="after")
    def _check(self) -> GeneratorConfig:
        if self.label_delay_days_min > self.label_delay_days_max:
            raise ValueError("label_delay_days_min must not exceed label_delay_days_max")
        return self


def _rng(config: GeneratorConfig, stream: str) -> np.random.Generator:
    return np.random.default_rng([config.seed, _STREAMS.index(stream)])


def simulate(config: GeneratorConfig) -> tuple[World, EventLog]:
    """Draw the world and every event; fraud first, since it takes accounts out of the pool."""
    start = config.start.astimezone(UTC)
    world = build_world(
        _rng(config, "world"),
        n_accounts=config.n_accounts,
        n_merchants=config.n_merchants,
        days=config.days,
        weekday0=start.weekday(),
        payments_per_day=config.payments_per_account_day,
        logins_per_day=config.logins_per_account_day,
    )
    log = EventLog()
    for name in SCENARIOS:
        SIMULATE[name](world, log, _rng(config, name), getattr(config, SCENARIO_KNOBS[name]))
    simulate_payments(world, log, _rng(config, "payments"))
    simulate_logins(world, log, _rng(config, "logins"))
    simulate_social(world, log, _rng(config, "social"))
    simulate_bursts(world, log, _rng(config, "bursts"))
    simulate_households(world, log, _rng(config, "households"))
    return world, log


def last_event_time(config: GeneratorConfig) -> datetime:
    """The latest time any event of ``config``'s stream may carry (its last labels)."""
    return config.start + timedelta(days=config.days + config.label_delay_days_max)


def generate(config: GeneratorConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Simulate the stream described by ``config`` into ``out_dir``; return the manifest.

    ``out_dir`` is created if needed; files of the same names are overwritten. A progress bar
    goes to stderr unless ``progress`` is false. Raises ``ValueError`` when ``n_accounts`` is
    too small for the scenario counts.
    """
    out_dir = Path(out_dir)
    start = config.start.astimezone(UTC)
    start_ms = round(start.timestamp() * 1000)
    with tqdm(
        total=0, unit="line", desc="simulating", disable=not progress, file=sys.stderr
    ) as bar:
        world, log = simulate(config)
        pay = sort_by_time(log.payments.build(), start_ms)
        stream = Stream(
            payments=pay,
            devices=sort_by_time(log.devices.build(), start_ms),
            social=sort_by_time(log.social.build(), start_ms),
            labels=_labels(config, pay),
            ids=entity_ids(world, _rng(config, "ids")),
        )
        malformed = Malformer(config.invalid_rate, _rng(config, "malformed"))
        out_dir.mkdir(parents=True, exist_ok=True)
        bar.reset(total=sum(stream.rows(kind) for kind in FILES) + stream.rows("payment"))
        bar.set_description("writing")
        for kind, name in FILES.items():
            render = partial(_render, stream, malformed, kind)
            write_file(out_dir / name, stream.rows(kind), render, bar.update)
        render = partial(ground_truth_lines, stream)
        write_file(
            out_dir / "ground_truth.csv",
            stream.rows("payment"),
            render,
            bar.update,
            header=GROUND_TRUTH_HEADER,
        )
        manifest = _manifest(config, start, stream, malformed.counts)
        text = json.dumps(manifest, indent=2) + "\n"
        (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def _render(stream: Stream, malformed: Malformer, kind: str, lo: int, hi: int) -> list[str]:
    return malformed(RENDER[kind](stream, lo, hi), kind)


def _labels(config: GeneratorConfig, pay: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Chargebacks for every fraudulent payment, analyst verdicts for a few legitimate ones.

    Returns label times (``ms``, POSIX milliseconds, sorted), the payment ``row`` each label is
    about, and ``fraud``. Both kinds share one delay distribution, so label timing says nothing
    about the verdict.
    """
    rng = _rng(config, "labels")
    fraud = pay["scenario"] > 0
    reviewed = ~fraud & (rng.random(len(fraud)) < config.analyst_label_rate)
    rows = np.flatnonzero(fraud | reviewed)
    delay = rng.uniform(config.label_delay_days_min, config.label_delay_days_max, len(rows))
    ms = pay["ms"][rows] + np.round(delay * DAY * 1000.0).astype(np.int64)
    order = np.argsort(ms, kind="stable")
    return {"ms": ms[order], "row": rows[order], "fraud": fraud[rows[order]]}


def _iso(ms: int | np.integer) -> str:
    return iso_times(np.array([ms], np.int64))[0] + "Z"


def _manifest(
    config: GeneratorConfig,
    start: datetime,
    stream: Stream,
    malformed: dict[str, dict[str, int]],
) -> dict[str, Any]:
    start_ms = round(start.timestamp() * 1000)
    end_ms = round((start + timedelta(days=config.days)).timestamp() * 1000)
    files: dict[str, Any] = {}
    for kind, name in FILES.items():
        ms = stream.table(kind)["ms"]
        files[name] = {"records": len(ms), "malformed": sum(malformed[kind].values())}
        if len(ms):
            files[name] |= {"first_event_time": _iso(ms[0]), "last_event_time": _iso(ms[-1])}
    files["ground_truth.csv"] = {"rows": stream.rows("payment")}
    every = np.concatenate([stream.table(kind)["ms"] for kind in FILES])
    scenario = stream.payments["scenario"]
    fraud = stream.labels["fraud"]
    by_flaw: dict[str, int] = {}
    for counts in malformed.values():
        for flaw, n in counts.items():
            by_flaw[flaw] = by_flaw.get(flaw, 0) + n
    return {
        "generator": "feature_stream.generator",
        "generator_version": GENERATOR_VERSION,
        "schema_version": SCHEMA_VERSION,
        "seed": config.seed,
        "config": config.model_dump(mode="json"),
        "period": {"start": _iso(start_ms), "end": _iso(end_ms)},
        "first_event_time": _iso(every.min()),
        "last_event_time": _iso(every.max()),
        "files": files,
        "events": sum(stream.rows(kind) for kind in FILES),
        "entities": _entity_counts(stream),
        "fraud": {
            "payments": int((scenario > 0).sum()),
            "rate": round(float((scenario > 0).mean()), 6) if len(scenario) else 0.0,
            "by_scenario": {
                name: int((scenario == i).sum()) for i, name in enumerate(SCENARIOS, start=1)
            },
        },
        "labels": {
            "chargeback": int(fraud.sum()),
            "analyst": int((~fraud).sum()),
            "after_period": int((stream.labels["ms"] >= end_ms).sum()),
        },
        "malformed_by_flaw": dict(sorted(by_flaw.items())),
    }


def _entity_counts(stream: Stream) -> dict[str, int]:
    """Distinct entities that appear in the written events."""
    p, d, s = stream.payments, stream.devices, stream.social

    def distinct(*cols: np.ndarray) -> int:
        values = np.concatenate(cols)
        return len(np.unique(values[values >= 0]))

    return {
        "accounts": distinct(p["account"], d["account"], s["src"], s["dst"]),
        "cards": distinct(p["card"]),
        "merchants": distinct(p["merchant"]),
        "devices": distinct(p["device"], d["device"]),
        "ips": distinct(p["ip"], d["ip"]),
    }
