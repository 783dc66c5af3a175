"""Strict type and range checks for the JSON documents the harness reads back (results, suite runs, curves).

Every function takes the value and ``where`` (a path such as ``"results.json: record 3: pixel_accuracy"``),
returns the value with its checked type, and raises a one-line HarnessError naming ``where`` otherwise.
Checks are strict: a JSON ``true`` is not the number 1, NaN and infinities are not numbers, an integral
float is not a count. Messages never serialise the offending value whole (it may be huge or deeply nested).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")

JSON_SCALAR = (str, int, float, bool, type(None))
MAX_INTEGER = 2**53  # the largest integer a float holds exactly: JSON readers differ beyond
NAME_LENGTH = 200  # names, labels and versions: anything longer is not what the harness writes


def describe(value: Any) -> str:
    """A short, safe description of a JSON value for a message: never the whole of a list or object."""
    if isinstance(value, dict):
        return f"an object of {len(value)} key(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, JSON_SCALAR):
        text = json.dumps(value)  # null, true, NaN, Infinity (1e400 reads as inf)
        return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"
    return type(value).__name__


def fail(where: str, expected: str, value: Any) -> NoReturn:
    raise HarnessError(f"{where} must be {expected}, got {describe(value)}")


def is_number(value: Any) -> bool:
    """A finite JSON number (int or float, not a bool); integers beyond +-2**53 (not exact as floats) are not."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_INTEGER <= value <= MAX_INTEGER
    return isinstance(value, float) and math.isfinite(value)


def number(value: Any, where: str, minimum: float | None = None, maximum: float | None = None,
           positive: bool = False) -> float:
    """A finite number, optionally ``>= minimum``, ``<= maximum``, ``> 0`` (``positive``)."""
    bounds = ["> 0"] if positive else []
    bounds += [f">= {minimum:g}"] if minimum is not None else []
    bounds += [f"<= {maximum:g}"] if maximum is not None else []
    expected = " and ".join(["a finite number " + bounds[0], *bounds[1:]]) if bounds else "a finite number"
    if not is_number(value) or (positive and value <= 0) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        fail(where, expected, value)
    return float(value)


def fraction(value: Any, where: str) -> float:
    """A finite number in [0, 1] (accuracies and IoUs are fractions, not percent)."""
    if not is_number(value) or not 0 <= value <= 1:
        fail(where, "a fraction in [0, 1]", value)
    return float(value)


def integer(value: Any, where: str, minimum: int = 0) -> int:
    """A JSON integer (not a bool, not a float) ``>= minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_INTEGER:
        too_large = isinstance(value, int) and not isinstance(value, bool) and value > MAX_INTEGER
        fail(where, f"an integer >= {minimum}" + (" and <= 2**53" if too_large else ""), value)
    return value


def count(value: Any, where: str) -> int:
    """An integer >= 1 (images, steps, queries, epochs)."""
    return integer(value, where, minimum=1)


def non_negative(value: Any, where: str) -> float:
    """A finite number >= 0 (seconds, tolerances in points, step sizes)."""
    return number(value, where, minimum=0)


def string(value: Any, where: str, empty: bool = False, max_length: int = NAME_LENGTH) -> str:
    """A string of at most ``max_length`` characters; non-empty unless ``empty``."""
    if not isinstance(value, str) or (not empty and not value):
        fail(where, "a string" if empty else "a non-empty string", value)
    if len(value) > max_length:
        raise HarnessError(f"{where} must be at most {max_length} characters long, got {len(value)}")
    return value


def mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(where, "a JSON object", value)
    return value


def items(value: Any, where: str, check: Callable[[Any, str], T], empty: bool = True) -> list[T]:
    """A list whose every item passes ``check(item, f"{where}[i]")``; non-empty unless ``empty``."""
    if not isinstance(value, list) or (not empty and not value):
        fail(where, "a list" if empty else "a non-empty list", value)
    return [check(item, f"{where}[{i}]") for i, item in enumerate(value)]


def values(value: Any, where: str, check: Callable[[Any, str], T]) -> dict[str, T]:
    """An object whose every value passes ``check(value, f"{where}.{key}")``."""
    return {key: check(item, f"{where}.{key}") for key, item in mapping(value, where).items()}


def optional(check: Callable[..., T]) -> Callable[..., T | None]:
    """``check`` that also accepts null."""

    def checked(value: Any, where: str, *args: Any, **kwargs: Any) -> T | None:
        return None if value is None else check(value, where, *args, **kwargs)

    return checked


def scalar(value: Any, where: str) -> str | int | float | bool | None:
    """A JSON scalar: string, finite number, boolean or null."""
    if not isinstance(value, JSON_SCALAR) or (isinstance(value, int | float) and not isinstance(value, bool)
                                              and not is_number(value)):
        fail(where, "a string, finite number, boolean or null", value)
    return value


def field(doc: dict[str, Any], key: str, where: str) -> Any:
    """``doc[key]``; a HarnessError naming ``where`` when the key is absent."""
    if key not in doc:
        raise HarnessError(f"{where} lacks {key!r}")
    return doc[key]
