"""Training with a temporal split: earlier time trains, later time validates, labels only as
they were known when training runs.

Timeline (``fit_time`` = the moment training runs; events after it are never read)::

    start ─ warm-up ─┬──── train ────┬── validate ──┬── label delay ──┬ fit_time
                     train_start     val_start      val_end           (labels of payments in
                                                                        this gap are incomplete)

A payment's target is 1 if a fraud label for it arrived before ``fit_time``. Its inputs are
computed at its own event time through :func:`gnn.engine.prepare`, the same code the API uses.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from feature_stream.event_io import FileEventSource, InMemoryEventSink, sort_time
from feature_stream.events import Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import LABEL_FRAUD
from feature_stream.ingest import Ingestor, IngestStats
from gnn.artifact import ModelBundle, save_artifact
from gnn.baseline import TreeBaseline
from gnn.engine import prepare
from gnn.fused import FusedForward
from gnn.metrics import summary
from gnn.model import TemporalHeteroGNN
from gnn.reasons import rule_rates
from gnn.tensorize import GraphBatch, tensorize

DAY = 86400.0


class TrainConfig(BaseModel):
    """How `riskgraph train` splits time and fits the models."""

    model_config = ConfigDict(extra="forbid")

    fit_time: datetime | None = Field(
        None, description="When training runs; default: the last event time minus holdout_days"
    )
    holdout_days: float = Field(7.0, ge=0, description="Days at the end never read by training")
    warmup_days: float = Field(3.0, ge=0, description="Days of history before the first example")
    label_delay_days: float = Field(
        7.0,
        ge=0,
        description="Gap before fit_time left out of "
        "training because its labels have not all arrived",
    )
    val_days: float = Field(
        4.0,
        ge=0,
        description="Validation window length (days) for early stopping; 0: none, the "
        "training window runs up to the label delay and the last epoch's model is kept",
    )
    negative_rate: float = Field(0.3, gt=0, le=1, description="Share of legit payments kept")
    fanouts: tuple[int, ...] = Field((15, 10), description="Per-hop sampling caps")
    hidden: int = Field(64, ge=8)
    feature_bins: int = Field(
        0, ge=0, description="Piecewise-linear bins per online feature (0: standardised only)"
    )
    max_pos_weight: float = Field(
        20.0, ge=1, description="Cap on a fraud example's loss weight (legit/fraud ratio; 1: none)"
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the GNN's head")
    tree_prior: bool = Field(
        False,
        description="The GNN adds its output to the tree baseline's log-odds and learns the "
        "residual (trained on out-of-fold tree scores, see prior_folds)",
    )
    prior_folds: int = Field(
        5, ge=2, description="Cross-fitting folds for the training examples' tree prior"
    )
    epochs: int = Field(12, ge=1)
    average_epochs: int = Field(
        0,
        ge=0,
        description="Keep the mean of the weights after each of the last n epochs (stochastic "
        "weight averaging, over the cosine schedule's tail); 0: one epoch's weights, the best "
        "on validation or the last without",
    )
    batch_size: int = Field(256, ge=8)
    lr: float = Field(3e-3, gt=0)
    seed: int = 0


@dataclass
class History:
    """Stores holding every event before ``until`` and the payments among them."""

    graph: InMemoryGraphStore
    features: InMemoryFeatureStore
    payments: list[Payment]
    ingest: IngestStats
    dead_letters: InMemoryEventSink
    first_ts: float
    last_ts: float


def load_history(
    stream_dir: Path,
    until: float | None = None,
    progress: bool = True,
    since: float | None = None,
) -> History:
    """Replay a stream directory into fresh in-memory stores: events with
    ``since <= event time < until`` (either bound optional)."""
    graph, feats, dead = InMemoryGraphStore(), InMemoryFeatureStore(), InMemoryEventSink()
    # Training and evaluation sample payments at their own times, long before the last event
    # loaded: the degree cap and the retention sweep must not drop what those queries read.
    # A caller that goes on to serve from these stores says so (build_run_container).
    graph.expect_queries_from(-math.inf)
    ing = Ingestor(graph, feats, dead)
    payments: list[Payment] = []
    first, last = float("inf"), float("-inf")
    start = time.perf_counter()
    bar = tqdm(desc="ingest", unit="ev", disable=not progress, mininterval=0.5)
    for rec in FileEventSource(stream_dir):
        bar.update(1)
        event = ing.parse(rec)
        if event is None:
            continue
        ts = event.event_time.timestamp()
        if (until is not None and ts >= until) or (since is not None and ts < since):
            continue
        if ing.apply(event) and isinstance(event, Payment):
            payments.append(event)
        first, last = min(first, ts), max(last, ts)
    bar.close()
    ing.stats.seconds = time.perf_counter() - start
    return History(graph, feats, payments, ing.stats, dead, first, last)


def stream_end(stream_dir: Path) -> float:
    """Event time of the last payment in a stream directory (reads ``manifest.json`` if any)."""
    manifest = Path(stream_dir) / "manifest.json"
    if manifest.exists():
        try:
            m = json.loads(manifest.read_text())
            last = m.get("files", {}).get("payments.jsonl", {}).get("last_event_time")
            if last:
                return datetime.fromisoformat(last).timestamp()
        except (ValueError, AttributeError, OverflowError):
            pass  # a manifest that does not say: read the payments
    last_ts = float("-inf")
    for rec in FileEventSource(stream_dir, topics=("payments",)):
        when = rec.value.get("event_time") if isinstance(rec.value, dict) else None
        utc = sort_time(when)  # "": no time; such records are the replay's dead letters
        if utc:
            last_ts = max(last_ts, datetime.fromisoformat(utc).timestamp())
    return last_ts


def _batches(
    payments: list[Payment],
    targets: list[int],
    hist: History,
    cfg: TrainConfig,
    rng: random.Random,
    progress: bool,
    desc: str,
) -> list[tuple[GraphBatch, torch.Tensor]]:
    order = list(range(len(payments)))
    rng.shuffle(order)
    out = []
    for i in tqdm(range(0, len(order), cfg.batch_size), desc=desc, disable=not progress):
        idx = order[i : i + cfg.batch_size]
        ps = [payments[j] for j in idx]
        prep = prepare(ps, hist.graph, hist.features, cfg.fanouts)
        batch = tensorize(prep.subgraphs, [list(f.values) for f in prep.features])
        out.append((batch, torch.tensor([targets[j] for j in idx], dtype=torch.float32)))
    return out


def _split(
    hist: History, fit: float, cfg: TrainConfig, rng: random.Random
) -> Iterator[tuple[str, list[Payment], list[int]]]:
    val_end = fit - cfg.label_delay_days * DAY
    val_start = val_end - cfg.val_days * DAY  # == val_end without validation: empty window
    train_start = hist.first_ts + cfg.warmup_days * DAY
    if not train_start < val_start:
        raise ValueError(
            "not enough history for warm-up, training, validation and label delay: "
            f"{(fit - hist.first_ts) / DAY:.1f} days before fit_time"
        )
    for name, lo, hi in (("train", train_start, val_start), ("val", val_start, val_end)):
        ps, ys = [], []
        for p in hist.payments:
            ts = p.event_time.timestamp()
            if not lo <= ts < hi:
                continue
            y = 1 if hist.graph.label(p.event_id, fit) == LABEL_FRAUD else 0
            if name == "train" and y == 0 and rng.random() > cfg.negative_rate:
                continue
            ps.append(p)
            ys.append(y)
        yield name, ps, ys


def _out_of_fold(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Tree log-odds for each training example from a tree that never saw it (cross-fitting,
    ``cfg.prior_folds`` folds): the prior the GNN trains on is as noisy as the one it meets
    when scoring, not the training fit."""
    fold = np.random.default_rng(cfg.seed).integers(0, cfg.prior_folds, len(y))
    out = np.zeros(len(y))
    for k in range(cfg.prior_folds):
        held = fold == k
        if held.any():
            tree = TreeBaseline(seed=cfg.seed).fit(x[~held], y[~held])
            out[held] = tree.raw(x[held])
    return out


