"""Fixtures of the suite tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main


@pytest.fixture(scope="session")
def run_suite_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], tuple[Path, Path, Path]]:
    """``run_suite_once(name, toml)``: the suite ``toml`` run from an empty cache of its own in a new folder
    ``name``, which must succeed; returns (run directory, cache, suite file). Module fixtures call it once."""

    def run(name: str, toml: str) -> tuple[Path, Path, Path]:
        root = tmp_path_factory.mktemp(name)
        config, out, cache = root / "tiny.toml", root / "run", root / "cache"
        config.write_text(toml)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HARNESS_CACHE", str(cache))
            assert main(["suite", "--config", str(config), "--out", str(out)]) == 0
        return out, cache, config

    return run
