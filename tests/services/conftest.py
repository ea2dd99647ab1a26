"""Shared set-up for the service tests."""

from __future__ import annotations

import torch

# The API tests run a small GNN on one request at a time; a second intra-op thread only adds
# start-up stalls on a busy 2-core machine.
torch.set_num_threads(1)

from tests.services.api_harness import app, bundle  # noqa: E402, F401 - shared fixtures
