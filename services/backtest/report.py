"""Write a backtest's report: ``report.json``, ``scores.csv`` and one self-contained
``report.html`` (plots embedded as PNG, no external files or scripts)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; selecting a backend does no I/O
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve

from services.backtest.run import BacktestRun


def write_scores_csv(run: BacktestRun, truth: Mapping[str, tuple[int, str]], path: Path) -> None:
    """One row per scored payment: ids, time, amount, label, scenario, and per model its
    score, action, newest input time and the model version that scored it."""
    names = list(run.models)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["transaction_id", "event_time", "account", "card", "amount", "is_fraud", "scenario"]
            + [f"{c}_{n}" for n in names for c in ("score", "action", "max_time_used", "version")]
        )
        for p in run.payments:
            fraud, scenario = truth.get(p.transaction_id, (0, ""))
            w.writerow(
                [p.transaction_id, p.t, p.account, p.card, p.amount, fraud, scenario]
                + [
                    v
                    for n in names
                    for v in (p.scores[n], p.actions[n], p.max_time_used[n], p.versions[n])
                ]
            )


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(run: BacktestRun, truth: Mapping[str, tuple[int, str]], m: dict[str, Any]) -> list:
    y = np.array([truth.get(p.transaction_id, (0, ""))[0] for p in run.payments])
    figs: list[tuple[str, str]] = []
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name in run.models:
        s = np.array([p.scores[name] for p in run.payments])
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{name} (AUPRC {m['models'][name]['auprc']:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision–recall")
    ax.legend()
    figs.append(("Precision–recall on the scored window", _png(fig)))

    def daily(key: str, title: str, ylabel: str, series: str) -> None:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for name in run.models:
            rows = m["models"][name][series]
            days = np.array([datetime.fromtimestamp(r["day"], UTC) for r in rows])
            ax.plot(days, [r[key] for r in rows], marker="o", label=name)
        ax.set(title=title, ylabel=ylabel)
        ax.legend()
        fig.autofmt_xdate()
        figs.append((title, _png(fig)))

    daily("cp_at_k", f"Card Precision@{m['k']} per day", "CP@k", "card_precision_at_k_daily")
    daily("alert_rate", "Alert rate per day (review + decline)", "share", "daily")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name in run.models:
        ax.hist([p.ms_per_payment[name] for p in run.payments], bins=40, alpha=0.6, label=name)
    ax.set(xlabel="ms per payment (batched)", ylabel="payments", title="Scoring time")
    ax.legend()
    figs.append(("Scoring time per payment", _png(fig)))
    return figs


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    run: BacktestRun, truth: Mapping[str, tuple[int, str]], m: dict[str, Any], title: str
) -> str:
    names = list(run.models)
    metric_rows = [
        ("model version (at the start)", "version"),
        ("decision policy", "policy_revision"),
        ("AUPRC", "auprc"),
        ("ROC AUC", "roc_auc"),
        ("recall @ 0.1% FPR", "recall_at_fpr_0.1%"),
        ("recall @ 1% FPR", "recall_at_fpr_1%"),
        (f"Card Precision@{m['k']} (mean per day)", "card_precision_at_k"),
        ("alert rate", "alert_rate"),
        ("reviews", "reviews"),
        ("fraud amount caught", "fraud_amount_caught"),
        ("fraud amount missed", "fraud_amount_missed"),
    ]
    headline = _table(
        ["metric", *names],
        [[label, *(m["models"][n][k] for n in names)] for label, k in metric_rows],
    )
    deltas = _table(
        ["challenger", "metric", "Δ vs " + m["champion"], "95% CI low", "95% CI high"],
        [
            [n, metric, d["delta"], d["ci_low"], d["ci_high"]]
            for n, per in m["deltas_vs_champion"].items()
            for metric, d in per.items()
        ],
    )
    action_rows = []
    for n, d in m["action_deltas_vs_champion"].items():
        for metric in ("alert_rate", "review_rate", "decline_rate", "reviews", "reviews_per_day"):
            v = d[metric]
            action_rows.append([n, metric, v["champion"], v["challenger"], v["delta"]])
        moves = ", ".join(f"{k}: {c}" for k, c in d["transitions"].items()) or "none"
        action_rows.append([n, "payments with another action", "", d["changed"], moves])
    actions = _table(["challenger", "metric", m["champion"], "challenger", "Δ"], action_rows)
    versions = _table(
        ["model", "version", "scores from", "trained on", "note"],
        [
            [
                n,
                c["version"],
                "start" if c["since"] is None
                else datetime.fromtimestamp(c["since"], UTC).isoformat(),
                json.dumps(c["trained_on"]) if c["trained_on"] else "",
                c["error"] or "",
            ]
            for n in names
            for c in m["models"][n]["versions"]
        ],
    )  # fmt: skip
    scen = sorted({s for n in names for s in m["models"][n]["per_scenario"]})
    per_scenario = _table(
        ["scenario", "fraud", *(f"{n}: recall @ 1% FPR" for n in names)],
        [
            [
                s,
                m["models"][names[0]]["per_scenario"].get(s, {}).get("fraud", 0),
                *(
                    m["models"][n]["per_scenario"].get(s, {}).get("recall_at_fpr_1%", "")
                    for n in names
                ),
            ]
            for s in scen
        ],
    )
    latency = _table(
        ["model", "p50 ms", "p95 ms", "p99 ms"],
        [[n, *m["models"][n]["ms_per_payment"].values()] for n in names],
    )
    cfg = m["config"]
    since = datetime.fromtimestamp(cfg["since"], UTC).isoformat()
    figures = "".join(
        f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{b64}'>"
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for t, b64 in _plots(run, truth, m)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px}}
th{{background:#f3f3f3}}td{{text-align:right}}td:first-child{{text-align:left}}
figure{{display:inline-block;margin:0.5em}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Scored window from {html.escape(since)}: {m["payments"]:,} payments, {m["fraud"]:,} fraud;
label delay {cfg["label_delay_s"] / 86400:g} days; {m["known_compromised_cards"]:,} cards known
compromised before the window are left out of Card Precision@{m["k"]}. Replay:
{m["replay"]["events"]:,} events in {m["replay"]["seconds"]} s
({m["replay"]["events_per_s"]:,} events/s), {m["replay"]["dead_letters"]} dead letters
(each with its reason in <code>dead_letters.jsonl</code>).
Decision policy revision {html.escape(m["policy_revision"])}; champion
<b>{html.escape(m["champion"])}</b>.</p>
<h2>Headline</h2>{headline}
<h2>Challengers vs champion (paired bootstrap, {cfg["bootstrap_rounds"]} rounds)</h2>{deltas}
<h2>Actions: challengers vs champion</h2>{actions}
<h2>Model versions</h2>{versions}
<h2>Recall per fraud scenario</h2>{per_scenario}
<h2>Scoring time per payment (batched)</h2>{latency}
<h2>Plots</h2>{figures}
</body></html>
"""


def write_report(
    run: BacktestRun,
    truth: Mapping[str, tuple[int, str]],
    metrics: dict[str, Any],
    out_dir: Path,
    title: str = "riskgraph backtest",
) -> dict[str, Path]:
    """Write ``report.json``, ``scores.csv``, ``report.html`` and ``dead_letters.jsonl`` (the
    records the replay rejected, each with its field and reason) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "csv": out_dir / "scores.csv",
        "html": out_dir / "report.html",
        "dead_letters": out_dir / "dead_letters.jsonl",
    }
    paths["json"].write_text(json.dumps(metrics, indent=2))
    with paths["dead_letters"].open("w", encoding="utf-8") as fh:
        for letter in run.dead:
            fh.write(json.dumps(letter) + "\n")
    write_scores_csv(run, truth, paths["csv"])
    paths["html"].write_text(render_html(run, truth, metrics, title))
    return paths
