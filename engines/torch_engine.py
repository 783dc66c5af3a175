"""The ``torch`` engine: the PyTorch model itself, eager, fp32 (the reference every export is checked against)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from engines.availability import require
from engines.base import Engine, EngineInfo
from harness.models.normalize import SegmentationModel


class TorchEngine(Engine):
    """Eager PyTorch inference of ``model`` on ``device`` (cpu or cuda), fp32, in eval mode.

    ``artifact_sha256`` is the sha256 of the checkpoint the model was loaded from. The caller's
    model is never moved or switched to eval mode: the engine runs a copy when it must.
    """

    def __init__(self, model: SegmentationModel, *, device: str = "cpu", artifact_sha256: str = "",
                 max_batch: int | None = None) -> None:
        super().__init__(max_batch)
        self._model = model
        self._device = device
        self._sha256 = artifact_sha256
        self._net: SegmentationModel | None = None

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("torch", "fp32", self._device, f"torch {torch.__version__}", self._sha256)

    def _open(self) -> None:
        require("torch", self._device)
        on_device = next(self._model.parameters()).device.type == self._device
        # A copy when the model lives elsewhere or is in training mode: the caller's model is never changed.
        reuse = on_device and not self._model.training
        self._net = self._model if reuse else copy.deepcopy(self._model).to(self._device).eval()

    def _close(self) -> None:
        self._net = None
        if self._device == "cuda":
            torch.cuda.empty_cache()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        assert self._net is not None
        with torch.inference_mode():
            logits = self._net(torch.from_numpy(batch).to(self._device))
            # .cpu() waits for the device, so the engine time covers the whole computation.
            return logits.float().cpu().numpy()
