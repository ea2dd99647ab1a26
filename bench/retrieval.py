"""Similar-case retrieval: quality on the synthetic data and latency at a million cases.

Quality (target: precision@10 ≥ 0.8 for confirmed-fraud cases). The stream is loaded into the
stores, and every payment of the last ``--days`` days that the model would send to review
(GNN score ≥ ``--threshold``) or that is fraud becomes a case, with the GNN embedding of its
served subgraph (point in time, as served) and its true outcome. Cases are replayed in time
order and join the index as a verdict would add them; each confirmed-fraud case of the last
``--query-days`` days asks for its 10 most similar *earlier* resolved cases, ranked as the
review service ranks precedents (nearest embeddings, then those sharing an account, card,
device or IP first: ``services.cases.evidence.rerank``). precision@10 is the share of those
10 that are fraud of the same scenario; reported overall and per scenario.

Latency (target p99 ≤ 5 ms): ``--scale`` clustered vectors of the model's embedding size in
the production index, one query at a time, several runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import machine, percentiles, table, write
from tqdm import tqdm

from gnn.artifact import load_artifact
from gnn.engine import ScoringEngine
from gnn.evaluation import ground_truth
from gnn.train import load_history
from services.cases.evidence import LINK_KINDS, POOL, rerank
from services.cases.similar import SimilarCaseIndex

K = 10


def quality(
    stream: Path, model: Path, days: float, query_days: float, threshold: float
) -> dict[str, object]:
    bundle = load_artifact(model)
    hist = load_history(stream)
    truth = ground_truth(stream)
    engine = ScoringEngine(bundle, hist.graph, hist.features)
    end = max(p.ts for p in hist.payments)
    window = [p for p in hist.payments if p.ts >= end - days * 86400]
    # (time, id, fraud, scenario, embedding, linking entities)
    cases: list[tuple[float, str, int, str, np.ndarray, dict[str, str]]] = []
    for i in tqdm(range(0, len(window), 512), desc="embed"):
        chunk = window[i : i + 512]
        scored, _ = engine.infer(chunk, "full")
        flagged = [
            j
            for j, (p, s) in enumerate(zip(chunk, scored, strict=True))
            if s.score >= threshold or truth[p.event_id][0]
        ]
        if not flagged:
            continue
        for j in flagged:
            p = chunk[j]
            fraud, scenario = truth[p.event_id]
            emb = np.asarray(scored[j].embedding, dtype=np.float32)
            ents = {k: getattr(p, k) for k in LINK_KINDS if getattr(p, k)}
            cases.append((p.ts, p.event_id, fraud, scenario, emb, ents))
    cases.sort(key=lambda c: c[0])
    index = SimilarCaseIndex(engine.embedding_dim)
    outcome = {c[1]: (c[2], c[3]) for c in cases}
    entities = {c[1]: c[5] for c in cases}
    per: dict[str, list[float]] = defaultdict(list)
    first_query = end - query_days * 86400
    for t, cid, fraud, scenario, emb, ents in cases:
        if fraud and t >= first_query:
            hits = index.search(emb, K * POOL)
            links = {h: sum(1 for k, v in ents.items() if entities[h].get(k) == v) for h, _ in hits}
            best = rerank(hits, links, K)
            same = sum(outcome[h][0] == 1 and outcome[h][1] == scenario for h, _ in best)
            per[scenario].append(same / K)
        index.add(cid, emb)
    everything = [x for xs in per.values() for x in xs]
    return {
        "cases": len(cases),
        "fraud_cases": sum(c[2] for c in cases),
        "queries": len(everything),
        "precision_at_10": float(np.mean(everything)) if everything else float("nan"),
        "per_scenario": {
            s: {"queries": len(v), "precision_at_10": float(np.mean(v))}
            for s, v in sorted(per.items())
        },
        "embedding_dim": engine.embedding_dim,
        "threshold": threshold,
        "days": days,
        "query_days": query_days,
    }


def latency(n: int, dim: int, queries: int, runs: int, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    index = SimilarCaseIndex(dim)
    t0 = time.perf_counter()
    step = 100_000
    for start in tqdm(range(0, n, step), desc="index"):
        m = min(step, n - start)
        vecs = centres[rng.integers(0, 1000, m)] + 0.3 * rng.normal(size=(m, dim)).astype(
            np.float32
        )
        index.add_many([f"case-{start + i}" for i in range(m)], vecs)
    build_s = time.perf_counter() - t0
    probe = centres[rng.integers(0, 1000, queries)] + 0.3 * rng.normal(size=(queries, dim)).astype(
        np.float32
    )
    per_run = []
    for _ in range(runs):
        lat = []
        for q in probe:
            t = time.perf_counter()
            index.search(q, K)
            lat.append((time.perf_counter() - t) * 1e3)
        per_run.append(percentiles(lat))
    return {
        "indexed": len(index),
        "kind": index.kind,
        "build_s": build_s,
        "runs": per_run,
        "median_p50_ms": statistics.median(r["p50"] for r in per_run),
        "median_p99_ms": statistics.median(r["p99"] for r in per_run),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--stream", default="runs/demo/stream", help="generated stream (with ground_truth.csv)"
    )
    ap.add_argument(
        "--model", default="runs/demo/model", help="trained artifact (riskgraph train or make demo)"
    )
    ap.add_argument("--days", type=float, default=30, help="cases from the last N days")
    ap.add_argument(
        "--query-days", type=float, default=7, help="confirmed-fraud queries from the last N days"
    )
    ap.add_argument("--threshold", type=float, default=0.5, help="GNN score that opens a case")
    ap.add_argument(
        "--scale", type=int, default=1_000_000, help="indexed cases for the latency run"
    )
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    res: dict[str, object] = {"machine": machine()}
    rows = [("measure", "value", "target")]
    dim = 0
    if not args.skip_quality:
        q = quality(Path(args.stream), Path(args.model), args.days, args.query_days, args.threshold)
        res["quality"] = q
        dim = int(q["embedding_dim"])  # type: ignore[call-overload]
        rows.append(("precision@10, confirmed fraud", f"{q['precision_at_10']:.3f}", ">= 0.80"))
        for s, v in q["per_scenario"].items():  # type: ignore[attr-defined]
            rows.append((f"  {s} ({v['queries']} queries)", f"{v['precision_at_10']:.3f}", ""))
    lat = latency(args.scale, dim or 96, args.queries, args.runs)
    res["latency"] = lat
    rows.append(
        (f"search p50 ms at {lat['indexed']:,} ({lat['kind']})", f"{lat['median_p50_ms']:.3f}", "")
    )
    rows.append(
        (
            f"search p99 ms at {lat['indexed']:,} ({lat['kind']})",
            f"{lat['median_p99_ms']:.3f}",
            "<= 5",
        )
    )
    rows.append(("index build s", f"{lat['build_s']:.1f}", ""))
    print(table(rows))
    write(args.out, res)


if __name__ == "__main__":
    main()
