"""One typed settings object per process, read from ``RISKGRAPH_*`` environment variables.

Nothing reads the environment at import time: call :func:`load_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_stream.service_mode import WORKER_SERVICE_BACKENDS, with_service_defaults

DEV_PEPPER = "dev-pepper"
DEV_TOKEN_SECRET = "dev-token-secret"  # development default; refused in production
DEV_API_KEY = "dev-key"
SERVICE_BACKENDS = {**WORKER_SERVICE_BACKENDS, "case_backend": "neo4j"}
"""Backends service mode uses unless a setting names another."""


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
    audit_secret: str = Field(
        "dev-audit-secret",
        description="RISKGRAPH_AUDIT_SECRET; HMAC key for input hashes in the audit log",
    )
    device: str = Field("auto", description="RISKGRAPH_DEVICE: auto, cpu or cuda")
    region: str = Field(
        "local",
        description="RISKGRAPH_REGION; where this deployment runs, "
        "checked by the gate policy against the tenant's regions",
    )
    policy_backend: Literal["wasm", "opa_server"] = Field(
        "wasm",
        description="RISKGRAPH_POLICY_BACKEND; wasm = compiled policy in-process, "
        "opa_server = ask the OPA server at RISKGRAPH_OPA_URL",
    )
    opa_url: str = Field("http://127.0.0.1:8181", description="RISKGRAPH_OPA_URL")
    case_db_path: Path | None = Field(
        None,
        description="RISKGRAPH_CASE_DB_PATH; the SQLite case store of analyst review "
        "(default: cases.sqlite beside the audit log)",
    )
    similar_cases_k: int = Field(
        10, ge=1, le=100, description="RISKGRAPH_SIMILAR_CASES_K; precedents shown per case"
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="RISKGRAPH_KAFKA_BOOTSTRAP")
    topic_prefix: str = Field(
        "", description="RISKGRAPH_TOPIC_PREFIX; prefix of every Kafka topic (as the stream worker)"
    )
    graph_backend: Literal["memory", "neo4j"] = Field(
        "memory",
        description="RISKGRAPH_GRAPH_BACKEND; memory or neo4j (default: memory when embedded, "
        "neo4j in service mode). Service mode samples an in-memory window fed by the graph "
        "changelog and goes to Neo4j only outside it (feature_stream/graph_window.py); with "
        "memory the window answers everything",
    )
    feature_backend: Literal["memory", "redis"] = Field(
        "memory",
        description="RISKGRAPH_FEATURE_BACKEND; memory or redis (default: memory when embedded, "
        "redis in service mode, the store the stream workers write)",
    )
    case_backend: Literal["sqlite", "neo4j"] = Field(
        "sqlite",
        description="RISKGRAPH_CASE_BACKEND; sqlite (at RISKGRAPH_CASE_DB_PATH) or neo4j "
        "(beside the graph, same namespace) (default: sqlite when embedded, neo4j in service mode)",
    )
    neo4j_uri: str = Field("bolt://127.0.0.1:7687", description="RISKGRAPH_NEO4J_URI")
    neo4j_user: str | None = Field(None, description="RISKGRAPH_NEO4J_USER; None = no auth")
    neo4j_password: str | None = Field(None, description="RISKGRAPH_NEO4J_PASSWORD")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="RISKGRAPH_REDIS_URL")
    namespace: str = Field(
        "default",
        description="RISKGRAPH_NAMESPACE; Neo4j namespace and Redis key prefix rg:<ns>: "
        "(as the stream worker)",
    )
    window_days: float = Field(
        7.0,
        gt=0,
        description="RISKGRAPH_WINDOW_DAYS; service mode: days of event time a replica keeps "
        "in memory (read from the graph changelog from that long ago at start-up)",
    )
    window_catch_up_s: float = Field(
        300.0,
        gt=0,
        description="RISKGRAPH_WINDOW_CATCH_UP_S; service mode: longest wait at start-up for "
        "the window to read the changelog to its end (the API is not ready before)",
    )
    audit_topic: str = Field(
        "audit",
        description="RISKGRAPH_AUDIT_TOPIC; in service mode every audit record is also "
        "produced to this Kafka topic (acks=all), besides the file at RISKGRAPH_AUDIT_PATH",
    )
    clients_file: Path | None = Field(
        None,
        description="RISKGRAPH_CLIENTS_FILE; JSON list of payment clients with hashed "
        "API keys (see `riskgraph keys new`)",
    )
    auth_pepper: str = Field(
        DEV_PEPPER, description="RISKGRAPH_AUTH_PEPPER; HMAC key for stored API key hashes"
    )
    token_secret: str = Field(
        DEV_TOKEN_SECRET, description="RISKGRAPH_TOKEN_SECRET; signs analyst tokens"
    )
    dev_api_key: str | None = Field(
        DEV_API_KEY,
        description="RISKGRAPH_DEV_API_KEY; development only: a built-in client "
        "'dev-client' of tenant 'default' with this key",
    )
    idempotency_ttl_s: float = Field(24 * 3600.0, gt=0, description="RISKGRAPH_IDEMPOTENCY_TTL_S")
    batch_max_size: int = Field(
        32, ge=1, le=4096, description="RISKGRAPH_BATCH_MAX_SIZE; micro-batch flush size B"
    )
    batch_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description="RISKGRAPH_BATCH_MAX_WAIT_MS; micro-batch flush time τ after the oldest "
        "queued request (a request never waits for peers longer than half its deadline). "
        "0: the worker takes whatever is queued when it is free, so batches still form "
        "under load; on a 2-core CPU host that beat 1 ms up to 350 requests/s",
    )
    queue_capacity: int = Field(
        256,
        ge=1,
        description="RISKGRAPH_QUEUE_CAPACITY; most requests waiting for the inference "
        "worker; beyond it requests get 429 with Retry-After",
    )
    deadline_margin_ms: float = Field(
        1.0,
        ge=0,
        description="RISKGRAPH_DEADLINE_MARGIN_MS; budget kept back from each request for "
        "answering over HTTP when choosing its rung of the degradation ladder",
    )
    shed_on_deadline: bool = Field(
        True,
        description="RISKGRAPH_SHED_ON_DEADLINE; also answer 429 at once when the expected "
        "queue wait alone exceeds a request's deadline",
    )
    gate_ttl_s: float = Field(
        1.0,
        ge=0,
        description="RISKGRAPH_GATE_TTL_S; seconds a gate policy answer is reused for the same "
        "caller and request context (0: evaluate the gate for every request)",
    )
    heap_refreeze_s: float = Field(
        5.0,
        ge=0,
        description="RISKGRAPH_HEAP_REFREEZE_S; at most this often, between requests, a full "
        "garbage-collector pass and a freeze of what survived, so that the pauses of later "
        "passes do not grow with uptime (0: off; see services.heap.Refreezer)",
    )
    ladder: tuple[Literal["full", "reduced", "cached", "tree", "policy"], ...] = Field(
        ("full", "reduced", "cached", "tree", "policy"),
        description="RISKGRAPH_LADDER; JSON list of the degradation ladder rungs in use "
        "(policy is always the floor)",
    )
    reduced_fanouts: tuple[int, ...] = Field(
        (5, 3), description="RISKGRAPH_REDUCED_FANOUTS; JSON list, per-hop caps of 'reduced'"
    )
    embedding_cache_size: int = Field(
        100_000,
        ge=0,
        description="RISKGRAPH_EMBEDDING_CACHE_SIZE; entities whose GNN embeddings the "
        "'cached' rung can reuse (0 disables that rung)",
    )
    torch_threads: int = Field(
        1,
        ge=0,
        description="RISKGRAPH_TORCH_THREADS; intra-op math threads of the inference worker, "
        "torch's and numpy's BLAS (0: the libraries' defaults). 1 suits a 2-core host, where "
        "the other core serves HTTP",
    )
    inference_process: bool = Field(
        False,
        description="RISKGRAPH_INFERENCE_PROCESS; embedded mode: run the GNN engine in a "
        "process of its own (gnn/engine_process.py), so HTTP and inference do not share one "
        "interpreter lock",
    )

    @model_validator(mode="before")
    @classmethod
    def _service_defaults(cls, data: Any) -> Any:
        # Backends left unset follow the mode: service mode means the real servers.
        return with_service_defaults(data, SERVICE_BACKENDS)

    @field_validator("dev_api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v  # RISKGRAPH_DEV_API_KEY= (empty) turns the dev client off

    @model_validator(mode="after")
    def _service_mode_has_no_history_dir(self) -> Settings:
        if self.mode == "service" and self.history_dir is not None:
            raise ValueError(
                "RISKGRAPH_HISTORY_DIR replays files in-process (embedded mode); in service mode "
                "publish them to Kafka with `riskgraph produce` and let the workers ingest them"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.environment == "production":
            defaults = {
                "RISKGRAPH_AUDIT_SECRET": self.audit_secret == "dev-audit-secret",
                "RISKGRAPH_AUTH_PEPPER": self.auth_pepper == DEV_PEPPER,
                "RISKGRAPH_TOKEN_SECRET": self.token_secret == DEV_TOKEN_SECRET,
                "RISKGRAPH_DEV_API_KEY (must be unset)": self.dev_api_key is not None,
            }
            bad = [name for name, is_default in defaults.items() if is_default]
            if bad:
                raise ValueError(
                    "refusing to start in production with default secrets: " + ", ".join(bad)
                )
        return self


def case_db(settings: Settings) -> Path:
    """Where the case store lives: ``case_db_path``, or beside the audit log."""
    return settings.case_db_path or settings.audit_path.with_name("cases.sqlite")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
