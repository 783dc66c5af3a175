"""scripts/gpu-check on a machine without an NVIDIA GPU: one line that says so, exit 2, nothing run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check"


def _gpu_listed() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(_gpu_listed(), reason="nvidia-smi lists a GPU here: gpu-check would run the whole GPU check")
def test_without_a_gpu_gpu_check_exits_2_with_one_line(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "gpu-check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU); nothing was checked"]
    assert list(tmp_path.iterdir()) == []  # it stopped before making its temporary cache


def test_gpu_check_is_strict_bash():
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
