"""Sanity checks on attack results in the spirit of AutoAttack's (Croce & Hein 2020): patterns that a sound
white-box evaluation never shows, so that each one warns that gradients may be masked or an attack is broken.

:func:`sanity_warnings` is a pure function over result records (DESIGN.md schema; it runs nothing):

- ``blackbox``: a black-box attack (:func:`is_blackbox`: a query attack of harness.attacks.blackbox_attacks,
  Square or hard-label, or examples transferred from another model) leaves fewer correct pixels than the
  strongest white-box attack on the same model, precision and images;
- ``eps``: an attack leaves more correct pixels at a larger ε (all else equal);
- ``iterations``: an attack leaves more correct pixels with more iterations (all else equal; the step size may
  differ, as in the PGD sweep where it is ε / iterations);
- ``fgsm``: FGSM leaves fewer correct pixels than PGD on the same model and images (a PGD whose steps add up to
  at least 2ε: a shorter walk may lose to FGSM's one full step without any masking).

A difference counts only when it exceeds ``margin`` points of pixel accuracy (default one point), so that
the noise of a last iterate is no warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.attacks import parse_attack_name
from harness.attacks.blackbox_attacks import BLACKBOX_ATTACKS

# Points of pixel accuracy. The default suite's Figure 3 PGD (last iterate) goes from 38.39 % at 80 iterations to
# 38.89 % at 100: such noise is no sign of masking; a masked gradient or a broken attack costs far more.
DEFAULT_MARGIN = 1.0
# Parameters that a comparison over ε or over iterations lets vary with the quantity compared.
_WITH_EPS = ("eps", "alpha")
_WITH_STEPS = ("steps", "alpha")


@dataclass(frozen=True)
class SanityWarning:
    """``kind``: blackbox, eps, iterations or fgsm; ``model``: the record's model; ``message``: one line."""

    kind: str
    model: str
    message: str


def record_label(record: Mapping[str, Any]) -> str:
    """A record's column name (``pgd-100``, ``sea``, ``square-1000q``, ``hardlabel-1000q``), with the source model
    of transferred examples."""
    attack, params = record["attack"], record["params"]
    steps = params.get("steps")
    label = attack if steps is None or attack == "fgsm" else f"{attack}-{steps}"
    if attack in BLACKBOX_ATTACKS and "queries" in params:
        label += f"-{params['queries']}q"
    source = record.get("source_model")
    return label if source in (None, record["model"]) else f"{label} from {source}"


def is_whitebox(record: Mapping[str, Any]) -> bool:
    """A white-box attack on the model itself: a name of harness.attacks (a worst case of several included)."""
    if record.get("source_model") not in (None, record["model"]):
        return False
    return all(parse_attack_name(part) is not None for part in str(record["attack"]).split("+"))


def is_blackbox(record: Mapping[str, Any]) -> bool:
    """An attack that never saw the model's gradients: a query attack on the deployed engine (any name of
    BLACKBOX_ATTACKS: Square, hard-label) or examples transferred from another model. A record of an attack that
    is neither (a name this version does not know) is compared with nothing."""
    return record["attack"] in BLACKBOX_ATTACKS or record.get("source_model") not in (None, record["model"])


def _images(record: Mapping[str, Any]) -> tuple[str, ...]:
    """What must be equal for two records to be about the same model and images."""
    return (str(record["model"]), str(record.get("size")), str(record["precision"]), str(record["n_images"]),
            json.dumps(record.get("data"), sort_keys=True), str(record["params"].get("eps")))


def _points(record: Mapping[str, Any]) -> float:
    return 100 * float(record["pixel_accuracy"])


def sanity_warnings(records: Sequence[Mapping[str, Any]], margin: float = DEFAULT_MARGIN) -> list[SanityWarning]:
    """Every warning the checks of the module docstring find in ``records`` (valid records; clean ones are
    skipped), in a fixed order: by check, then by record order."""
    attacked = [r for r in records if r["attack"] != "none"]
    return [*_blackbox(attacked, margin), *_rising(attacked, "eps", _WITH_EPS, margin),
            *_rising(attacked, "steps", _WITH_STEPS, margin), *_fgsm(attacked, margin)]


