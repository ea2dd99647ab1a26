"""``riskgraph demo``: the whole job on embedded defaults, no servers to install.

generate → replay history into the graph → train GNN and baseline → start the API → replay the
later window through the API over HTTP → summary table (and JSON).
"""

from __future__ import annotations

import csv
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from gnn.metrics import summary
from gnn.train import DAY, TrainConfig, load_history, stream_end, train
from services.api.app import create_app
from services.api.runner import ApiThread
from services.container import build_run_container
from services.replay import ReplayConfig, replay_in_subprocess


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workdir: Path = Path("runs/demo")
    seed: int = 7
    accounts: int | None = None
    days: int | None = None
    epochs: int = 12
    holdout_days: float = 7.0
    max_api_payments: int | None = None
    concurrency: int = 8


def _ground_truth(stream: Path) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    with open(stream / "ground_truth.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["transaction_id"]] = (int(row["is_fraud"]), row["scenario"])
    return out


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def run_demo(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    from feature_stream.generator import GeneratorConfig, generate

    work = Path(cfg.workdir)
    work.mkdir(parents=True, exist_ok=True)
    stream, model_dir = work / "stream", work / "model"
    t0 = time.perf_counter()
    gen_overrides: dict[str, Any] = {"seed": cfg.seed}
    if cfg.accounts is not None:
        gen_overrides["n_accounts"] = cfg.accounts
    if cfg.days is not None:
        gen_overrides["days"] = cfg.days
    manifest = generate(GeneratorConfig(**gen_overrides), stream, progress=progress)
    t_gen = time.perf_counter() - t0

    fit = stream_end(stream) - cfg.holdout_days * DAY
    hist = load_history(stream, until=fit, progress=progress)
    ingested = sum(hist.ingest.accepted.values())
    ingest_rate = ingested / hist.ingest.seconds if hist.ingest.seconds else float("nan")

    t1 = time.perf_counter()
    bundle, train_metrics = train(
        stream,
        model_dir,
        TrainConfig(epochs=cfg.epochs, holdout_days=cfg.holdout_days),
        progress=progress,
        history=hist,
    )
    t_train = time.perf_counter() - t1

    container = build_run_container(
        work, bundle, hist.graph, hist.features, shadow_baseline=True, default_deadline_ms=200.0
    )
    settings = container.settings
    t2 = time.perf_counter()
    with ApiThread(create_app(container)) as url:
        assert settings.dev_api_key is not None  # the demo runs as the development client
        results = replay_in_subprocess(
            ReplayConfig(
                base_url=url,
                api_key=settings.dev_api_key,
                stream=stream,
                since=fit,
                concurrency=cfg.concurrency,
                max_payments=cfg.max_api_payments,
                progress=progress,
            )
        )
    t_api = time.perf_counter() - t2
    container.close()

    truth = _ground_truth(stream)
    y = [truth.get(r["transaction_id"], (0, ""))[0] for r in results]
    served = [r["score"] for r in results]
    base = [r["shadow_scores"]["baseline"] for r in results]
    gnn_m, base_m = summary(y, served), summary(y, base)
    rtt = [r["rtt_ms"] for r in results]
    server_ms = [r["latency_ms"]["total"] for r in results]
    mix: dict[str, int] = {}
    for r in results:
        mix[r["served_by"]] = mix.get(r["served_by"], 0) + 1
    out = {
        "events_generated": manifest.get("counts"),
        "generate_seconds": round(t_gen, 2),
        "ingest_events": ingested,
        "ingest_events_per_s": round(ingest_rate),
        "train_seconds": round(t_train, 1),
        "model_version": bundle.version,
        "later_window": {
            "payments": len(results),
            "fraud": int(sum(y)),
            "gnn": gnn_m,
            "baseline": base_m,
            "auprc_ratio_gnn_over_baseline": gnn_m["auprc"] / base_m["auprc"],
        },
        "served_by": mix,
        "api_latency_ms": {
            "rtt_p50": _pct(rtt, 50),
            "rtt_p99": _pct(rtt, 99),
            "server_p50": _pct(server_ms, 50),
            "server_p99": _pct(server_ms, 99),
            "server_mean": statistics.fmean(server_ms) if server_ms else None,
        },
        "api_seconds": round(t_api, 1),
        "api_replay": {
            "concurrency": cfg.concurrency,
            "payments_per_s": round(len(results) / t_api, 1) if t_api else None,
            "retries_after_429": sum(r["client_retries"] for r in results),
        },
        "validation": train_metrics["val"],
        "audit_log": str(work / "audit.log"),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    print(format_summary(out))
    return out


def format_summary(s: dict[str, Any]) -> str:
    lw = s["later_window"]
    g, b = lw["gnn"], lw["baseline"]
    lat = s["api_latency_ms"]
    rows = [
        ("ingest (events/s, in-memory graph + features)", f"{s['ingest_events_per_s']:,}"),
        ("later window payments / fraud", f"{lw['payments']:,} / {lw['fraud']:,}"),
        (
            "AUPRC  GNN / baseline",
            f"{g['auprc']:.3f} / {b['auprc']:.3f} (×{lw['auprc_ratio_gnn_over_baseline']:.2f})",
        ),
        (
            "recall @ 1% FPR  GNN / baseline",
            f"{g['recall_at_fpr_1%']:.3f} / {b['recall_at_fpr_1%']:.3f}",
        ),
        ("ROC AUC  GNN / baseline", f"{g['roc_auc']:.3f} / {b['roc_auc']:.3f}"),
        ("API latency p50 / p99 (round trip, ms)", f"{lat['rtt_p50']:.2f} / {lat['rtt_p99']:.2f}"),
        (
            "API latency p50 / p99 (server, ms)",
            f"{lat['server_p50']:.2f} / {lat['server_p99']:.2f}",
        ),
        (
            "API replay (payments/s, in flight)",
            f"{s['api_replay']['payments_per_s']} ({s['api_replay']['concurrency']})",
        ),
        ("served by", ", ".join(f"{k}: {v}" for k, v in s["served_by"].items())),
        ("model version", s["model_version"]),
        ("total time (s)", f"{s['total_seconds']}"),
    ]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 30)
    return "\n".join(
        ["riskgraph demo summary", line, *(f"{k.ljust(w)}  {v}" for k, v in rows), line]
    )
