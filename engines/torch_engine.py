"""The ``torch`` engine: the PyTorch model itself, eager, fp32 (the reference every export is checked against)."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
from torch import nn

from engines.availability import require
from engines.base import Engine, EngineInfo
from harness.errors import HarnessError, error_line


class TorchEngine(Engine):
    """Eager PyTorch inference of ``model`` on ``device`` (cpu or cuda), fp32, in eval mode.

    ``model`` is at the boundary: a built-in SegmentationModel, or a user's module behind its card's
    adapter (``harness.targets.adapter.AdaptedModule``, whose ``card`` says whether it has scores).
    ``artifact_sha256`` is the sha256 of the checkpoint (or weights) the model was loaded from. The
    caller's model is never moved or switched to eval mode: the engine runs a copy when it must.
    """

    def __init__(self, model: nn.Module, *, device: str = "cpu", artifact_sha256: str = "",
                 max_batch: int | None = None) -> None:
        super().__init__(max_batch)
        self._model = model
        self._device = device
        self._sha256 = artifact_sha256
        self._net: nn.Module | None = None

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("torch", "fp32", self._device, f"torch {torch.__version__}", self._sha256)

    @property
    def has_scores(self) -> bool:
        card = getattr(self._model, "card", None)
        return card is None or bool(card.has_scores)

    def _open(self) -> None:
        require("torch", self._device)
        first = next(itertools.chain(self._model.parameters(), self._model.buffers()), None)
        on_device = first is None or first.device.type == self._device
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
            try:
                logits = self._net(torch.from_numpy(batch).to(self._device))
            except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as e:  # a user's forward, or CUDA
                raise HarnessError(f"the PyTorch model failed on a batch of shape {batch.shape}: "
                                   f"{type(e).__name__}: {error_line(e)}") from None
            # .cpu() waits for the device, so the engine time covers the whole computation.
            return logits.float().cpu().numpy()
