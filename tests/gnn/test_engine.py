"""The inference engine's rungs: layered forward = the model, cached rung = full rung when the
cache is fresh, every rung answers in [0, 1] at a point in time, and the GNN rungs carry the
case embedding (the head's input) from the pass that scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from feature_stream.event_io import InMemoryEventSink
from feature_stream.events import DeviceEvent, LabelEvent, Payment, SocialEvent
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.features import FEATURE_NAMES
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.ingest import Ingestor
from gnn.artifact import ModelBundle
from gnn.baseline import TreeBaseline
from gnn.engine import EmbeddingCache, Prepared, ScoringEngine, hop1_rows, one_hop
from gnn.fused import FusedForward, needed_rows, propagate
from gnn.ladder import LADDER, SERVED_BY, Rung
from gnn.model import TemporalHeteroGNN
from gnn.tensorize import GraphBatch, tensorize
from tests.factories import label, link, login, payment
from tests.gnn.conftest import FANOUTS, World


@pytest.fixture(scope="module")
def bundle(world: World) -> ModelBundle:
    torch.manual_seed(0)
    x = np.asarray(world.rows)
    y = np.asarray(world.y)
    gnn = TemporalHeteroGNN(len(FEATURE_NAMES), hidden=16, layers=len(FANOUTS) + 1, feature_bins=8)
    gnn.fit_feature_encoding(torch.tensor(world.rows))
    gnn.eval()
    return ModelBundle(
        gnn,
        TreeBaseline(max_iter=10).fit(x, y),
        {"version": "gnn-engine-test", "fanouts": list(FANOUTS)},
    )


def test_propagate_equals_the_models_forward(bundle: ModelBundle, world: World) -> None:
    batch = tensorize(world.prepared.subgraphs[:30], world.rows[:30])
    with torch.inference_mode():
        expected = bundle.gnn(batch)
        got, _ = propagate(bundle.gnn, batch)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_hop1_rows_point_at_the_query_entities(world: World) -> None:
    subgraphs = world.prepared.subgraphs[:10]
    batch = tensorize(subgraphs, world.rows[:10])
    rows = hop1_rows(subgraphs)
    own = sum(1 for g in subgraphs for h in g.node_hop if h == 1)
    assert sum(len(r) for _, r in rows.values()) == own
    for ntype, (keys, r) in rows.items():
        assert len(keys) == len(r)
        # entity input feature 3 is "is one of the query's own entities"
        assert batch.x[ntype][r, 3].tolist() == [1.0] * len(r)


def test_one_hop_keeps_the_query_and_its_own_entities(world: World) -> None:
    g = world.prepared.subgraphs[5]
    star = one_hop(g)
    assert star.node_hop == [h for h in g.node_hop if h <= 1]
    assert star.num_edges == star.num_nodes - 1
    assert all(d == 0 for d in star.dst)
    assert star.max_time_used < g.t


def test_cached_rung_equals_full_rung_when_the_cache_is_fresh(
    bundle: ModelBundle, world: World
) -> None:
    engine = ScoringEngine(bundle, world.graph, world.features, cache_size=10_000)
    assert engine.cache is not None
    for p in world.payments[-12:]:
        # One query at a time: a shared entity (a merchant) keeps the embedding of the latest
        # query that saw it, which an earlier query must not use (point in time).
        (full,), _ = engine.infer([p], "full")
        hits = engine.cache.hits
        (cached,), timings = engine.infer([p], "cached")
        assert engine.cache.hits == hits + sum(1 for h in one_hop_sample(engine, p) if h == 1)
        assert cached.score == pytest.approx(full.score, abs=1e-5)
        assert cached.rung == "cached"
        assert {"features", "sampling", "gnn"} <= set(timings)
    assert engine.cache.misses == 0


def one_hop_sample(engine: ScoringEngine, p: Payment) -> list[int]:
    (g,) = engine.graph.sample([p], (1,))
    return one_hop(g).node_hop


def test_the_cache_serves_no_embedding_from_the_future() -> None:
    cache = EmbeddingCache(capacity=2, layers=2, hidden=3)
    cache.put("device", [("d1", 100.0)], torch.ones((1, 2, 3)))
    assert cache.get("device", [("d1", 99.0)]) == ([], None)  # asked before it was computed
    pos, emb = cache.get("device", [("d1", 100.0), ("d2", 200.0)])
    assert pos == [0]
    assert emb is not None
    assert emb.shape == (1, 2, 3)


def test_the_cache_is_bounded() -> None:
    cache = EmbeddingCache(capacity=2, layers=1, hidden=1)
    for i in range(5):
        cache.put("ip", [(f"ip{i}", 0.0)], torch.full((1, 1, 1), float(i)))
    assert len(cache) == 2
    pos, emb = cache.get("ip", [("ip0", 1.0), ("ip3", 1.0), ("ip4", 1.0)])
    assert pos == [1, 2]
    assert emb is not None
    assert emb.flatten().tolist() == [3.0, 4.0]


@pytest.mark.parametrize("rung", LADDER)
def test_every_rung_answers_in_range_at_a_point_in_time(
    bundle: ModelBundle, world: World, rung: Rung
) -> None:
    engine = ScoringEngine(bundle, world.graph, world.features)
    sample = world.payments[-15:]
    scored, timings = engine.infer(sample, rung)
    assert [s.rung for s in scored] == [rung] * len(sample)
    assert [s.served_by for s in scored] == [SERVED_BY[rung]] * len(sample)
    assert all(0.0 <= s.score <= 1.0 for s in scored)
    assert all(
        s.max_time_used < p.event_time.timestamp() for s, p in zip(scored, sample, strict=True)
    )
    stage = {"tree": "fallback", "policy": "rules"}.get(rung, "gnn")
    assert {"features", stage} <= set(timings)


def test_reduced_fanouts_are_capped_by_the_artifacts(bundle: ModelBundle, world: World) -> None:
    engine = ScoringEngine(bundle, world.graph, world.features, reduced_fanouts=(2, 10))
    assert engine.reduced_fanouts == (2, 3)  # the artifact samples (5, 3)


def test_cuda_is_refused_where_there_is_none(
    bundle: ModelBundle, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a GPU host
    with pytest.raises(ValueError, match="CUDA is not available"):
        ScoringEngine(bundle, world.graph, world.features, device="cuda")


def test_the_fused_forward_equals_the_models_forward(bundle: ModelBundle, world: World) -> None:
    fused = FusedForward(bundle.gnn)
    for lo, hi in ((0, 1), (0, 30), (30, len(world.payments))):
        batch = tensorize(world.prepared.subgraphs[lo:hi], world.rows[lo:hi])
        with torch.inference_mode():
            expected = bundle.gnn(batch)
            got, _ = fused(batch)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_fused_forward_captures_and_injects_like_propagate(
    bundle: ModelBundle, world: World
) -> None:
    subgraphs = world.prepared.subgraphs[:20]
    batch = tensorize(subgraphs, world.rows[:20])
    rows = {t: torch.tensor(r) for t, (_, r) in hop1_rows(subgraphs).items()}
    fused = FusedForward(bundle.gnn)
    with torch.inference_mode():
        _, expected = propagate(bundle.gnn, batch, capture=rows)
        _, got = fused(batch, capture=rows)
        for t in rows:
            torch.testing.assert_close(got[t], expected[t], rtol=1e-5, atol=1e-5)
        inject = {t: (r, torch.zeros((len(r), 3, 16))) for t, r in rows.items()}
        a, _ = propagate(bundle.gnn, batch, inject=inject)
        b, _ = fused(batch, inject=inject)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def head_input(model: TemporalHeteroGNN, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, what model.head received)`` from the PyG model's own forward."""
    seen: list[torch.Tensor] = []
    hook = model.head.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    try:
        logits = model(batch)
    finally:
        hook.remove()
    return logits, seen[0]


