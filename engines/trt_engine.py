"""The ``trt`` engine: a serialized TensorRT plan run with the TensorRT 10 / 11 Python API.

Tensors are addressed by name (no bindings): ``set_input_shape`` for the batch at hand,
``set_tensor_address`` with device buffers that are torch CUDA tensors, and
``execute_async_v3`` on a torch CUDA stream.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engines.availability import require
from engines.base import Engine, EngineInfo
from engines.tensorrt_env import recording_logger, start_failure
from exporters.cache import MANIFEST
from harness.errors import HarnessError, error_line
from harness.fileio import sha256_file

if TYPE_CHECKING:
    from harness.targets.card import ModelCard

_CARD_DTYPES = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}


def _torch_dtype(trt: Any, dtype: Any, card: ModelCard | None = None) -> torch.dtype:
    """The torch dtype of a plan's I/O tensor: float32/float16, and with a model card the 8-bit input and the
    integer class maps a user's plan may have."""
    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if card is not None:
        table.update({trt.uint8: torch.uint8, trt.int32: torch.int32})
        if hasattr(trt, "int64"):
            table[trt.int64] = torch.int64
    if dtype not in table:
        boundary = "the harness boundary is float32" if card is None else "the harness reads float32, float16, " \
            "uint8 or integer class maps"
        raise HarnessError(f"TensorRT plan has an I/O tensor of type {dtype}; {boundary}")
    return table[dtype]


def plan_load_failure(path: Path, version: str, logged: str | None) -> str:
    """Why ``deserialize_cuda_engine`` returned None, in one line: what built the plan (from the manifest
    the artifact cache writes beside it, when there is one) against what runs here.

    A plan loads only on the TensorRT version and the GPU model it was built with.
    """
    here = f"TensorRT {version} on {_gpu_name()}"
    built = _built_with(path)
    if built is None:
        cause = f"corrupt, or built by another TensorRT version or for another GPU (this is {here})"
    elif built != here:
        cause = f"it was built by {built}, this is {here}"
    else:
        cause = f"corrupt (its manifest says it was built here, by {built})"
    reason = f" ({logged})" if logged else ""
    return (f"cannot load TensorRT plan {path}{reason}: {cause}; a plan only loads on the TensorRT version and "
            "GPU that built it: rebuild it (python -m harness export --format trt)")


def _gpu_name() -> str:
    try:
        return torch.cuda.get_device_name(torch.cuda.current_device())
    except Exception:  # the message must still be written when CUDA is in a bad state
        return "this GPU"


