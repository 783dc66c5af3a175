"""Fixtures of the engine tests: trained reduced models loaded the way the commands load them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from harness.commands.common import load_model
from harness.data import SegmentationData
from harness.models.normalize import SegmentationModel

Loaded = tuple[SegmentationModel, dict[str, Any]]


@pytest.fixture(scope="session")
def loaded_model(trained_model, synthetic_val: SegmentationData) -> Callable[[str], Loaded]:
    """``loaded_model(name)``: (model, source) exactly as ``load_model`` returns them for the cached checkpoint."""

    def get(name: str) -> Loaded:
        trained_model(name)  # trains and caches the checkpoint once per session
        args = argparse.Namespace(model=name, size="reduced", checkpoint=None, weights=None, data="synthetic")
        return load_model(args, synthetic_val)

    return get
