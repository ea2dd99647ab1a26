"""Turn sampled subgraphs into one batched heterogeneous graph of tensors.

Each query's subgraph stays disjoint in the batch. Node input features per type:

* ``transaction`` (8): ``log1p(amount)``, ``log1p(age_h)/5``, fraud-known, legit-known,
  label-unknown, is-query, channel is card_present, channel is ecommerce.
* entities (4): ``log1p(degree)``, ``log1p(age_h)/5`` of their latest edge, has-history,
  is one of the query's own entities.

Ages are relative to the query time, so the same neighbourhood seen at another time gives
other inputs – nothing absolute about time reaches the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from feature_stream.graph_schema import NODE_TYPES, RELATION_NAMES, TXN, message_edge_types
from feature_stream.graph_store import LABEL_FRAUD, LABEL_LEGIT, LABEL_UNKNOWN, Subgraph

ALL_EDGE_TYPES = message_edge_types()

TXN_DIM, ENTITY_DIM = 8, 4
IN_DIMS: dict[str, int] = {t: (TXN_DIM if t == "transaction" else ENTITY_DIM) for t in NODE_TYPES}

EdgeType = tuple[str, str, str]


@dataclass
class GraphBatch:
    """A batch of ``B`` query subgraphs.

    * ``x[type]``: ``[N_type, IN_DIMS[type]]`` float32
    * ``edge_index[(src, rel, dst)]``: ``[2, E]`` int64, message direction ``src → dst``
    * ``root``: ``[B]`` int64, index of each query in ``x["transaction"]``
    * ``features``: ``[B, F]`` float32 online features (already standardised if asked)
    * ``prior``: ``[B]`` float32 log-odds the model adds to its own (the tree baseline's, for
      a model trained with ``tree_prior``); ``None``: none
    """

    x: dict[str, torch.Tensor]
    edge_index: dict[EdgeType, torch.Tensor]
    root: torch.Tensor
    features: torch.Tensor
    prior: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(
            {k: v.to(device, non_blocking=True) for k, v in self.x.items()},
            {k: v.to(device, non_blocking=True) for k, v in self.edge_index.items()},
            self.root.to(device, non_blocking=True),
            self.features.to(device, non_blocking=True),
            None if self.prior is None else self.prior.to(device, non_blocking=True),
        )


def _age(age_s: float) -> float:
    return math.log1p(age_s / 3600.0) / 5.0 if age_s >= 0 else 0.0


def tensorize(subgraphs: Sequence[Subgraph], features: Sequence[Sequence[float]]) -> GraphBatch:
    """Batch subgraphs (see :class:`feature_stream.graph_store.Subgraph`) with their features."""
    if len(subgraphs) != len(features):
        raise ValueError(f"{len(subgraphs)} subgraphs but {len(features)} feature rows")
    n_types = len(NODE_TYPES)
    rows: list[list[list[float]]] = [[] for _ in range(n_types)]
    edges: dict[tuple[int, int, int], tuple[list[int], list[int]]] = {}
    root: list[int] = []
    for g in subgraphs:
        # local index → index within its type for this batch
        pos = [0] * g.num_nodes
        for i in range(g.num_nodes):
            nt = g.node_type[i]
            bucket = rows[nt]
            pos[i] = len(bucket)
            a0, a1, a2, a3 = g.node_attr[i]
            if nt == TXN:
                bucket.append(
                    [
                        math.log1p(a0),
                        _age(a1),
                        1.0 if a2 == LABEL_FRAUD else 0.0,
                        1.0 if a2 == LABEL_LEGIT else 0.0,
                        1.0 if a2 == LABEL_UNKNOWN else 0.0,
                        1.0 if i == 0 else 0.0,
                        1.0 if a3 == 0.0 else 0.0,
                        1.0 if a3 == 1.0 else 0.0,
                    ]
                )
            else:
                bucket.append(
                    [
                        math.log1p(a0),
                        _age(a1),
                        1.0 if a0 > 0 else 0.0,
                        1.0 if g.node_hop[i] == 1 else 0.0,
                    ]
                )
        root.append(pos[0])
        nt_of = g.node_type
        for s, d, r in zip(g.src, g.dst, g.rel, strict=True):
            key = (nt_of[s], r, nt_of[d])
            lst = edges.get(key)
            if lst is None:
                lst = edges[key] = ([], [])
            lst[0].append(pos[s])
            lst[1].append(pos[d])
    x = {
        NODE_TYPES[t]: (
            torch.tensor(r, dtype=torch.float32) if r else torch.zeros((0, IN_DIMS[NODE_TYPES[t]]))
        )
        for t, r in enumerate(rows)
    }
    edge_index = {
        (NODE_TYPES[s], RELATION_NAMES[r], NODE_TYPES[d]): torch.tensor([a, b], dtype=torch.long)
        for (s, r, d), (a, b) in edges.items()
    }
    # Every relation, even without edges: a convolution adds its root term to every node of
    # its destination type, so a relation left out would change a payment's embedding with
    # the other payments that happen to share its batch (and single requests from training).
    for et in ALL_EDGE_TYPES:
        if et not in edge_index:
            edge_index[et] = torch.zeros((2, 0), dtype=torch.long)
    return GraphBatch(
        x,
        edge_index,
        torch.tensor(root, dtype=torch.long),
        torch.tensor([list(f) for f in features], dtype=torch.float32),
    )
