"""Open-loop load test of ``POST /v1/score`` over HTTP against the API running in-process.

Set-up, as ``riskgraph demo`` does: replay the stream (default: the generated default stream)
up to ``holdout_days`` before its end into the in-memory graph, load a model (``--model``),
reuse the one this benchmark trained before (``runs/bench/model``), or train a quick one
(``--epochs``, default 2), and serve the API with uvicorn in a background thread. The
payments of the held-out window are the requests, in event-time order (cycled with new ids
and shifted times if a run needs more).

The generator runs in a separate process (so it does not take the server's GIL) and is
open loop: request ``i`` is due at ``start + i / rate`` whatever happened before, and its
latency is measured from that *scheduled* time, so queueing anywhere (client pool, socket,
server queue) shows in the numbers instead of slowing the arrivals down. It is a lean raw
HTTP/1.1 client over a bounded pool of keep-alive connections (``--connections``; see
``bench/open_loop.py`` for why not httpx); it reports its own lag behind the schedule and the
CPU it used, to show it was not the bottleneck.

Per rate (and run): p50, p95, p99, p99.9 latency (ms, every answer incl. 429s), error rate
(not 200 and not 429, or no answer), shed rate (429), the ladder mix of the 200s, and the
achieved throughput; the median over ``--runs`` runs of each. The knee is the highest rate
whose median p99 is within ``--slo-ms`` with no errors and no shedding.

    python bench/load.py --rate 200 --duration 60 --runs 3 --out runs/bench/load-200.json
    python bench/load.py --rates 50,100,200,400,800 --duration 20 --out runs/bench/sweep.json
    python bench/load.py --rate 1500 --deadline-ms 5 --out runs/bench/overload.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from common import ensure_stream, machine, table, write
from open_loop import open_loop

RUNGS = ("full", "reduced", "cached", "tree", "policy")


# -- the server (this process) -----------------------------------------------------------------
def start_server(args: argparse.Namespace) -> tuple[Any, Any, list[dict[str, Any]], str]:
    """Stores, model, container and uvicorn thread; returns (thread ctx, container, payment
    bodies of the held-out window, model description)."""
    from feature_stream.event_io import FileEventSource
    from feature_stream.events import Payment, parse_event
    from gnn.artifact import load_artifact
    from gnn.train import DAY, TrainConfig, load_history, stream_end, train
    from services.api.app import create_app
    from services.api.runner import ApiThread
    from services.container import build_run_container

    stream = ensure_stream(args.stream, Path("runs/bench/stream"))
    fit = stream_end(stream) - args.holdout_days * DAY
    print("loading history …", flush=True)
    hist = load_history(stream, until=fit, progress=False)
    model_dir = Path(args.model) if args.model else Path("runs/bench/model")
    if (model_dir / "manifest.json").exists() and not args.retrain:
        bundle = load_artifact(model_dir)
        desc = f"loaded from {model_dir} ({bundle.version})"
    else:
        print(f"training a quick model ({args.epochs} epochs) …", flush=True)
        t0 = time.perf_counter()
        bundle, _ = train(
            stream,
            model_dir,
            TrainConfig(epochs=args.epochs, holdout_days=args.holdout_days),
            progress=False,
            history=hist,
        )
        desc = f"trained here, {args.epochs} epochs in {time.perf_counter() - t0:.0f} s"
    payments = []
    for rec in FileEventSource(stream, topics=("payments",)):
        ev = parse_event(rec.value)
        if isinstance(ev, Payment) and ev.event_time.timestamp() >= fit:
            payments.append(rec.value)
    payments.sort(key=lambda v: v["event_time"])
    container = build_run_container(
        Path("runs/bench/load"),
        bundle,
        hist.graph,
        hist.features,
        batch_max_size=args.batch,
        batch_max_wait_ms=args.tau_ms,
        queue_capacity=args.queue,
        torch_threads=args.threads,
        device=args.device,
        inference_process=args.inference_process,
    )
    return ApiThread(create_app(container)), container, payments, desc


class Bodies:
    """Request bodies from the held-out payments, in order, never repeating an id: pass ``k``
    over the window gets ``-rk`` on its ids and ``k`` window-lengths added to its times."""

    def __init__(self, payments: list[dict[str, Any]]) -> None:
        self.payments = payments
        first = datetime.fromisoformat(payments[0]["event_time"])
        last = datetime.fromisoformat(payments[-1]["event_time"])
        self.span = last - first + timedelta(seconds=1)
        self.i = 0

    def take(self, n: int, deadline_ms: float | None) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            k, j = divmod(self.i, len(self.payments))
            v = self.payments[j]
            body = {x: v[x] for x in v if x not in ("event_id", "type", "schema_version")}
            body["transaction_id"] = v["event_id"] + (f"-r{k}" if k else "")
            if k:
                t = datetime.fromisoformat(v["event_time"]) + k * self.span
                body["event_time"] = t.isoformat()
            if deadline_ms is not None:
                body["deadline_ms"] = deadline_ms
            out.append(body)
            self.i += 1
        return out


def summarise(res: dict[str, Any], rate: float) -> dict[str, Any]:
    rows = res["rows"]
    lat = np.asarray([r[1] for r in rows if r[2] in (200, 429)])
    n = len(rows)
    ok = [r for r in rows if r[2] == 200]
    shed = sum(1 for r in rows if r[2] == 429)
    errors = n - len(ok) - shed
    mix = {g: sum(1 for r in ok if r[3] == g) / max(1, len(ok)) for g in RUNGS}
    lags = np.asarray([r[4] for r in rows])
    server = np.asarray([r[5] for r in ok])
    # throughput over the time the answers actually took, not the schedule
    span = max(r[0] + r[1] / 1e3 for r in rows)
    for r in [r for r in rows if r[2] not in (200, 429)][:3]:
        print(f"  error: status {r[2]}: {r[3]}")
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return {
        "rate": rate,
        "sent": n,
        "achieved_rps": round(len(ok) / span, 1),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "p99_9_ms": pct(99.9),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "server_p50_ms": float(np.percentile(server, 50)) if len(server) else float("nan"),
        "server_p99_ms": float(np.percentile(server, 99)) if len(server) else float("nan"),
        "error_rate": errors / n,
        "shed_rate": shed / n,
        "mix": mix,
        "stages_ms": stage_breakdown(ok),
        # the ten slowest answers: (scheduled offset s, latency ms); stalls bunch in time
        "slowest": sorted(((r[0], r[1]) for r in rows if r[2] in (200, 429)), key=lambda x: -x[1])[
            :10
        ],
        "shed_offsets_s": [r[0] for r in rows if r[2] == 429][:20],
        "generator_lag_p99_ms": float(np.percentile(lags, 99)),
        "generator_lag_max_ms": float(lags.max()),
        "generator_cpu_share": res["generator_cpu_s"] / res["wall_s"],
        "started_unix": res["started_unix"],
    }


def stage_breakdown(ok: list[Any], q: float = 99.0) -> dict[str, dict[str, float]]:
    """Where the answers spent their time, in ms: the median of each server stage over every
    200 (``typical``), and the mean over the 200s at or above the ``q``-th latency percentile
    (``tail``). ``outside`` is the part of a latency from schedule that the handler's clock
    (``http``) did not see: the client's queue, the socket, HTTP parsing on a busy loop."""
    if not ok:
        return {"typical": {}, "tail": {}}
    cut = float(np.percentile([r[1] for r in ok], q))
    slow = [r for r in ok if r[1] >= cut]
    names = sorted({k for r in ok for k in r[6]})

    def stages(r: Any) -> dict[str, float]:
        return {**{k: r[6].get(k, 0.0) for k in names}, "outside": r[1] - r[5]}

    every = [stages(r) for r in ok]
    worst = [stages(r) for r in slow]
    return {
        "typical": {k: float(np.median([e[k] for e in every])) for k in every[0]},
        "tail": {k: float(np.mean([e[k] for e in worst])) for k in worst[0]},
    }


