"""Authentication: hashed API keys for payment clients, signed tokens for analysts.

Role and tenant always come from the credential, never from a request body.

* API keys: the registry (a JSON file, or the development client) stores only
  ``HMAC-SHA256(pepper, key)``; a presented key is hashed the same way and compared in constant
  time. ``riskgraph keys new`` prints a fresh key and the registry entry to add.
* Analyst tokens: ``base64url(json claims) + "." + base64url(HMAC-SHA256(secret, claims))`` with
  ``sub``, ``tenant``, ``roles`` and ``exp`` (POSIX seconds); expired or tampered tokens fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class AuthError(Exception):
    """The credential is missing, unknown, expired or tampered with."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a payment client or an analyst."""

    id: str
    tenant: str
    roles: tuple[str, ...] = ()
    kind: Literal["client", "analyst"] = "client"
    rate_tier: str = "standard"
    extra_tenants: tuple[str, ...] = field(default=())

    def as_policy_input(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "roles": list(self.roles),
            "rate_tier": self.rate_tier,
        }


def hash_key(key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def new_api_key() -> str:
    return "rgk_" + secrets.token_urlsafe(32)


class ApiKeyRegistry:
    """Payment clients by hashed key."""

    def __init__(self, entries: list[dict[str, Any]], pepper: str) -> None:
        self.pepper = pepper
        self._by_hash: dict[str, Principal] = {}
        for e in entries:
            missing = {"id", "tenant", "key_sha256"} - set(e)
            if missing:
                raise ValueError(f"client entry {e.get('id', '?')!r} lacks {sorted(missing)}")
            self._by_hash[e["key_sha256"]] = Principal(
                id=e["id"],
                tenant=e["tenant"],
                roles=tuple(e.get("roles", ["scorer"])),
                kind="client",
                rate_tier=e.get("rate_tier", "standard"),
            )

    @classmethod
    def from_file(cls, path: Path, pepper: str) -> ApiKeyRegistry:
        data = json.loads(Path(path).read_text())
        return cls(data["clients"] if isinstance(data, dict) else data, pepper)

    def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise AuthError("missing API key (send 'Authorization: Bearer <key>')")
        digest = hash_key(key, self.pepper)
        for stored, principal in self._by_hash.items():
            if hmac.compare_digest(stored, digest):
                return principal
        raise AuthError("unknown API key")


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def issue_token(
    secret: str,
    sub: str,
    tenant: str,
    roles: list[str],
    ttl_s: float = 8 * 3600,
    now: float | None = None,
) -> str:
    """A signed analyst token valid for ``ttl_s`` seconds."""
    claims = {
        "sub": sub,
        "tenant": tenant,
        "roles": roles,
        "exp": (now if now is not None else time.time()) + ttl_s,
    }
    body = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    sig = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def verify_token(secret: str, token: str | None, now: float | None = None) -> Principal:
    if not token or token.count(".") != 1:
        raise AuthError("missing or malformed analyst token")
    body, sig = token.split(".")
    expected = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        raise AuthError("analyst token signature does not verify")
    try:
        claims = json.loads(_unb64(body))
    except ValueError:
        raise AuthError("analyst token is not valid JSON") from None
    if claims.get("exp", 0) <= (now if now is not None else time.time()):
        raise AuthError("analyst token expired")
    return Principal(
        id=str(claims["sub"]),
        tenant=str(claims["tenant"]),
        roles=tuple(claims.get("roles", [])),
        kind="analyst",
    )


def bearer(authorization: str | None, x_api_key: str | None) -> str | None:
    """The credential from ``Authorization: Bearer …`` or ``X-API-Key``."""
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


class Authenticator:
    """API keys first (payment clients), then analyst tokens."""

    def __init__(self, keys: ApiKeyRegistry, token_secret: str) -> None:
        self.keys = keys
        self.token_secret = token_secret

    def authenticate(self, credential: str | None) -> Principal:
        if credential and credential.count(".") == 1 and not credential.startswith("rgk_"):
            return verify_token(self.token_secret, credential)
        return self.keys.authenticate(credential)


def dev_client_entry(key: str, pepper: str) -> dict[str, Any]:
    """The development client's registry entry (tenant ``default``)."""
    return {
        "id": "dev-client",
        "tenant": "default",
        "roles": ["scorer"],
        "rate_tier": "standard",
        "key_sha256": hash_key(key, pepper),
    }
