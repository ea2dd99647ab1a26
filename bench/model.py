"""Sampling + GNN latency and throughput vs batch size, per device, and the ladder's rungs.

The model is a random-weight GNN of the production size (hidden 64, 3 layers, fan-outs
(15, 10), as `riskgraph train` builds it): latency does not depend on the weights. The graph is
the default generated stream (or ``--stream``), fully loaded; queries are payments from its
last quarter, scored at their own event time, so neighbourhoods are realistic.

For each device (CPU; CUDA too when :func:`torch.cuda.is_available`) and each batch size B it
times, per batch: features + sampling (CPU, same on every device), tensorize, forward (the
pass the engine serves with, :meth:`ScoringEngine.run_pass`: numpy's on a CPU with one torch
thread, torch's fused pass otherwise; incl. host→device copy from pinned memory and the copy
back), several runs; it reports the median
over runs of each stage's median and the resulting throughput (tx/s = B / batch time). With
CUDA it also checks that CPU and GPU scores agree within 1e-4. ``--threads`` compares torch
intra-op thread counts on CPU. A second table times each ladder rung at a few batch sizes.

    python bench/model.py --out runs/bench/model.json
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import ensure_stream, machine, table, write

from feature_stream.features import FEATURE_NAMES
from gnn.artifact import ModelBundle
from gnn.baseline import TreeBaseline
from gnn.engine import ScoringEngine, prepare, set_math_threads, to_device
from gnn.ladder import LADDER
from gnn.model import TemporalHeteroGNN
from gnn.tensorize import tensorize
from gnn.train import load_history

FANOUTS = (15, 10)


def _bundle(seed: int = 0) -> ModelBundle:
    import numpy as np

    torch.manual_seed(seed)
    x = np.random.default_rng(seed).normal(size=(500, len(FEATURE_NAMES)))
    return ModelBundle(
        TemporalHeteroGNN(len(FEATURE_NAMES), hidden=64, layers=len(FANOUTS) + 1).eval(),
        TreeBaseline(max_iter=100).fit(x, (x[:, 0] > 1).astype(int)),
        {"version": "gnn-bench-random", "fanouts": list(FANOUTS)},
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(
    engine: ScoringEngine, pool: list[Any], sizes: list[int], runs: int, iters: int
) -> list[dict[str, Any]]:
    """Per batch size: median over runs of the per-stage median batch time (ms)."""
    rng = random.Random(0)
    out = []
    for b in sizes:
        per_run: dict[str, list[float]] = {"prepare": [], "tensorize": [], "forward": []}
        for _ in range(runs):
            st: dict[str, list[float]] = {k: [] for k in per_run}
            for _ in range(iters):
                qs = rng.sample(pool, b)
                t0 = time.perf_counter()
                prep = prepare(qs, engine.graph, engine.features, FANOUTS)
                t1 = time.perf_counter()
                batch = tensorize(prep.subgraphs, [list(f.values) for f in prep.features])
                t2 = time.perf_counter()
                with torch.inference_mode():
                    fwd = engine.run_pass(to_device(batch, engine.device))
                    scores = torch.sigmoid(fwd.logits).cpu()
                _sync(engine.device)
                t3 = time.perf_counter()
                assert scores.shape == (b,)
                st["prepare"].append((t1 - t0) * 1e3)
                st["tensorize"].append((t2 - t1) * 1e3)
                st["forward"].append((t3 - t2) * 1e3)
            for k in per_run:
                per_run[k].append(statistics.median(st[k]))
        med = {k: statistics.median(v) for k, v in per_run.items()}
        total = sum(med.values())
        out.append(
            {
                "batch": b,
                **{f"{k}_ms": round(v, 3) for k, v in med.items()},
                "total_ms": round(total, 3),
                "per_tx_ms": round(total / b, 4),
                "tx_per_s": round(b / total * 1e3, 1),
                "model_tx_per_s": round(b / (med["tensorize"] + med["forward"]) * 1e3, 1),
            }
        )
        print(f"  {engine.device} B={b}: {total:.2f} ms/batch", flush=True)
    return out


def time_rungs(
    engine: ScoringEngine, pool: list[Any], sizes: list[int], iters: int
) -> list[dict[str, Any]]:
    """Median ms per batch of :meth:`ScoringEngine.infer` on each rung (cache warmed first)."""
    rng = random.Random(1)
    ordered = sorted(pool, key=lambda p: p.event_time)
    half = len(ordered) // 2
    for i in range(max(0, half - 2048), half, 256):  # fill the embedding cache, in time order
        engine.infer(ordered[i : min(i + 256, half)], "full")
    late = ordered[half:]
    rows = []
    for b in sizes:
        row: dict[str, Any] = {"batch": b}
        for rung in LADDER:
            ts = []
            for _ in range(iters):
                qs = rng.sample(late, b)
                t0 = time.perf_counter()
                engine.infer(qs, rung)
                ts.append((time.perf_counter() - t0) * 1e3)
            row[rung] = round(statistics.median(ts), 3)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stream", help="stream directory (default: generate the default stream)")
    ap.add_argument("--sizes", default="1,8,32,128,256,512")
    ap.add_argument("--threads", default="1,2", help="torch intra-op threads to compare on CPU")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=15, help="batches per run and batch size")
    ap.add_argument("--out", help="write JSON here (and a PNG plot next to it)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    load_before = os.getloadavg()
    stream = ensure_stream(args.stream, Path("runs/bench/stream"))
    hist = load_history(stream, progress=False)
    gc.collect()
    gc.freeze()  # a full GC pass over the loaded stores takes seconds; keep it out of timings
    pool = hist.payments[len(hist.payments) * 3 // 4 :]
    bundle = _bundle()

    results: dict[str, Any] = {"by_device": {}, "fanouts": FANOUTS, "hidden": 64, "layers": 3}
    for n in (int(x) for x in args.threads.split(",")):
        set_math_threads(n)
        engine = ScoringEngine(bundle, hist.graph, hist.features, device="cpu")
        results["by_device"][f"cpu-{n}t"] = time_batches(engine, pool, sizes, args.runs, args.iters)
    set_math_threads(1)
    cpu = ScoringEngine(bundle, hist.graph, hist.features, device="cpu")
    results["rungs_cpu_1t_ms"] = time_rungs(cpu, pool, [1, 8, 32], args.iters)
    if torch.cuda.is_available():
        gpu = ScoringEngine(_bundle(), hist.graph, hist.features, device="cuda")
        results["by_device"]["cuda"] = time_batches(gpu, pool, sizes, args.runs, args.iters)
        qs = pool[:512]
        a = [s.score for s in cpu.infer(qs, "full")[0]]
        b = [s.score for s in gpu.infer(qs, "full")[0]]
        results["cpu_gpu_max_abs_diff"] = max(abs(x - y) for x, y in zip(a, b, strict=True))
    else:
        results["cuda"] = "not measured: torch.cuda.is_available() is False on this host"
    results["load_avg_before"] = load_before
    results["load_avg_after"] = os.getloadavg()
    results["machine"] = machine()
    results["graph"] = hist.graph.stats()

    for dev, rows in results["by_device"].items():
        print(f"\n{dev} (random-weight production-size GNN, fan-outs {FANOUTS})")
        head = ("B", "prepare ms", "tensorize ms", "forward ms", "batch ms", "ms/tx", "tx/s")
        print(
            table(
                [
                    head,
                    *[
                        (
                            str(r["batch"]),
                            f"{r['prepare_ms']:.2f}",
                            f"{r['tensorize_ms']:.2f}",
                            f"{r['forward_ms']:.2f}",
                            f"{r['total_ms']:.2f}",
                            f"{r['per_tx_ms']:.3f}",
                            f"{r['tx_per_s']:.0f}",
                        )
                        for r in rows
                    ],
                ]
            )
        )
    print("\nladder rungs, ms per batch (CPU, 1 thread, includes features/sampling)")
    print(
        table(
            [
                ("B", *LADDER),
                *[
                    (str(r["batch"]), *(f"{r[k]:.2f}" for k in LADDER))
                    for r in results["rungs_cpu_1t_ms"]
                ],
            ]
        )
    )
    print(f"\nload average before {load_before}, after {results['load_avg_after']}")
    print(results.get("cuda", f"CPU/GPU max |Δscore| {results.get('cpu_gpu_max_abs_diff')}"))
    write(args.out, results)
    if args.out:
        plot(results, Path(args.out).with_suffix(".png"))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for dev, rows in results["by_device"].items():
        bs = [r["batch"] for r in rows]
        ax1.plot(bs, [r["total_ms"] for r in rows], marker="o", label=dev)
        ax2.plot(bs, [r["tx_per_s"] for r in rows], marker="o", label=dev)
    for ax, label in ((ax1, "ms per batch (sampling + GNN)"), (ax2, "transactions / s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("riskgraph: sampling + GNN vs batch size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
