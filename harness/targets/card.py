"""The model card: how a target's own I/O differs from the harness boundary (a small TOML file, schema 1).

The boundary is float32 NCHW RGB images in [0, 1] in and float32 logits (N, K, H, W) at the input's resolution
out. A card states the rest: the model's input is ``(pixels01 * scale - mean) / std`` in the card's channel
order and layout, cast to its dtype, resized to a fixed size when it has one; its output is read per
``output.kind`` (logits, probabilities, log-probabilities, one sigmoid channel, one binary logit, a class map)
in ``output.layout`` at ``output.resolution``. Every field is optional; the defaults are the boundary.

A :class:`ModelCard` is always valid: the dataclasses check every field on construction (a one-line
:class:`CardError` naming the dotted field and what is allowed), whether made in code or parsed from TOML.
``mean``/``std`` hold resolved numbers (in the scale's units, in the model's channel order): the ``imagenet``
preset is resolved when a card is parsed and written back as ``"imagenet"`` when the numbers are exactly it.
The fields a user must supply because nothing can tell them (``input.mean``, ``input.std``, ``num_classes``,
``class_names``) may be ``"unknown"``: listed in ``ModelCard.unknown``; :func:`require_resolved` refuses them.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from harness.errors import HarnessError
from harness.fileio import parse_toml, read_text, write_bytes_atomic

SCHEMA = 1
UNKNOWN = "unknown"
NONE = "none"
IMAGENET = "imagenet"
DYNAMIC = "dynamic"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601: grey = the luminance of the RGB image
LAYOUTS = ("NCHW", "NHWC")
OUTPUT_LAYOUTS = ("NCHW", "NHWC", "NHW")
CHANNELS = ("rgb", "bgr", "grey")
DTYPES = ("float32", "float16", "uint8")
KINDS = ("logits", "probabilities", "log_probabilities", "sigmoid", "binary_logits", "class_map")
SCORE_KINDS = tuple(k for k in KINDS if k != "class_map")
ONE_CHANNEL_KINDS = ("sigmoid", "binary_logits", "class_map")  # one output channel: NHW (no channel axis) fits
TWO_CLASS_KINDS = ("sigmoid", "binary_logits")
SCALES = (1.0, 255.0)
RESIZE_POLICIES = ("bilinear",)
RESOLUTIONS = ("input", "reduced")
UNKNOWN_FIELDS = ("num_classes", "class_names", "input.mean", "input.std")  # the fields that may be "unknown"
MAX_CLASSES = 255  # class ids 0..254: 255 is the labels' "ignore"
MAX_SIDE = 8192
MAX_CARD_BYTES = 1 << 20
MAX_NAME = 100  # characters of a card or class name
MAX_TENSOR_NAME = 256  # characters of a graph input/output name

_HINTS = {
    "input.mean": 'input.mean = "none" (the graph normalises its input), "imagenet" or [r, g, b] in the '
                  "scale's units",
    "input.std": 'input.std = "none", "imagenet" or [r, g, b] in the scale\'s units',
    "num_classes": "num_classes = the number of classes the model predicts",
    "class_names": 'class_names = ["background", ...] (one per class, in the model\'s class order)',
}


class CardError(HarnessError):
    """A card field that is not allowed: ``"<where>: <field>: <detail>"`` on one line (exit code 2)."""

    def __init__(self, field: str, detail: str, where: str = "card") -> None:
        super().__init__(f"{where}: {field}: {detail}")
        self.field, self.detail = field, detail


@dataclass(frozen=True)
class InputSpec:
    """The model's input: ``(pixels01 * scale - mean) / std`` in ``channels`` order and ``layout``, as ``dtype``;
    ``mean``/``std`` None: none; ``size`` None: dynamic, else (H, W) the images are resized to (bilinear)."""

    name: str | None = None
    layout: str = "NCHW"
    channels: str = "rgb"
    dtype: str = "float32"
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: tuple[int, int] | None = None
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        _set(self, "name", _tensor_name(self.name, "input.name"))
        _choice(self.layout, "input.layout", LAYOUTS)
        _choice(self.channels, "input.channels", CHANNELS)
        _choice(self.dtype, "input.dtype", DTYPES)
        _set(self, "scale", _scale(self.scale))
        n = 1 if self.channels == "grey" else 3
        _set(self, "mean", _statistics(self.mean, "input.mean", n, self.scale, self.channels, positive=False))
        _set(self, "std", _statistics(self.std, "input.std", n, self.scale, self.channels, positive=True))
        _set(self, "size", _size(self.size))
        _choice(self.resize, "input.resize", RESIZE_POLICIES)
        if self.dtype == "uint8":
            if self.scale != 255:
                raise CardError("input.scale", "input.dtype = uint8 takes pixels in [0, 255]: set input.scale = 255")
            for key in ("mean", "std"):
                if getattr(self, key) is not None:
                    raise CardError(f"input.{key}", 'input.dtype = uint8 feeds the 8-bit image itself, normalised '
                                                    f'inside the graph: set input.{key} = "none"')


@dataclass(frozen=True)
class OutputSpec:
    """The model's output: ``kind`` in ``layout``, at the input's resolution or a ``reduced`` one."""

    name: str | None = None
    layout: str = "NCHW"
    kind: str = "logits"
    resolution: str = "input"

    def __post_init__(self) -> None:
        _set(self, "name", _tensor_name(self.name, "output.name"))
        _choice(self.layout, "output.layout", OUTPUT_LAYOUTS)
        _choice(self.kind, "output.kind", KINDS)
        _choice(self.resolution, "output.resolution", RESOLUTIONS)
        if self.layout == "NHW" and self.kind not in ONE_CHANNEL_KINDS:
            raise CardError("output.layout", f"NHW (no channel axis) fits only the one-channel kinds "
                                             f"({', '.join(ONE_CHANNEL_KINDS)}); output.kind = {self.kind} has a "
                                             "channel per class: use NCHW or NHWC")


@dataclass(frozen=True)
class ModelCard:
    """A target's I/O. ``unknown``: the dotted fields left "unknown" (their values are None), in the order of
    :data:`UNKNOWN_FIELDS`. ``name``: the record's "model" field (None: the caller's default)."""

    name: str | None = None
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    unknown: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "name", _plain_name(self.name, "name"))
        if not isinstance(self.input, InputSpec):
            raise CardError("input", f"expected an InputSpec, got {type(self.input).__name__}")
        if not isinstance(self.output, OutputSpec):
            raise CardError("output", f"expected an OutputSpec, got {type(self.output).__name__}")
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
                                             or not 1 <= self.num_classes <= MAX_CLASSES):
            raise CardError("num_classes", f'expected an integer in [1, {MAX_CLASSES}] or "unknown", got '
                                           f"{_shown(self.num_classes)}")
        _set(self, "class_names", _class_names(self.class_names))
        _set(self, "unknown", _unknown(self))
        kind = self.output.kind
        if kind in TWO_CLASS_KINDS and self.num_classes not in (None, 2):
            raise CardError("num_classes", f"output.kind = {kind} has two classes (background, foreground); "
                                           f"set num_classes = 2, got {self.num_classes}")
        if self.class_names is not None and self.num_classes is not None \
                and len(self.class_names) != self.num_classes:
            raise CardError("class_names", f"names {len(self.class_names)} classes but num_classes = "
                                           f"{self.num_classes}; give one name per class")
        if kind in TWO_CLASS_KINDS and self.class_names is not None and len(self.class_names) != 2:
            raise CardError("class_names", f"output.kind = {kind} has two classes; give two names, got "
                                           f"{len(self.class_names)}")
        if kind == "class_map" and self.num_classes is None and "num_classes" not in self.unknown:
            raise CardError("num_classes", "required when output.kind = class_map (a class map has no class axis "
                                           "to count): set num_classes = K")
        if self.input.dtype == "uint8":
            for key in ("input.mean", "input.std"):
                if key in self.unknown:
                    raise CardError(key, f'input.dtype = uint8 feeds the 8-bit image itself: set {key} = "none"')

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-able, in a fixed order (records and cache keys use it)."""
        return {
            "schema": SCHEMA,
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": None if self.class_names is None else list(self.class_names),
            "input": {f.name: _jsonable(getattr(self.input, f.name)) for f in fields(InputSpec)},
            "output": {f.name: getattr(self.output, f.name) for f in fields(OutputSpec)},
            "unknown": list(self.unknown),
        }

    @property
    def is_boundary(self) -> bool:
        """True when the target's I/O is the boundary itself: the adapter has nothing to do."""
        i, o = self.input, self.output
        return (i.layout == "NCHW" and i.channels == "rgb" and i.dtype == "float32" and i.scale == 1.0
                and i.mean is None and i.std is None and i.size is None
                and "input.mean" not in self.unknown and "input.std" not in self.unknown
                and o.layout == "NCHW" and o.kind == "logits" and o.resolution == "input")

    @property
    def has_scores(self) -> bool:
        """False for a class-map output: only evaluation and hard-label attacks apply."""
        return self.output.kind != "class_map"


