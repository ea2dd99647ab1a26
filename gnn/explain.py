"""Which nodes and edges of the served subgraph drove a score: occlusion over the GNN.

:func:`explain` samples the neighbourhood the full rung serves (the artifact's fan-outs; the
sampler is deterministic, most recent first, and uses only data from before the payment's
time), then reruns the GNN without each non-query node (and its edges) and without each edge
alone. A contribution is ``logit(full) − logit(without it)``: positive pushed the score up.
Contributions are in logit units and compare within one explanation; they do not add up to
the logit (the model is not additive). Only message passing is occluded: what the sampler
recorded about the other nodes (an entity's stored degree, a payment's label) is left as is.

All variants go through the GNN in a few batched passes. The subgraph is tensorised once and
repeated, each copy keeping the edges its variant keeps; a removed node keeps its row but no
edge, and an isolated node sends no message, so this is the same as deleting it. A batch
always carries every relation (:func:`gnn.tensorize.tensorize`), so copies do not disturb one
another: every logit equals that of its variant scored alone, and the unmodified one is the
full-rung score of the payment.

Cost: ``1 + (N − 1) + E`` copies of an ``N``-node, ``E``-edge subgraph; about ``10⁵`` node rows
go through each pass (a ~100-node subgraph is one or two passes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from feature_stream.events import Payment
from feature_stream.graph_schema import NODE_TYPES, RELATION_NAMES, TXN
from feature_stream.graph_store import LABEL_FRAUD, LABEL_LEGIT, Subgraph
from gnn.engine import ScoringEngine, to_device
from gnn.tensorize import EdgeType, GraphBatch

ROWS_PER_PASS = 100_000  # node rows per forward pass: bounds memory on large subgraphs


@dataclass(frozen=True, slots=True)
class NodeContribution:
    """A non-query node of the subgraph and what removing it (with its edges) changes."""

    index: int  # local index in the sampled subgraph (0, the query, is never listed)
    type: str  # one of feature_stream.graph_schema.NODE_TYPES
    id: str
    hop: int  # 1: one of the payment's own entities; 2..: sampled hops
    label: str | None  # transactions: "fraud", "legit" or "unknown" as known before t; else None
    contribution: float  # logit(full) − logit(without this node)


@dataclass(frozen=True, slots=True)
class EdgeContribution:
    """One message edge ``src → dst`` of the subgraph and what removing it alone changes."""

    index: int  # position in the subgraph's edge lists
    src: int  # local node indices (0 is the query)
    dst: int
    relation: str  # one of feature_stream.graph_schema.RELATION_NAMES
    time: float  # POSIX seconds; the payment's own edges carry its time
    src_type: str
    src_id: str
    dst_type: str
    dst_id: str
    contribution: float  # logit(full) − logit(without this edge)


@dataclass
class Explanation:
    """The GNN's full-rung answer for one payment, broken down over its served subgraph.

    ``nodes`` and ``edges`` are sorted by ``|contribution|``, largest first (ties by index).
    """

    transaction_id: str
    t: float  # the payment's time (POSIX seconds): nothing at or after it was used
    score: float
    logit: float
    nodes: list[NodeContribution]
    edges: list[EdgeContribution]

    def top_entities(self, n: int = 5) -> list[NodeContribution]:
        """The ``n`` most influential devices, accounts, cards, IPs and merchants (among
        ``nodes``: those kept by ``explain(..., top=...)``)."""
        return [c for c in self.nodes if c.type != NODE_TYPES[TXN]][:n]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types only."""
        return {
            "transaction_id": self.transaction_id,
            "t": self.t,
            "score": self.score,
            "logit": self.logit,
            "nodes": [asdict(c) for c in self.nodes],
            "edges": [asdict(c) for c in self.edges],
        }


