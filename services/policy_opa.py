"""OPA-backed policy evaluators: compiled Wasm in-process (default) and an OPA server (service
mode). Both evaluate the same Rego under ``policies/`` and return identical decisions.

The bundle revision travels with every decision. It is a digest of the policy sources (Rego
without tests, and data), so the Wasm build and a server loaded from the same folder report the
same revision, and a stale Wasm build is detected at start-up.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from services.policy import (
    DecisionResult,
    GateResult,
    PolicyEvaluator,
    PolicyUnavailable,
    ReviewResult,
)
from services.policy_wasm import OpaWasmModule

ENTRYPOINTS = {
    "gate": "riskgraph/gate/result",
    "decision": "riskgraph/decision/result",
    "review": "riskgraph/review/result",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = REPO_ROOT / "policies"
BUILD_DIR = Path(__file__).resolve().parent / "policy_bundle"


def source_revision(policy_dir: Path = POLICY_DIR) -> str:
    """Digest of the policy sources: ``*.rego`` (tests excluded) and ``data.json`` under
    ``policy_dir/riskgraph``, by relative path and content."""
    h = hashlib.sha256()
    root = Path(policy_dir) / "riskgraph"
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and ((p.suffix == ".rego" and not p.name.endswith("_test.rego")) or p.name == "data.json")
    )
    if not files:
        raise FileNotFoundError(f"no policy sources under {root}")
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return "rg-" + h.hexdigest()[:12]


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` merged in recursively (patch wins on leaves)."""
    out = dict(base)
    for k, v in patch.items():
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _check(kind: str, out: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """Fail closed unless the policy answered an object with the documented keys."""
    if not isinstance(out, dict) or any(k not in out for k in keys):
        raise PolicyUnavailable(f"{kind} policy returned an unusable result: {out!r:.200}")
    return out


def gate_result(out: Any, revision: str) -> GateResult:
    o = _check("gate", out, ("allow", "reasons"))
    if not isinstance(o["allow"], bool):
        raise PolicyUnavailable("gate policy returned a non-boolean allow")
    return GateResult(o["allow"], list(o["reasons"]), revision)


def review_result(out: Any, revision: str) -> ReviewResult:
    o = _check("review", out, ("allow", "reasons", "unmask_pii"))
    if not isinstance(o["allow"], bool) or not isinstance(o["unmask_pii"], bool):
        raise PolicyUnavailable("review policy returned a non-boolean allow or unmask_pii")
    return ReviewResult(o["allow"], list(o["reasons"]), o["allow"] and o["unmask_pii"], revision)


def decision_result(out: Any, revision: str) -> DecisionResult:
    o = _check("decision", out, ("action", "reasons"))
    if o["action"] not in ("approve", "review", "decline"):
        raise PolicyUnavailable(f"decision policy returned action {o['action']!r}")
    return DecisionResult(o["action"], list(o["reasons"]), revision, list(o.get("shadow", [])))


class WasmPolicy(PolicyEvaluator):
    """Evaluates the OPA-compiled Wasm module in-process.

    The module lives in ``services/policy_bundle``, built by ``policies/build.sh``.
    """

    def __init__(
        self,
        build_dir: Path = BUILD_DIR,
        policy_dir: Path | None = POLICY_DIR,
        data_overrides: dict[str, Any] | None = None,
    ) -> None:
        """``data_overrides`` is deep-merged over the bundle's data (a kill switch, a tenant's
        thresholds); the revision then gains a ``+local`` suffix so decisions show it."""
        build_dir = Path(build_dir)
        wasm, data = build_dir / "policy.wasm", build_dir / "data.json"
        if not wasm.exists() or not data.exists():
            raise FileNotFoundError(f"no compiled policy in {build_dir}; run `make policies`")
        self.revision = (build_dir / "revision").read_text().strip()
        if policy_dir is not None and (Path(policy_dir) / "riskgraph").exists():
            current = source_revision(policy_dir)
            if current != self.revision:
                raise ValueError(
                    f"compiled policy {self.revision} is stale: sources are "
                    f"{current}; run `make policies`"
                )
        data_doc = json.loads(data.read_text())
        if data_overrides:
            data_doc = deep_merge(data_doc, data_overrides)
            self.revision += "+local"
        self._module = OpaWasmModule.from_file(wasm, data_doc)

    def evaluate(self, kind: str, input_value: dict[str, Any]) -> Any:
        return self._module.evaluate(ENTRYPOINTS[kind], input_value)

    def _gate(self, request: dict[str, Any]) -> GateResult:
        return gate_result(self.evaluate("gate", request), self.revision)

    def _decide(self, request: dict[str, Any]) -> DecisionResult:
        return decision_result(self.evaluate("decision", request), self.revision)

    def _review(self, request: dict[str, Any]) -> ReviewResult:
        return review_result(self.evaluate("review", request), self.revision)


class OpaServerPolicy(PolicyEvaluator):
    """Asks an OPA server (``opa run --server policies/``) over REST, with decision logs on
    the server side."""

    def __init__(self, url: str, policy_dir: Path = POLICY_DIR, timeout_s: float = 1.0) -> None:
        from urllib.parse import urlparse

        from opa_client.opa import OpaClient

        u = urlparse(url)
        self._client = OpaClient(
            host=u.hostname or "127.0.0.1",
            port=u.port or 8181,
            ssl=u.scheme == "https",
            timeout=timeout_s,
        )
        self.revision = source_revision(policy_dir)

    def evaluate(self, kind: str, input_value: dict[str, Any]) -> Any:
        package, rule = ENTRYPOINTS[kind].rsplit("/", 1)
        try:
            answer = self._client.query_rule(
                input_data=input_value, package_path=package.replace("/", "."), rule_name=rule
            )
        except Exception as exc:
            raise PolicyUnavailable(f"OPA server unreachable or failing: {exc}") from exc
        if not isinstance(answer, dict) or "result" not in answer:
            raise PolicyUnavailable(f"OPA server returned no result for {kind}")
        return answer["result"]

    def _gate(self, request: dict[str, Any]) -> GateResult:
        return gate_result(self.evaluate("gate", request), self.revision)

    def _decide(self, request: dict[str, Any]) -> DecisionResult:
        return decision_result(self.evaluate("decision", request), self.revision)

    def _review(self, request: dict[str, Any]) -> ReviewResult:
        return review_result(self.evaluate("review", request), self.revision)

    def close(self) -> None:
        self._client.close_connection()