NOT_REDUCED = ("not the input's size reduced by one stride on both axes (a fixed output size, or transposed or "
               "flattened scores?)")


def reduced_size_fits(got: Sequence[int], full: Sequence[int]) -> bool:
    """Whether scores of (h, w) ``got`` can be the (H, W) ``full`` input at a reduced resolution: one stride s
    (the same on both axes) with each side within 1.5 of H/s, W/s (a strided network's floor or ceil, padding).
    A side larger than the input's, or an aspect that no common stride gives (a transposed or flattened
    output: a layout error), does not fit."""
    (h, w), (big_h, big_w) = got, full
    if not (1 <= h <= big_h and 1 <= w <= big_w):
        return False
    low = max(big_h / (h + 1.5), big_w / (w + 1.5))
    high = min(big_h / (h - 1.5) if h > 1.5 else math.inf, big_w / (w - 1.5) if w > 1.5 else math.inf)
    return low <= high


def boundary_card(class_names: Sequence[str] | None = None, name: str | None = None) -> ModelCard:
    """The card of a target whose I/O is the boundary (the built-in models), with ``class_names`` if given."""
    names = None if class_names is None else tuple(class_names)
    return ModelCard(name=name, class_names=names, num_classes=None if names is None else len(names))


def preset(which: str, channels: str, scale: float) -> tuple[float, ...]:
    """The ImageNet mean (``which = "mean"``) or std in ``scale``'s units, in ``channels`` order; grey: the
    luminance-weighted (ITU-R BT.601) average of the RGB values."""
    rgb = IMAGENET_MEAN if which == "mean" else IMAGENET_STD
    if channels == "grey":
        values: tuple[float, ...] = (sum(w * v for w, v in zip(LUMA_WEIGHTS, rgb, strict=True)),)
    else:
        values = rgb[::-1] if channels == "bgr" else rgb
    return tuple(v * scale for v in values)


