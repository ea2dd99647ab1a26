"""The heterogeneous temporal GNN that scores a transaction from its sampled neighbourhood."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import HeteroConv, SAGEConv

from feature_stream.graph_schema import NODE_TYPES, message_edge_types
from gnn.tensorize import IN_DIMS, GraphBatch


class TemporalHeteroGNN(nn.Module):
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    """Per-type encoders → ``layers`` rounds of relation-wise GraphSAGE (mean aggregation, so
    the output does not depend on neighbour order) with residuals → the query transaction's
    embedding, concatenated with its encoded online features → logit.

    Args:
        n_features: width of the online feature vector.
        hidden: embedding width.
        layers: message-passing rounds; ``len(fanouts) + 1`` lets the furthest sampled hop
            reach the query.
        feature_mean, feature_std: standardisation of the online features (``[F]``), stored in
            the state dict so a loaded model needs nothing else.
    """

    def __init__(
        self, n_features: int, hidden: int = 64, layers: int = 3, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.config = {
            "n_features": n_features,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
        }
        self.encoders = nn.ModuleDict({t: nn.Linear(IN_DIMS[t], hidden) for t in NODE_TYPES})
        self.convs = nn.ModuleList(
            HeteroConv({et: SAGEConv(hidden, hidden) for et in message_edge_types()}, aggr="sum")
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.feature_mlp = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))

    @staticmethod
    def compress(features: torch.Tensor) -> torch.Tensor:
        """``sign(x) · log1p(|x|)``: counts and ratios are heavy-tailed; trees do not care,
        a linear layer does."""
        return torch.sign(features) * torch.log1p(features.abs())

    def set_feature_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardisation of the *compressed* features (see :meth:`compress`)."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-6))

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        """Logits ``[B]`` for the batch's query transactions."""
        h = {t: torch.relu(enc(batch.x[t])) for t, enc in self.encoders.items()}
        for conv, norm in zip(self.convs, self.norms, strict=True):
            out = conv(h, batch.edge_index)
            h = {t: norm(h[t] + torch.relu(out[t])) if t in out else h[t] for t in h}
        z = h["transaction"][batch.root]
        f = (self.compress(batch.features) - self.feature_mean) / self.feature_std
        return self.head(torch.cat([z, self.feature_mlp(f)], dim=-1)).squeeze(-1)

    @torch.inference_mode()
    def predict(self, batch: GraphBatch) -> torch.Tensor:
        """Fraud probabilities ``[B]`` in [0, 1]."""
        return torch.sigmoid(self.forward(batch))