def _set_priors(batches: list[tuple[GraphBatch, torch.Tensor]], prior: np.ndarray) -> None:
    """Hand ``prior`` (in the batches' concatenated row order) out to each batch."""
    at = 0
    for batch, y in batches:
        batch.prior = torch.from_numpy(prior[at : at + len(y)]).float()
        at += len(y)
    if at != len(prior):
        raise ValueError(f"{len(prior)} priors for {at} examples")


def _fit_gnn(
    train: list[tuple[GraphBatch, torch.Tensor]],
    val: list[tuple[GraphBatch, torch.Tensor]],
    cfg: TrainConfig,
    progress: bool,
) -> tuple[TemporalHeteroGNN, list[dict[str, float]]]:
    torch.manual_seed(cfg.seed)
    model = TemporalHeteroGNN(
        len(FEATURE_NAMES),
        hidden=cfg.hidden,
        layers=len(cfg.fanouts) + 1,
        dropout=cfg.dropout,
        feature_bins=cfg.feature_bins,
        tree_prior=cfg.tree_prior,
    )
    model.fit_feature_encoding(torch.cat([b.features for b, _ in train]))
    ys = torch.cat([y for _, y in train])
    ratio = float((ys == 0).sum() / ys.sum().clamp_min(1))
    pos_weight = torch.tensor(min(cfg.max_pos_weight, max(ratio, 1.0)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    best, best_state, history = -1.0, None, []
    averaged: dict[str, torch.Tensor] = {}
    first_averaged = cfg.epochs - min(cfg.average_epochs, cfg.epochs)
    step = FusedForward(model, trainable=True)  # model.forward's pass, several times faster
    order = list(range(len(train)))
    rng = random.Random(cfg.seed)
    for epoch in tqdm(range(cfg.epochs), desc="train gnn", disable=not progress):
        model.train()
        rng.shuffle(order)
        total = 0.0
        for k in order:
            batch, y = train[k]
            opt.zero_grad()
            loss = loss_fn(step.run(batch).logits, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(y)
        sched.step()
        model.eval()
        point: dict[str, float] = {"epoch": epoch, "loss": total / len(ys)}
        if val:
            fused = FusedForward(model)  # reads the weights as they are now
            with torch.inference_mode():
                s = torch.cat([torch.sigmoid(fused.run(b).logits) for b, _ in val]).numpy()
            point["val_auprc"] = summary(torch.cat([y for _, y in val]).numpy(), s)["auprc"]
        history.append(point)
        if cfg.average_epochs and epoch >= first_averaged:
            n = epoch - first_averaged  # epochs averaged so far
            for name, v in model.state_dict().items():
                # float weights: running mean; buffers fixed since fit_feature_encoding
                got = averaged.get(name)
                averaged[name] = v.clone() if got is None else got + (v - got) / (n + 1)
            best_state = averaged
        elif not val or point["val_auprc"] > best:  # without validation: the last epoch
            best = point.get("val_auprc", best)
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def train(
    stream_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    progress: bool = True,
    history: History | None = None,
) -> tuple[ModelBundle, dict[str, Any]]:
    """Train the GNN and the tree baseline; write the artifact to ``out_dir``.

    Pass ``history`` to reuse stores already loaded up to ``fit_time``.
    """
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    fit = (
        cfg.fit_time.timestamp()
        if cfg.fit_time is not None
        else stream_end(stream_dir) - cfg.holdout_days * DAY
    )
    hist = (
        history if history is not None else load_history(stream_dir, until=fit, progress=progress)
    )
    if hist.last_ts >= fit:
        raise ValueError("history holds events at or after fit_time")
    rng = random.Random(cfg.seed)
    splits = {name: (ps, ys) for name, ps, ys in _split(hist, fit, cfg, rng)}
    for name, (_, ys) in splits.items():
        if name == "val" and cfg.val_days == 0:
            continue
        if sum(ys) == 0 or sum(ys) == len(ys):
            raise ValueError(
                f"the {name} window needs both fraud and legit payments "
                f"({sum(ys)} of {len(ys)} are fraud)"
            )
    train_b = _batches(*splits["train"], hist, cfg, rng, progress, "sample train")
    val_b = _batches(*splits["val"], hist, cfg, rng, progress, "sample val")

    x_train = torch.cat([b.features for b, _ in train_b]).numpy()
    y_train = torch.cat([y for _, y in train_b]).numpy().astype(int)
    x_val = torch.cat([b.features for b, _ in val_b]).numpy() if val_b else None
    baseline = TreeBaseline(seed=cfg.seed).fit(x_train, y_train)
    if cfg.tree_prior:
        _set_priors(train_b, _out_of_fold(x_train, y_train, cfg))
        if x_val is not None:
            _set_priors(val_b, baseline.raw(x_val))
    gnn, curve = _fit_gnn(train_b, val_b, cfg, progress)
    val: dict[str, Any] = {}  # empty without a validation window
    if x_val is not None:
        y_val = torch.cat([y for _, y in val_b]).numpy().astype(int)
        with torch.inference_mode():
            gnn_val = torch.cat([gnn.predict(b) for b, _ in val_b]).numpy()
        val = {
            "gnn": summary(y_val, gnn_val),
            "baseline": summary(y_val, baseline.predict(x_val)),
        }
    metrics = {
        "val": val,
        "train_examples": len(y_train),
        "train_positives": int(y_train.sum()),
        "training_curve": curve,
        "seconds": time.perf_counter() - t_start,
    }
    digest = hashlib.sha256(
        json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
        + f"{fit}|features-v{FEATURE_SCHEMA_VERSION}".encode()
    ).hexdigest()[:8]
    version = f"gnn-{datetime.fromtimestamp(fit, UTC):%Y%m%d}-{digest}"
    manifest = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "fit_time": datetime.fromtimestamp(fit, UTC).isoformat(),
        "fanouts": list(cfg.fanouts),
        "train_config": cfg.model_dump(mode="json"),
        "metrics": metrics,
        "stream": str(stream_dir),
        # Weighted back to every legit payment: training kept a share of them.
        "rule_rates": rule_rates(x_train, y_train, negative_weight=1 / cfg.negative_rate),
    }
    bundle = ModelBundle(gnn, baseline, manifest)
    save_artifact(out_dir, bundle, _model_card(manifest))
    return bundle, metrics


def _row(name: str, m: dict[str, float]) -> str:
    return f"| {name} | {m['auprc']:.3f} | {m['roc_auc']:.3f} | {m['recall_at_fpr_1%']:.3f} |"


def _rule_rates_line(rates: dict[str, float]) -> str:
    top = sorted(rates.items(), key=lambda kv: -kv[1])[:3]
    return "highest: " + ", ".join(f"`{code}` {rate:.3f}" for code, rate in top)


def _model_card(m: dict[str, Any]) -> str:
    v = m["metrics"]["val"]
    validation = (
        f"""| model | AUPRC | ROC AUC | recall @ 1% FPR |
|---|---|---|---|
{_row("GNN", v["gnn"])}
{_row("tree baseline", v["baseline"])}"""
        if v
        else "None: trained on the whole window for a fixed number of epochs (val_days 0)."
    )
    prior = (
        "\n\n**Tree prior.** The GNN's logit is the tree baseline's log-odds plus the network's "
        "output; the network was trained on out-of-fold tree scores "
        f"({m['train_config']['prior_folds']} folds), so it learns what the graph adds."
        if m["train_config"].get("tree_prior")
        else ""
    )
    return f"""# Model card — {m["version"]}

**Intended use.** Scoring payment transactions for fraud from their temporal neighbourhood in
the riskgraph graph (payments, devices, social links), with a gradient-boosted-tree fallback.
Scores support review and decline decisions together with the decision policy; they are not a
sole basis for adverse action.

**Training data.** Stream `{m["stream"]}`, events before {m["fit_time"]}. Targets are fraud
labels known before that time; the last {m["train_config"]["label_delay_days"]} days before it
are left out because their labels are incomplete.

**Inputs.** {len(FEATURE_NAMES)} online features (schema version in manifest.json) and a
{len(m["fanouts"])}-hop temporal sample with fan-outs {m["fanouts"]} (only edges before the
payment's time).{prior}

**Validation (later window).**

{validation}

**Policy-only rung.** When no model fits a request's deadline, the score is the fraud rate on
the training window of the most telling feature rule that fires (`rule_rates` in
manifest.json; {_rule_rates_line(m["rule_rates"])}).

**Limits.** Trained on the data above; entities never seen before get only their own-payment
features. Re-validate before use on another population.
"""
