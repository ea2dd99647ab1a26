"""Governance costs: in-process policy decision latency (target p99 ≤ 0.2 ms) and durable audit
append throughput (target ≥ 20k records/s, fsync'd group commit); with ``--kafka BOOTSTRAP``
also the service-mode sink that mirrors every record to a Kafka topic (acks=all).

Policy: the compiled Wasm policy evaluating the decision entrypoint on varied inputs, and the
gate entrypoint, several runs. Audit: FileAuditSink appends with the default group-commit size
and a final fsync, several runs; records look like the API's inference records.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from common import machine, percentiles, table, write

from services.audit import FileAuditSink, verify_audit_log
from services.policy_opa import WasmPolicy


def _decision_inputs(n: int, rng: random.Random) -> list[dict]:
    return [
        {
            "tenant": "default",
            "score": rng.random(),
            "amount": rng.lognormvariate(3, 1),
            "currency": "EUR",
            "features": {"device_distinct_accounts_5m": rng.randint(0, 4)},
            "entities": {
                "account_id": f"acc-{rng.randint(0, 999)}",
                "card_id": "card-1",
                "merchant_id": "mer-1",
                "device_id": "dev-1",
                "ip": "10.0.0.1",
            },
            "model": {"version": "gnn-1", "served_by": "gnn"},
        }
        for _ in range(n)
    ]


def _kafka_rate(bootstrap: str, n: int) -> float:
    """Appends per second through the service-mode sink, acknowledged by Kafka at the end."""
    import uuid

    from services.audit_kafka import KafkaAuditSink

    with tempfile.TemporaryDirectory() as d:
        sink = KafkaAuditSink(
            Path(d) / "audit.log", bootstrap, f"bench-audit-{uuid.uuid4().hex[:8]}"
        )
        t0 = time.perf_counter()
        for i in range(n):
            sink.append({"kind": "inference", "request_id": f"tx-{i}", "score": 0.5})
        sink.close()
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--decisions", type=int, default=5000)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        help="also measure the service-mode sink (file + Kafka audit topic, acks=all)",
    )
    ap.add_argument("--out")
    args = ap.parse_args()
    rng = random.Random(0)
    policy = WasmPolicy()
    gate_in = {
        "client": {"id": "c1", "tenant": "default", "roles": ["scorer"]},
        "request": {
            "tenant": "default",
            "purpose": "payment_authorisation",
            "region": "local",
            "model_version": "gnn-1",
        },
    }
    inputs = _decision_inputs(args.decisions, rng)
    for x in inputs[:200]:  # warm the Wasm instance
        policy.decide(x)
    dec_runs, gate_runs, audit_runs = [], [], []
    for _ in range(args.runs):
        lat = []
        for x in inputs:
            t0 = time.perf_counter()
            policy.decide(x)
            lat.append((time.perf_counter() - t0) * 1e3)
        dec_runs.append(percentiles(lat))
        lat = []
        for _ in range(args.decisions):
            t0 = time.perf_counter()
            policy.gate(gate_in)
            lat.append((time.perf_counter() - t0) * 1e3)
        gate_runs.append(percentiles(lat))
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "audit.log"
            sink = FileAuditSink(path)
            body = {
                "kind": "inference",
                "request_id": "tx",
                "caller": "c1",
                "tenant": "default",
                "input_hash": "0" * 64,
                "policy": {"gate": "rg", "decision": "rg"},
                "model_version": "gnn-1",
                "served_by": "gnn",
                "score": 0.5,
                "action": "approve",
                "reasons": ["score_review"],
                "latency_ms": 3.2,
            }
            t0 = time.perf_counter()
            for i in range(args.records):
                body["request_id"] = f"tx-{i}"
                sink.append(body)
            sink.close()
            audit_runs.append(args.records / (time.perf_counter() - t0))
            assert verify_audit_log(path).ok
    kafka_runs = (
        [_kafka_rate(args.kafka, args.records) for _ in range(args.runs)] if args.kafka else []
    )
    med = {
        k: {q: statistics.median(r[q] for r in runs) for q in ("p50", "p99")}
        for k, runs in (("decision", dec_runs), ("gate", gate_runs))
    }
    res = {
        "policy_ms": {
            "decision_runs": dec_runs,
            "gate_runs": gate_runs,
            "median_of_runs": med,
            "target_p99_ms": 0.2,
        },
        "audit_records_per_s": {
            "runs": audit_runs,
            "median": statistics.median(audit_runs),
            "target": 20_000,
            "sync_every": 64,
        },
        "kafka_audit_records_per_s": (
            {"runs": kafka_runs, "median": statistics.median(kafka_runs)} if kafka_runs else None
        ),
        "policy_revision": policy.revision,
        "machine": machine(),
    }
    rows = (
        [
            (
                "audit append, file + Kafka topic, records/s",
                "",
                f"{statistics.median(kafka_runs):,.0f}",
                "",
            )
        ]
        if kafka_runs
        else []
    )
    print(
        table(
            [
                ("measure", "median p50", "median p99 / rate", "target"),
                (
                    "decision policy (Wasm) ms",
                    f"{med['decision']['p50']:.3f}",
                    f"{med['decision']['p99']:.3f}",
                    "p99 <= 0.2",
                ),
                (
                    "gate policy (Wasm) ms",
                    f"{med['gate']['p50']:.3f}",
                    f"{med['gate']['p99']:.3f}",
                    "p99 <= 0.2",
                ),
                (
                    "audit append records/s",
                    "",
                    f"{statistics.median(audit_runs):,.0f}",
                    ">= 20,000",
                ),
                *rows,
            ]
        )
    )
    write(args.out, res)


if __name__ == "__main__":
    main()