def median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in runs[0].items():
        if k == "stages_ms":
            out[k] = {
                part: {
                    g: statistics.median(r[k][part].get(g, 0.0) for r in runs)
                    for g in sorted({g for r in runs for g in r[k][part]})
                }
                for part in v
            }
        elif isinstance(v, dict):
            out[k] = {g: statistics.median(r[k][g] for r in runs) for g in v}
        elif isinstance(v, int | float):
            out[k] = statistics.median(r[k] for r in runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, help="requests per second (one rate)")
    ap.add_argument("--rates", help="comma-separated sweep, e.g. 50,100,200,400,800")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per rate and run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--deadline-ms", type=float, help="per-request deadline (default: server's)")
    ap.add_argument("--slo-ms", type=float, default=20.0, help="p99 target for the knee")
    ap.add_argument("--connections", type=int, default=64, help="client connection pool")
    ap.add_argument("--stream", help="stream directory (default: the generated default stream)")
    ap.add_argument("--model", help="artifact directory to load (default: runs/bench/model)")
    ap.add_argument("--retrain", action="store_true", help="train even if a model is there")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the quick model")
    ap.add_argument("--holdout-days", type=float, default=7.0)
    ap.add_argument("--batch", type=int, default=32, help="server: micro-batch size B")
    ap.add_argument("--tau-ms", type=float, default=0.0, help="server: micro-batch wait τ (ms)")
    ap.add_argument("--queue", type=int, default=256, help="server: queue capacity")
    ap.add_argument("--threads", type=int, default=1, help="server: torch intra-op threads")
    ap.add_argument("--device", default="auto", help="server: auto, cpu or cuda")
    ap.add_argument(
        "--inference-process",
        action="store_true",
        help="server: the GNN engine in a process of its own (RISKGRAPH_INFERENCE_PROCESS)",
    )
    ap.add_argument("--warmup-s", type=float, default=5.0, help="seconds at 50/s, not recorded")
    ap.add_argument("--out", help="write JSON here (and a PNG plot next to it)")
    args = ap.parse_args()
    if (args.rate is None) == (args.rates is None):
        ap.error("give --rate or --rates")
    rates = [args.rate] if args.rate else [float(x) for x in args.rates.split(",")]
    from services.heap import tune_collector

    tune_collector()  # as `riskgraph serve` does

    server, container, payments, model_desc = start_server(args)
    bodies = Bodies(payments)
    refreezes: list[float] = []  # the API process's collector upkeep pauses (seconds)
    to_metrics = container.refreezer.on_pause

    def note_refreeze(seconds: float) -> None:
        refreezes.append(seconds)
        if to_metrics is not None:
            to_metrics(seconds)

    container.refreezer.on_pause = note_refreeze
    results: dict[str, Any] = {
        "model": model_desc,
        "server": {
            "batch_max_size": args.batch,
            "batch_max_wait_ms": args.tau_ms,
            "queue_capacity": args.queue,
            "torch_threads": args.threads,
            "inference_process": args.inference_process,
            "default_deadline_ms": container.settings.default_deadline_ms,
            "request_deadline_ms": args.deadline_ms,
        },
        "duration_s": args.duration,
        "runs": args.runs,
        "by_rate": [],
        "machine": machine(),
    }
    ctx = multiprocessing.get_context("spawn")
    with server as url, ProcessPoolExecutor(1, mp_context=ctx) as gen:
        key = container.settings.dev_api_key
        assert key is not None
        warm = bodies.take(int(50 * args.warmup_s), args.deadline_ms)
        gen.submit(open_loop, url, key, warm, 50.0, args.connections).result()
        for rate in rates:
            runs = []
            load_before = os.getloadavg()
            for run in range(args.runs):
                batch = bodies.take(int(rate * args.duration), args.deadline_ms)
                res = gen.submit(open_loop, url, key, batch, rate, args.connections).result()
                s = summarise(res, rate)
                runs.append(s)
                print(
                    f"rate {rate:g}/s run {run}: p50 {s['p50_ms']:.2f} p99 {s['p99_ms']:.2f} "
                    f"p99.9 {s['p99_9_ms']:.2f} ms (server p50 {s['server_p50_ms']:.2f} "
                    f"p99 {s['server_p99_ms']:.2f}), errors {s['error_rate']:.2%}, "
                    f"shed {s['shed_rate']:.2%}, full {s['mix']['full']:.1%}",
                    flush=True,
                )
            results["by_rate"].append(
                {
                    "rate": rate,
                    "median": median_runs(runs),
                    "runs": runs,
                    "load_avg_before": load_before,
                    "load_avg_after": os.getloadavg(),
                }
            )
    results["ladder_cost_estimates_ms_per_item"] = container.scoring.costs.snapshot()
    results["heap_refreeze_ms"] = {
        "every_s": container.refreezer.every_s,
        "passes": len(refreezes),
        "median": 1e3 * statistics.median(refreezes) if refreezes else None,
        "max": 1e3 * max(refreezes) if refreezes else None,
    }
    cost = container.scoring.batcher.cost
    results["batch_cost_ms"] = {"fixed": cost.fixed_s * 1e3, "per_item": cost.per_item_s * 1e3}
    container.close()
    ok = [
        r["rate"]
        for r in results["by_rate"]
        if r["median"]["p99_ms"] <= args.slo_ms
        and r["median"]["error_rate"] == 0
        and r["median"]["shed_rate"] == 0
    ]
    results["knee_rps"] = max(ok) if ok else None
    print_table(results, args.slo_ms)
    write(args.out, results)
    if args.out:
        plot(results, Path(args.out).with_suffix(".png"))


def print_table(results: dict[str, Any], slo: float) -> None:
    head = (
        "rate/s",
        "achieved",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "shed",
        *RUNGS,
        "gen lag p99",
        "load avg",
    )
    rows: list[tuple[str, ...]] = [head]
    for r in results["by_rate"]:
        m = r["median"]
        rows.append(
            (
                f"{r['rate']:g}",
                f"{m['achieved_rps']:.0f}",
                f"{m['p50_ms']:.2f}",
                f"{m['p95_ms']:.2f}",
                f"{m['p99_ms']:.2f}",
                f"{m['p99_9_ms']:.2f}",
                f"{m['error_rate']:.2%}",
                f"{m['shed_rate']:.2%}",
                *(f"{m['mix'][g]:.1%}" for g in RUNGS),
                f"{m['generator_lag_p99_ms']:.2f}",
                f"{r['load_avg_before'][0]:.1f}→{r['load_avg_after'][0]:.1f}",
            )
        )
    print(
        f"\nmedian of {results['runs']} runs of {results['duration_s']:g} s; model: "
        f"{results['model']}; server {results['server']}"
    )
    print(table(rows))
    for r in results["by_rate"]:
        st = r["median"]["stages_ms"]
        names = list(st["tail"])
        print(f"\n{r['rate']:g}/s, ms per stage: median of all 200s, and mean of the slowest 1 %")
        print(
            table(
                [
                    ("", *names),
                    ("typical", *(f"{st['typical'].get(k, 0.0):.2f}" for k in names)),
                    ("slowest 1 %", *(f"{st['tail'][k]:.2f}" for k in names)),
                ]
            )
        )
    print(f"knee (p99 ≤ {slo:g} ms, no errors, no shedding): {results['knee_rps']} req/s")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r["rate"] for r in results["by_rate"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for q in ("p50_ms", "p99_ms", "p99_9_ms"):
        ax1.plot(rates, [r["median"][q] for r in results["by_rate"]], marker="o", label=q[:-3])
    ax1.set_yscale("log")
    ax1.set_xlabel("offered rate (req/s, open loop)")
    ax1.set_ylabel("latency from scheduled send (ms)")
    ax1.grid(True, alpha=0.3)
    ax1.legend()
    bottom = np.zeros(len(rates))
    width = [0.6 * min(rates) if len(rates) == 1 else 0.6 * min(np.diff(rates))] * len(rates)
    for g in RUNGS:
        share = np.asarray([r["median"]["mix"][g] for r in results["by_rate"]])
        ax2.bar(rates, share, bottom=bottom, width=width, label=g)
        bottom += share
    ax2.set_xlabel("offered rate (req/s)")
    ax2.set_ylabel("share of 200 answers by rung")
    ax2.legend()
    fig.suptitle("riskgraph /v1/score under open-loop load")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