def test_the_fused_pass_returns_the_heads_input_as_the_embedding(
    bundle: ModelBundle, world: World
) -> None:
    batch = tensorize(world.prepared.subgraphs[:30], world.rows[:30])
    with torch.inference_mode():
        logits, emb = head_input(bundle.gnn, batch)
        out = FusedForward(bundle.gnn).run(batch)
    assert tuple(out.embedding.shape) == (30, 2 * 16)
    torch.testing.assert_close(out.embedding, emb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-5)


def test_served_scores_and_embeddings_are_the_models(bundle: ModelBundle, world: World) -> None:
    engine = ScoringEngine(bundle, world.graph, world.features)
    sample = world.payments[-20:]
    scored, _ = engine.infer(sample, "full")
    prep = engine.prepare(sample)
    with torch.inference_mode():
        logits, emb = head_input(bundle.gnn, tensorize(prep.subgraphs, prep_rows(prep)))
    np.testing.assert_allclose(
        [s.score for s in scored], torch.sigmoid(logits).numpy(), rtol=0, atol=1e-6
    )
    got = np.asarray([s.embedding for s in scored], dtype=np.float32)
    np.testing.assert_allclose(got, emb.numpy(), rtol=0, atol=1e-5)


def prep_rows(prep: Prepared) -> list[list[float]]:
    return [list(f.values) for f in prep.features]


