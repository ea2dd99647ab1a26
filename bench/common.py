"""Shared helpers for benchmark scripts: a stream to measure on, percentiles, output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a checkout
    sys.path.insert(0, str(ROOT))


def ensure_stream(path: str | None, cache: Path, seed: int = 7) -> Path:
    """The stream to measure on: ``path`` if given, else a generated default stream (cached)."""
    if path:
        return Path(path)
    from feature_stream.generator import GeneratorConfig, generate

    if not (cache / "manifest.json").exists():
        generate(GeneratorConfig(seed=seed), cache, progress=False)
    return cache


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=float)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "n": len(a),
    }


def host_probe(rounds: int = 5) -> float:
    """Median milliseconds of a fixed single-threaded Python workload (tuple keys into a dict,
    then a pass over it: what the stores do). The 2-core hosts these benchmarks run on drift by
    tens of percent over a day; a run's probe says whether its host was in a slow spell."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        d: dict[tuple[int, str], float] = {}
        for i in range(100_000):
            d[(i & 1023, str(i))] = i * 0.5
        total = 0.0
        for v in d.values():
            total += v
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def service_cpu_s(service: str) -> float | None:
    """CPU seconds (user + system, all threads) used so far by the process ``deploy/`` started
    for ``service`` (``neo4j``, ``kafka`` …), from its pidfile; ``None`` if it is not running."""
    state = Path(os.environ.get("RISKGRAPH_STATE_DIR", ROOT / "deploy" / ".state"))
    try:
        pid = int((state / "run" / f"{service}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid_cpu_s(pid)


def pid_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) used so far by process ``pid``; ``None`` if it
    is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "load_average": os.getloadavg(),
        "host_probe_ms": host_probe(),
    }


def write(out: str | None, payload: dict[str, Any]) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(payload, indent=2))
        print(f"wrote {out}")


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
