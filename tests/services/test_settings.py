"""Settings: strict, read from RISKGRAPH_* only when asked, and safe in production."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RISKGRAPH_"):
            monkeypatch.delenv(name)


def test_defaults_are_embedded_development() -> None:
    s = Settings()
    assert (s.environment, s.mode, s.default_deadline_ms) == ("development", "embedded", 50.0)


def test_production_with_the_default_secret_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="AUDIT_SECRET"):
        Settings(environment="production")


def test_production_from_the_environment_also_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKGRAPH_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="AUDIT_SECRET"):
        load_settings()
    monkeypatch.setenv("RISKGRAPH_AUDIT_SECRET", "a-real-secret")
    with pytest.raises(ValidationError, match="AUTH_PEPPER") as err:
        load_settings()
    assert "AUDIT_SECRET" not in str(err.value)
    monkeypatch.setenv("RISKGRAPH_AUTH_PEPPER", "real-pepper")
    monkeypatch.setenv("RISKGRAPH_TOKEN_SECRET", "real-token-secret")
    with pytest.raises(ValidationError, match="DEV_API_KEY"):
        load_settings()
    monkeypatch.setenv("RISKGRAPH_DEV_API_KEY", "")
    s = load_settings()
    assert (s.environment, s.dev_api_key) == ("production", None)


def test_environment_is_read_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKGRAPH_DEFAULT_DEADLINE_MS", "25")
    monkeypatch.setenv("RISKGRAPH_MODEL_DIR", "/models/v3")
    s = load_settings()
    assert (s.default_deadline_ms, s.model_dir) == (25.0, Path("/models/v3"))
    assert load_settings(default_deadline_ms=10).default_deadline_ms == 10.0


@pytest.mark.parametrize(
    "bad",
    [
        {"review_threshold": 0.95, "decline_threshold": 0.9},
        {"mode": "cluster"},
        {"default_deadline_ms": 0},
        {"max_body_bytes": 0},
        {"unknown_setting": 1},
    ],
    ids=["thresholds-inverted", "unknown-mode", "zero-deadline", "zero-body", "extra"],
)
def test_invalid_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_every_field_documents_its_env_var() -> None:
    undocumented = [
        name
        for name, f in Settings.model_fields.items()
        if f"RISKGRAPH_{name.upper()}" not in (f.description or "")
    ]
    assert undocumented == []


def test_one_env_file_puts_the_api_and_the_stream_worker_on_the_same_backends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from feature_stream.stream_app import StreamConfig

    monkeypatch.setenv("RISKGRAPH_MODE", "service")
    api, worker = load_settings(), StreamConfig()
    assert (api.graph_backend, api.feature_backend) == ("neo4j", "redis")
    assert (worker.graph_backend, worker.feature_backend) == ("neo4j", "redis")
    monkeypatch.setenv("RISKGRAPH_GRAPH_BACKEND", "memory")  # a named backend wins
    assert (StreamConfig().graph_backend, load_settings().graph_backend) == ("memory", "memory")
    monkeypatch.delenv("RISKGRAPH_MODE")
    assert (StreamConfig().feature_backend, load_settings().feature_backend) == ("memory", "memory")
