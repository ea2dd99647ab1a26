"""Replay one stream in several processes, each scoring its own slice of the scored window.

Worker ``k`` of ``n`` runs :func:`~services.backtest.run.run_backtest` over every record
from the start, as one process would, with the scored window cut to its slice
``[bounds[k], bounds[k+1])`` of event time: the records before its slice are ingested and
not scored, which is how a single replay treats everything before ``since``. The stores
answer a query at time ``t`` only with what happened strictly before ``t`` (the
point-in-time property), so a payment gets the same inputs, and the same score, whichever
worker scores it and wherever its chunks begin. The merged run is the one process's run:
the payments of the slices in order, and the labels, cards, event and dead-letter counts of
the last worker, which read every record up to ``until`` as one process would.

That holds past the in-memory graph's degree cap too: each replay tells the graph where its
queries start (:meth:`~feature_stream.graph_store.GraphStore.expect_queries_from`). Before
it did, a hub's oldest edges were dropped for later ones that a chunk had already ingested,
and on the demo stream one worker and two differed by up to 1.4e-4 in GNN score; now 3e-8.

The cost of a worker beyond the first is the ingest of the records before its slice, a small
share of what scoring costs per payment (a fraud-handbook payment scored by a GNN and a tree
with a decision each costs about ten times its ingest). Slices are equal spans of event time.

Workers are forked (Linux): they share the parent's stores, models and policies
copy-on-write, and each limits its math to one thread so that ``n`` workers fit ``n`` cores.
Prequential retraining, checkpoints and pacing need the one replay's order, and are refused.
"""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import pickle
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from tqdm import tqdm

from feature_stream.event_io import RawRecord
from feature_stream.feature_store import FeatureStore
from feature_stream.graph_store import GraphStore
from gnn.artifact import ModelBundle
from gnn.engine import set_math_threads
from gnn.ladder import Rung
from services.backtest.config import BacktestConfig, BacktestRun
from services.backtest.run import run_backtest
from services.policy import PolicyEvaluator


def slice_bounds(since: float, end: float, workers: int) -> list[float]:
    """``workers + 1`` bounds cutting ``[since, end)`` into equal spans of event time."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not (math.isfinite(since) and math.isfinite(end)) or end <= since:
        raise ValueError(f"need finite since < end to cut into slices, got {since} and {end}")
    step = (end - since) / workers
    return [since + k * step for k in range(workers)] + [end]


def _work(
    conn: Connection,
    counter: Any,
    records: Iterable[RawRecord],
    models: Mapping[str, ModelBundle],
    policy: PolicyEvaluator,
    cfg: BacktestConfig,
    graph: GraphStore | None,
    features: FeatureStore | None,
    rungs: Mapping[str, Rung] | None,
    policies: Mapping[str, PolicyEvaluator] | None,
) -> None:
    """One worker: replay, score its slice, send the run (or the error) back."""
    set_math_threads(1)

    def scored(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    try:
        run = run_backtest(
            records, models, policy, cfg, graph, features, progress=False, rungs=rungs,
            policies=policies, on_scored=scored,
        )  # fmt: skip
        conn.send(("ok", run))
    except BaseException as exc:  # the parent raises it: nothing is lost in a dead child
        try:
            pickle.loads(pickle.dumps(exc))  # one that cannot travel goes as its traceback
            conn.send(("error", exc))
        except Exception:
            conn.send(("error", RuntimeError(traceback.format_exc())))
    finally:
        conn.close()


def run_backtest_parallel(
    records: Iterable[RawRecord],
    models: Mapping[str, ModelBundle],
    policy: PolicyEvaluator,
    cfg: BacktestConfig,
    end: float,
    workers: int,
    graph: GraphStore | None = None,
    features: FeatureStore | None = None,
    progress: bool = True,
    rungs: Mapping[str, Rung] | None = None,
    *,
    policies: Mapping[str, PolicyEvaluator] | None = None,
) -> BacktestRun:
    """:func:`~services.backtest.run.run_backtest` in ``workers`` forked processes (see the
    module docstring); same arguments, plus ``end``, the event time the slices stop at (the
    last payment's time plus a little, or ``cfg.until`` if finite). ``records`` must be
    iterable once per worker from the start (a list, or a source that re-opens its files).

    ``seconds`` of the result is the wall time of the whole run, so ``events / seconds`` is
    the rate it replayed at."""
    if workers == 1:
        return run_backtest(
            records, models, policy, cfg, graph, features, progress=progress, rungs=rungs,
            policies=policies,
        )  # fmt: skip
    if "fork" not in mp.get_all_start_methods():
        raise RuntimeError("parallel backtests fork their workers; this platform cannot fork")
    bounds = slice_bounds(cfg.since, min(end, cfg.until), workers)
    ctx = mp.get_context("fork")
    counter = ctx.Value("q", 0)
    start = time.perf_counter()
    gc.collect()
    gc.freeze()  # what exists now stays shared with the workers instead of being copied
    procs, conns = [], []
    for k in range(workers):
        until = cfg.until if k == workers - 1 else bounds[k + 1]
        mine = replace(cfg, since=bounds[k], until=until)
        parent_end, child_end = ctx.Pipe(duplex=False)
        args = (child_end, counter, records, models, policy, mine, graph, features, rungs, policies)
        proc = ctx.Process(target=_work, args=args, name=f"backtest-{k}", daemon=True)
        proc.start()
        child_end.close()
        procs.append(proc)
        conns.append(parent_end)
    bar = tqdm(
        desc=f"backtest ({workers} workers)", unit="payment", disable=not progress, mininterval=0.5
    )
    results: list[tuple[str, Any] | None] = [None] * workers
    try:
        while any(r is None for r in results):
            for k, conn in enumerate(conns):
                if results[k] is None and conn.poll(0.2):
                    try:
                        results[k] = conn.recv()
                    except EOFError:
                        code = procs[k].exitcode
                        results[k] = ("error", RuntimeError(f"worker {k} died (exit code {code})"))
            bar.n = counter.value
            bar.refresh()
    finally:
        bar.close()
        gc.unfreeze()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    runs: list[BacktestRun] = []
    for k, res in enumerate(results):
        assert res is not None
        kind, value = res
        if kind != "ok":
            raise value if isinstance(value, BaseException) else RuntimeError(f"worker {k}")
        runs.append(value)
    first, last = runs[0], runs[-1]
    return BacktestRun(
        models=first.models,
        policy_revision=first.policy_revision,
        payments=[p for run in runs for p in run.payments],
        labels=last.labels,
        card_of=last.card_of,
        events=last.events,
        dead_letters=last.dead_letters,
        seconds=time.perf_counter() - start,
        config=cfg,
        policy_revisions=first.policy_revisions,
        model_changes=first.model_changes,
        dead=last.dead,  # the last slice's worker read every record
    )
