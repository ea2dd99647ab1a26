"""The GNN's inference pass in numpy: what :class:`~gnn.engine.ScoringEngine` runs on a CPU.

A server mostly scores batches of one or two. There :class:`~gnn.fused.FusedForward` spends
most of its millisecond in torch's per-call overhead: some 250 aten calls, each on a matrix of
a few dozen rows, where numpy's per-call cost is a fraction of torch's. The numpy pass is also
pruned (each layer updates only the rows a query's final state still reads, as
:func:`gnn.fused.needed_rows`) at every batch size and with capture, where torch's indexing
made pruning a loss on small batches. On demo-stream samples, one thread, it took about half
the torch pass's time from one query (0.65 against 1.25 ms) to 512 (110 against 215 µs a
query). Same function, same float32 weights: the tests hold its logits, embeddings and
captured states to the torch pass's.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import numpy as np
import torch

from gnn.fused import Forward, FusedForward
from gnn.tensorize import EdgeType, GraphBatch


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


class _Plan(NamedTuple):
    """The layout of a batch with a given set of edge types: the types in row order (those
    that receive messages first: ``types`` of them, with ``widths`` relation slots each, 0
    for the rest), each present relation's edge type, source and destination type (indices
    into ``order``) and slot within its destination, and per layer and receiving type the
    stacked weights ``(W_l [R·H, H], W_r [H, H], b [H])``."""

    order: list[str]
    types: int
    widths: np.ndarray
    edge_types: list[EdgeType]
    src_type: list[int]
    dst_type: np.ndarray
    rel_slot: np.ndarray
    weights: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


class NumpyForward:
    """:class:`~gnn.fused.FusedForward`'s inference pass in numpy, pruned, with capture.

    Each layer updates only the rows some query's final state (or a captured state) still
    reads; the rest are never computed. The weights are copied from ``fused``'s model at
    construction (re-create after loading other weights). :meth:`run` takes the same CPU
    :class:`~gnn.tensorize.GraphBatch` and returns the same :class:`~gnn.fused.Forward`, as
    tensors over the numpy results. No autograd and no ``inject``: training and the cached
    rung stay on torch.
    """

    def __init__(self, fused: FusedForward) -> None:
        if fused.trainable:
            raise ValueError("NumpyForward has no autograd: build it from an inference pass")
        self.fused = fused
        model = fused.model
        self.types = fused.types
        self.rels = fused.rels
        encoders = {t: cast(torch.nn.Linear, model.encoders[t]) for t in self.types}
        self.enc = {t: (_f32(e.weight.t()), _f32(e.bias)) for t, e in encoders.items()}
        norms = [cast(torch.nn.LayerNorm, n) for n in model.norms]
        self.norms = [(_f32(n.weight), _f32(n.bias), float(n.eps)) for n in norms]
        linear = torch.nn.Linear
        self.mlp = [
            (_f32(m.weight.t()), _f32(m.bias)) for m in model.feature_mlp if isinstance(m, linear)
        ]
        self.head = [
            (_f32(m.weight.t()), _f32(m.bias)) for m in model.head if isinstance(m, linear)
        ]
        self.f_mean, self.f_std = _f32(model.feature_mean), _f32(model.feature_std)
        self.bin_low, self.bin_scale = _f32(model.bin_low), _f32(model.bin_scale)
        self.tree_prior = bool(model.config.get("tree_prior"))
        self.hidden = int(model.config["hidden"])
        self._plans: dict[frozenset[EdgeType], _Plan] = {}

    def _plan(self, edge_types: frozenset[EdgeType]) -> _Plan:
        """What depends only on which edge types a batch has (in practice always all of
        them: :func:`~gnn.tensorize.tensorize` lists every relation), built once."""
        plan = self._plans.get(edge_types)
        if plan is None:
            present = {}
            for d, rels in self.rels.items():
                here = frozenset(et for et in rels if et in edge_types)
                if here:
                    present[d] = here
            order = [t for t in self.types if t in present]
            order += [t for t in self.types if t not in present]
            with torch.no_grad():
                weights = [
                    [
                        tuple(_f32(w) for w in self.fused._weights(layer, d, present[d]))
                        for d in present
                    ]
                    for layer in range(len(self.norms))
                ]
            slots = [
                (et, k, j)
                for j, d in enumerate(present)
                for k, et in enumerate(self.rels[d])
                if et in present[d]
            ]
            plan = self._plans[edge_types] = _Plan(
                order,
                len(present),
                np.array([len(self.rels[d]) if d in present else 0 for d in order]),
                [et for et, _, _ in slots],
                [order.index(et[0]) for et, _, _ in slots],
                np.array([j for _, _, j in slots]),
                np.array([k for _, k, _ in slots]),
                weights,  # type: ignore[arg-type]
            )
        return plan

    def run(self, batch: GraphBatch, capture: dict[str, torch.Tensor] | None = None) -> Forward:
        """The pass over ``batch``; ``capture`` as in :func:`gnn.fused.propagate`."""
        plan = self._plan(frozenset(batch.edge_index))
        order = plan.order
        n = np.array([len(batch.x[t]) for t in order])
        offset = np.zeros(len(order), dtype=np.int64)
        np.cumsum(n[:-1], out=offset[1:])
        rows_total, hidden = int(n.sum()), self.hidden
        hf = np.empty((rows_total, hidden), dtype=np.float32)
        for i, t in enumerate(order):
            w, b = self.enc[t]
            block = hf[offset[i] : offset[i] + n[i]]
            np.matmul(batch.x[t].numpy(), w, out=block)
            block += b
        np.maximum(hf, 0.0, out=hf)
        types = plan.types
        updated = int(n[:types].sum())  # rows [0, updated) get messages
        # A row's relation slots (its type's relations into it) and, for the mean's degree,
        # each edge's slot in the layout of every present type's rows one after another.
        width = np.repeat(plan.widths, n)
        slot_start = np.zeros(len(order), dtype=np.int64)
        np.cumsum((plan.widths * n)[:-1], out=slot_start[1:])
        base = np.repeat(slot_start - offset * plan.widths, n) + np.arange(rows_total) * width
        edges = [batch.edge_index[et] for et in plan.edge_types]
        counts = [e.shape[1] for e in edges]
        ends = torch.cat(edges, dim=1).numpy()
        src = ends[0] + np.repeat(offset[plan.src_type], counts)
        dst = ends[1] + np.repeat(offset[plan.dst_type], counts)
        rel = np.repeat(plan.rel_slot, counts)
        slot = base[dst] + rel
        inv_degree = (1.0 / np.bincount(slot, minlength=1)[slot]).astype(np.float32)[:, None]
        roots = offset[order.index("transaction")] + batch.root.numpy()
        cap_rows = (
            np.concatenate([r.numpy() + offset[order.index(t)] for t, r in capture.items()])
            if capture
            else None
        )
        needed = _needed_rows(len(self.norms), rows_total, roots, src, dst, cap_rows)
        caps: list[np.ndarray] = []
        for layer, need in enumerate(needed):
            if cap_rows is not None:
                caps.append(hf[cap_rows])
            if not types:
                continue
            upd = np.flatnonzero(need[:updated])
            # The compact layout: the updated rows alone, each with its type's slots.
            w_upd = width[upd]
            cbase = np.zeros(rows_total, dtype=np.int64)
            cbase[upd] = np.cumsum(w_upd) - w_upd
            agg = np.zeros((int(w_upd.sum()), hidden), dtype=np.float32)
            keep = np.flatnonzero(need[dst])
            msg = hf[src[keep]]
            msg *= inv_degree[keep]
            index = torch.from_numpy(cbase[dst[keep]] + rel[keep])
            torch.from_numpy(agg).index_add_(0, index, torch.from_numpy(msg))
            bounds = np.searchsorted(upd, [*offset[1 : types + 1], rows_total])
            bounds[types - 1 :] = len(upd)
            pre = np.empty((len(upd), hidden), dtype=np.float32)
            lo = 0
            for j, (w_l, wr, b) in enumerate(plan.weights[layer]):
                hi = int(bounds[j])
                if hi > lo:
                    block, mine = pre[lo:hi], upd[lo:hi]
                    c0 = cbase[mine[0]]
                    a = agg[c0 : c0 + (hi - lo) * plan.widths[j]].reshape(hi - lo, -1)
                    np.matmul(a, w_l, out=block)
                    block += hf[mine] @ wr
                    block += b
                lo = hi
            hf[upd] = self._norm(layer, pre, hf[upd])
        z = hf[roots]
        emb = np.concatenate([z, self._encode_features(batch.features.numpy())], axis=1)
        h = emb
        for i, (w, b) in enumerate(self.head):
            h = h @ w + b
            if i < len(self.head) - 1:
                np.maximum(h, 0.0, out=h)
        logits = h[:, 0]
        if self.tree_prior:
            if batch.prior is None:
                raise ValueError("this model adds the tree baseline's log-odds: the batch has none")
            logits = logits + batch.prior.numpy().astype(np.float32)
        captured: dict[str, torch.Tensor] = {}
        if capture:
            stacked, at = np.stack(caps, axis=1), 0
            for t, r in capture.items():
                captured[t] = torch.from_numpy(stacked[at : at + len(r)])
                at += len(r)
        return Forward(torch.from_numpy(logits), torch.from_numpy(emb), captured)

    def _norm(self, layer: int, pre: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``LayerNorm(h + relu(pre))`` of layer ``layer``, in ``pre``'s memory."""
        gamma, beta, eps = self.norms[layer]
        np.maximum(pre, 0.0, out=pre)
        pre += h
        pre -= pre.sum(axis=1, keepdims=True) * (1.0 / pre.shape[1])
        var = np.einsum("ij,ij->i", pre, pre) * (1.0 / pre.shape[1])
        pre *= (1.0 / np.sqrt(var + eps))[:, None]
        pre *= gamma
        pre += beta
        return pre

    def _encode_features(self, features: np.ndarray) -> np.ndarray:
        """:meth:`gnn.model.TemporalHeteroGNN.encode_features` in numpy."""
        f = np.sign(features) * np.log1p(np.abs(features))
        f = (f - self.f_mean) / self.f_std
        if self.bin_low.shape[1]:
            bins = np.clip((f[:, :, None] - self.bin_low) * self.bin_scale, 0.0, 1.0)
            f = np.concatenate([f, bins.reshape(len(f), -1)], axis=1)
        h = f.astype(np.float32, copy=False)
        for w, b in self.mlp:
            h = np.maximum(h @ w + b, 0.0)
        return h


def _needed_rows(
    layers: int,
    rows: int,
    roots: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    captured: np.ndarray | None,
) -> list[np.ndarray]:
    """:func:`gnn.fused.needed_rows` in numpy, plus the ``captured`` rows, whose state after
    every layer but the last is read (a capture reads each layer's input)."""
    need = np.zeros(rows, dtype=bool)
    need[roots] = True
    out = [need]
    for _ in range(layers - 1):
        before = need.copy()
        before[src[need[dst]]] = True  # what the later layer reads
        if captured is not None:
            before[captured] = True
        out.append(before)
        need = before
    return out[::-1]
