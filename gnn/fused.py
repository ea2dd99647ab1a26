"""The GNN's forward pass for training, for serving on CUDA and for the cached rung:
:class:`FusedForward`, and the layer-by-layer reference :func:`propagate` (both compute
:class:`~gnn.model.TemporalHeteroGNN`'s function; the tests hold them to ``model.forward``).
On a CPU where torch has one thread, as when serving, the engine runs the same pass in
numpy (:mod:`gnn.numpy_forward`)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch_geometric.nn import SAGEConv

from gnn.model import TemporalHeteroGNN
from gnn.tensorize import EdgeType, GraphBatch


def _sage(model: TemporalHeteroGNN, layer: int, et: EdgeType) -> SAGEConv:
    sage = model.convs[layer].convs[et]  # type: ignore[index]
    if not isinstance(sage, SAGEConv):
        raise TypeError(f"expected SAGEConv for {et}, got {type(sage).__name__}")
    return sage


def _edge_types(model: TemporalHeteroGNN, layer: int) -> list[EdgeType]:
    return [et for et, _ in model.convs[layer].convs.items()]  # type: ignore[union-attr, operator]


class Forward(NamedTuple):
    """One forward pass: ``logits [B]``; ``embedding [B, 2·hidden]``, the head's input (the
    query's final hidden state, then its encoded online features); ``captured`` as in
    :func:`propagate`."""

    logits: torch.Tensor
    embedding: torch.Tensor
    captured: dict[str, torch.Tensor]


class FusedForward:
    """:class:`~gnn.model.TemporalHeteroGNN`'s forward pass, computed with fewer, larger ops.

    The model's ``HeteroConv`` runs one ``SAGEConv`` per edge type present (up to 20 per
    layer); on small batches PyG's per-call overhead is most of the time (≈15 ms for one
    query on a CPU core). Mean aggregation and ``Linear`` are linear, so for each destination
    type ``d`` and layer the same sum is::

        Σ_r [lin_l_r(mean_r(h_src)) + b_r + lin_r_r(h_d)]
          = [mean_r(h_src)]_r @ [W_l_r]_rᵀ + h_d @ (Σ_r W_r_r)ᵀ + Σ_r b_r

    over the relations ``r`` into ``d`` present in the batch: one scatter of every edge into
    a per-relation slot, two matmuls. As in ``HeteroConv``, the root terms of a relation reach
    every node of type ``d`` once any query of the batch has an edge of that relation, so a
    query's output depends a little on which relations its batch mates bring (a batch of
    one is the reference :mod:`gnn.explain` uses). The weights are read from the model at
    construction (re-create after loading other weights); :func:`propagate` is the same
    function, checked against ``model.forward`` by the tests.

    With ``trainable=True`` the stacked weights are rebuilt from the model's parameters on
    every call, inside autograd: the same pass, differentiable, for training (several times
    faster than ``HeteroConv``, whose root terms alone run one ``Linear`` per relation).

    With ``prune`` (the default) a layer updates only the nodes whose new state a query's
    final state still reads: the last layer the queries alone, the one before them and the
    nodes with an edge into them, and so on back (see :func:`needed_rows`). The rest keep a
    stale state that nothing reads, so the logits and embeddings are the unpruned pass's; on
    a (15, 10) sample the three layers update about a third of the rows they would. Capture
    and inject read every node's state, so they run unpruned, and so do batches of fewer than
    :attr:`PRUNE_FROM` queries, where the extra indexing costs more than the rows it saves
    (handbook samples, one thread: a batch of 512 takes 153 µs a query pruned against 284
    unpruned, a batch of 8 the same either way, a batch of one 70 % longer pruned).
    """

    PRUNE_FROM = 16

    def __init__(
        self, model: TemporalHeteroGNN, trainable: bool = False, prune: bool = True
    ) -> None:
        self.model = model
        self.trainable = trainable
        self.prune = prune
        self.types: list[str] = list(model.encoders.keys())
        # Relations into each destination type; every layer has the same edge types.
        self.rels: dict[str, list[EdgeType]] = {}
        for d in self.types:
            rels = [et for et in _edge_types(model, 0) if et[2] == d]
            if rels:
                self.rels[d] = rels
        for layer in range(len(model.convs)):
            if sorted(_edge_types(model, layer)) != sorted(_edge_types(model, 0)):
                raise ValueError("every layer must have the same edge types")
        self.w_l: list[dict[str, torch.Tensor]] = []  # per layer, per dst: [R·H, H]
        if not trainable:
            with torch.no_grad():
                self.w_l = [
                    {d: w.contiguous() for d, w in self._neighbour_weights(layer).items()}
                    for layer in range(len(model.convs))
                ]
        self._stacked: dict[
            tuple[int, str, frozenset[EdgeType]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
        ] = {}
        self._scratch: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, rows: int, like: torch.Tensor) -> torch.Tensor:
        """``[rows, H]`` working memory, reused across calls when not training: a fresh
        multi-megabyte tensor per layer costs page faults that are a fifth of a large
        batch's pass. The contents are whatever the last call left."""
        if self.trainable:
            return torch.empty((rows, like.shape[1]), dtype=like.dtype, device=like.device)
        buf = self._scratch.get(name)
        need = rows * like.shape[1]
        if (
            buf is None
            or buf.numel() < need
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            buf = self._scratch[name] = torch.empty(
                max(need, 2 * (0 if buf is None else buf.numel())),
                dtype=like.dtype,
                device=like.device,
            )
        return buf[:need].view(rows, like.shape[1])

    def _neighbour_weights(self, layer: int) -> dict[str, torch.Tensor]:
        return {
            d: torch.cat([_sage(self.model, layer, et).lin_l.weight for et in rels], 1).t()
            for d, rels in self.rels.items()
        }

    def _root_terms(
        self, layer: int, d: str, present: frozenset[EdgeType]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_r W_r_r)ᵀ [H, H], Σ_r b_r [H]`` over the relations ``present`` into ``d``."""
        sages = [_sage(self.model, layer, et) for et in sorted(present)]
        w = torch.stack([c.lin_r.weight for c in sages]).sum(0)
        b = torch.stack([c.lin_l.bias for c in sages]).sum(0)
        return w.t(), b

    def _weights(
        self, layer: int, d: str, present: frozenset[EdgeType]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[W_l_r]_r`` stacked over ``d``'s relation slots ``[R·H, H]``, the root term
        ``(Σ_r W_r_r)ᵀ [H, H]`` and the summed bias ``[H]`` over the relations ``present``."""
        key = (layer, d, present)
        got = None if self.trainable else self._stacked.get(key)
        if got is None:
            with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
                if self.trainable:
                    sages = [_sage(self.model, layer, et) for et in self.rels[d]]
                    w_l = torch.cat([c.lin_l.weight for c in sages], 1).t()
                else:
                    w_l = self.w_l[layer][d]
                wr, b = self._root_terms(layer, d, present)
            got = (w_l, wr if self.trainable else wr.contiguous(), b)
            if not self.trainable:
                self._stacked[key] = got
        return got

    def __call__(
        self,
        batch: GraphBatch,
        capture: dict[str, torch.Tensor] | None = None,
        inject: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits [B], captured)``; ``capture``/``inject`` as in :func:`propagate`."""
        out = self.run(batch, capture, inject)
        return out.logits, out.captured

    def run(
        self,
        batch: GraphBatch,
        capture: dict[str, torch.Tensor] | None = None,
        inject: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> Forward:
        """The pass with the head's input too (it is computed anyway: no extra cost).

        The node states of all types live in one tensor ``[N, H]``, the types that receive
        messages in this batch first, so that per layer the residual, ReLU and the layer's
        ``LayerNorm`` (shared by all types) are one op each over that prefix; each type then
        costs two matrix products written straight into the pre-activation. Outside training
        the large intermediates reuse buffers kept from call to call.
        """
        model = self.model
        present: dict[str, frozenset[EdgeType]] = {}
        for d, rels in self.rels.items():
            here = frozenset(et for et in rels if et in batch.edge_index)
            if here:
                present[d] = here
        order = [t for t in self.types if t in present] + [
            t for t in self.types if t not in present
        ]
        enc = {t: torch.relu(model.encoders[t](batch.x[t])) for t in order}
        n = {t: enc[t].shape[0] for t in order}
        offset, acc = {}, 0
        for t in order:
            offset[t] = acc
            acc += n[t]
        hf = torch.cat([enc[t] for t in order])
        sizes = [n[t] for t in order]
        updated = sum(n[d] for d in present)  # rows [0, updated) get messages
        # Shared by all layers: every edge's source row in hf, its target slot in the
        # aggregation buffer (the dst type's block start + dst row · R + relation slot) and
        # the mean's 1/degree. Type d's block is n_d · R_d slots, in the order of `present`.
        prune = self.prune and len(batch.root) >= self.PRUNE_FROM and not capture and not inject
        srcs, slots, dsts, rels_k = [], [], [], []
        slot_sizes = []
        total = 0
        for j, d in enumerate(present):
            rels = self.rels[d]
            for k, et in enumerate(rels):
                if et in present[d]:
                    ei = batch.edge_index[et]
                    srcs.append(ei[0] + offset[et[0]])
                    slots.append(ei[1] * len(rels) + (total + k))
                    if prune:  # small batches skip these ops altogether
                        dsts.append(ei[1] + offset[d])
                        rels_k.append((k, j, ei.shape[1]))
            slot_sizes.append(n[d] * len(rels))
            total += n[d] * len(rels)
        needed: list[torch.Tensor | None] = [None] * len(model.norms)
        if srcs:
            src, slot = torch.cat(srcs), torch.cat(slots)
            w = torch.bincount(slot, minlength=total).clamp_min(1).reciprocal()[slot]
            w = w.to(hf.dtype).unsqueeze(1)
            if prune:
                dst = torch.cat(dsts)
                counts = torch.tensor([c for _, _, c in rels_k])
                rel = torch.repeat_interleave(torch.tensor([k for k, _, _ in rels_k]), counts)
                kind = torch.repeat_interleave(torch.tensor([j for _, j, _ in rels_k]), counts)
                edges = (src, dst, rel.to(src.device), kind.to(src.device), w)
                roots = offset["transaction"] + batch.root
                needed = needed_rows(len(model.norms), hf.shape[0], roots, src, dst)
        cap_rows = torch.cat([rows + offset[t] for t, rows in capture.items()]) if capture else None
        caps: list[torch.Tensor] = []
        if inject:
            inj_rows = torch.cat([rows + offset[t] for t, (rows, _) in inject.items()])
            inj_emb = torch.cat([emb for _, emb in inject.values()])
        for layer, norm in enumerate(model.norms):
            if inject:
                hf = hf.index_copy(0, inj_rows, inj_emb[:, layer])
            if cap_rows is not None:
                caps.append(hf.index_select(0, cap_rows))
            if not srcs:
                continue
            need = needed[layer]
            if need is not None and not bool(need[:updated].all()):
                hf = self._pruned_layer(layer, hf, need, present, n, offset, edges)
                continue
            agg = self._buffer("agg", total, hf).zero_()
            if self.trainable:
                agg.index_add_(0, slot, hf.index_select(0, src) * w)
            else:
                msg = torch.index_select(hf, 0, src, out=self._buffer("msg", len(src), hf))
                agg.index_add_(0, slot, msg.mul_(w))
            # Σ_r mean_r W_l_r + b + h W_r per type, in the prefix's row order. Per-type views
            # come from one split (its gradient is one cat; slicing would fill a zero tensor
            # the size of hf per slice). Outside training each product is written straight
            # into the layer's pre-activation buffer (autograd does not flow through out=).
            hs, aggs = hf.split(sizes), agg.split(slot_sizes)
            if not self.trainable:
                buf = self._buffer("pre", updated, hf)
                rows = buf.split(sizes[: len(present)])
            parts = []
            for k, d in enumerate(present):  # the first types of `order`
                w_l, wr, b = self._weights(layer, d, present[d])
                a = aggs[k].view(n[d], w_l.shape[0])
                if self.trainable:
                    parts.append(torch.addmm(b, a, w_l) + hs[k] @ wr)
                else:
                    torch.addmm(b, a, w_l, out=rows[k]).addmm_(hs[k], wr)
            pre = torch.cat(parts) if self.trainable else buf
            if updated < hf.shape[0]:
                head, rest = hf.split([updated, hf.shape[0] - updated])
                hf = torch.cat([norm(head + torch.relu(pre)), rest])
            else:
                hf = norm(hf + torch.relu(pre))
        z = hf[offset["transaction"] + batch.root]
        emb = torch.cat([z, model.encode_features(batch.features)], dim=-1)
        logits = model.add_prior(model.head(emb).squeeze(-1), batch)
        captured: dict[str, torch.Tensor] = {}
        if capture:
            stacked, at = torch.stack(caps, dim=1), 0
            for t, rows in capture.items():
                captured[t] = stacked[at : at + len(rows)]
                at += len(rows)
        return Forward(logits, emb, captured)

    def _pruned_layer(
        self,
        layer: int,
        hf: torch.Tensor,
        need: torch.Tensor,
        present: dict[str, frozenset[EdgeType]],
        n: dict[str, int],
        offset: dict[str, int],
        edges: tuple[torch.Tensor, ...],
    ) -> torch.Tensor:
        """One layer over the ``need`` rows alone (``[N]`` bool over ``hf``'s rows): the
        edges into them, aggregated into a compact block per type (the needed rows in
        order, ``R_d`` slots each), two products per type, those rows written back.
        ``edges``: every edge's source row, target row, relation slot ``k`` within its
        target type, that type's position in ``present``, and the mean's weight."""
        src, dst, rel, kind, w = edges
        cpos = torch.zeros(hf.shape[0], dtype=torch.long, device=hf.device)
        rows, starts, widths, at = [], [], [], 0
        for d in present:
            local = torch.nonzero(need[offset[d] : offset[d] + n[d]]).squeeze(1)
            cpos[local + offset[d]] = torch.arange(len(local), device=hf.device)
            rows.append(local)
            starts.append(at)
            widths.append(len(self.rels[d]))
            at += len(local) * widths[-1]
        keep = need[dst]
        k_kind = kind[keep]
        start = torch.tensor(starts, device=hf.device)[k_kind]
        width = torch.tensor(widths, device=hf.device)[k_kind]
        cslot = start + cpos[dst[keep]] * width + rel[keep]
        agg = torch.zeros((at, hf.shape[1]), dtype=hf.dtype, device=hf.device)
        agg.index_add_(0, cslot, hf.index_select(0, src[keep]) * w[keep])
        aggs = agg.split([len(r) * wd for r, wd in zip(rows, widths, strict=True)])
        parts, idx = [], []
        for k, d in enumerate(present):
            if not len(rows[k]):
                continue
            w_l, wr, b = self._weights(layer, d, present[d])
            h = hf.index_select(0, rows[k] + offset[d])
            parts.append(torch.addmm(b, aggs[k].view(len(rows[k]), w_l.shape[0]), w_l) + h @ wr)
            idx.append(rows[k] + offset[d])
        at_rows = torch.cat(idx)
        new = self.model.norms[layer](hf.index_select(0, at_rows) + torch.relu(torch.cat(parts)))
        return hf.index_copy(0, at_rows, new)


def needed_rows(
    layers: int, rows: int, roots: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
) -> list[torch.Tensor | None]:
    """Per layer, the rows (``[rows]`` bool) whose state after that layer a root's final state
    reads, for message edges ``src → dst``: after the last layer the roots; after layer
    ``l`` those of layer ``l + 1`` and the sources of their edges."""
    need = torch.zeros(rows, dtype=torch.bool, device=roots.device)
    need[roots] = True
    out: list[torch.Tensor | None] = [need]
    for _ in range(layers - 1):
        need = need.clone()
        need[src[need[dst]]] = True
        out.append(need)
    return out[::-1]


def propagate(
    model: TemporalHeteroGNN,
    batch: GraphBatch,
    capture: dict[str, torch.Tensor] | None = None,
    inject: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``model.forward`` layer by layer, optionally capturing or injecting node embeddings.

    Args:
        capture: ``{type: rows}``; the inputs of every layer at those rows come back as
            ``{type: [rows, L, hidden]}``.
        inject: ``{type: (rows, emb [rows, L, hidden])}``; before layer ``l`` the embeddings
            at those rows are replaced by ``emb[:, l]``.

    Returns ``(logits [B], captured)``. Without capture or inject the logits equal
    ``model(batch)`` (a test holds the two together).
    """
    h = {t: torch.relu(enc(batch.x[t])) for t, enc in model.encoders.items()}
    caps: dict[str, list[torch.Tensor]] = {t: [] for t in capture or {}}
    for layer, (conv, norm) in enumerate(zip(model.convs, model.norms, strict=True)):
        if inject:
            for t, (rows, emb) in inject.items():
                h[t] = h[t].index_copy(0, rows, emb[:, layer])
        for t, rows in (capture or {}).items():
            caps[t].append(h[t].index_select(0, rows))
        out = conv(h, batch.edge_index)
        h = {t: norm(h[t] + torch.relu(out[t])) if t in out else h[t] for t in h}
    z = h["transaction"][batch.root]
    logits = model.head(torch.cat([z, model.encode_features(batch.features)], dim=-1)).squeeze(-1)
    return model.add_prior(logits, batch), {t: torch.stack(v, dim=1) for t, v in caps.items()}
