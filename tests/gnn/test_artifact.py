"""The model artifact: what it records and which artifacts it refuses to load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from feature_stream.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from gnn.artifact import ARTIFACT_FORMAT, ModelBundle, load_artifact, save_artifact
from gnn.baseline import TreeBaseline
from gnn.model import TemporalHeteroGNN


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, len(FEATURE_NAMES)))
    bundle = ModelBundle(
        TemporalHeteroGNN(len(FEATURE_NAMES), hidden=8, layers=2),
        TreeBaseline(max_iter=5).fit(x, (x[:, 0] > 0).astype(int)),
        {"version": "v-artifact", "fanouts": [4, 2]},
    )
    return save_artifact(tmp_path / "model", bundle, "# card\n")


def test_manifest_records_schema_and_config(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["artifact_format"] == ARTIFACT_FORMAT
    assert manifest["feature_schema"] == list(FEATURE_NAMES)
    assert manifest["feature_schema_version"] == FEATURE_SCHEMA_VERSION
    assert manifest["gnn_config"]["hidden"] == 8
    assert manifest["gnn_config"]["layers"] == 2
    assert (saved / "MODEL_CARD.md").read_text() == "# card\n"
    loaded = load_artifact(saved)
    assert (loaded.version, loaded.fanouts) == ("v-artifact", (4, 2))
    assert not loaded.gnn.training


def edit_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_refuses_another_feature_schema(saved: Path) -> None:
    edit_manifest(saved, feature_schema=[*FEATURE_NAMES, "new_feature"])
    with pytest.raises(ValueError, match="feature schema"):
        load_artifact(saved)


def test_refuses_another_artifact_format(saved: Path) -> None:
    edit_manifest(saved, artifact_format=ARTIFACT_FORMAT + 1)
    with pytest.raises(ValueError, match="artifact format"):
        load_artifact(saved)


def test_missing_artifact_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="riskgraph train"):
        load_artifact(tmp_path / "nothing-here")


def test_an_artifact_from_before_the_feature_bins_still_loads(saved: Path) -> None:
    state = torch.load(saved / "gnn.pt", weights_only=True)
    for name in ("bin_low", "bin_scale"):
        del state[name]  # what an artifact trained before the piecewise-linear encoding holds
    torch.save(state, saved / "gnn.pt")
    manifest = json.loads((saved / "manifest.json").read_text())
    for key in ("feature_bins", "tree_prior"):
        del manifest["gnn_config"][key]
    (saved / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_artifact(saved)
    assert loaded.gnn.bin_low.shape == (len(FEATURE_NAMES), 0)
    assert not loaded.gnn.config["tree_prior"]


def test_a_missing_weight_is_still_refused(saved: Path) -> None:
    state = torch.load(saved / "gnn.pt", weights_only=True)
    del state["head.0.weight"]
    torch.save(state, saved / "gnn.pt")
    with pytest.raises(RuntimeError, match=r"head\.0\.weight"):
        load_artifact(saved)
