"""Occlusion explanations: they cover the served subgraph, reproduce the served score, agree
with the model run by hand on an occluded subgraph, are deterministic, and credit a device
shared with known fraud."""

from __future__ import annotations

import json
import random
import statistics

import pytest
import torch

from feature_stream.events import Payment
from feature_stream.graph_schema import NODE_TYPES, RELATION_NAMES, TXN
from feature_stream.graph_store import LABEL_FRAUD, LABEL_LEGIT, Subgraph
from gnn.artifact import ModelBundle
from gnn.engine import ScoringEngine
from gnn.explain import Explanation, explain, occlusion_logits
from gnn.tensorize import tensorize
from tests.gnn.conftest import FANOUTS, World, rebuilt
from tests.gnn.test_model import fit_baseline, fit_gnn


@pytest.fixture(scope="module")
def engine(world: World) -> ScoringEngine:
    bundle = ModelBundle(
        # Without the binned feature code: in this tiny world the binned features alone
        # separate the ring, leaving the graph's evidence (what these tests are about) ~0.
        fit_gnn(world, 0, feature_bins=0),
        fit_baseline(world, 0),
        {"version": "explain", "fanouts": list(FANOUTS)},
    )
    return ScoringEngine(bundle, world.graph, world.features)


def served(engine: ScoringEngine, p: Payment) -> tuple[Subgraph, list[float]]:
    prep = engine.prepare([p])
    return prep.subgraphs[0], list(prep.features[0].values)


def model_logit(engine: ScoringEngine, g: Subgraph, features: list[float]) -> float:
    """The PyG model's own forward on one subgraph scored alone."""
    with torch.inference_mode():
        return float(engine.gnn(tensorize([g], [features]))[0])


def without(g: Subgraph, node: int | None = None, edge: int | None = None) -> Subgraph:
    """``g`` with a node (renumbered away, with its edges) or one edge deleted."""
    nodes = [i for i in range(g.num_nodes) if i != node]
    edges = [e for e in range(g.num_edges) if e != edge and node not in (g.src[e], g.dst[e])]
    return rebuilt(g, nodes, edges)


def relations(g: Subgraph) -> set[tuple[int, int, int]]:
    return {
        (g.node_type[s], r, g.node_type[d]) for s, d, r in zip(g.src, g.dst, g.rel, strict=True)
    }


def test_the_explanation_covers_the_served_subgraph(engine: ScoringEngine, world: World) -> None:
    p = world.payments[-1]
    g, _ = served(engine, p)
    ex = explain(engine, p)
    nodes = sorted(ex.nodes, key=lambda c: c.index)
    assert [(c.index, c.type, c.id, c.hop) for c in nodes] == [
        (i, NODE_TYPES[g.node_type[i]], g.node_id[i], g.node_hop[i]) for i in range(1, g.num_nodes)
    ]
    names = {LABEL_FRAUD: "fraud", LABEL_LEGIT: "legit"}
    assert [c.label for c in nodes] == [
        names.get(int(g.node_attr[i][2]), "unknown") if g.node_type[i] == TXN else None
        for i in range(1, g.num_nodes)
    ]
    edges = sorted(ex.edges, key=lambda c: c.index)
    assert [(c.src, c.dst, c.relation, c.time) for c in edges] == [
        (g.src[e], g.dst[e], RELATION_NAMES[g.rel[e]], g.edge_ts[e]) for e in range(g.num_edges)
    ]
    assert all(c.time <= g.t for c in edges)
    for ranked in (ex.nodes, ex.edges):
        sizes = [abs(c.contribution) for c in ranked]
        assert sizes == sorted(sizes, reverse=True)


def test_removing_nothing_reproduces_the_served_score(engine: ScoringEngine, world: World) -> None:
    for p in world.payments[-40::8]:
        ex = explain(engine, p)
        (s,), _ = engine.infer([p], "full")
        assert ex.score == pytest.approx(s.score, abs=1e-5)
        assert ex.logit == pytest.approx(model_logit(engine, *served(engine, p)), abs=1e-5)


def test_contributions_equal_the_model_on_the_occluded_subgraph(
    engine: ScoringEngine, world: World
) -> None:
    rng = random.Random(7)
    p = rng.choice(world.payments[-30:])
    g, f = served(engine, p)
    ex = explain(engine, p)
    full = model_logit(engine, g, f)
    by_node = {c.index: c.contribution for c in ex.nodes}
    by_edge = {c.index: c.contribution for c in ex.edges}
    # A node at random, and one whose removal takes a relation out of the subgraph (the GNN's
    # root terms depend on the relations present: the batched variants must keep that apart).
    drops_relation = [i for i in by_node if relations(without(g, node=i)) != relations(g)]
    assert drops_relation
    for i in {rng.choice(sorted(by_node)), drops_relation[0]}:
        expected = full - model_logit(engine, without(g, node=i), f)
        assert by_node[i] == pytest.approx(expected, abs=1e-5)
    e = rng.randrange(g.num_edges)
    expected = full - model_logit(engine, without(g, edge=e), f)
    assert by_edge[e] == pytest.approx(expected, abs=1e-5)


