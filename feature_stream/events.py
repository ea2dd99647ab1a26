"""Typed, versioned event records and their strict validation.

Four sources feed the graph, one Kafka topic each (keyed by account id):

* ``payment``  – a card or P2P payment; its ``event_id`` is the transaction id we score.
* ``device``   – a login or device enrolment: account ↔ device fingerprint ↔ IP.
* ``social``   – an account–account link: P2P transfer, contact, shared phone or address.
* ``label``    – ground truth about a payment (chargeback, analyst verdict). Its
  ``event_time`` is when the label became known, which is later than the payment.

Every record carries ``schema_version`` (currently 1), a unique ``event_id`` and a
timezone-aware ``event_time``. :func:`parse_event` turns a raw mapping into a record or raises
:class:`InvalidEvent` naming the field at fault; it never lets a malformed record through.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION = 1

TOPICS: dict[str, str] = {
    "payment": "payments",
    "device": "device-events",
    "social": "social-events",
    "label": "labels",
}
"""Event type → topic (and file stem) it travels on."""

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


@functools.lru_cache(maxsize=1 << 16)
def _normal_ip(v: str) -> str | None:
    """``v`` normalised, or ``None`` if it is not an address. Cached: a stream repeats its
    addresses, and parsing one costs more than validating the rest of a payment."""
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        return None


def _valid_ip(v: str) -> str:
    ip = _normal_ip(v)
    if ip is None:
        raise ValueError(f"{v!r} is not an IPv4 or IPv6 address")
    return ip


IpAddress = Annotated[str, Field(max_length=64), AfterValidator(_valid_ip)]
"""An IPv4 or IPv6 address, normalised."""


class EventBase(BaseModel):
    """Fields every event has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    event_id: Id
    event_time: AwareDatetime

    @property
    def ts(self) -> float:
        """Event time as POSIX seconds (UTC), the unit used inside the graph and features."""
        return self.event_time.timestamp()

    @property
    def key(self) -> str:
        """Partition key: the account the event belongs to."""
        raise NotImplementedError


class Payment(EventBase):
    """A payment to score. ``event_id`` is the transaction id."""

    type: Literal["payment"] = "payment"
    account_id: Id
    card_id: Id
    merchant_id: Id
    # strict: a number, not "12" or true (a producer that sends those has a bug to see)
    amount: float = Field(
        gt=0, le=1_000_000, strict=True, description="Amount in major units of currency"
    )
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    channel: Literal["card_present", "ecommerce", "p2p"] = "ecommerce"
    device_id: Id | None = None
    ip: IpAddress | None = None

    @property
    def key(self) -> str:
        return self.account_id


class DeviceEvent(EventBase):
    """An account seen on a device (fingerprint) from an IP address."""

    type: Literal["device"] = "device"
    kind: Literal["login", "enrolment"] = "login"
    account_id: Id
    device_id: Id
    ip: IpAddress | None = None

    @property
    def key(self) -> str:
        return self.account_id


class SocialEvent(EventBase):
    """A link between two accounts. ``amount`` is required for P2P transfers only."""

    type: Literal["social"] = "social"
    kind: Literal["p2p_transfer", "contact", "shared_phone", "shared_address"]
    src_account_id: Id
    dst_account_id: Id
    amount: float | None = Field(default=None, gt=0, le=1_000_000, strict=True)

    @model_validator(mode="after")
    def _check(self) -> SocialEvent:
        # Messages start with the field at fault: parse_event reports it from there.
        if self.src_account_id == self.dst_account_id:
            raise ValueError("dst_account_id must differ from src_account_id")
        if self.kind == "p2p_transfer" and self.amount is None:
            raise ValueError("amount is required for a p2p_transfer")
        return self

    @property
    def key(self) -> str:
        return self.src_account_id


class LabelEvent(EventBase):
    """Ground truth for a past payment, known from ``event_time`` on."""

    type: Literal["label"] = "label"
    transaction_id: Id
    account_id: Id
    is_fraud: bool = Field(strict=True)  # true or false, not "yes" or 1
    source: Literal["chargeback", "analyst"] = "chargeback"

    @property
    def key(self) -> str:
        return self.account_id


Event = Annotated[Payment | DeviceEvent | SocialEvent | LabelEvent, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[Payment | DeviceEvent | SocialEvent | LabelEvent] = TypeAdapter(Event)


class InvalidEvent(ValueError):
    """A raw record that is not a valid event. ``field`` is the dotted path at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_event(raw: Any) -> Payment | DeviceEvent | SocialEvent | LabelEvent:
    """Validate one raw record (a mapping or JSON text) into a typed event.

    Raises :class:`InvalidEvent` with the first field at fault; never returns a partial record.

    >>> parse_event({"type": "device", "event_id": "d1", "event_time": "2026-01-01T00:00:00Z",
    ...              "account_id": "a1", "device_id": "dev1"}).device_id
    'dev1'
    """
    try:
        if isinstance(raw, str | bytes):
            return _EVENT_ADAPTER.validate_json(raw)
        if not isinstance(raw, dict):
            raise InvalidEvent("$", f"expected a JSON object, got {type(raw).__name__}")
        return _EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            raise InvalidEvent("type", err["msg"]) from None
        # The discriminator shows up as the first location element; drop it from the path.
        if loc and loc[0] in TOPICS:
            loc = loc[1:]
        field = ".".join(loc)
        if not field and err["type"] == "value_error":
            # A whole-record rule (model validator): its message starts with the field.
            field = str(err.get("ctx", {}).get("error", "")).split(" ", 1)[0]
        field = field or "$"
        raise InvalidEvent(field, err["msg"]) from None


def to_record(event: EventBase) -> dict[str, Any]:
    """The JSON-ready mapping of an event (inverse of :func:`parse_event`)."""
    return event.model_dump(mode="json")


def utc(ts: float) -> datetime:
    """POSIX seconds → timezone-aware UTC datetime."""
    from datetime import UTC

    return datetime.fromtimestamp(ts, tz=UTC)
