"""Offline evaluation of an artifact on a later window, through the scoring engine.

Every payment in ``[since, until)`` is scored at its own event time by the same
:class:`~gnn.engine.ScoringEngine` the API uses, after all events are in the stores (the
point-in-time property makes later events invisible). Both the GNN and the tree fallback are
scored so they can be compared on identical inputs.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gnn.artifact import ModelBundle
from gnn.engine import prepare
from gnn.metrics import summary
from gnn.train import History, load_history


def ground_truth(stream: Path) -> dict[str, tuple[int, str]]:
    """``transaction_id → (is_fraud, scenario)`` from a generated stream's ground_truth.csv."""
    out: dict[str, tuple[int, str]] = {}
    with open(Path(stream) / "ground_truth.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["transaction_id"]] = (int(row["is_fraud"]), row["scenario"])
    return out


def evaluate_window(
    stream: Path,
    bundle: ModelBundle,
    since: float,
    until: float | None = None,
    history: History | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, Any]:
    """GNN and baseline metrics on payments in ``[since, until)`` against final ground truth,
    overall and recall at 1% FPR per fraud scenario."""
    hist = history if history is not None else load_history(stream, progress=progress)
    truth = ground_truth(stream)
    pays = [
        p
        for p in hist.payments
        if since <= p.event_time.timestamp() < (until if until is not None else float("inf"))
    ]
    gnn_s: list[float] = []
    base_s: list[float] = []
    leaks = 0
    for i in tqdm(range(0, len(pays), batch_size), desc="evaluate", disable=not progress):
        chunk = pays[i : i + batch_size]
        prep = prepare(chunk, hist.graph, hist.features, bundle.fanouts)
        leaks += sum(prep.max_time_used(j) >= p.event_time.timestamp() for j, p in enumerate(chunk))
        rows = [list(f.values) for f in prep.features]
        with torch.inference_mode():
            gnn_s += bundle.gnn.predict(bundle.batch(prep.subgraphs, rows)).tolist()
        base_s += bundle.baseline.predict(rows).tolist()
    y = [truth[p.event_id][0] for p in pays]
    scen = [truth[p.event_id][1] for p in pays]
    out: dict[str, Any] = {
        "payments": len(pays),
        "fraud": sum(y),
        "leaks": leaks,
        "gnn": summary(y, gnn_s),
        "baseline": summary(y, base_s),
    }
    out["auprc_ratio"] = out["gnn"]["auprc"] / out["baseline"]["auprc"]
    per: dict[str, dict[str, float]] = {}
    for s in sorted(set(scen) - {""}):
        keep = [k for k in range(len(y)) if scen[k] in (s, "")]
        ys = [y[k] for k in keep]
        per[s] = {
            "count": sum(ys),
            "gnn_auprc": summary(ys, [gnn_s[k] for k in keep])["auprc"],
            "baseline_auprc": summary(ys, [base_s[k] for k in keep])["auprc"],
        }
    out["per_scenario"] = per
    return out
