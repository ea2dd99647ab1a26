"""The versioned model artifact: everything the API needs, nothing from training.

Layout of an artifact directory::

    manifest.json   version, created_at, feature schema, fanouts, GNN config, metrics, data window
    gnn.pt          GNN state dict (weights + feature scaling buffers)
    baseline.pkl    the tree model (fallback)
    MODEL_CARD.md   intended use, data, metrics, limits
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from feature_stream.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from feature_stream.graph_store import Subgraph
from gnn.baseline import TreeBaseline
from gnn.model import TemporalHeteroGNN
from gnn.reasons import NO_RULE, RULE_CODES
from gnn.tensorize import GraphBatch, tensorize

ARTIFACT_FORMAT = 1


@dataclass
class ModelBundle:
    """A loaded artifact."""

    gnn: TemporalHeteroGNN
    baseline: TreeBaseline
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def fanouts(self) -> tuple[int, ...]:
        return tuple(self.manifest["fanouts"])

    @cached_property  # read on every policy-rung batch; the manifest does not change
    def rule_rates(self) -> dict[str, float] | None:
        """The feature rules' fraud rates on the training window (:func:`gnn.reasons.rule_rates`)
        for the policy rung; ``None`` for an artifact that does not record one for every rule
        this build has (trained before they were recorded, or before a rule was added)."""
        rates = self.manifest.get("rule_rates")
        if not isinstance(rates, dict) or not {*RULE_CODES, NO_RULE} <= rates.keys():
            return None
        return {k: float(v) for k, v in rates.items()}

    def batch(self, subgraphs: Sequence[Subgraph], rows: Sequence[Sequence[float]]) -> GraphBatch:
        """The GNN's input for sampled subgraphs and their online feature rows: the tensors,
        plus the tree baseline's log-odds if the GNN adds them (``tree_prior``)."""
        batch = tensorize(subgraphs, rows)
        if self.gnn.config.get("tree_prior") and len(rows):
            batch.prior = torch.from_numpy(self.baseline.raw(rows)).float()
        return batch


def save_artifact(path: Path, bundle: ModelBundle, model_card: str) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    manifest = dict(bundle.manifest)
    manifest.update(
        artifact_format=ARTIFACT_FORMAT,
        feature_schema=list(FEATURE_NAMES),
        feature_schema_version=FEATURE_SCHEMA_VERSION,
        gnn_config=bundle.gnn.config,
    )
    torch.save(bundle.gnn.state_dict(), path / "gnn.pt")
    with open(path / "baseline.pkl", "wb") as fh:
        pickle.dump(bundle.baseline, fh)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    (path / "MODEL_CARD.md").write_text(model_card)
    return path


def load_artifact(path: Path) -> ModelBundle:
    """Load an artifact, refusing one whose feature schema differs from this code's."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"no model artifact at {path} (missing manifest.json); train one with `riskgraph train`"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("artifact_format") != ARTIFACT_FORMAT:
        raise ValueError(
            f"artifact format {manifest.get('artifact_format')} is not {ARTIFACT_FORMAT}"
        )
    if manifest.get("feature_schema") != list(FEATURE_NAMES):
        raise ValueError("artifact feature schema differs from this build's FEATURE_NAMES")
    gnn = TemporalHeteroGNN(**manifest["gnn_config"])
    state = torch.load(path / "gnn.pt", map_location="cpu", weights_only=True)
    for name, buf in gnn.state_dict().items():
        if name not in state and buf.numel() == 0:
            state[name] = buf  # a buffer added since, empty where its option is off
    gnn.load_state_dict(state)
    gnn.eval()
    with open(path / "baseline.pkl", "rb") as fh:
        baseline = pickle.load(fh)
    if not isinstance(baseline, TreeBaseline):
        raise TypeError("baseline.pkl does not hold a TreeBaseline")
    return ModelBundle(gnn, baseline, manifest)
