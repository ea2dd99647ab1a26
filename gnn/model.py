"""The heterogeneous temporal GNN that scores a transaction from its sampled neighbourhood."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import HeteroConv, SAGEConv

from feature_stream.graph_schema import NODE_TYPES, message_edge_types
from gnn.tensorize import IN_DIMS, GraphBatch


class TemporalHeteroGNN(nn.Module):
    """Per-type encoders → ``layers`` rounds of relation-wise GraphSAGE (mean aggregation, so
    the output does not depend on neighbour order) with residuals → the query transaction's
    embedding, concatenated with its encoded online features → logit.

    The query's own online features reach the head directly (a skip path beside message
    passing), so the graph adds to the tabular signal instead of relearning it. They are
    compressed (:meth:`compress`), standardised and, with ``feature_bins > 0``, also given a
    piecewise-linear encoding (:meth:`encode_features`): an MLP then draws a sharp threshold
    ("amount above 220") as easily as a tree does.

    Args:
        n_features: width of the online feature vector.
        hidden: embedding width.
        layers: message-passing rounds; ``len(fanouts) + 1`` lets the furthest sampled hop
            reach the query.
        feature_bins: bins of the piecewise-linear feature encoding (0: standardised values
            only, as artifacts from before it have).
        tree_prior: the logit is the batch's ``prior`` (the artifact's tree baseline, in
            log-odds) plus the network's output, so the network learns what the graph adds to
            the tree, as in "Boost then Convolve" (Ivanov & Prokhorenkova, ICLR 2021). The
            engine fills ``prior``; a batch without one raises.
        feature_mean, feature_std: standardisation of the online features (``[F]``), stored in
            the state dict so a loaded model needs nothing else; so are the bins
            (``bin_low``, ``bin_scale``: ``[F, feature_bins]``).
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    bin_low: torch.Tensor
    bin_scale: torch.Tensor

    def __init__(
        self,
        n_features: int,
        hidden: int = 64,
        layers: int = 3,
        dropout: float = 0.1,
        feature_bins: int = 0,
        tree_prior: bool = False,
    ) -> None:
        super().__init__()
        if feature_bins < 0:
            raise ValueError("feature_bins must be >= 0")
        self.config = {
            "n_features": n_features,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
            "feature_bins": feature_bins,
            "tree_prior": tree_prior,
        }
        self.encoders = nn.ModuleDict({t: nn.Linear(IN_DIMS[t], hidden) for t in NODE_TYPES})
        self.convs = nn.ModuleList(
            HeteroConv({et: SAGEConv(hidden, hidden) for et in message_edge_types()}, aggr="sum")
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.feature_mlp = nn.Sequential(
            nn.Linear(n_features * (1 + feature_bins), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        # Until fitted (set_feature_bins): equal-width bins over ±3 standard deviations.
        edges = torch.linspace(-3.0, 3.0, feature_bins + 1)
        self.register_buffer("bin_low", edges[:-1].repeat(n_features, 1))
        self.register_buffer(
            "bin_scale", torch.full((n_features, feature_bins), feature_bins / 6.0)
        )

    @staticmethod
    def compress(features: torch.Tensor) -> torch.Tensor:
        """``sign(x) · log1p(|x|)``: counts and ratios are heavy-tailed; trees do not care,
        a linear layer does."""
        return torch.sign(features) * torch.log1p(features.abs())

    def set_feature_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardisation of the *compressed* features (see :meth:`compress`)."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-6))

    def set_feature_bins(self, standardised: torch.Tensor) -> None:
        """Bin edges at the quantiles of standardised training features ``[N, F]``; a feature
        with fewer distinct quantiles gets fewer bins (the others stay empty: always 0)."""
        n_bins = int(self.config["feature_bins"])
        if n_bins == 0:
            return
        q = torch.quantile(standardised.float(), torch.linspace(0, 1, n_bins + 1), dim=0).T
        low = torch.zeros_like(self.bin_low)
        scale = torch.zeros_like(self.bin_scale)
        for j in range(q.shape[0]):
            edges = torch.unique(q[j])
            k = len(edges) - 1
            if k > 0:
                low[j, :k] = edges[:-1]
                scale[j, :k] = 1.0 / (edges[1:] - edges[:-1])
        self.bin_low.copy_(low)
        self.bin_scale.copy_(scale)

    def fit_feature_encoding(self, features: torch.Tensor) -> None:
        """Scaling and bins from raw training features ``[N, F]``."""
        c = self.compress(features)
        self.set_feature_scaling(c.mean(0), c.std(0))
        self.set_feature_bins((c - self.feature_mean) / self.feature_std)

    def encode_features(self, features: torch.Tensor) -> torch.Tensor:
        """Raw online features ``[B, F]`` → ``[B, hidden]``: standardised (after
        :meth:`compress`) and, per bin ``[lo, hi)`` of each feature, the piecewise-linear code
        ``clamp((x - lo) / (hi - lo), 0, 1)`` (1 for bins below x, 0 above)."""
        f = (self.compress(features) - self.feature_mean) / self.feature_std
        if self.bin_low.shape[1]:
            bins = ((f.unsqueeze(-1) - self.bin_low) * self.bin_scale).clamp(0.0, 1.0)
            f = torch.cat([f, bins.flatten(1)], dim=-1)
        return self.feature_mlp(f)

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        """Logits ``[B]`` for the batch's query transactions."""
        h = {t: torch.relu(enc(batch.x[t])) for t, enc in self.encoders.items()}
        for conv, norm in zip(self.convs, self.norms, strict=True):
            out = conv(h, batch.edge_index)
            h = {t: norm(h[t] + torch.relu(out[t])) if t in out else h[t] for t in h}
        z = h["transaction"][batch.root]
        out = self.head(torch.cat([z, self.encode_features(batch.features)], dim=-1)).squeeze(-1)
        return self.add_prior(out, batch)

    def add_prior(self, logits: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        """``logits`` plus the batch's prior if the model was trained with one."""
        if not self.config.get("tree_prior"):
            return logits
        if batch.prior is None:
            raise ValueError("this model adds the tree baseline's log-odds: the batch has none")
        return logits + batch.prior.to(logits.dtype)

    @torch.inference_mode()
    def predict(self, batch: GraphBatch) -> torch.Tensor:
        """Fraud probabilities ``[B]`` in [0, 1]."""
        return torch.sigmoid(self.forward(batch))