def test_embed_equals_the_full_rungs_embedding(bundle: ModelBundle, world: World) -> None:
    engine = ScoringEngine(bundle, world.graph, world.features)
    sample = world.payments[-25:]
    scored, _ = engine.infer(sample, "full")
    emb = engine.embed(sample)
    assert engine.embedding_dim == 32  # 2 · hidden
    assert emb.dtype == np.float32
    assert emb.shape == (len(sample), engine.embedding_dim)
    served = np.asarray([s.embedding for s in scored], dtype=np.float64)
    np.testing.assert_allclose(emb, served, rtol=0, atol=1e-6)
    assert engine.embed([]).shape == (0, engine.embedding_dim)


@pytest.mark.parametrize("rung", LADDER)
def test_gnn_rungs_carry_an_embedding_and_the_others_none(
    bundle: ModelBundle, world: World, rung: Rung
) -> None:
    engine = ScoringEngine(bundle, world.graph, world.features)
    engine.infer(world.payments[-10:], "full")  # warms the cache for the cached rung
    scored, _ = engine.infer(world.payments[-10:], rung)
    for s in scored:
        if rung in ("tree", "policy"):
            assert s.embedding is None
        else:
            assert isinstance(s.embedding, tuple)
            assert len(s.embedding) == engine.embedding_dim
            assert all(isinstance(x, float) and np.isfinite(x) for x in s.embedding)
    assert "embedding" not in repr(scored[0])  # logs stay readable


AnyEvent = Payment | DeviceEvent | SocialEvent | LabelEvent


def stores(events: list[AnyEvent]) -> Ingestor:
    ingestor = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), InMemoryEventSink())
    for e in sorted(events, key=lambda e: e.event_time):
        ingestor.apply(e)
    return ingestor


def test_the_embedding_uses_only_the_past(bundle: ModelBundle) -> None:
    t = 10_000.0
    own = {"account": "a1", "card": "c1", "merchant": "m1", "device": "d1", "ip": "10.0.0.1"}
    query = payment("q", t, amount=420.0, **own)
    p0 = payment("p0", 1000, account="a2", card="c2", merchant="m1", device="d1", ip="10.0.0.1")
    p1 = payment("p1", 2000, amount=55.0, **own)
    past: list[AnyEvent] = [
        login("l0", 0, account="a1", device="d1", ip="10.0.0.1"),
        p0,
        p1,
        label("lb0", 3000, txn=p0, fraud=True),
        link("s0", 4000, src="a1", dst="a2"),
    ]
    # At the query's time (ties) and after it: all of it within reach of the query's entities.
    f0 = payment("f0", t, amount=900.0, **own)
    future: list[AnyEvent] = [
        f0,
        payment("f1", t + 60, account="a3", card="c1", merchant="m1", device="d1", ip="10.0.0.1"),
        label("lb1", t, txn=p1, fraud=True),
        label("lb2", t + 100, txn=p0, fraud=False),
        label("lb3", t + 200, txn=f0, fraud=True),
        login("l1", t, account="a3", device="d1", ip="10.0.0.1"),
        link("s1", t + 1, src="a3", dst="a1", kind="p2p_transfer", amount=500.0),
    ]
    before = stores(past)
    everything = stores([*past, query, *future])
    a = ScoringEngine(bundle, before.graph, before.features).embed([query])
    b = ScoringEngine(bundle, everything.graph, everything.features).embed([query])
    np.testing.assert_array_equal(a, b)
    # The future events are within reach: a later query on the same entities sees them.
    later = payment("q2", t + 1000, amount=420.0, **own)
    a = ScoringEngine(bundle, before.graph, before.features).embed([later])
    b = ScoringEngine(bundle, everything.graph, everything.features).embed([later])
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("rung", ["full", "reduced"])
def test_a_score_does_not_depend_on_the_rest_of_its_batch(
    bundle: ModelBundle, world: World, rung: Rung
) -> None:
    """Micro-batching, backtests and single requests must give one payment one score: a
    relation missing from a small batch would drop its root terms (see tensorize)."""
    engine = ScoringEngine(bundle, world.graph, world.features, cache_size=0)
    sample = world.payments[-40:]
    together, _ = engine.infer(sample, rung)
    alone = [engine.infer([p], rung)[0][0] for p in sample]
    np.testing.assert_allclose(
        [s.score for s in alone], [s.score for s in together], rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        [s.embedding for s in alone], [s.embedding for s in together], rtol=0, atol=1e-5
    )


