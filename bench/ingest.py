"""Ingest throughput into the embedded stores (target ≥ 50k events/s into the graph, one core).

Two figures per run, over the same pre-read stream:
* graph: validated events → ``InMemoryGraphStore.add`` (the target's definition);
* pipeline: raw records → parse → dedupe → graph + online features (what a worker does).
Runs several times and reports the median and spread.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import ensure_stream, machine, table, write

from feature_stream.event_io import FileEventSource, InMemoryEventSink
from feature_stream.events import parse_event
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.ingest import Ingestor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stream", help="stream directory (default: generate the default stream)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", help="write JSON here")
    args = ap.parse_args()
    from pathlib import Path

    stream = ensure_stream(args.stream, Path("runs/bench/stream"))
    raw = list(FileEventSource(stream))
    events = [parse_event(r.value) for r in raw]
    graph_rates, pipe_rates = [], []
    for _ in range(args.runs):
        g = InMemoryGraphStore()
        t0 = time.perf_counter()
        for e in events:
            g.add(e)
        graph_rates.append(len(events) / (time.perf_counter() - t0))
        ing = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), InMemoryEventSink())
        t0 = time.perf_counter()
        for r in raw:
            ing.ingest(r)
        pipe_rates.append(len(raw) / (time.perf_counter() - t0))
    res = {
        "events": len(events),
        "graph_events_per_s": {
            "median": statistics.median(graph_rates),
            "min": min(graph_rates),
            "max": max(graph_rates),
            "runs": graph_rates,
        },
        "pipeline_events_per_s": {
            "median": statistics.median(pipe_rates),
            "min": min(pipe_rates),
            "max": max(pipe_rates),
            "runs": pipe_rates,
        },
        "target_graph_events_per_s": 50_000,
        "machine": machine(),
    }
    print(
        table(
            [
                ("path", "median ev/s", "min", "max", "runs"),
                (
                    "graph.add (validated events)",
                    f"{res['graph_events_per_s']['median']:,.0f}",
                    f"{min(graph_rates):,.0f}",
                    f"{max(graph_rates):,.0f}",
                    str(args.runs),
                ),
                (
                    "parse+dedupe+graph+features",
                    f"{res['pipeline_events_per_s']['median']:,.0f}",
                    f"{min(pipe_rates):,.0f}",
                    f"{max(pipe_rates):,.0f}",
                    str(args.runs),
                ),
            ]
        )
    )
    write(args.out, res)


if __name__ == "__main__":
    main()