def test_a_node_with_one_edge_contributes_what_that_edge_does(
    engine: ScoringEngine, world: World
) -> None:
    p = world.payments[-1]
    g, _ = served(engine, p)
    ex = explain(engine, p)
    incident: dict[int, list[int]] = {}
    for e, (s, d) in enumerate(zip(g.src, g.dst, strict=True)):
        incident.setdefault(s, []).append(e)
        incident.setdefault(d, []).append(e)
    leaves = {i: es[0] for i, es in incident.items() if i != 0 and len(es) == 1}
    assert leaves
    by_edge = {c.index: c.contribution for c in ex.edges}
    by_node = {c.index: c.contribution for c in ex.nodes}
    for node, edge in leaves.items():
        assert by_node[node] == by_edge[edge]


def test_contributions_do_not_depend_on_the_order_of_the_subgraph(
    engine: ScoringEngine, world: World
) -> None:
    g, f = served(engine, world.payments[-2])
    rng = random.Random(3)
    order = [0, *rng.sample(range(1, g.num_nodes), g.num_nodes - 1)]  # new → old
    new = {old: i for i, old in enumerate(order)}
    edges = rng.sample(range(g.num_edges), g.num_edges)
    shuffled = Subgraph(
        t=g.t,
        node_type=[g.node_type[o] for o in order],
        node_id=[g.node_id[o] for o in order],
        node_attr=[g.node_attr[o] for o in order],
        node_hop=[g.node_hop[o] for o in order],
        src=[new[g.src[e]] for e in edges],
        dst=[new[g.dst[e]] for e in edges],
        rel=[g.rel[e] for e in edges],
        edge_ts=[g.edge_ts[e] for e in edges],
        max_time_used=g.max_time_used,
    )
    logit, nodes, edge_logits = occlusion_logits(engine, g, f)
    logit2, nodes2, edge_logits2 = occlusion_logits(engine, shuffled, f)
    assert logit2 == pytest.approx(logit, abs=1e-5)
    assert [nodes2[new[i] - 1] for i in range(1, g.num_nodes)] == pytest.approx(nodes, abs=1e-5)
    assert [edge_logits2[edges.index(e)] for e in range(g.num_edges)] == pytest.approx(
        edge_logits, abs=1e-5
    )


def test_explanations_are_deterministic_and_plain_json(engine: ScoringEngine, world: World) -> None:
    p = world.payments[-3]
    a, b = explain(engine, p), explain(engine, p)
    assert a.as_dict() == b.as_dict()
    assert json.loads(json.dumps(a.as_dict())) == a.as_dict()
    short = explain(engine, p, top=3)
    assert (short.nodes, short.edges) == (a.nodes[:3], a.edges[:3])
    assert short.score == a.score


def test_top_entities_are_the_most_influential_non_transactions(
    engine: ScoringEngine, world: World
) -> None:
    ex = explain(engine, world.payments[-1])
    top = ex.top_entities(3)
    entities = [c for c in ex.nodes if c.type != "transaction"]
    assert len(top) == 3
    assert top == sorted(entities, key=lambda c: -abs(c.contribution))[:3]


def device_contribution(ex: Explanation, device: str) -> float:
    return next(c.contribution for c in ex.nodes if (c.type, c.id) == ("device", device))


def test_a_device_shared_with_known_fraud_pushes_the_score_up(
    engine: ScoringEngine, world: World
) -> None:
    # The ring's payments share "dev-farm"; earlier ring payments are labelled fraud two hours
    # after they happen. Per payment the sign depends on the training run, so the claim is on
    # the median over the ring's payments with known fraud nearby: it held for each of six
    # training seeds tried (0.009 to 1.7; 1.3 for this one). It does not say why: hiding the
    # labels by hand raised the device's contribution for these small models.
    ring = []
    for p in world.payments:
        if p.device_id == "dev-farm":
            ex = explain(engine, p)
            if any(c.label == "fraud" for c in ex.nodes):
                ring.append(device_contribution(ex, "dev-farm"))
    assert len(ring) >= 10
    assert statistics.median(ring) > 0