# ---------------------------------------------------------------- reading and writing

def load_card(path: str | os.PathLike) -> ModelCard:
    """The card in TOML file ``path``; a one-line HarnessError ("card FILE: input.layout: ...") when it is not."""
    text = read_text(path, MAX_CARD_BYTES, "card ", "a short TOML text")
    return parse_card(text, f"card {path}")


def parse_card(text: str, where: str) -> ModelCard:
    """The card of TOML ``text``; ``where`` (e.g. "card FILE") prefixes every error. Unknown keys are refused
    (the message lists the known ones), every value is checked (type, range, consistency)."""
    doc = parse_toml(text, where, "a model card")
    return _from_doc(doc, where)


def card_to_toml(card: ModelCard, comments: Mapping[str, str] | None = None) -> str:
    """``card`` as TOML text that :func:`parse_card` reads back equal; every field is written (the defaults
    too, so that a user sees what to edit). ``comments``: dotted field (or ``input``/``output``) -> a trailing
    comment (one line; control characters become spaces)."""
    comments = comments or {}
    doc = _to_doc(card)
    lines: list[str] = []

    def emit(text: str, key: str) -> None:
        note = comments.get(key)
        if note:
            note = re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]", " ", str(note)).strip()
            text = f"{text:<31} # {note}"
        lines.append(text)

    for key, value in doc.items():
        if not isinstance(value, dict):
            emit(f"{key} = {_toml_value(value)}", key)
    for table, values in doc.items():
        if isinstance(values, dict):
            lines.append("")
            emit(f"[{table}]", table)
            for key, value in values.items():
                emit(f"{key} = {_toml_value(value)}", f"{table}.{key}")
    return "\n".join(lines) + "\n"


