"""``RISKGRAPH_MODE=service``: the real servers unless a setting names another backend.

The API's settings (:mod:`services.settings`) and the stream worker's
(:class:`feature_stream.stream_app.StreamConfig`) read one env file; both fill the backends
left unset from here, so the worker writes the stores the API reads.
"""

from __future__ import annotations

from typing import Any

WORKER_SERVICE_BACKENDS = {"graph_backend": "neo4j", "feature_backend": "redis"}
"""The stores a stream worker writes in service mode unless a setting names others."""


def with_service_defaults(data: Any, backends: dict[str, str]) -> Any:
    """Settings input ``data`` with ``backends`` filled in where unset, if its mode is service
    (for a pydantic ``model_validator(mode="before")``)."""
    if isinstance(data, dict) and data.get("mode") == "service":
        for name, value in backends.items():
            data.setdefault(name, value)
    return data
