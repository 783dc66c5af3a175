"""The ``ort`` engine: an ONNX file on ONNX Runtime, CPU provider or (onnxruntime-gpu) CUDA provider."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from engines.availability import require
from engines.base import Engine, EngineInfo
from exporters.onnx_file import input_shape, io_names, load_onnx, precision_of, read_metadata
from harness import distributed
from harness.errors import HarnessError, error_line
from harness.limits import MAX_BATCH
from harness.targets.onnx_io import external_data_files, onnx_sha256, ort_message, session_source
from harness.threads import onnx_runtime_threads

if TYPE_CHECKING:
    from harness.targets.card import ModelCard

# onnxruntime's Python errors derive from Exception directly; these are the ones a bad model or input raises.
_ORT_ERRORS = (ort_state.Fail, ort_state.InvalidArgument, ort_state.InvalidGraph, ort_state.InvalidProtobuf,
               ort_state.NoSuchFile, ort_state.NoModel, ort_state.NotImplemented, ort_state.RuntimeException,
               ort_state.EPFail)
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OrtEngine(Engine):
    """ONNX Runtime inference of the ONNX file ``path`` on ``device`` (cpu or cuda).

    On enter the file is loaded, checked (ONNX checker + the harness I/O contract) and hashed;
    its precision comes from its ``harness.precision`` metadata. A corrupt or truncated file,
    or a missing CUDA provider, is a one-line HarnessError.

    With a model ``card`` the file is a user's: the card replaces the harness I/O contract
    (``harness.targets.onnx_io.check_card`` checks it against the graph), the engine feeds the
    card's input name in its dtype and layout and reads its output name. A graph with a fixed batch size is fed
    exactly that many images a run (the last group padded with copies, their outputs dropped). Weights in side
    files (external data) are part of the model: hashed with it and read by ONNX Runtime from beside the file.
    """

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", max_batch: int | None = None,
                 threads: int | None = None, card: ModelCard | None = None) -> None:
        super().__init__(max_batch, card)
        self.path = Path(path)
        self._device = device
        self._threads = threads
        self._session: onnxruntime.InferenceSession | None = None
        self._precision = "?"
        self._sha256 = ""
        self._names = ("", "")
        self._fixed_hw: tuple[int | str, int | str] = ("?", "?")
        self._fixed_batch: int | None = None
        self._run_options = onnxruntime.RunOptions()
        self._run_options.log_severity_level = 4  # failures are raised as one line, not also logged

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("ort", self._precision, f"{self._device} ({_PROVIDERS[self._device]})",
                          f"onnxruntime {onnxruntime.__version__}", self._sha256)

    def _open(self) -> None:
        require("ort", self._device)
        if self.card is None:
            model = load_onnx(self.path)
            if not read_metadata(model):
                # A foreign file whose I/O merely looks like the boundary (normalisation outside the graph, say)
                # would be fed [0, 1] pixels without any error: only the harness's own exports run without a card.
                raise HarnessError(f"{self.path} is not a harness export (no harness.* metadata): describe its I/O "
                                   "with a model card (OrtEngine(path, card=...); python -m harness inspect FILE "
                                   "writes one)")
            self._names = io_names(model)
            shape = input_shape(model)
            self._fixed_hw = (shape[2], shape[3])
            batch = shape[0]
        else:
            model = load_onnx(self.path, contract=False)
            self._names, self._fixed_hw, batch = _card_io(model, self.card, str(self.path))
        self._fixed_batch = _fixed_batch(batch, str(self.path))
        self._precision = precision_of(model)
        side_files = external_data_files(self.path)
        self._sha256 = onnx_sha256(self.path, side_files)  # with its external data: new weights are a new model
        options = onnxruntime.SessionOptions()
        # Fatal only: a failure is raised as one HarnessError line below, not also printed by ORT's logger (which
        # would also warn about the fp16 nodes the CPU provider casts).
        options.log_severity_level = 4
        # harness.threads decides for both pools: a requested count, else every usable core for this one.
        options.intra_op_num_threads = self._threads or onnx_runtime_threads()
        # Idle worker threads would busy-wait between runs and starve torch or other engines on the same cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Under torchrun each rank has its own GPU, the one of its LOCAL_RANK (harness.distributed.start).
        providers = [_PROVIDERS[self._device]] if self._device == "cpu" else \
            [(_PROVIDERS["cuda"], {"device_id": distributed.job().local_rank}), "CPUExecutionProvider"]
        try:
            session = onnxruntime.InferenceSession(session_source(model, self.path, side_files), options,
                                                   providers=providers)
        except _ORT_ERRORS as e:
            raise HarnessError(f"ONNX Runtime cannot load {self.path}: {ort_message(error_line(e))}") from None
        # onnxruntime falls back to the CPU silently when the CUDA libraries do not load.
        if session.get_providers()[0] != _PROVIDERS[self._device]:
            raise HarnessError(f"ONNX Runtime could not start {_PROVIDERS[self._device]} for {self.path} "
                               f"(active: {', '.join(session.get_providers())}); check the CUDA/cuDNN libraries")
        self._session = session

    def _close(self) -> None:
        self._session = None

    def check_shape(self, shape: tuple[int, ...]) -> None:
        super().check_shape(shape)
        for axis, fixed in (("height", self._fixed_hw[0]), ("width", self._fixed_hw[1])):
            got = shape[2] if axis == "height" else shape[3]
            if isinstance(fixed, int) and fixed != got:
                fix = "" if self.card is None else (f"; set input.size = [{self._fixed_hw[0]}, {self._fixed_hw[1]}] "
                                                    "in the model card (images are resized to it)")
                raise HarnessError(f"{self.path} takes images of {axis} {fixed}, got {got}{fix}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """One batch; a graph with a fixed batch size B is run B images at a time, the last group padded with
        copies of its last image whose outputs are dropped (inference treats each image on its own)."""
        b = self._fixed_batch
        if b is None or len(batch) == b:
            return self._run_one(batch)
        outputs = []
        for start in range(0, len(batch), b):
            group = batch[start:start + b]
            n = len(group)
            if n < b:
                group = np.concatenate([group, np.repeat(group[-1:], b - n, axis=0)])
            outputs.append(self._run_one(np.ascontiguousarray(group))[:n])
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def _run_one(self, batch: np.ndarray) -> np.ndarray:
        assert self._session is not None
        try:
            out = self._session.run([self._names[1]], {self._names[0]: batch}, self._run_options)[0]
        except _ORT_ERRORS as e:
            size = f"{batch.shape[1]}x{batch.shape[2]}" if self.card is not None and self.card.input.layout == "NHWC" \
                else f"{batch.shape[-2]}x{batch.shape[-1]}"
            raise HarnessError(f"ONNX Runtime failed on a batch of shape {batch.shape} (images of {size} at the "
                               "model's input; if the model takes only some sizes: another --image-size, or "
                               f"input.size in its card): {ort_message(error_line(e))}") from None
        if self._fixed_batch is not None and (out.ndim == 0 or out.shape[0] != len(batch)):
            raise HarnessError(f"{self.path} returned {self._names[1]!r} of shape {out.shape} for a batch of "
                               f"{len(batch)}; the harness reads one output per image (batch on axis 0)")
        return out


def _card_io(model: onnx.ModelProto, card: ModelCard, label: str
             ) -> tuple[tuple[str, str], tuple[int | str, int | str], int | str]:
    """The (input, output) names the engine feeds and reads, the graph input's (height, width) dims (ints
    where fixed) and its batch dim, after checking ``card`` against the graph."""
    from harness.targets.onnx_io import check_card, chosen_output, image_input, read_graph_info, spatial_axes

    info = read_graph_info(model)
    check_card(card, info, label)
    x = image_input(info, card.input.name, label)
    y = chosen_output(info, card.output.name, label)
    h_axis, w_axis = spatial_axes(card.input.layout)
    return (x.name, y.name), (x.shape[h_axis], x.shape[w_axis]), x.shape[0]


def _fixed_batch(dim: int | str, label: str) -> int | None:
    """The graph's fixed batch size (None: dynamic); HarnessError beyond :data:`harness.limits.MAX_BATCH`."""
    if not isinstance(dim, int) or dim < 1:
        return None
    if dim > MAX_BATCH:
        raise HarnessError(f"{label} takes batches of exactly {dim} images; the harness pads batches to a fixed "
                           f"size of at most {MAX_BATCH}: export it with a dynamic or smaller batch")
    return dim