def write_card(card: ModelCard, path: str | os.PathLike, comments: Mapping[str, str] | None = None) -> None:
    """Write ``card`` (:func:`card_to_toml`) to ``path`` atomically."""
    write_bytes_atomic(path, card_to_toml(card, comments).encode("utf-8"))


def overridable_fields() -> tuple[str, ...]:
    """The dotted fields ``--card-set FIELD=VALUE`` may set."""
    return (("name", "num_classes", "class_names") + tuple(f"input.{f.name}" for f in fields(InputSpec))
            + tuple(f"output.{f.name}" for f in fields(OutputSpec)))


def apply_overrides(card: ModelCard, items: Sequence[str], where: str = "card") -> ModelCard:
    """``card`` with each ``FIELD=VALUE`` of ``items`` set (``--card-set``), checked as a whole afterwards.

    VALUE is in TOML syntax (``[0.5, 0.5, 0.5]``, ``'my input'``, ``2``) or a bare word (``imagenet``,
    ``NHWC``, ``none``, ``input:0``); ``input.size`` also takes ``HxW`` (``512x512``). Presets are resolved
    after all items: ``input.scale=255`` rescales an ``imagenet`` mean, ``input.channels=bgr`` reorders it.
    A bad field or value: a one-line HarnessError.
    """
    doc = _to_doc(card)
    known = overridable_fields()
    for item in items:
        dotted, sep, text = str(item).partition("=")
        dotted, text = dotted.strip(), text.strip()
        shown = _shown(str(item))
        if not sep or not dotted:
            raise HarnessError(f"--card-set {shown}: expected FIELD=VALUE, e.g. input.mean=imagenet")
        if dotted not in known:
            raise HarnessError(f"--card-set {shown}: {_shown(dotted)} is not a card field (fields: {', '.join(known)})")
        table, _, key = dotted.rpartition(".")
        (doc.setdefault(table, {}) if table else doc)[key] = _override_value(dotted, text, shown)
    return _from_doc(doc, f"{where} (with --card-set)")


def require_resolved(card: ModelCard, where: str, fields: Sequence[str] | None = None) -> None:
    """HarnessError when a field of ``card`` (of ``fields``, None: any) is still "unknown": it names each
    one and what to put there."""
    missing = [f for f in card.unknown if fields is None or f in fields]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise HarnessError(f'{where}: {", ".join(missing)} {verb} "unknown"; edit the card: '
                           + "; ".join(_HINTS[f] for f in missing) + " (or pass --card-set FIELD=VALUE)")


# ---------------------------------------------------------------- TOML document <-> card

_TOP_KEYS = ("schema", "name", "num_classes", "class_names", "input", "output")
_STRING_FIELDS = ("name", "input.name", "input.layout", "input.channels", "input.dtype", "input.resize", "output.name",
                  "output.layout", "output.kind", "output.resolution")  # a bare word is the string itself


def _from_doc(doc: dict[str, Any], where: str) -> ModelCard:
    try:
        return _build(doc)
    except CardError as e:
        raise CardError(e.field, e.detail, where) from None


def _build(doc: dict[str, Any]) -> ModelCard:
    _check_keys(doc, "", _TOP_KEYS)
    schema = doc.get("schema", SCHEMA)
    if isinstance(schema, bool) or schema != SCHEMA:
        raise CardError("schema", f"{_shown(schema)} is not supported; this harness reads schema = {SCHEMA}")
    raw_input, raw_output = _table(doc, "input"), _table(doc, "output")
    _check_keys(raw_input, "input.", tuple(f.name for f in fields(InputSpec)))
    _check_keys(raw_output, "output.", tuple(f.name for f in fields(OutputSpec)))
    unknown: list[str] = []

    def maybe_unknown(key: str, value: Any) -> Any:
        if value == UNKNOWN:
            unknown.append(key)
            return None
        return value

    plain = {k: v for k, v in raw_input.items() if k not in ("mean", "std", "size")}
    size = raw_input.get("size")
    if size == DYNAMIC:
        size = None
    base = InputSpec(**plain, size=_listed(size))  # the fields the presets depend on are checked first
    statistics = {}
    for key in ("mean", "std"):
        value = maybe_unknown(f"input.{key}", raw_input.get(key, NONE))
        if isinstance(value, str):
            if value == IMAGENET:
                value = preset(key, base.channels, base.scale)
            elif value == NONE:
                value = None
            else:
                raise CardError(f"input.{key}", f'{_shown(value)} is not "none", "imagenet", "unknown" or a list '
                                                "of numbers")
        statistics[key] = _listed(value)
    spec_input = InputSpec(**plain, size=base.size, **statistics)
    num_classes = maybe_unknown("num_classes", doc.get("num_classes"))
    class_names = maybe_unknown("class_names", doc.get("class_names"))
    return ModelCard(name=doc.get("name"), input=spec_input, output=OutputSpec(**raw_output),
                     num_classes=num_classes, class_names=_listed(class_names), unknown=tuple(unknown))