def explain(engine: ScoringEngine, payment: Payment, top: int | None = None) -> Explanation:
    """Occlusion contributions of the nodes and edges of ``payment``'s full-rung subgraph.

    Args:
        top: keep only the ``top`` largest nodes and edges (all are computed).

    Raises :class:`~feature_stream.feature_store.FeatureStoreUnavailable` when the online
    features cannot be read (an explanation of a degraded score would mislead).
    """
    if top is not None and top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    prep = engine.prepare([payment])
    g = prep.subgraphs[0]
    full, without_node, without_edge = occlusion_logits(engine, g, prep.features[0].values)
    nodes = [
        NodeContribution(
            index=i,
            type=NODE_TYPES[g.node_type[i]],
            id=g.node_id[i],
            hop=g.node_hop[i],
            label=_label(g, i),
            contribution=full - without_node[i - 1],
        )
        for i in range(1, g.num_nodes)
    ]
    edges = [
        EdgeContribution(
            index=e,
            src=s,
            dst=d,
            relation=RELATION_NAMES[g.rel[e]],
            time=g.edge_ts[e],
            src_type=NODE_TYPES[g.node_type[s]],
            src_id=g.node_id[s],
            dst_type=NODE_TYPES[g.node_type[d]],
            dst_id=g.node_id[d],
            contribution=full - without_edge[e],
        )
        for e, (s, d) in enumerate(zip(g.src, g.dst, strict=True))
    ]
    nodes.sort(key=lambda c: (-abs(c.contribution), c.index))
    edges.sort(key=lambda c: (-abs(c.contribution), c.index))
    return Explanation(
        transaction_id=payment.event_id,
        t=g.t,
        score=float(torch.sigmoid(torch.tensor(full))),
        logit=full,
        nodes=nodes[:top],
        edges=edges[:top],
    )


def _label(g: Subgraph, i: int) -> str | None:
    if g.node_type[i] != TXN:
        return None
    code = g.node_attr[i][2]
    return "fraud" if code == LABEL_FRAUD else "legit" if code == LABEL_LEGIT else "unknown"


def occlusion_logits(
    engine: ScoringEngine, g: Subgraph, features: Sequence[float]
) -> tuple[float, list[float], list[float]]:
    """``(logit, [logit without node i for i in 1..N-1], [logit without edge e])``.

    Each logit is what the engine's GNN gives that variant of ``g`` scored alone.
    """
    n, m = g.num_nodes, g.num_edges
    with torch.inference_mode():
        base = engine.bundle.batch([g], [features])
        types = list(base.edge_index)  # edge types of g, in tensorize's order
        code = {et: k for k, et in enumerate(types)}
        nt = [NODE_TYPES[c] for c in g.node_type]
        edges = zip(g.src, g.dst, g.rel, strict=True)
        edge_type = torch.tensor(
            [code[(nt[s], RELATION_NAMES[r], nt[d])] for s, d, r in edges], dtype=torch.long
        )
        # keep[v, e]: variant v keeps edge e. Variant 0 is g; 1..n-1 drop node v; then each
        # edge alone. A node with one edge is the same variant as that edge: run it once.
        src, dst = torch.tensor(g.src, dtype=torch.long), torch.tensor(g.dst, dtype=torch.long)
        dropped = torch.arange(1, n).unsqueeze(1)
        keep = torch.cat(
            [
                torch.ones((1, m), dtype=torch.bool),
                (src != dropped) & (dst != dropped),
                ~torch.eye(m, dtype=torch.bool),
            ]
        )
        keep, variant_of = torch.unique(keep, dim=0, return_inverse=True)
        # Columns of each edge type's edge_index are its edges in subgraph order (tensorize).
        cols = [torch.nonzero(edge_type == k).squeeze(1) for k in range(len(types))]
        per_pass = max(1, ROWS_PER_PASS // n)
        logits = torch.empty(keep.shape[0])
        for lo in range(0, keep.shape[0], per_pass):
            batch = _replicate(base, types, cols, keep[lo : lo + per_pass])
            out = engine.run_pass(to_device(batch, engine.device))
            logits[lo : lo + per_pass] = out.logits.float().cpu()
        values = logits[variant_of].tolist()
    return values[0], values[1:n], values[n:]


def _replicate(
    base: GraphBatch, types: list[EdgeType], cols: list[torch.Tensor], keep: torch.Tensor
) -> GraphBatch:
    """``keep.shape[0]`` copies of a one-query batch, copy ``j`` with the edges ``keep[j]``.

    ``types`` are every edge type of the base batch and ``cols[k]`` the subgraph's edges of
    ``types[k]`` in column order (a type may end up with no edges: it stays in the batch).
    """
    v = keep.shape[0]
    n = {t: x.shape[0] for t, x in base.x.items()}
    edge_index = {}
    for et, c in zip(types, cols, strict=True):
        j, col = torch.nonzero(keep[:, c], as_tuple=True)
        shift = torch.tensor([[n[et[0]]], [n[et[2]]]]) * j
        edge_index[et] = base.edge_index[et][:, col] + shift
    return GraphBatch(
        {t: x.repeat(v, 1) for t, x in base.x.items()},
        edge_index,
        base.root + torch.arange(v) * n[NODE_TYPES[TXN]],
        base.features.repeat(v, 1),
        None if base.prior is None else base.prior.repeat(v),
    )
