"""What a risk team compares after a backtest, computed from the scored payments.

Ranking quality (:func:`gnn.metrics.summary`: AUPRC, ROC AUC, recall at 0.1% and 1% FPR),
Card Precision@k per day (the share of truly compromised cards among the ``k`` an
investigator can check each day, known-compromised cards excluded), alert rate and review load
from the policy's actions, fraud amount caught and missed, recall per fraud scenario, the
scoring time per payment, champion-vs-challenger deltas with paired bootstrap intervals, and
the action deltas between the two (alert rate, review load, declines) that a challenger
policy bundle or model would bring.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from gnn.metrics import recall_at_fpr, summary
from services.backtest.run import BacktestRun, ScoredPayment

DAY = 86_400.0
ALERT_ACTIONS = ("review", "decline")


def card_precision_at_k(
    payments: Sequence[ScoredPayment],
    y: Sequence[int],
    model: str,
    k: int,
    known: set[str],
) -> list[dict[str, Any]]:
    """CP@k for each day of ``payments``.

    A card's daily score is its highest score that day; it is compromised that day if any of
    its payments that day is fraud. Cards in ``known`` (compromised and known before the day)
    are left out; the compromised cards found in each day's top ``k`` join ``known`` for the
    days after, as they would once investigated."""
    days: dict[int, dict[str, tuple[float, int]]] = defaultdict(dict)
    for p, label in zip(payments, y, strict=True):
        day = int(p.t // DAY)
        best, fraud = days[day].get(p.card, (-np.inf, 0))
        days[day][p.card] = (max(best, p.scores[model]), max(fraud, label))
    known = set(known)
    out = []
    for day in sorted(days):
        cards = [(s, f, c) for c, (s, f) in days[day].items() if c not in known]
        cards.sort(key=lambda r: (-r[0], r[2]))
        top = cards[:k]
        hits = [c for _, f, c in top if f]
        out.append({"day": day * DAY, "cp_at_k": len(hits) / k, "cards": len(cards)})
        known.update(hits)
    return out


def truth_from_labels(run: BacktestRun) -> dict[str, tuple[int, str]]:
    """``transaction → (is fraud, "")`` from the last label of each transaction in the stream."""
    return {tx: (int(fraud), "") for tx, (fraud, _) in run.labels.items()}


def known_compromised(run: BacktestRun) -> set[str]:
    """Cards with a fraud label visible before the scored window starts."""
    since = run.config.since
    return {
        run.card_of[tx]
        for tx, (fraud, visible) in run.labels.items()
        if fraud and visible < since and tx in run.card_of
    }


def paired_bootstrap(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    rounds: int = 200,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``b - a`` for AUPRC and ROC AUC with 95% intervals from resampling payments (pairs)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas: dict[str, list[float]] = {"auprc": [], "roc_auc": []}
    for _ in range(rounds):
        idx = rng.integers(0, n, n)
        yi = y[idx]
        if yi.all() or not yi.any():
            continue
        deltas["auprc"].append(
            average_precision_score(yi, b[idx]) - average_precision_score(yi, a[idx])
        )
        deltas["roc_auc"].append(roc_auc_score(yi, b[idx]) - roc_auc_score(yi, a[idx]))
    point = {
        "auprc": average_precision_score(y, b) - average_precision_score(y, a),
        "roc_auc": roc_auc_score(y, b) - roc_auc_score(y, a),
    }
    return {
        m: {
            "delta": float(point[m]),
            "ci_low": float(np.percentile(d, 2.5)),
            "ci_high": float(np.percentile(d, 97.5)),
            "rounds": len(d),
        }
        for m, d in deltas.items()
    }


def action_deltas(
    payments: Sequence[ScoredPayment], champion: str, challenger: str
) -> dict[str, Any]:
    """How ``challenger``'s actions differ from ``champion``'s on the same payments: alert
    rate (review + decline), review and decline rates, reviews (the review load) in total and
    per day, and the count of each action change (``"review->decline"``: ...)."""
    a = [p.actions[champion] for p in payments]
    b = [p.actions[challenger] for p in payments]
    n = len(payments)
    days = len({int(p.t // DAY) for p in payments}) or 1

    def pair(fa: float, fb: float) -> dict[str, float]:
        return {"champion": fa, "challenger": fb, "delta": fb - fa}

    def share(acts: list[str], kinds: tuple[str, ...]) -> float:
        return sum(x in kinds for x in acts) / n if n else 0.0

    reviews = (a.count("review"), b.count("review"))
    return {
        "alert_rate": pair(share(a, ALERT_ACTIONS), share(b, ALERT_ACTIONS)),
        "review_rate": pair(share(a, ("review",)), share(b, ("review",))),
        "decline_rate": pair(share(a, ("decline",)), share(b, ("decline",))),
        "reviews": pair(*reviews),
        "reviews_per_day": pair(reviews[0] / days, reviews[1] / days),
        "changed": sum(x != y for x, y in zip(a, b, strict=True)),
        "transitions": dict(
            sorted(Counter(f"{x}->{y}" for x, y in zip(a, b, strict=True) if x != y).items())
        ),
    }


def compute(
    run: BacktestRun,
    truth: Mapping[str, tuple[int, str]],
    k: int = 100,
    bootstrap_rounds: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of the report, per model, plus deltas of each challenger vs the champion
    (the first model). Payments missing from ``truth`` count as legitimate."""
    pays = run.payments
    if not pays:
        raise ValueError("the backtest scored no payments")
    y = np.array([truth.get(p.transaction_id, (0, ""))[0] for p in pays], dtype=int)
    scen = [truth.get(p.transaction_id, (0, ""))[1] for p in pays]
    amount = np.array([p.amount for p in pays])
    days = np.array([int(p.t // DAY) for p in pays])
    known = known_compromised(run)
    per_model: dict[str, Any] = {}
    for name in run.models:
        s = np.array([p.scores[name] for p in pays])
        alert = np.array([p.actions[name] in ALERT_ACTIONS for p in pays])
        review = np.array([p.actions[name] == "review" for p in pays])
        ms = np.array([p.ms_per_payment[name] for p in pays])
        cp = card_precision_at_k(pays, y.tolist(), name, k, known)
        daily = []
        for d in sorted(set(days.tolist())):
            on = days == d
            daily.append(
                {
                    "day": d * DAY,
                    "payments": int(on.sum()),
                    "alert_rate": float(alert[on].mean()),
                    "reviews": int(review[on].sum()),
                }
            )
        scenarios = {}
        for sc in sorted(set(scen) - {""}):
            keep = np.array([x in (sc, "") for x in scen])
            ys = y[keep]
            if ys.any() and not ys.all():
                scenarios[sc] = {
                    "fraud": int(ys.sum()),
                    "recall_at_fpr_1%": recall_at_fpr(ys, s[keep], 0.01),
                    "alerted": float(alert[keep][ys == 1].mean()),
                }
        per_model[name] = {
            "version": run.models[name],
            "versions": [dataclasses.asdict(c) for c in run.model_changes if c.model == name],
            "policy_revision": run.policy_revisions.get(name, run.policy_revision),
            **summary(y, s),
            "card_precision_at_k": float(np.mean([c["cp_at_k"] for c in cp])),
            "card_precision_at_k_daily": cp,
            "alert_rate": float(alert.mean()),
            "reviews": int(review.sum()),
            "daily": daily,
            "fraud_amount_caught": float(amount[(y == 1) & alert].sum()),
            "fraud_amount_missed": float(amount[(y == 1) & ~alert].sum()),
            "per_scenario": scenarios,
            "ms_per_payment": {
                "p50": float(np.percentile(ms, 50)),
                "p95": float(np.percentile(ms, 95)),
                "p99": float(np.percentile(ms, 99)),
            },
        }
    names = list(run.models)
    champion = names[0]
    base = np.array([p.scores[champion] for p in pays])
    deltas = {
        name: paired_bootstrap(
            y, base, np.array([p.scores[name] for p in pays]), bootstrap_rounds, seed
        )
        for name in names[1:]
    }
    actions = {name: action_deltas(pays, champion, name) for name in names[1:]}
    return {
        "champion": champion,
        "k": k,
        "payments": len(pays),
        "fraud": int(y.sum()),
        "known_compromised_cards": len(known),
        "models": per_model,
        "deltas_vs_champion": deltas,
        "action_deltas_vs_champion": actions,
        "replay": {
            "events": run.events,
            "dead_letters": run.dead_letters,
            "seconds": round(run.seconds, 2),
            "events_per_s": round(run.events / run.seconds) if run.seconds else None,
        },
        "policy_revision": run.policy_revision,
        "config": {
            "since": run.config.since,
            "until": run.config.until if np.isfinite(run.config.until) else None,
            "label_delay_s": run.config.label_delay_s,
            "chunk_s": run.config.chunk_s,
            "batch_size": run.config.batch_size,
            "bootstrap_rounds": bootstrap_rounds,
            "seed": seed,
        },
    }