def _to_doc(card: ModelCard) -> dict[str, Any]:
    """``card`` as the TOML document :func:`_build` reads back equal (presets and "unknown" as words)."""
    doc: dict[str, Any] = {"schema": SCHEMA}
    if card.name is not None:
        doc["name"] = card.name
    for key in ("num_classes", "class_names"):
        value = UNKNOWN if key in card.unknown else getattr(card, key)
        if value is not None:
            doc[key] = list(value) if isinstance(value, tuple) else value
    i = card.input
    inp: dict[str, Any] = {} if i.name is None else {"name": i.name}
    inp.update(layout=i.layout, channels=i.channels, dtype=i.dtype, scale=int(i.scale))
    for key in ("mean", "std"):
        value = getattr(i, key)
        if f"input.{key}" in card.unknown:
            inp[key] = UNKNOWN
        elif value is None:
            inp[key] = NONE
        elif value == preset(key, i.channels, i.scale):
            inp[key] = IMAGENET
        else:
            inp[key] = list(value)
    inp["size"] = DYNAMIC if i.size is None else list(i.size)
    inp["resize"] = i.resize
    o = card.output
    out: dict[str, Any] = {} if o.name is None else {"name": o.name}
    out.update(layout=o.layout, kind=o.kind, resolution=o.resolution)
    doc["input"], doc["output"] = inp, out
    return doc


