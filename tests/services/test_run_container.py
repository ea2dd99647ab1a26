"""``build_run_container``: a container over stores loaded in this process (the demo and the
benchmarks) serves with the degree cap counted from the newest event again."""

from __future__ import annotations

import gc
import math
from pathlib import Path

from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from gnn.artifact import ModelBundle
from services.container import build_run_container
from tests.factories import payment
from tests.services.api_harness import bundle  # noqa: F401 - shared fixture


def test_history_loaded_for_training_is_capped_again_once_served(
    tmp_path: Path,
    bundle: ModelBundle,  # noqa: F811
) -> None:
    graph = InMemoryGraphStore(max_degree=3)
    graph.expect_queries_from(-math.inf)  # what load_history says: training reads the past
    for k in range(10):
        graph.add(payment(f"p{k}", k, account=f"a{k}", card=f"c{k}", merchant="hub"))
    assert graph.stats()["edges"] == 30  # the hub kept all ten of its edges
    thresholds = gc.get_threshold()
    try:
        container = build_run_container(tmp_path / "run", bundle, graph, InMemoryFeatureStore())
        graph.add(payment("p10", 10, account="a10", card="c10", merchant="hub"))
        # The hub's next edge brings it back to the cap: 8 of its 11 edge ends go (each
        # payment's own end stays), so memory is bounded while serving.
        assert graph.stats()["edges"] == (2 * 33 - 8 + 1) // 2
        q = payment("q", 11, account="qa", card="qc", merchant="hub")
        (g,) = graph.sample([q], (20,))
        hub = g.node_id.index("hub")
        assert sum(1 for d in g.dst if d == hub) == 3
        container.close()
    finally:
        gc.unfreeze()  # build_run_container settles the heap for serving: undo it for the tests
        gc.set_threshold(*thresholds)
