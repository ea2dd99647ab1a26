"""Shared set-up for the backtest option tests: one small generated stream per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_stream.generator import generate
from tests.factories import SMALL_STREAM


@pytest.fixture(scope="session")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stream")
    generate(SMALL_STREAM, directory, progress=False)
    return directory