def _check_keys(table: dict[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            raise CardError(f"{prefix}{_shown(key, 40, quote=False)}", f"unknown key (known: {', '.join(known)})")


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise CardError(key, f"expected a table [{key}], got {_shown(value)}")
    return value


def _listed(value: Any) -> Any:
    """A TOML array as a tuple (the dataclasses check its items); anything else as it is."""
    return tuple(value) if isinstance(value, list) else value


def _override_value(field: str, text: str, shown: str) -> Any:
    if not text:
        raise HarnessError(f"--card-set {shown}: no value after '='")
    if field == "input.size":
        match = re.fullmatch(r"([0-9]{1,5})\s*[xX]\s*([0-9]{1,5})", text)
        if match:
            return [int(match[1]), int(match[2])]
    bare = re.fullmatch(r"[A-Za-z0-9_.:/+-]+", text) is not None
    if bare and field in _STRING_FIELDS:
        return text  # a graph output named 1234 (unnamed torch exports) stays the string "1234"
    if "\n" not in text and "\r" not in text:
        try:
            parsed = tomllib.loads(f"v = {text}")
        except (tomllib.TOMLDecodeError, ValueError, RecursionError):
            parsed = None
        if parsed is not None and list(parsed) == ["v"]:
            return parsed["v"]
        if bare:
            return text
    raise HarnessError(f"--card-set {shown}: the value is neither TOML (a number, [list], \"quoted string\") nor a "
                       "bare word (letters, digits, _ . : / + -)")


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back the same float; always has "." or "e"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# ---------------------------------------------------------------- field checks

def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # the dataclasses are frozen; __post_init__ normalises


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise CardError(field, f"{_shown(value)} is not one of {', '.join(choices)}")


def _printable(value: Any, field: str, max_len: int, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable():
        raise CardError(field, f"expected {what} (1 to {max_len} printable characters), got {_shown(value)}")
    return value


def _tensor_name(value: Any, field: str) -> str | None:
    if value is None:
        return None
    return _printable(value, field, MAX_TENSOR_NAME, "the graph's tensor name")


def _plain_name(value: Any, field: str) -> str | None:
    if value is None:
        return None
    name = _printable(value, field, MAX_NAME, "a plain name")
    if name != name.strip():
        raise CardError(field, f"{_shown(value)} starts or ends with a space; remove it")
    return name


def _class_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise CardError("class_names", f'expected a list of names (one per class) or "unknown", got {_shown(value)}')
    if len(value) > MAX_CLASSES:
        raise CardError("class_names", f"names {len(value)} classes; at most {MAX_CLASSES} are allowed")
    names = tuple(_plain_name(v, f"class_names[{i}]") for i, v in enumerate(value))
    if len(set(names)) != len(names):
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        raise CardError("class_names", f"{_shown(twice)} appears twice; each class needs its own name")
    return names  # type: ignore[return-value]


def _unknown(card: ModelCard) -> tuple[str, ...]:
    value = card.unknown
    if isinstance(value, str) or not isinstance(value, list | tuple) \
            or any(f not in UNKNOWN_FIELDS for f in value) or len(set(value)) != len(value):
        raise CardError("unknown", f"expected distinct fields of {', '.join(UNKNOWN_FIELDS)}, got {_shown(value)}")
    for f in value:
        holder, _, key = f.rpartition(".")
        if getattr(card.input if holder else card, key) is not None:
            raise CardError(f, 'is both "unknown" and given; give one')
    return tuple(f for f in UNKNOWN_FIELDS if f in value)


def _number(value: Any) -> bool:
    """A finite int or float (not a bool; an int too large for a float counts as not finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < 1e308 if isinstance(value, int) else math.isfinite(value)


def _scale(value: Any) -> float:
    if not _number(value) or float(value) not in SCALES:
        raise CardError("input.scale", f"{_shown(value)} is not 1 or 255 (1: pixels in [0, 1]; 255: pixels in "
                                       "[0, 255])")
    return float(value)


def _statistics(value: Any, field: str, n: int, scale: float, channels: str,
                positive: bool) -> tuple[float, ...] | None:
    """A mean (``positive=False``) or std: None, or ``n`` finite numbers in [0, scale] (a std > 0)."""
    if value is None:
        return None
    allowed = f'"none", "imagenet", "unknown" or a list of {n} number{"s" if n > 1 else ""}'
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise CardError(field, f"expected {allowed}, got {_shown(value)}")
    if len(value) != n:
        order = "one number (input.channels = grey)" if n == 1 else f"one per channel, in {channels} order"
        raise CardError(field, f"has {len(value)} numbers; give {order}")
    out = []
    for x in value:
        if not _number(x):
            raise CardError(field, f"{_shown(x)} is not a finite number; expected {allowed}")
        low_ok = x > 0 if positive else x >= 0
        if not low_ok or x > scale:
            bound = f"(0, {scale:g}]" if positive else f"[0, {scale:g}]"
            hint = "; for 0-255 numbers set input.scale = 255" if scale == 1 and x > 1 else ""
            raise CardError(field, f"{x:g} is outside {bound}: numbers are in the scale's units (input.scale = "
                                   f"{scale:g}){hint}")
        out.append(float(x))
    return tuple(out)


def _size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple) or len(value) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE for v in value):
        raise CardError("input.size", f'expected "dynamic" or [H, W] (integers in [1, {MAX_SIDE}]), got '
                                      f"{_shown(value)}")
    return int(value[0]), int(value[1])


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _shown(value: Any, limit: int = 60, quote: bool = True) -> str:
    """A value for a one-line message, at most about ``limit`` characters, control characters escaped."""
    if isinstance(value, tuple):
        value = list(value)  # TOML arrays are tuples in a card: show them as written
    try:
        text = repr(value) if quote or not isinstance(value, str) else value.encode("unicode_escape").decode("ascii")
    except ValueError:  # an int of more than 4300 digits has no repr
        text = f"an {type(value).__name__} of more than 4300 digits"
    return text if len(text) <= limit else text[:limit - 10] + "..."