def test_the_trainable_fused_forward_has_the_models_outputs_and_gradients(world: World) -> None:
    torch.manual_seed(0)
    model = TemporalHeteroGNN(
        len(FEATURE_NAMES), hidden=16, layers=len(FANOUTS) + 1, feature_bins=4
    )
    model.fit_feature_encoding(torch.tensor(world.rows))
    model.eval()  # no dropout: both passes must see the same network
    batch = tensorize(world.prepared.subgraphs[:30], world.rows[:30])
    grads = []
    for forward in (model, lambda b: FusedForward(model, trainable=True).run(b).logits):
        model.zero_grad()
        logits = forward(batch)
        logits.sum().backward()
        # A weight no edge of the batch reaches has zero gradient or none, by pass.
        g = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
        grads.append((logits.detach(), g))
    (expected, g_expected), (got, g_got) = grads
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_got, g_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_needed_rows_walk_back_from_the_roots_along_message_edges() -> None:
    # 0 ← 1 ← 2 ← 3, and 4 → 5 elsewhere; messages flow src → dst.
    src, dst = torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 5])
    need = needed_rows(3, 6, torch.tensor([0]), src, dst)
    assert [torch.nonzero(m).flatten().tolist() for m in need if m is not None] == [
        [0, 1, 2],
        [0, 1],
        [0],
    ]


def test_the_pruned_pass_is_the_full_pass(world: World) -> None:
    """Scores, embeddings and gradients with and without pruning, on a batch large enough to
    prune, where the later layers really do skip rows."""
    torch.manual_seed(1)
    model = TemporalHeteroGNN(
        len(FEATURE_NAMES), hidden=16, layers=len(FANOUTS) + 1, feature_bins=4
    )
    model.fit_feature_encoding(torch.tensor(world.rows))
    model.eval()
    n = 40
    assert n >= FusedForward.PRUNE_FROM
    batch = tensorize(world.prepared.subgraphs[:n], world.rows[:n])
    rows = sum(v.shape[0] for v in batch.x.values())
    roots = int(batch.root.numel())
    with torch.inference_mode():
        pruned, full = FusedForward(model).run(batch), FusedForward(model, prune=False).run(batch)
    torch.testing.assert_close(pruned.logits, full.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pruned.embedding, full.embedding, rtol=1e-5, atol=1e-5)
    # the later layers touch a fraction of the rows: the pruned path did run
    per_layer = [
        int(m.sum()) for m in needed_rows(3, rows, *_roots_and_edges(batch)) if m is not None
    ]
    assert per_layer[-1] == roots < per_layer[0] <= rows
    grads = []
    for prune in (True, False):
        model.zero_grad()
        FusedForward(model, trainable=True, prune=prune).run(batch).logits.sum().backward()
        grads.append(
            [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
        )
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _roots_and_edges(batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The roots and message edges of ``batch`` as rows of the types stacked in
    ``batch.x`` order."""
    offset, at = {}, 0
    for t, x in batch.x.items():
        offset[t] = at
        at += x.shape[0]
    src = torch.cat([ei[0] + offset[s] for (s, _, _), ei in batch.edge_index.items()])
    dst = torch.cat([ei[1] + offset[d] for (_, _, d), ei in batch.edge_index.items()])
    return offset["transaction"] + batch.root, src, dst
