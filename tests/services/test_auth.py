"""Authentication: every endpoint but health needs a credential; tenant comes from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gnn.artifact import ModelBundle
from services.auth import (
    ApiKeyRegistry,
    Authenticator,
    AuthError,
    hash_key,
    issue_token,
    new_api_key,
    verify_token,
)
from tests.services.api_harness import App, body, make_app

SECRET = "test-token-secret"


@pytest.fixture
def app(tmp_path: Path, bundle: ModelBundle) -> Iterator[App]:
    with make_app(tmp_path, bundle, token_secret=SECRET) as a:
        yield a


def anonymous(a: App) -> TestClient:
    c = TestClient(a.client.app)
    c.headers.pop("Authorization", None)
    return c


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/v1/score"), ("post", "/v1/events"), ("get", "/metrics"), ("get", "/readyz")],
)
def test_endpoints_refuse_requests_without_a_credential(app: App, method: str, path: str) -> None:
    client = anonymous(app)
    kwargs = {"json": body() if path == "/v1/score" else []} if method == "post" else {}
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert app.c.graph.stats()["edges"] == 0


def test_health_needs_no_credential(app: App) -> None:
    assert anonymous(app).get("/healthz").status_code == 200


def test_a_wrong_key_is_refused_and_nothing_is_scored(app: App) -> None:
    r = anonymous(app).post("/v1/score", json=body(), headers={"X-API-Key": "rgk_wrong"})
    assert r.status_code == 401
    assert app.audit.records == []


def test_the_tenant_comes_from_the_credential_not_the_body(app: App) -> None:
    r = app.client.post("/v1/score", json=body(tenant="other-bank"))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "tenant"


def test_analyst_tokens_authenticate_with_tenant_and_roles(app: App) -> None:
    token = issue_token(SECRET, "alice", "default", ["analyst"])
    r = anonymous(app).get("/readyz", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    p = verify_token(SECRET, token)
    assert (p.id, p.tenant, p.roles, p.kind) == ("alice", "default", ("analyst",), "analyst")


def test_expired_and_tampered_tokens_are_refused() -> None:
    expired = issue_token(SECRET, "alice", "default", ["analyst"], ttl_s=10, now=1000.0)
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, expired, now=1011.0)
    good = issue_token(SECRET, "alice", "default", ["analyst"])
    body_part, sig = good.split(".")
    forged = issue_token("another-secret", "alice", "default", ["admin"]).split(".")[0]
    with pytest.raises(AuthError, match="signature"):
        verify_token(SECRET, f"{forged}.{sig}")
    with pytest.raises(AuthError):
        verify_token(SECRET, body_part)


def test_keys_are_stored_hashed_and_matched_exactly() -> None:
    key = new_api_key()
    entry = {"id": "checkout", "tenant": "acme", "key_sha256": hash_key(key, "pep")}
    reg = ApiKeyRegistry([entry], "pep")
    assert key not in str(entry)
    principal = Authenticator(reg, SECRET).authenticate(key)
    assert (principal.id, principal.tenant, principal.kind) == ("checkout", "acme", "client")
    with pytest.raises(AuthError):
        reg.authenticate(key + "x")
    with pytest.raises(AuthError):
        ApiKeyRegistry([entry], "other-pepper").authenticate(key)