def _built_with(path: Path) -> str | None:
    """``"TensorRT <version> on <gpu>"`` from the cache manifest next to ``path``, or None."""
    try:
        key = json.loads((path.parent / MANIFEST).read_text())["key"]
        return f"TensorRT {key['tensorrt']} on {key['gpu']}" if isinstance(key, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _card_names(card: ModelCard, inputs: list[str], outputs: list[str], path: Path) -> tuple[str, str]:
    """The plan's (input, output) tensor names the card names (the only one where it names none)."""
    chosen = []
    for role, names, wanted in (("input", inputs, card.input.name), ("output", outputs, card.output.name)):
        if wanted is not None and wanted not in names:
            raise HarnessError(f"TensorRT plan {path}: {role}.name is {wanted!r}, not an {role} of the plan (its "
                               f"{role}s: {', '.join(map(repr, names)) or 'none'}); edit {role}.name in the card")
        if wanted is None and len(names) != 1:
            raise HarnessError(f"TensorRT plan {path} has {len(names)} {role}s ({', '.join(map(repr, names))}); "
                               f"set {role}.name in the card")
        chosen.append(wanted or names[0])
    if len(inputs) != 1:
        raise HarnessError(f"TensorRT plan {path} has {len(inputs)} inputs ({', '.join(map(repr, inputs))}); the "
                           "harness feeds one image input and cannot fill the others")
    return chosen[0], chosen[1]


class TrtEngine(Engine):
    """TensorRT inference of the plan file ``path`` on the current CUDA device.

    ``precision`` is what the plan was built for (the factory and the export command know it);
    ``max_batch`` defaults to the largest batch of the plan's optimisation profile. With a model
    ``card`` the plan is a user's: tensors are found by the card's names (the only input / output
    when it names none), fed in the card's dtype and layout.
    """

    def __init__(self, path: str | os.PathLike, *, precision: str = "fp32", max_batch: int | None = None,
                 card: ModelCard | None = None) -> None:
        super().__init__(max_batch, card)
        self.path = Path(path)
        self._precision = precision
        self._requested_batch = max_batch
        self._sha256 = ""
        self._version = "-"
        self._logger: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: torch.cuda.Stream | None = None
        self._input = self._output = ""
        self._hw_range = ((0, 0), (0, 0))

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("trt", self._precision, "cuda", f"tensorrt {self._version}", self._sha256)

    def _open(self) -> None:
        require("trt", "cuda")
        import tensorrt as trt

        self._version = trt.__version__
        if not self.path.is_file():
            raise HarnessError(f"TensorRT plan {self.path} does not exist")
        self._sha256 = sha256_file(self.path)
        self._logger = recording_logger(trt)  # must outlive the runtime
        try:
            self._runtime = trt.Runtime(self._logger)
        except TypeError as e:  # pybind11: "factory function returned nullptr" when CUDA cannot start
            raise start_failure(e, "trt.Runtime", trt.__version__, self._logger.record) from None
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise HarnessError(f"cannot read TensorRT plan {self.path}: {e.strerror or e}") from None
        try:
            engine = self._runtime.deserialize_cuda_engine(data)
        except Exception as e:  # some releases raise on a foreign plan instead of returning None
            raise HarnessError(plan_load_failure(self.path, trt.__version__, error_line(e))) from None
        if engine is None:
            raise HarnessError(plan_load_failure(self.path, trt.__version__, self._logger.record.first()))
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if self.card is None:
            if len(inputs) != 1 or len(outputs) != 1:
                raise HarnessError(f"TensorRT plan {self.path} has inputs {inputs} and outputs {outputs}; "
                                   "the harness needs one image input and one logits output")
            self._input, self._output = inputs[0], outputs[0]
        else:
            self._input, self._output = _card_names(self.card, inputs, outputs, self.path)
        self._engine = engine
        self._in_dtype = _torch_dtype(trt, engine.get_tensor_dtype(self._input), self.card)
        self._out_dtype = _torch_dtype(trt, engine.get_tensor_dtype(self._output), self.card)
        if self.card is not None and self._in_dtype != _CARD_DTYPES[self.card.input.dtype]:
            raise HarnessError(f"TensorRT plan {self.path}: input {self._input!r} is {self._in_dtype}, the card says "
                               f"input.dtype = {self.card.input.dtype!r}; edit input.dtype in the card")
        low, _, high = engine.get_tensor_profile_shape(self._input, 0)
        if len(low) != 4:
            raise HarnessError(f"TensorRT plan {self.path}: input {self._input!r} has rank {len(low)}; the harness "
                               "feeds images of rank 4 (NCHW or NHWC)")
        h_axis, w_axis = (1, 2) if self.card is not None and self.card.input.layout == "NHWC" else (2, 3)
        self._hw_range = ((low[h_axis], high[h_axis]), (low[w_axis], high[w_axis]))
        self._batch_limit = int(high[0])
        self.max_batch = min(self._requested_batch or self._batch_limit, self._batch_limit)
        self._context = engine.create_execution_context()
        if self._context is None:
            raise HarnessError(f"TensorRT could not create an execution context for {self.path} (GPU memory?)")
        self._stream = torch.cuda.Stream()

    def _close(self) -> None:
        # Context before engine before runtime: TensorRT objects must die in reverse order of creation.
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None

    def check_shape(self, shape: tuple[int, ...]) -> None:
        super().check_shape(shape)
        (h_lo, h_hi), (w_lo, w_hi) = self._hw_range
        if not (h_lo <= shape[2] <= h_hi and w_lo <= shape[3] <= w_hi):
            raise HarnessError(f"TensorRT plan {self.path.name} takes images of {h_lo}..{h_hi} x {w_lo}..{w_hi} "
                               f"pixels, got {shape[2]}x{shape[3]}; export a plan for this size")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        assert self._context is not None and self._stream is not None
        with torch.cuda.stream(self._stream):
            images = torch.from_numpy(np.ascontiguousarray(batch)).to("cuda", self._in_dtype)
            if not self._context.set_input_shape(self._input, tuple(images.shape)):
                raise HarnessError(f"TensorRT rejected input shape {tuple(images.shape)} for {self.path.name}")
            logits = torch.empty(tuple(self._context.get_tensor_shape(self._output)), dtype=self._out_dtype,
                                 device="cuda")
            self._context.set_tensor_address(self._input, images.data_ptr())
            self._context.set_tensor_address(self._output, logits.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise HarnessError(f"TensorRT execution failed for {self.path.name} on a batch of {len(batch)}")
            # The copy is queued on the same stream, and .cpu() waits for it: no explicit synchronise needed.
            # A user's plan keeps its output dtype: the card's adapter reads it (an integer class map included).
            return (logits.float() if self.card is None else logits).cpu().numpy()
