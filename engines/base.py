"""The Engine interface: a black box from float32 [0, 1] NCHW images to float32 logits.

In the spirit of Polygraphy's runners: built from an artifact, a context manager that
takes resources on enter and frees them on exit, and ``infer`` that validates its input,
splits it into the engine's batch limit and counts what it was asked.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.targets.adapter import check_logits

if TYPE_CHECKING:
    from harness.targets.adapter import Adapter
    from harness.targets.card import ModelCard

# Inputs may overshoot [0, 1] by float rounding only.
RANGE_TOLERANCE = 1e-4
# The FCN backbones downsample by 32: smaller images leave empty feature maps.
MIN_SIDE = 32


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is, for reports: name (torch|ort|trt), precision (fp32|fp16|int8),
    device/provider, library version and the sha256 of the artifact it was built from."""

    name: str
    precision: str
    device: str
    library_version: str
    artifact_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Engine(ABC):
    """``infer(images)``: images float32 (N, 3, H, W) in [0, 1] -> logits float32 (N, K, H, W).

    Subclasses implement ``_open``, ``_close``, ``_run`` (one batch of at most
    ``max_batch`` images, already validated) and ``info``; they may extend ``check_shape``
    with the limits of their artifact (a fixed input size, a TensorRT optimisation profile).

    With a model ``card`` (harness.targets.card) the engine runs a target whose own I/O differs from the
    boundary: ``infer`` still takes and returns the boundary, and the card's Adapter converts around
    ``_run`` (which then gets and returns the model's own tensors: layout, channels, dtype, size, output
    kind). Without a card, or with a boundary card, nothing is converted.
    """

    max_batch: int = 64

    def __init__(self, max_batch: int | None = None, card: ModelCard | None = None) -> None:
        self.queries = 0  # images asked about since construction
        self.seconds = 0.0  # wall time spent inside _run
        self._opened = False
        if max_batch is not None:
            if max_batch < 1:
                raise HarnessError(f"max_batch must be >= 1, got {max_batch}")
            self.max_batch = max_batch
        self.card = card
        self._adapter: Adapter | None = None
        if card is not None:
            from harness.targets.adapter import Adapter

            adapter = Adapter(card)
            self._adapter = None if adapter.identity else adapter  # the boundary itself: no work at all

    @property
    def has_scores(self) -> bool:
        """Whether ``infer`` returns scores a loss can use (False for a class-map output: one-hot "logits")."""
        return self.card is None or self.card.has_scores

    def __enter__(self) -> Engine:
        self._open()
        self._opened = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._opened = False
        self._close()

    @property
    @abstractmethod
    def info(self) -> EngineInfo: ...

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray: ...

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise HarnessError unless this engine can run images of ``shape`` (N, C, H, W): the model-side size
        (after a card's fixed-size resize; C is 1 for a grey model), in NCHW order whatever the model's layout."""
        if shape[2] < MIN_SIDE or shape[3] < MIN_SIDE:
            raise HarnessError(f"engine input is {shape[2]}x{shape[3]} pixels; the models need at least "
                               f"{MIN_SIDE}x{MIN_SIDE}")

    def model_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The (N, C, H, W) the model itself is fed for boundary images of ``shape`` (N, 3, H, W)."""
        n, _, height, width = shape
        if self._adapter is None:
            return n, 3, height, width
        channels = 1 if self.card is not None and self.card.input.channels == "grey" else 3
        return (n, channels, *self._adapter.model_size(height, width))

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits float32 (N, K, H, W) of ``images`` float32 (N, 3, H, W) in [0, 1]; HarnessError on bad input."""
        if not self._opened:
            raise HarnessError(f"{type(self).__name__} used outside its 'with' block")
        validate_images(images)
        self.check_shape(self.model_shape(images.shape))
        size = (int(images.shape[2]), int(images.shape[3]))
        classes = None if self.card is None else self.card.num_classes
        outputs = []
        for start in range(0, len(images), self.max_batch):
            batch = np.ascontiguousarray(images[start:start + self.max_batch])
            feed = batch if self._adapter is None else self._adapter.to_model_numpy(batch)
            t0 = time.perf_counter()
            out = self._run(feed)
            self.seconds += time.perf_counter() - t0
            if self._adapter is not None:
                out = self._adapter.to_logits_numpy(out, size)
            elif self.card is not None and start == 0:
                check_logits(out)  # a card at the boundary: its claim "logits" checked once
            if out.ndim != 4 or out.shape[0] != len(batch) or out.shape[2:] != batch.shape[2:]:
                raise HarnessError(f"{type(self).__name__} returned logits of shape {out.shape} for images of "
                                   f"shape {batch.shape}; expected (N, K, H, W) at the input's resolution"
                                   f"{'' if self.card is None else _card_hint(out.shape, batch.shape)}")
            if classes is not None and out.shape[1] != classes:
                raise HarnessError(f"{type(self).__name__} returned scores for {out.shape[1]} classes, the model "
                                   f"card and the data have {classes}; check num_classes and output.* in the card")
            outputs.append(np.asarray(out, dtype=np.float32))
        self.queries += len(images)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class maps int64 (N, H, W) of ``images``: the argmax of ``infer`` (what a hard-label attack sees)."""
        return self.infer(images).argmax(axis=1).astype(np.int64)


def _card_hint(got: tuple[int, ...], fed: tuple[int, ...]) -> str:
    """What to edit in a card whose model returned ``got`` for boundary images of shape ``fed``."""
    if len(got) == 4 and got[0] == fed[0] and got[2] <= fed[2] and got[3] <= fed[3]:
        return "; the model's scores are at a lower resolution: set output.resolution = reduced in the model card"
    return "; check output.layout and output.kind in the model card"


def engine_predictor(engine: Engine) -> Callable[[torch.Tensor], torch.Tensor]:
    """``engine`` as a torch images -> logits callable, for ``harness.evaluation.evaluate``."""

    def predict(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(engine.infer(np.ascontiguousarray(images.detach().cpu().numpy(), np.float32)))

    return predict


def validate_images(images: object) -> None:
    """Raise HarnessError unless ``images`` is float32 (N, 3, H, W), N >= 1, values in [0, 1]."""
    if not isinstance(images, np.ndarray):
        raise HarnessError(f"engine input must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.float32:
        raise HarnessError(f"engine input must be float32, got {images.dtype} (convert pixels to [0, 1] floats)")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise HarnessError(f"engine input must be (N, 3, H, W) RGB with N >= 1, got shape {images.shape}")
    lo, hi = float(images.min()), float(images.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise HarnessError(f"engine input must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
                           "(pixels are divided by 255; normalisation is inside the model)")
