"""Attacks. White-box (need a differentiable torch model): fgsm, mifgsm, pgd, apgd-LOSS, segpgd, cospgd and
the worst case sea; black-box: square.

Every white-box attack is an :class:`Attack`: ``attack(model, images, labels, seed)`` returns an
:class:`AttackResult`. ε and step sizes are on the 0-255 pixel scale (8 means 8/255).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.attacks.apgd import APGD
from harness.attacks.base import Attack, AttackResult
from harness.attacks.cospgd import CosPGD
from harness.attacks.fgsm import FGSM
from harness.attacks.loss import pixel_cross_entropy
from harness.attacks.losses import SEGMENTATION_LOSSES
from harness.attacks.mifgsm import MIFGSM
from harness.attacks.pgd import PGD, default_pgd_alpha
from harness.attacks.segpgd import SegPGD
from harness.attacks.worst_case import SEA_STEPS, WorstCase, WorstCaseResult, sea
from harness.errors import HarnessError
from harness.limits import MAX_STEPS

APGD_ATTACKS = tuple(f"apgd-{loss}" for loss in SEGMENTATION_LOSSES)
WHITEBOX_ATTACKS = ("fgsm", "mifgsm", "pgd", *APGD_ATTACKS, "segpgd", "cospgd", "sea")
# Attacks whose step count defaults to 20 and that can keep the best iterate instead of the last.
_PGD_LIKE = ("mifgsm", "pgd", "segpgd", "cospgd")
_STEP_SIZE_FREE = (*APGD_ATTACKS, "sea")  # APGD adapts its own step size

APGD_NAME_PATTERN = f"apgd-{{{','.join(SEGMENTATION_LOSSES)}}}[-red][-N]"  # apgd-{ce,mce,...}[-red][-N]
# The single attacks' name patterns (help texts and argparse's "invalid choice" list), in WHITEBOX_ATTACKS' terms.
ATTACK_NAME_PATTERNS = ("fgsm", "mifgsm[-best][-N]", "pgd[-best][-N]", "segpgd[-best][-N]", "cospgd[-best][-N]",
                        APGD_NAME_PATTERN, "sea[-N]")
ATTACK_NAMES_HELP = (f"{', '.join(ATTACK_NAME_PATTERNS)}, or a worst case of several joined by + "
                     "(apgd-mce-100+pgd-100)")

__all__ = ["APGD", "ATTACK_NAMES_HELP", "ATTACK_NAME_PATTERNS", "FGSM", "MIFGSM", "PGD", "WHITEBOX_ATTACKS", "Attack",
           "AttackResult", "CosPGD", "SegPGD", "WorstCase", "WorstCaseResult", "attacks_from_names",
           "default_pgd_alpha", "make_attack", "parse_attack_name", "pixel_cross_entropy", "sea"]


@dataclass(frozen=True)
class AttackName:
    """A parsed name: ``base`` (one of WHITEBOX_ATTACKS), ``steps`` (None: the default), ``reduced_eps``
    (``-red``, apgd only), ``keep_best`` (``-best``, the PGD-like attacks only)."""

    base: str
    steps: int | None
    reduced_eps: bool
    keep_best: bool


_NAME = re.compile(rf"(?P<base>{'|'.join(map(re.escape, WHITEBOX_ATTACKS))})"
                   r"(?P<red>-red)?(?P<best>-best)?(?:-?(?P<steps>\d+))?")


def parse_attack_name(text: str) -> AttackName | None:
    """``pgd-best-20`` -> AttackName; None when ``text`` is no attack name (a suffix the attack lacks
    included). The step count is not range-checked here."""
    match = _NAME.fullmatch(text)
    if match is None:
        return None
    base, digits = match["base"], match["steps"]
    red, best = bool(match["red"]), bool(match["best"])
    if (base == "fgsm" and (digits or red or best)) or (red and not base.startswith("apgd-")) \
            or (best and base not in _PGD_LIKE):
        return None
    # More digits than any allowed count: refused by make_attack's range check without building a huge int.
    steps = None if not digits else (int(digits) if len(digits) <= 9 else MAX_STEPS + 1)
    return AttackName(base, steps, red, best)


def make_attack(name: str, eps: float = 8.0, steps: int | None = None, alpha: float | None = None,
                decay: float | None = None, keep_best: bool = False) -> Attack:
    """The white-box attack ``name`` with the given parameters (None: the attack's default).

    ``name`` is one of WHITEBOX_ATTACKS, or a full name such as ``apgd-mce-red-100`` (see
    :func:`attacks_from_names`) when ``steps`` is None. Steps default to 20 (mifgsm, pgd, segpgd, cospgd)
    or 100 (apgd, and each of sea's members). ``keep_best``: the PGD-like attacks return the iterate with
    the fewest correct pixels (apgd and sea always do). Raises HarnessError for an unknown name, a value
    out of range, or a parameter the attack does not have (FGSM has one step of size ε; only MI-FGSM has
    a decay; APGD sets its own step size).
    """
    if name not in WHITEBOX_ATTACKS:
        parsed = parse_attack_name(name) if isinstance(name, str) and steps is None else None
        if parsed is None:
            raise HarnessError(f"unknown attack {name!r}; choose from: {', '.join(WHITEBOX_ATTACKS)} "
                               f"({ATTACK_NAMES_HELP})")
        return _build(parsed.base, eps, parsed.steps, alpha, decay, keep_best or parsed.keep_best,
                      parsed.reduced_eps)
    return _build(name, eps, steps, alpha, decay, keep_best, False)


def _build(name: str, eps: float, steps: int | None, alpha: float | None, decay: float | None,
           keep_best: bool, reduced_eps: bool) -> Attack:
    if name == "fgsm":
        if steps not in (None, 1):
            raise HarnessError("fgsm takes exactly one step; --steps applies to mifgsm and pgd "
                               "(and the other iterative attacks)")
        if alpha is not None:
            raise HarnessError("fgsm steps by eps; --alpha applies to mifgsm and pgd (and segpgd, cospgd)")
        if keep_best:
            raise HarnessError("fgsm takes one step; keeping the best iterate applies to the iterative attacks")
    if decay is not None and name != "mifgsm":
        raise HarnessError("--decay applies to mifgsm only")
    if alpha is not None and name in _STEP_SIZE_FREE:
        raise HarnessError(f"{name} sets its own step size (2 eps, halved when progress stalls); "
                           "--alpha applies to mifgsm, pgd, segpgd and cospgd")
    if steps is not None and steps > MAX_STEPS:
        raise HarnessError(f"steps must be at most {MAX_STEPS}, got {steps}")
    if name == "fgsm":
        return FGSM(eps)
    if name == "mifgsm":
        return MIFGSM(eps, 20 if steps is None else steps, 1.0 if decay is None else decay, alpha, keep_best)
    if name == "pgd":
        return PGD(eps, 20 if steps is None else steps, alpha, keep_best=keep_best)
    if name == "segpgd":
        return SegPGD(eps, 20 if steps is None else steps, alpha, keep_best)
    if name == "cospgd":
        return CosPGD(eps, 20 if steps is None else steps, alpha, keep_best)
    if name == "sea":
        return sea(eps, SEA_STEPS if steps is None else steps)
    return APGD(eps, 100 if steps is None else steps, name.removeprefix("apgd-"), reduced_eps)


def attacks_from_names(names: Sequence[str], eps: float, option: str, what: str = "attack") -> list[Attack]:
    """``["fgsm", "mifgsm-5", "pgd20", "apgd-mce-100", "sea"]`` -> attacks with their default step sizes.

    Names (N: steps): fgsm; mifgsm[-best][-N], pgd[-best][-N], segpgd[-best][-N], cospgd[-best][-N] (default
    20; ``-best``: keep the iterate with the fewest correct pixels); apgd-LOSS[-red][-N] with LOSS one of ce,
    mce, bmce, js, msph (default 100; ``-red``: SEA's reduced-ε schedule); sea[-N] (the worst case of
    apgd-{ce,mce,bmce,js,msph}-N, default 100); ``A+B+...``: the per-image worst case of those attacks. A label
    (``pgd-best-100``) names its attack again.
    HarnessError naming ``option`` on an unknown name, a step count outside 1..MAX_STEPS, or when two names
    mean the same attack.
    """
    attacks: list[Attack] = []
    for item in names:
        parts = [_from_name(part, eps, option, what) for part in item.split("+")]
        if len(parts) == 1:
            attacks.append(parts[0])
            continue
        try:
            attacks.append(WorstCase(parts))
        except HarnessError as error:
            raise HarnessError(f"{what} {item!r} in {option}: {error}") from None
    labels = [a.label for a in attacks]
    if len(set(labels)) != len(labels):
        raise HarnessError(f"{option} names the same {what} twice: {','.join(names)}")
    return attacks


def _from_name(item: str, eps: float, option: str, what: str) -> Attack:
    parsed = parse_attack_name(item)
    if parsed is None:
        raise HarnessError(f"unknown {what} {item!r} in {option}; use {ATTACK_NAMES_HELP} (e.g. mifgsm,pgd-20)")
    if parsed.steps is not None and not 1 <= parsed.steps <= MAX_STEPS:
        raise HarnessError(f"{what} {item!r} in {option}: the number of steps must be 1-{MAX_STEPS}")
    return _build(parsed.base, eps, parsed.steps, None, None, parsed.keep_best, parsed.reduced_eps)
