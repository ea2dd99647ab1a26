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

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

from feature_stream.graph_schema import NODE_TYPES, RELATION_NAMES, TXN, message_edge_types
from feature_stream.graph_store import LABEL_FRAUD, LABEL_LEGIT, LABEL_UNKNOWN, Subgraph

ALL_EDGE_TYPES = message_edge_types()

TXN_DIM, ENTITY_DIM = 8, 4
IN_DIMS: dict[str, int] = {t: (TXN_DIM if t == "transaction" else ENTITY_DIM) for t in NODE_TYPES}

EdgeType = tuple[str, str, str]

_NT, _NR = len(NODE_TYPES), len(RELATION_NAMES)
# edge code (src type · R + relation) · T + dst type → its edge type
_EDGE_TYPE_OF_CODE = [
    (NODE_TYPES[c // (_NR * _NT)], RELATION_NAMES[c // _NT % _NR], NODE_TYPES[c % _NT])
    for c in range(_NT * _NR * _NT)
]


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


def tensorize(subgraphs: Sequence[Subgraph], features: Sequence[Sequence[float]]) -> GraphBatch:
    """Batch subgraphs (see :class:`feature_stream.graph_store.Subgraph`) with their features.

    Rows of a type follow the batch's node order (subgraph by subgraph, node by node); edge
    types appear in the order of their first edge, each type's edges in batch order. The
    whole batch is flattened once and computed with numpy (about 5× faster than a loop per
    node on a batch of 512 (15, 10) neighbourhoods).
    """
    if len(subgraphs) != len(features):
        raise ValueError(f"{len(subgraphs)} subgraphs but {len(features)} feature rows")
    b = len(subgraphs)
    sizes = np.fromiter((g.num_nodes for g in subgraphs), np.int64, b)
    total = int(sizes.sum())
    start = np.zeros(b, np.int64)  # each subgraph's first node in the batch
    np.cumsum(sizes[:-1], out=start[1:])
    ntype = np.fromiter(chain.from_iterable(g.node_type for g in subgraphs), np.int64, total)
    flat = chain.from_iterable(chain.from_iterable(g.node_attr for g in subgraphs))
    attr = np.fromiter(flat, np.float64, 4 * total).reshape(total, 4)
    hop = np.fromiter(chain.from_iterable(g.node_hop for g in subgraphs), np.int64, total)
    # Every node's row as an entity and as a transaction; each type takes its own rows.
    ent = np.empty((total, ENTITY_DIM))
    np.log1p(attr[:, 0], out=ent[:, 0])
    age = attr[:, 1]
    ent[:, 1] = np.where(age >= 0, np.log1p(np.maximum(age, 0.0) / 3600.0) / 5.0, 0.0)
    ent[:, 2] = attr[:, 0] > 0
    ent[:, 3] = hop == 1
    txn = np.zeros((total, TXN_DIM))
    txn[:, :2] = ent[:, :2]
    txn[:, 2] = attr[:, 2] == LABEL_FRAUD
    txn[:, 3] = attr[:, 2] == LABEL_LEGIT
    txn[:, 4] = attr[:, 2] == LABEL_UNKNOWN
    txn[start, 5] = 1.0  # the query is each subgraph's node 0
    txn[:, 6] = attr[:, 3] == 0.0
    txn[:, 7] = attr[:, 3] == 1.0
    order = np.argsort(ntype, kind="stable")  # nodes grouped by type, batch order within
    counts = np.bincount(ntype, minlength=_NT)
    first = np.zeros(_NT, np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    pos = np.empty(total, np.int64)  # each node's row within its type
    pos[order] = np.arange(total) - np.repeat(first, counts)
    x = {}
    for t, name in enumerate(NODE_TYPES):
        rows = order[first[t] : first[t] + counts[t]]
        x[name] = torch.from_numpy((txn if t == TXN else ent)[rows].astype(np.float32))
    n_edges = np.fromiter((g.num_edges for g in subgraphs), np.int64, b)
    m = int(n_edges.sum())
    shift = np.repeat(start, n_edges)
    src = np.fromiter(chain.from_iterable(g.src for g in subgraphs), np.int64, m) + shift
    dst = np.fromiter(chain.from_iterable(g.dst for g in subgraphs), np.int64, m) + shift
    rel = np.fromiter(chain.from_iterable(g.rel for g in subgraphs), np.int64, m)
    code = (ntype[src] * _NR + rel) * _NT + ntype[dst]
    edge_index: dict[EdgeType, torch.Tensor] = {}
    if m:
        by_code = np.argsort(code, kind="stable")
        codes, lo, n = np.unique(code[by_code], return_index=True, return_counts=True)
        ends = np.stack([pos[src[by_code]], pos[dst[by_code]]])
        for k in np.argsort(by_code[lo], kind="stable"):  # in order of first appearance
            et = _EDGE_TYPE_OF_CODE[codes[k]]
            edge_index[et] = torch.from_numpy(ends[:, lo[k] : lo[k] + n[k]].copy())
    # Every relation, even without edges: a convolution adds its root term to every node of
    # its destination type, so a relation left out would change a payment's embedding with
    # the other payments that happen to share its batch (and single requests from training).
    for et in ALL_EDGE_TYPES:
        if et not in edge_index:
            edge_index[et] = torch.zeros((2, 0), dtype=torch.long)
    return GraphBatch(
        x,
        edge_index,
        torch.from_numpy(pos[start]),
        torch.tensor([list(f) for f in features], dtype=torch.float32),
    )
