"""Batching subgraphs into typed tensors: shapes, index ranges, and the query rows."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from feature_stream.features import FEATURE_NAMES
from feature_stream.graph_schema import NODE_TYPES, RELATION_NAMES, message_edge_types
from feature_stream.graph_store import LABEL_FRAUD, LABEL_LEGIT, LABEL_UNKNOWN, Subgraph
from gnn.tensorize import ENTITY_DIM, IN_DIMS, TXN_DIM, tensorize
from tests.gnn.conftest import World


@pytest.fixture(scope="module")
def batch_inputs(world: World) -> tuple[list[Subgraph], list[list[float]]]:
    return world.prepared.subgraphs[:40], world.rows[:40]


def test_shapes(batch_inputs: tuple[list[Subgraph], list[list[float]]]) -> None:
    subgraphs, rows = batch_inputs
    b = tensorize(subgraphs, rows)
    per_type = Counter(NODE_TYPES[t] for g in subgraphs for t in g.node_type)
    assert set(b.x) == set(NODE_TYPES)
    for name in NODE_TYPES:
        assert b.x[name].dtype == torch.float32
        assert tuple(b.x[name].shape) == (per_type[name], IN_DIMS[name])
    assert (IN_DIMS["transaction"], IN_DIMS["account"]) == (TXN_DIM, ENTITY_DIM)
    assert tuple(b.features.shape) == (len(subgraphs), len(FEATURE_NAMES))
    assert torch.equal(b.features, torch.tensor(rows, dtype=torch.float32))
    assert tuple(b.root.shape) == (len(subgraphs),)
    assert b.root.dtype == torch.long


def test_edges_are_in_range_per_type_and_none_are_lost(
    batch_inputs: tuple[list[Subgraph], list[list[float]]],
) -> None:
    subgraphs, rows = batch_inputs
    b = tensorize(subgraphs, rows)
    # every relation is in the batch, with or without edges (see tensorize)
    assert set(b.edge_index) == set(message_edge_types())
    assert all(ei.dtype == torch.long and ei.shape[0] == 2 for ei in b.edge_index.values())
    with_edges = {et: ei for et, ei in b.edge_index.items() if ei.shape[1]}
    for (src, rel, dst), ei in with_edges.items():
        assert rel in RELATION_NAMES
        assert int(ei.min()) >= 0
        assert int(ei[0].max()) < b.x[src].shape[0]
        assert int(ei[1].max()) < b.x[dst].shape[0]
    expected = Counter(
        (NODE_TYPES[g.node_type[s]], RELATION_NAMES[r], NODE_TYPES[g.node_type[d]])
        for g in subgraphs
        for s, d, r in zip(g.src, g.dst, g.rel, strict=True)
    )
    assert Counter({k: v.shape[1] for k, v in b.edge_index.items() if v.shape[1]}) == expected


def test_roots_are_the_queries(batch_inputs: tuple[list[Subgraph], list[list[float]]]) -> None:
    subgraphs, rows = batch_inputs
    b = tensorize(subgraphs, rows)
    txn = b.x["transaction"]
    assert int(txn[:, 5].sum()) == len(subgraphs)  # exactly one is-query row per subgraph
    assert torch.equal(txn[b.root, 5], torch.ones(len(subgraphs)))
    assert len(set(b.root.tolist())) == len(subgraphs)
    amounts = torch.tensor([math.log1p(g.node_attr[0][0]) for g in subgraphs])
    torch.testing.assert_close(txn[b.root, 0], amounts)
    # every query receives one edge per own entity
    into_root: Counter[int] = Counter()
    root_of = {int(r): i for i, r in enumerate(b.root)}
    for (_, _, dst), ei in b.edge_index.items():
        if dst == "transaction":
            into_root.update(root_of[int(d)] for d in ei[1] if int(d) in root_of)
    assert [into_root[i] for i in range(len(subgraphs))] == [
        sum(1 for d in g.dst if d == 0) for g in subgraphs
    ]


def test_label_and_history_flags() -> None:
    g = Subgraph(
        t=100.0,
        node_type=[0, 0, 0, 1, 1],
        node_id=["q", "fraud", "legit", "acct", "quiet"],
        node_attr=[
            (10.0, 0.0, -1.0, 1.0),
            (5.0, 3600.0, 1.0, 0.0),
            (5.0, 7200.0, 0.0, 2.0),
            (3.0, 60.0, 0.0, 0.0),
            (0.0, -1.0, 0.0, 0.0),
        ],
        node_hop=[0, 2, 2, 1, 3],
        src=[3, 1, 2, 4],
        dst=[0, 3, 3, 2],
        rel=[0, 0, 0, 0],
        edge_ts=[100.0, 50.0, 40.0, 30.0],
    )
    b = tensorize([g], [[0.0] * len(FEATURE_NAMES)])
    txn, acct = b.x["transaction"], b.x["account"]
    assert txn[:, 2:5].tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]  # fraud, legit, unknown
    assert txn[:, 5].tolist() == [1, 0, 0]  # is-query
    assert txn[:, 6:8].tolist() == [[0, 1], [1, 0], [0, 0]]  # card_present, ecommerce
    assert txn[1, 1].item() == pytest.approx(math.log1p(1.0) / 5)  # one hour old
    assert acct[:, 2:4].tolist() == [[1, 1], [0, 0]]  # has-history, own entity
    assert acct[1, 1].item() == 0.0  # no history: no age


def test_mismatched_lengths_are_rejected(
    batch_inputs: tuple[list[Subgraph], list[list[float]]],
) -> None:
    subgraphs, rows = batch_inputs
    with pytest.raises(ValueError, match="feature rows"):
        tensorize(subgraphs, rows[:-1])


def one_node_at_a_time(subgraphs: list[Subgraph]) -> tuple[dict[str, list], dict[tuple, list]]:
    """The module docstring's inputs, node by node and edge by edge (the reference)."""
    x: dict[str, list] = {t: [] for t in NODE_TYPES}
    edges: dict[tuple, list] = {}
    for g in subgraphs:
        pos = []
        for i, (nt, (a0, a1, a2, a3)) in enumerate(zip(g.node_type, g.node_attr, strict=True)):
            name = NODE_TYPES[nt]
            pos.append(len(x[name]))
            age = math.log1p(a1 / 3600) / 5 if a1 >= 0 else 0.0
            if name == "transaction":
                flags = [a2 == LABEL_FRAUD, a2 == LABEL_LEGIT, a2 == LABEL_UNKNOWN, i == 0]
                x[name].append([math.log1p(a0), age, *flags, a3 == 0.0, a3 == 1.0])
            else:
                x[name].append([math.log1p(a0), age, a0 > 0, g.node_hop[i] == 1])
        for s, d, r in zip(g.src, g.dst, g.rel, strict=True):
            et = (NODE_TYPES[g.node_type[s]], RELATION_NAMES[r], NODE_TYPES[g.node_type[d]])
            edges.setdefault(et, []).append((pos[s], pos[d]))
    return x, edges


def test_the_batch_equals_the_node_by_node_reference(world: World) -> None:
    subgraphs = world.prepared.subgraphs
    b = tensorize(subgraphs, world.rows)
    x, edges = one_node_at_a_time(subgraphs)
    for name in NODE_TYPES:
        want = torch.tensor(x[name], dtype=torch.float32).reshape(-1, IN_DIMS[name])
        torch.testing.assert_close(b.x[name], want, rtol=1e-6, atol=1e-7)
    assert list(b.edge_index)[: len(edges)] == list(edges)  # first-appearance order
    for et, pairs in edges.items():
        assert b.edge_index[et].t().tolist() == [list(p) for p in pairs]