def _groups(records: Iterable[Mapping[str, Any]], key) -> dict[Any, list[Mapping[str, Any]]]:
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def _blackbox(records: Sequence[Mapping[str, Any]], margin: float) -> list[SanityWarning]:
    warnings = []
    for group in _groups(records, _images).values():
        white = [r for r in group if is_whitebox(r)]
        if not white:
            continue
        strongest = min(white, key=_points)
        for record in group:
            if is_blackbox(record) and _points(record) < _points(strongest) - margin:
                warnings.append(SanityWarning("blackbox", record["model"], (
                    f"{record['model']}: the black-box {record_label(record)} ({record['engine']}) leaves "
                    f"{_points(record):.2f} % pixel accuracy, below the strongest white-box attack "
                    f"{record_label(strongest)} ({_points(strongest):.2f} %) on the same images: the gradients may "
                    "be masked, or the white-box attacks broken")))
    return warnings


def _rising(records: Sequence[Mapping[str, Any]], quantity: str, varying: tuple[str, ...],
            margin: float) -> list[SanityWarning]:
    def key(record: Mapping[str, Any]) -> tuple[str, ...]:
        params = record["params"]
        fixed: dict[str, Any] = {k: v for k, v in params.items() if k not in varying}
        fixed["alpha"] = _step_rule(params, quantity)
        return (*_images(record)[:5], str(record["engine"]), str(record["attack"]), str(record.get("source_model")),
                json.dumps(fixed, sort_keys=True))

    what = "ε" if quantity == "eps" else "iterations"
    warnings = []
    for group in _groups((r for r in records if _number(r["params"].get(quantity))), key).values():
        ordered = sorted(group, key=lambda r: r["params"][quantity])
        for low, high in zip(ordered, ordered[1:], strict=False):
            if high["params"][quantity] > low["params"][quantity] and _points(high) > _points(low) + margin:
                warnings.append(SanityWarning("eps" if quantity == "eps" else "iterations", high["model"], (
                    f"{high['model']}: {record_label(high)} ({high['engine']} {high['precision']}) leaves more "
                    f"pixel accuracy at {quantity} {high['params'][quantity]:g} ({_points(high):.2f} %) than at "
                    f"{low['params'][quantity]:g} ({_points(low):.2f} %): accuracy should not rise with {what}; the "
                    "gradients may be masked, or the attack broken")))
    return warnings


def _fgsm(records: Sequence[Mapping[str, Any]], margin: float) -> list[SanityWarning]:
    warnings = []
    for group in _groups((r for r in records if is_whitebox(r)), lambda r: (*_images(r), r["engine"])).values():
        for fgsm in (r for r in group if r["attack"] == "fgsm"):
            beaten = [r for r in group if r["attack"] in ("pgd", "pgd-best") and _crosses_the_ball(r["params"])
                      and _points(fgsm) < _points(r) - margin]
            if beaten:
                shown = ", ".join(f"{record_label(r)} ({_points(r):.2f} %)" for r in beaten)
                warnings.append(SanityWarning("fgsm", fgsm["model"], (
                    f"{fgsm['model']}: FGSM leaves {_points(fgsm):.2f} % pixel accuracy, below {shown}: PGD's "
                    "iterations should not lose to one step; the gradients may be masked (or obfuscated), or PGD "
                    "broken")))
    return warnings


def _crosses_the_ball(params: Mapping[str, Any]) -> bool:
    """Whether PGD's steps add up to at least 2ε, so that it can reach, from its random start, every point FGSM
    can (PGD-1 with step ε / 4 losing to FGSM's one step of ε is no sign of masking)."""
    alpha, eps, steps = params.get("alpha"), params.get("eps"), params.get("steps")
    if not (_number(alpha) and _number(eps) and _number(steps)):
        return True
    return alpha * steps >= 2 * eps - 1e-9


def _step_rule(params: Mapping[str, Any], quantity: str) -> Any:
    """The step size as a rule that stays equal when ``quantity`` varies: a multiple of ε over ε (PGD's default
    ε / 4); ε / steps or a fixed size over iterations (the paper's Figure 3 sweep ties it to the steps)."""
    alpha, eps, steps = params.get("alpha"), params.get("eps"), params.get("steps")
    if not (_number(alpha) and _number(eps) and eps):
        return alpha
    if quantity == "eps":
        return round(alpha / eps, 9)
    return "eps/steps" if _number(steps) and abs(alpha * steps - eps) < 1e-9 * max(1.0, eps) else alpha


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
