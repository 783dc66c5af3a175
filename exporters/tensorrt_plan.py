"""ONNX -> TensorRT plan (TensorRT 10 and 11 Python API), with an optimisation profile and a timing cache.

A plan is specific to the ONNX file, the build settings, the TensorRT version and the GPU, so
its cache key holds all four: the ONNX file's sha256, the settings, ``tensorrt.__version__``,
and the GPU's name and compute capability.

Precision follows the ONNX variant (DESIGN.md): an fp16 plan is built from the fp16 ONNX, an int8
plan from the QDQ ONNX. How TensorRT is told so depends on its version (:func:`typing_mode`):

- TensorRT 10.0-10.11: a weakly typed network with the FP16 / INT8 builder flag, which allows the
  reduced-precision kernels the graph asks for.
- TensorRT 10.12-10.x: strong typing is opt-in there and the precision flags are deprecated; the
  harness opts in (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``), so every tensor keeps the type
  the ONNX graph gives it, exactly as TensorRT 11 builds the same file.
- TensorRT 11: every network is strongly typed and the precision flags are gone; no flag is set.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from engines.availability import require
from engines.tensorrt_env import recording_logger, start_failure
from exporters.artifacts import Artifact
from exporters.cache import cached_artifact
from harness.errors import HarnessError
from harness.fileio import cache_dir, write_bytes_atomic

# The first release where the harness opts in to strong typing (weak typing deprecated there),
# and the first where strong typing is the only mode (weak typing removed).
STRONG_TYPING_OPT_IN = (10, 12)
STRONG_TYPING_ONLY = (11, 0)


@dataclass(frozen=True)
class PlanSettings:
    """Build settings; all of them are part of the plan's cache key.

    The profile covers batches ``min_batch..max_batch`` (tuned for ``opt_batch``) at one image
    size ``height`` x ``width``: a fixed spatial size lets TensorRT pick its fastest kernels.
    ``tf32`` allows TF32 math in fp32 layers (off: an fp32 plan computes in fp32, like the reference).
    ``layout`` and ``channels`` give the graph input's shape: NCHW (batch, channels, height, width) or
    NHWC (batch, height, width, channels); a harness export is NCHW with 3 channels, a user's graph
    what its model card says.
    """

    precision: str = "fp32"
    height: int = 64
    width: int = 64
    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 32
    workspace_mib: int = 2048
    tf32: bool = False
    layout: str = "NCHW"
    channels: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise HarnessError(f"TensorRT profile needs 1 <= min <= opt <= max batch, got "
                               f"{self.min_batch}, {self.opt_batch}, {self.max_batch}")
        if self.layout not in ("NCHW", "NHWC") or self.channels not in (1, 3):
            raise HarnessError(f"TensorRT profile input must be NCHW or NHWC with 1 or 3 channels, got "
                               f"{self.layout} with {self.channels}")

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        """The graph input's shape at ``batch`` images."""
        if self.layout == "NHWC":
            return (batch, self.height, self.width, self.channels)
        return (batch, self.channels, self.height, self.width)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.12.0.36"`` -> ``(10, 12, 0, 36)`` (non-numeric suffixes ignored)."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:4])


def typing_mode(version: str) -> str:
    """How a plan is typed with this TensorRT version.

    ``"weak"`` (10.0-10.11: precision builder flags), ``"strong-opt-in"`` (10.12-10.x: the
    STRONGLY_TYPED creation flag, no precision flags) or ``"strong"`` (11 and later: always strong,
    no flags at all).
    """
    release = version_tuple(version)[:2]
    if release >= STRONG_TYPING_ONLY:
        return "strong"
    return "strong-opt-in" if release >= STRONG_TYPING_OPT_IN else "weak"


def strongly_typed(version: str) -> bool:
    """Whether plans are built as strongly typed networks with this TensorRT version."""
    return typing_mode(version) != "weak"


def gpu_identity() -> dict[str, str]:
    """Name and compute capability of the current CUDA device (part of the plan key)."""
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def plan_key_fields(onnx_sha256: str, settings: PlanSettings, tensorrt_version: str,
                    gpu: dict[str, str]) -> dict[str, Any]:
    """Everything a plan depends on; its sha256 is the plan's cache key."""
    return {"kind": "trt-plan", "onnx_sha256": onnx_sha256, "settings": asdict(settings),
            "tensorrt": tensorrt_version, "strongly_typed": strongly_typed(tensorrt_version), **gpu}


