"""docker-compose.yml stays right for users with Docker: the same versions as deploy/, only
settings the code reads, and an API that has a model and asks the OPA it starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from feature_stream.stream_app import StreamConfig
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _pom_version(path: str, prop: str) -> str:
    found = re.search(rf"<{prop}>([^<]+)</{prop}>", (ROOT / path).read_text())
    assert found, f"{prop} not in {path}"
    return found.group(1)


def test_images_run_the_versions_deploy_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = _pom_version("deploy/kafka/pom.xml", "kafka.version")
    assert services["kafka"]["image"] == f"apache/kafka:{kafka}"
    neo4j = _pom_version("deploy/neo4j/pom.xml", "neo4j.version")
    line = ".".join(neo4j.split(".")[:2])  # the image tag names the LTS line
    assert services["neo4j"]["image"] == f"neo4j:{line}-community"
    opa = re.search(r"^OPA_VERSION=v(\S+)", (ROOT / "deploy/opa.sh").read_text(), re.M)
    assert opa, "OPA_VERSION not in deploy/opa.sh"
    assert services["opa"]["image"] == f"openpolicyagent/opa:{opa.group(1)}"


def test_every_riskgraph_variable_is_a_setting_the_code_reads(compose: dict[str, Any]) -> None:
    known = {f"RISKGRAPH_{n.upper()}" for n in (*Settings.model_fields, *StreamConfig.model_fields)}
    used = {
        name
        for service in compose["services"].values()
        for name in (service.get("environment") or {})
        if name.startswith("RISKGRAPH_")
    }
    assert used  # the app services are configured through the environment
    assert sorted(used - known) == []


def test_the_api_gets_a_model_and_asks_the_opa_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api_env = services["api"]["environment"]
    api = Settings(**{k.removeprefix("RISKGRAPH_").lower(): v for k, v in api_env.items()})
    assert (api.mode, api.policy_backend) == ("service", "opa_server")
    assert api.opa_url == "http://opa:8181"
    # The model service writes the artifact the API loads, and the API waits for it.
    assert f"--out {api.model_dir}" in services["model"]["command"]
    assert services["api"]["depends_on"]["model"] == {"condition": "service_completed_successfully"}
    assert services["model"]["restart"] == "no"


def test_the_worker_writes_the_stores_the_api_reads(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["stream-worker"]["environment"]
    worker = StreamConfig(
        **{
            k.removeprefix("RISKGRAPH_").lower(): v
            for k, v in env.items()
            if k.removeprefix("RISKGRAPH_").lower() in StreamConfig.model_fields
        }
    )
    api_env = services["api"]["environment"]
    api = Settings(**{k.removeprefix("RISKGRAPH_").lower(): v for k, v in api_env.items()})
    assert (worker.graph_backend, worker.feature_backend) == ("neo4j", "redis")
    assert (api.graph_backend, api.feature_backend) == ("neo4j", "redis")
    assert (worker.kafka_bootstrap, worker.neo4j_uri, worker.redis_url, worker.namespace) == (
        api.kafka_bootstrap,
        api.neo4j_uri,
        api.redis_url,
        api.namespace,
    )
