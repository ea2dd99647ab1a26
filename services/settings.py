"""One typed settings object per process, read from ``RISKGRAPH_*`` environment variables.

Nothing reads the environment at import time: call :func:`load_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings of the scoring API and workers. Env var = ``RISKGRAPH_`` + field name."""

    model_config = SettingsConfigDict(env_prefix="RISKGRAPH_", extra="forbid")

    environment: Literal["development", "production"] = Field(
        "development", description="RISKGRAPH_ENVIRONMENT; production refuses default secrets"
    )
    mode: Literal["embedded", "service"] = Field(
        "embedded", description="RISKGRAPH_MODE; embedded = in-process stores, no servers"
    )
    model_dir: Path = Field(Path("artifacts/model"), description="RISKGRAPH_MODEL_DIR")
    history_dir: Path | None = Field(
        None, description="RISKGRAPH_HISTORY_DIR; a stream directory replayed at start-up"
    )
    audit_path: Path = Field(Path("runs/audit.log"), description="RISKGRAPH_AUDIT_PATH")
    dead_letter_path: Path = Field(
        Path("runs/dead-letters.jsonl"), description="RISKGRAPH_DEAD_LETTER_PATH"
    )
    default_deadline_ms: float = Field(
        50.0, gt=0, le=10_000, description="RISKGRAPH_DEFAULT_DEADLINE_MS"
    )
    max_deadline_ms: float = Field(2_000.0, gt=0, description="RISKGRAPH_MAX_DEADLINE_MS")
    shadow_baseline: bool = Field(
        False, description="RISKGRAPH_SHADOW_BASELINE; also return the tree model's score"
    )
    max_body_bytes: int = Field(64 * 1024, gt=0, description="RISKGRAPH_MAX_BODY_BYTES")
    review_threshold: float = Field(0.5, ge=0, le=1, description="RISKGRAPH_REVIEW_THRESHOLD")
    decline_threshold: float = Field(0.9, ge=0, le=1, description="RISKGRAPH_DECLINE_THRESHOLD")
    audit_secret: str = Field(
        "dev-audit-secret",
        description="RISKGRAPH_AUDIT_SECRET; HMAC key for input hashes in the audit log",
    )
    device: str = Field("auto", description="RISKGRAPH_DEVICE: auto, cpu or cuda")

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.environment == "production" and self.audit_secret == "dev-audit-secret":
            raise ValueError("RISKGRAPH_AUDIT_SECRET must be set in production")
        if self.review_threshold > self.decline_threshold:
            raise ValueError("review_threshold must not exceed decline_threshold")
        return self


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
