"""Which engines can run on this machine, and in words why not.

Checks are cheap (imports and device queries, no model): the ``engines`` command lists them, the
engine factory calls :func:`require` before any export work, and the TensorRT tests skip with
the same reason a user would see.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass

import torch

from engines.tensorrt_env import import_failure, tensorrt_conflict, tensorrt_distributions
from harness.errors import HarnessError, error_line

ENGINES = ("torch", "ort", "trt")
DEVICES = ("cpu", "cuda")
PRECISIONS = {"torch": ("fp32",), "ort": ("fp32", "fp16", "int8"), "trt": ("fp32", "fp16", "int8")}
DEFAULT_DEVICE = {"torch": "cpu", "ort": "cpu", "trt": "cuda"}
GPU_INSTALL_HINT = "README: GPU install"


@dataclass(frozen=True)
class Availability:
    """One (engine, device) pair: usable or not, the library's version, and why not (or a warning)."""

    engine: str
    device: str
    usable: bool
    version: str
    reason: str = ""

    @property
    def precisions(self) -> tuple[str, ...]:
        return PRECISIONS[self.engine]


def cuda_missing() -> str | None:
    """Why torch cannot reach an NVIDIA GPU, or None when it can."""
    if not torch.cuda.is_available():
        return "no NVIDIA GPU visible to torch (torch.cuda.is_available() is False)"
    return None


def onnxruntime_packages() -> list[str]:
    """The installed distributions that provide the ``onnxruntime`` module (more than one is a conflict)."""
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def tensorrt_missing() -> str | None:
    """Why the TensorRT engine cannot run here (missing package or native library, old version, no GPU), or None.

    An import failure is described by :func:`engines.tensorrt_env.import_failure` (what is missing and
    what installs it); builds for two CUDA majors installed side by side, the likely cause, are named too.
    """
    try:
        import tensorrt
    except Exception as e:  # a broken install fails in many ways (missing libnvinfer, CUDA runtime, driver, ...)
        conflict = tensorrt_conflict()
        return f"tensorrt cannot be imported ({error_line(e)}); {conflict}" if conflict else import_failure(e)
    version = str(getattr(tensorrt, "__version__", "0"))
    major = int((re.findall(r"\d+", version) or ["0"])[0])
    if major < 10:
        return f"tensorrt {version} is too old; the harness needs TensorRT 10 or later"
    return cuda_missing()


def _ort(device: str) -> Availability:
    import onnxruntime

    version = onnxruntime.__version__
    packages = onnxruntime_packages()
    # Both distributions write the same module folder: whichever was installed last wins, partly.
    conflict = (f"warning: {' and '.join(packages)} are both installed and share the onnxruntime module; "
                "uninstall both, then install one") if len(packages) > 1 else ""
    if device == "cpu":
        return Availability("ort", device, True, version, conflict)
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return Availability("ort", device, False, version, conflict or
                            "onnxruntime-gpu not installed (no CUDAExecutionProvider)")
    missing = cuda_missing()
    return Availability("ort", device, missing is None, version, missing or conflict)


def _trt() -> Availability:
    missing = tensorrt_missing()
    try:
        import tensorrt

        version = str(tensorrt.__version__)
    except Exception:  # reported through ``missing``; the metadata still says what is installed
        bindings = [d.version for d in tensorrt_distributions() if d.role == "bindings"]
        version = bindings[0] if bindings else "-"
    # Like the onnxruntime pair: two CUDA builds share one module folder, whichever was installed last wins.
    conflict = tensorrt_conflict()
    if missing is None:
        return Availability("trt", "cuda", True, version, f"warning: {conflict}" if conflict else "")
    return Availability("trt", "cuda", False, version, missing)


def check(engine: str, device: str) -> Availability:
    """Whether ``engine`` can run on ``device`` here."""
    if engine not in ENGINES:
        raise HarnessError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    if device not in DEVICES:
        raise HarnessError(f"unknown device {device!r}; choose from: {', '.join(DEVICES)}")
    if engine == "torch":
        missing = cuda_missing() if device == "cuda" else None
        return Availability("torch", device, missing is None, torch.__version__, missing or "")
    if engine == "ort":
        return _ort(device)
    if device != "cuda":
        return Availability("trt", device, False, "-", "TensorRT runs on an NVIDIA GPU only (use --device cuda)")
    return _trt()


def availability() -> list[Availability]:
    """Every (engine, device) pair the harness knows, in display order."""
    return [check("torch", "cpu"), check("torch", "cuda"), check("ort", "cpu"), check("ort", "cuda"),
            check("trt", "cuda")]


def require(engine: str, device: str) -> None:
    """Raise HarnessError (one line, naming what is missing) unless ``engine`` can run on ``device``."""
    status = check(engine, device)
    if not status.usable:
        hint = f" ({GPU_INSTALL_HINT})" if device == "cuda" else ""
        raise HarnessError(f"engine {engine} on {device} is not usable here: {status.reason}{hint}")
