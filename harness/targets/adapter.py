"""The adapter: a target's own I/O to and from the harness boundary, as its model card states it.

Boundary in: float32 (N, 3, H, W) RGB images in [0, 1]. Boundary out: float32 logits (N, K, H, W) at the
boundary's (the labels') resolution. One place for every engine and for a user's PyTorch model, in torch ops
only, so white-box attacks differentiate through it; the numpy wrappers share memory with their arrays
(``torch.from_numpy``). A card that is the boundary makes every call return its argument itself.

Model input = ``(pixels01 * scale - mean) / std`` in the card's channel order (grey: ITU-R BT.601
luminance) and layout, after a bilinear resize to a fixed ``input.size``. A uint8 input is the image rounded
to the 8-bit grid (a straight-through gradient), so ε stays a distance on the 8-bit image.
Output kinds become logits: probabilities -> log(clamp(p, 1e-12)) (the model's argmax kept where the float32 log
ties it); log-probabilities and logits as they are;
one sigmoid channel p -> [log(1 - p), log(p)] (clamped); one binary logit z -> [0, z]; a class map -> one-hot.
Scores at a lower (or the fixed) resolution are resized bilinearly to the boundary's size, class maps nearest.

Each call checks, vectorised, what would otherwise pass silently as a wrong number: the rank, channel count
and resolution the card implies, non-finite scores, probabilities that are not in [0, 1] or do not sum to 1,
sigmoid values outside [0, 1], log-probabilities above 0, class maps with non-integer or out-of-range
values, and "logits" that are all in [0, 1] and sum to 1 over the classes (probabilities). A contradiction is
a one-line HarnessError naming the card field to edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.targets.card import (
    LUMA_WEIGHTS,
    NOT_REDUCED,
    TWO_CLASS_KINDS,
    ModelCard,
    reduced_size_fits,
    require_resolved,
)

LOG_CLAMP = 1e-12  # probabilities are clamped to it before the log: log(0) would be -inf
RANGE_TOLERANCE = 1e-2  # probabilities / sigmoid values may overshoot [0, 1] by this (fp16 or int8 outputs)
SUM_TOLERANCE = 5e-2  # per-pixel sums of probabilities may miss 1 by this (an int8 softmax output)
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}
_TORCH_INTEGER_DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.int64)


class Adapter:
    """The boundary <-> model conversions of one resolved card (``input.mean``/``input.std`` known, and
    ``num_classes`` for a class map, which has no class axis)."""

    def __init__(self, card: ModelCard) -> None:
        needed = ("input.mean", "input.std") + (("num_classes",) if card.output.kind == "class_map" else ())
        require_resolved(card, f"card {card.name}" if card.name else "card", needed)
        self.card = card
        self._identity = card.is_boundary
        spec = card.input
        scale = spec.scale
        channels = 1 if spec.channels == "grey" else 3
        mean = spec.mean or (0.0,) * channels
        std = spec.std or (1.0,) * channels
        # (x * scale - mean) / std folded into one multiply-add per channel
        self._gain = tuple(scale / s for s in std)
        self._offset = tuple(-m / s for m, s in zip(mean, std, strict=True))
        self._affine = any(g != 1.0 for g in self._gain) or any(o != 0.0 for o in self._offset)
        self._constants: dict[tuple[Any, ...], torch.Tensor] = {}

    @property
    def identity(self) -> bool:
        """True when the card is the boundary: every method returns its argument itself."""
        return self._identity

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) fed to the model for boundary images of ``height`` x ``width``."""
        return self.card.input.size or (int(height), int(width))

    # ------------------------------------------------------------ input

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        """Boundary images float32 (N, 3, H, W) in [0, 1] -> the card's input as float32 (uint8: integer
        values, rounded with a straight-through gradient; float16: cast by :meth:`to_model_numpy`)."""
        if self._identity:
            return images
        if images.ndim != 4 or images.shape[1] != 3:
            raise HarnessError(f"adapter input must be boundary images (N, 3, H, W), got shape {tuple(images.shape)}")
        spec = self.card.input
        x = images
        if spec.size is not None and tuple(x.shape[-2:]) != spec.size:
            x = F.interpolate(x, size=spec.size, mode="bilinear", align_corners=False, antialias=False)
        if spec.channels == "bgr":
            x = x.flip(1)
        elif spec.channels == "grey":
            (wr, wg, wb), (r, g, b) = LUMA_WEIGHTS, (x[:, i:i + 1] for i in range(3))
            x = r * wr + g * wg + b * wb if _tracked(x) else (r * wr).add_(g, alpha=wg).add_(b, alpha=wb)
        if self._affine:
            gain, offset = self._constant(x, self._gain), self._constant(x, self._offset)
            x = x * gain + offset if _tracked(x) else x.mul(gain).add_(offset)  # in place: 3x faster than addcmul
        if spec.dtype == "uint8":  # x is the adapter's own tensor here: the affine (scale 255) made it
            if _tracked(x):
                x = x.clamp(0.0, 255.0)
                x = x.round().detach() + (x - x.detach())  # exact integers forward, identity gradient backward
            else:
                x = x.clamp_(0.0, 255.0).round_()
        if spec.layout == "NHWC":
            # through channels-last memory: torch's transpose kernel for it is far faster than a generic copy
            x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        return x

    def to_model_numpy(self, images: np.ndarray) -> np.ndarray:
        """:meth:`to_model` of a numpy batch, cast to the card's dtype (what the engine feeds its graph)."""
        if self._identity:
            return images
        with torch.no_grad():
            # cast in torch: numpy's float16 conversion is several times slower
            return self.to_model(torch.from_numpy(_writable(images))).to(_TORCH_DTYPES[self.card.input.dtype]).numpy()

    # ------------------------------------------------------------ output

    def to_logits(self, output: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The model's ``output`` in the card's layout and kind -> float32 logits (N, K, H, W) at ``size``
        (the boundary images' (H, W)); a HarnessError naming the card field when the output contradicts it."""
        if self._identity:
            return output
        card = self.card
        out = self._channels_first(output)
        _, c, h, w = out.shape
        if out.numel() == 0:
            raise _contradiction(f"the model returns an empty output of shape {tuple(output.shape)}")
        expected = self.model_size(*size)
        self._check_channels(c)
        self._check_resolution((h, w), expected)
        kind = card.output.kind
        # The value checks read the output in its own layout: reductions over contiguous memory are fastest.
        values = output.detach()
        class_axis = -1 if card.output.layout == "NHWC" else 1
        if kind == "class_map":
            return self._one_hot(out, values, tuple(size))
        if not out.is_floating_point():
            raise _contradiction(f"output.kind = {kind}, but the model returns {_dtype_name(out)} values: a class "
                                 "map? set output.kind = class_map")
        lo, hi = (float(v) for v in torch.aminmax(values))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise HarnessError("model output: the scores contain NaN or infinite values; the model (or its "
                               "input convention, see the card) is broken")
        x = out.float()
        if kind == "logits":
            _refuse_probabilities(values, lo, hi, class_axis)
        elif kind == "probabilities":
            if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
                raise _contradiction(f"output.kind = probabilities, but the values lie in [{lo:.4g}, {hi:.4g}], "
                                     "not [0, 1]: logits? set output.kind = logits")
            if not _sums_to_one(values, class_axis):
                raise _contradiction("output.kind = probabilities, but they do not sum to 1 over the classes (per-"
                                     "class sigmoids or scores?); set output.kind = logits")
            decision = x.argmax(1, keepdim=True)
            x = _keep_decision(_log(x.clamp_min(LOG_CLAMP)), decision)
        elif kind == "log_probabilities":
            if hi > RANGE_TOLERANCE:
                raise _contradiction(f"output.kind = log_probabilities, but values reach {hi:.4g} (log-probabilities "
                                     "are <= 0): logits or probabilities? set output.kind to what they are")
        elif kind == "sigmoid":
            if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
                raise _contradiction(f"output.kind = sigmoid, but the values lie in [{lo:.4g}, {hi:.4g}], not "
                                     "[0, 1]: one logit? set output.kind = binary_logits")
            x = _log(torch.cat([1.0 - x, x], dim=1).clamp_min_(LOG_CLAMP))
        elif kind == "binary_logits":
            x = torch.cat([torch.zeros_like(x), x], dim=1)
        if (h, w) != tuple(size):
            # channels-last memory takes torch's faster upsampling kernel; .contiguous() below restores NCHW
            x = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=tuple(size), mode="bilinear",
                              align_corners=False)
        return x.contiguous()

    def to_logits_numpy(self, output: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """:meth:`to_logits` of a numpy output (as the engine returned it); float32 logits."""
        if self._identity:
            return output
        array = _writable(output)
        if array.dtype.kind in "iu" and array.dtype.type not in _TORCH_INTEGER_DTYPES:
            array = array.astype(np.int64)  # uint16/32/64 class maps: torch has no such tensors
        if array.dtype.kind not in "iufb":
            raise HarnessError(f"model output: {array.dtype} values are not scores or classes")
        with torch.no_grad():
            return self.to_logits(torch.from_numpy(array), size).numpy()

    def _channels_first(self, output: torch.Tensor) -> torch.Tensor:
        layout = self.card.output.layout
        rank = 3 if layout == "NHW" else 4
        if output.ndim != rank:
            shape = tuple(output.shape)
            hint = ""
            if output.ndim == 3 and self.card.output.kind in ("class_map", "sigmoid", "binary_logits"):
                hint = "; no channel axis: set output.layout = NHW"
            elif output.ndim == 4 and layout == "NHW":
                hint = "; set output.layout = NCHW or NHWC"
            raise _contradiction(f"output.layout = {layout} expects a {rank}-d output, but the model returns shape "
                                 f"{shape}{hint}")
        if layout == "NHWC":
            return output.permute(0, 3, 1, 2)
        if layout == "NHW":
            return output.unsqueeze(1)
        return output

    def _check_channels(self, c: int) -> None:
        card = self.card
        kind, layout = card.output.kind, card.output.layout
        if kind in ("sigmoid", "binary_logits", "class_map"):
            if c != 1:
                hint = {"sigmoid": "a softmax over classes? set output.kind = probabilities",
                        "binary_logits": "set output.kind = logits",
                        "class_map": "scores? set output.kind = logits or probabilities"}[kind]
                raise _contradiction(f"output.kind = {kind} has one channel, but the model returns {c} "
                                     f"(output.layout = {layout}): {hint}")
            return
        if card.num_classes is not None and c != card.num_classes:
            raise _contradiction(f"num_classes = {card.num_classes}, but the model returns {c} channels (output."
                                 f"layout = {layout}); edit num_classes or output.layout")
        if c == 1 and card.num_classes != 1:
            raise _contradiction(f"output.kind = {kind} with one channel: a binary model? set output.kind = sigmoid "
                                 "or binary_logits")

    def _check_resolution(self, got: tuple[int, int], expected: tuple[int, int]) -> None:
        resolution = self.card.output.resolution
        what = f"the model returns {got[0]}x{got[1]} scores for a {expected[0]}x{expected[1]} input"
        if resolution == "input" and got != expected:
            layout = self.card.output.layout
            hint = (f"; set output.resolution = reduced, or check output.layout (= {layout})"
                    if got[0] <= expected[0] and got[1] <= expected[1] else f"; check output.layout (= {layout})")
            raise _contradiction(f"output.resolution = input, but {what}{hint}")
        if resolution == "reduced" and not reduced_size_fits(got, expected):
            why = "larger than the input" if got[0] > expected[0] or got[1] > expected[1] else NOT_REDUCED
            raise _contradiction(f"output.resolution = reduced, but {what}: {why}; check output.layout")

    def _one_hot(self, out: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """One-hot float32 (N, K, H, W) of class map ``out`` (N, 1, h, w); ``values``: the same in the model's
        layout, for the checks."""
        k = self.card.num_classes
        assert k is not None  # required for a class map (checked on construction)
        if values.dtype == torch.bool:
            values = values.to(torch.uint8)
        lo, hi = (float(v) for v in torch.aminmax(values))
        if values.is_floating_point() and not (np.isfinite(lo) and np.isfinite(hi)
                                               and bool(torch.equal(values, values.round()))):
            raise _contradiction("output.kind = class_map, but the values are not whole class numbers: scores? set "
                                 "output.kind = logits, probabilities or sigmoid")
        if lo < 0 or hi > k - 1:
            raise _contradiction(f"output.kind = class_map with num_classes = {k}, but the classes range over "
                                 f"[{lo:g}, {hi:g}], not [0, {k - 1}]; edit num_classes")
        labels = out.long()
        if tuple(labels.shape[-2:]) != size:
            labels = F.interpolate(labels.float(), size=size, mode="nearest").long()
        n = labels.shape[0]
        return torch.zeros(n, k, *size, dtype=torch.float32, device=labels.device).scatter_(1, labels, 1.0)

    def _constant(self, like: torch.Tensor, values: tuple[float, ...]) -> torch.Tensor:
        """``values`` as a (1, C, 1, 1) tensor of ``like``'s dtype and device (cached: one per device)."""
        # Inference-mode tensors cannot enter autograd: one made under torch.inference_mode (a probe) is kept apart.
        key = (values, like.dtype, like.device, torch.is_inference_mode_enabled())
        tensor = self._constants.get(key)
        if tensor is None:
            tensor = torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
            self._constants[key] = tensor
        return tensor


class AdaptedModule(nn.Module):
    """A user's ``nn.Module`` behind the boundary: forward(float32 NCHW images in [0, 1]) -> logits (N, K, H, W).

    The module's output may be a tensor, a dict (torchvision's ``{"out": ..., "aux": ...}``; any Mapping), a
    namedtuple (by field name) or a tuple/list (by index "0", "1", ...): ``card.output.name`` picks one; it may
    be omitted when there is only one. Train/eval mode is the caller's (``.eval()`` reaches the module).
    """

    def __init__(self, module: nn.Module, card: ModelCard, num_classes: int) -> None:
        super().__init__()
        if card.output.kind in TWO_CLASS_KINDS and num_classes != 2:
            raise HarnessError(f"card: output.kind = {card.output.kind} gives two classes, but the data has "
                               f"{num_classes}; use two-class data or fix output.kind")
        if card.num_classes is None:
            card = replace(card, num_classes=num_classes, unknown=tuple(f for f in card.unknown if f != "num_classes"))
        elif card.num_classes != num_classes:
            raise HarnessError(f"card: num_classes = {card.num_classes}, but the data has {num_classes} classes; "
                               "edit num_classes or use data with the model's classes")
        self.module = module
        self.card = card
        self.num_classes = num_classes
        self.adapter = Adapter(card)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.adapter.to_model(images)
        if self.card.input.dtype == "float16":
            x = x.half()
        output = select_output(self.module(x), self.card.output.name)
        logits = self.adapter.to_logits(output, (int(images.shape[-2]), int(images.shape[-1])))
        expected = (images.shape[0], self.num_classes, *images.shape[2:])
        if tuple(logits.shape) != expected:
            raise HarnessError(f"model output: logits of shape {tuple(logits.shape)} for images of shape "
                               f"{tuple(images.shape)}, expected {expected} (N, K, H, W); check the card's output "
                               "fields (output.resolution = reduced for smaller scores)")
        return logits.float() if logits.dtype != torch.float32 else logits


def check_logits(output: torch.Tensor | np.ndarray, class_axis: int = 1) -> None:
    """HarnessError when scores said to be logits are every pixel's probabilities (all in [0, 1], summing to 1
    over ``class_axis``): taken as logits they would give a wrong loss and no error. (What :class:`Adapter`
    checks on every call of a card with ``output.kind = logits``; for a boundary card the engine calls it.)"""
    values = torch.from_numpy(output) if isinstance(output, np.ndarray) else output.detach()
    if values.ndim == 4 and values.is_floating_point() and values.numel():
        lo, hi = (float(v) for v in torch.aminmax(values))
        _refuse_probabilities(values, lo, hi, class_axis)


def _refuse_probabilities(values: torch.Tensor, lo: float, hi: float, class_axis: int) -> None:
    if values.shape[class_axis] > 1 and lo >= 0.0 and hi <= 1.0 and _sums_to_one(values, class_axis):
        raise _contradiction("output.kind = logits, but every pixel's scores lie in [0, 1] and sum to 1 over the "
                             "classes: probabilities; set output.kind = probabilities")


def select_output(value: Any, name: str | None) -> torch.Tensor:
    """The tensor ``name`` (output.name) of a module's output; a one-line HarnessError listing what the module
    returned when it is missing or ambiguous."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        keys = [str(k) for k in value]
        picked = _pick(keys, name, "a dict")
        chosen = next(v for k, v in value.items() if str(k) == picked)
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        fields = [str(f) for f in value._fields]
        if name is not None and name.isdigit() and name not in fields and int(name) < len(value):
            chosen = value[int(name)]
        else:
            chosen = getattr(value, _pick(fields, name, f"a {type(value).__name__}"))
    elif isinstance(value, tuple | list):
        indices = [str(i) for i in range(len(value))]
        chosen = value[int(_pick(indices, name, f"a {type(value).__name__} of {len(value)}"))]
    else:
        raise HarnessError(f"the model returned a {type(value).__name__}; expected a tensor, a dict, a namedtuple, "
                           "a tuple or a list of tensors")
    if not isinstance(chosen, torch.Tensor):
        raise HarnessError(f"output.name = {name!r} picks a {type(chosen).__name__}, not a tensor; choose another")
    return chosen


def _pick(names: list[str], name: str | None, what: str) -> str:
    listed = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    if not names:
        raise HarnessError(f"the model returned {what} with nothing in it; it must return its scores")
    if name is None:
        if len(names) == 1:
            return names[0]
        raise HarnessError(f"the model returned {what} ({listed}); set output.name to the scores' one")
    if name not in names:
        raise HarnessError(f"output.name = {name!r}, but the model returned {what} ({listed}); set output.name to "
                           "one of them")
    return name


def _tracked(x: torch.Tensor) -> bool:
    """Whether autograd records operations on ``x`` (else the adapter may work in place on its own tensors)."""
    return x.requires_grad and torch.is_grad_enabled()


def _log(x: torch.Tensor) -> torch.Tensor:
    """``log(x)`` of a tensor the adapter made itself: in place unless autograd needs ``x`` for the gradient."""
    return torch.log(x) if _tracked(x) else x.log_()


def _keep_decision(logits: torch.Tensor, decision: torch.Tensor) -> torch.Tensor:
    """``logits`` (N, K, H, W) with the class ``decision`` (N, 1, H, W) strictly on top wherever another class
    ties with it.

    The float32 log maps probabilities a few ulps apart (0.24999999 and 0.25) to one value, so the argmax of the
    logits could move to an earlier class than the model's own decision; lifting the decided class's logit by one
    ulp there keeps it. Elsewhere the logits are unchanged; the gradient passes as if nothing was lifted.
    """
    kept = logits.argmax(1, keepdim=True) == decision
    if bool(kept.all()):
        return logits
    top = logits.gather(1, decision)
    lifted = torch.nextafter(top.detach(), torch.full_like(top, float("inf"))) - top.detach()
    return logits.scatter(1, decision, torch.where(kept, top, top + lifted))


def _sums_to_one(values: torch.Tensor, class_axis: int) -> bool:
    """Every pixel's scores sum to 1 over ``class_axis`` within :data:`SUM_TOLERANCE`."""
    low, high = torch.aminmax(values.sum(class_axis, dtype=torch.float32))
    return 1.0 - SUM_TOLERANCE <= float(low) and float(high) <= 1.0 + SUM_TOLERANCE


def _writable(array: np.ndarray) -> np.ndarray:
    """``array`` itself, or a copy when it is read-only (torch.from_numpy warns on those)."""
    if not isinstance(array, np.ndarray):
        raise HarnessError(f"adapter input must be a numpy array, got {type(array).__name__}")
    return array if array.flags.writeable else array.copy()


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _contradiction(detail: str) -> HarnessError:
    return HarnessError(f"the model's output contradicts its card: {detail}")