def build_plan(onnx: Artifact, settings: PlanSettings, group: str) -> Artifact:
    """The cached TensorRT plan of the ONNX artifact ``onnx``, building it when missing.

    ``onnx.precision`` must equal ``settings.precision``. Raises HarnessError when TensorRT or a GPU
    is missing, or when parsing or building fails (with TensorRT's first error message).
    """
    require("trt", "cuda")
    import tensorrt as trt

    if onnx.precision != settings.precision:
        raise HarnessError(f"a {settings.precision} plan is built from the {settings.precision} ONNX, "
                           f"got {onnx.precision} ({onnx.path})")
    gpu = gpu_identity()
    fields = plan_key_fields(onnx.sha256, settings, trt.__version__, gpu)
    timing_cache = _timing_cache_path(trt.__version__, gpu)
    path, sha, reused = cached_artifact(group, f"trt-{settings.precision}", fields, "model.plan",
                                        lambda p: _build(trt, onnx.path, p, settings, timing_cache))
    return Artifact(path, sha, reused, settings.precision)


def _timing_cache_path(version: str, gpu: dict[str, str]) -> Path:
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{gpu['gpu']}-sm{gpu['compute_capability']}").strip("-")
    return cache_dir() / "tensorrt" / f"timing-trt{version}-{slug}.cache"


MAX_REPORTED_ERRORS = 3


def parse_errors(parser: Any) -> str:
    """The ONNX parser's errors in one line: the first few, each with its node when the parser names it."""
    parts = []
    for i in range(min(int(parser.num_errors), MAX_REPORTED_ERRORS)):
        error = parser.get_error(i)
        desc = " ".join(str(error.desc()).split()) or "error"
        node = _call(error, "node_name") or _call(error, "node")
        operator = _call(error, "node_operator")
        where = f"node {node}" + (f" ({operator})" if operator else "") if node not in (None, "", -1) else ""
        parts.append(f"{where}: {desc}" if where else desc)
    more = int(parser.num_errors) - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "") if parts else "no error message"


def _call(obj: Any, method: str) -> Any:
    """``obj.method()`` where this TensorRT release has it (IParserError grew accessors during 10.x)."""
    try:
        return getattr(obj, method)() if hasattr(obj, method) else None
    except Exception:
        return None


def _build(trt: Any, onnx_path: Path, plan_path: Path, settings: PlanSettings, timing_path: Path) -> None:
    logger = recording_logger(trt)
    try:
        builder = trt.Builder(logger)
    except TypeError as e:  # pybind11: "factory function returned nullptr" when CUDA cannot start
        raise start_failure(e, "trt.Builder", trt.__version__, logger.record) from None
    mode = typing_mode(trt.__version__)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode == "strong-opt-in" else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise HarnessError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {parse_errors(parser)}")
    if network.num_inputs != 1:
        raise HarnessError(f"{onnx_path} has {network.num_inputs} inputs; the harness needs one image input")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if mode == "weak":
        # TensorRT 10.0-10.11: the flags allow the reduced-precision kernels the graph asks for.
        if settings.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif settings.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    if not settings.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)

    name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(name, settings.input_shape(settings.min_batch), settings.input_shape(settings.opt_batch),
                      settings.input_shape(settings.max_batch))
    config.add_optimization_profile(profile)

    try:
        cache = config.create_timing_cache(_read_timing_cache(timing_path))
        accepted = cache is not None and config.set_timing_cache(cache, False)
    except Exception:  # TensorRT raises on a damaged buffer; the cache only saves time, so start over
        accepted = False
    if not accepted:
        config.set_timing_cache(config.create_timing_cache(b""), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reason = "; ".join(logger.record.errors[:MAX_REPORTED_ERRORS]) or "no error message"
        raise HarnessError(f"TensorRT {trt.__version__} could not build a {settings.precision} plan from "
                           f"{onnx_path}: {reason}")
    write_bytes_atomic(plan_path, bytes(memoryview(serialized)))
    write_bytes_atomic(timing_path, bytes(memoryview(config.get_timing_cache().serialize())))


def _read_timing_cache(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
