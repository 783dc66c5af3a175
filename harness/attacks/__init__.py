"""Attacks. White-box (need a differentiable torch model): fgsm, mifgsm, pgd; black-box: square.

Every white-box attack is an :class:`Attack`: ``attack(model, images, labels, seed)`` returns an
:class:`AttackResult`. ε and step sizes are on the 0-255 pixel scale (8 means 8/255).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.attacks.base import Attack, AttackResult
from harness.attacks.fgsm import FGSM
from harness.attacks.loss import pixel_cross_entropy
from harness.attacks.mifgsm import MIFGSM
from harness.attacks.pgd import PGD, default_pgd_alpha
from harness.errors import HarnessError

WHITEBOX_ATTACKS = ("fgsm", "mifgsm", "pgd")

__all__ = ["FGSM", "MIFGSM", "PGD", "WHITEBOX_ATTACKS", "Attack", "AttackResult", "default_pgd_alpha",
           "attacks_from_names", "make_attack", "pixel_cross_entropy"]


def make_attack(name: str, eps: float = 8.0, steps: int | None = None, alpha: float | None = None,
                decay: float | None = None) -> Attack:
    """The white-box attack ``name`` with the given parameters (None: the attack's default).

    Raises HarnessError for an unknown name, a value out of range, or a parameter the attack
    does not have (FGSM has one step of size ε; only MI-FGSM has a decay).
    """
    if name == "fgsm":
        if steps not in (None, 1):
            raise HarnessError("fgsm takes exactly one step; --steps applies to mifgsm and pgd")
        if alpha is not None:
            raise HarnessError("fgsm steps by eps; --alpha applies to mifgsm and pgd")
    if decay is not None and name != "mifgsm":
        raise HarnessError("--decay applies to mifgsm only")
    if name == "fgsm":
        return FGSM(eps)
    if name == "mifgsm":
        return MIFGSM(eps, 20 if steps is None else steps, 1.0 if decay is None else decay, alpha)
    if name == "pgd":
        return PGD(eps, 20 if steps is None else steps, alpha)
    raise HarnessError(f"unknown attack {name!r}; choose from: {', '.join(WHITEBOX_ATTACKS)}")


def attacks_from_names(names: Sequence[str], eps: float, option: str, what: str = "attack") -> list[Attack]:
    """``["fgsm", "mifgsm-5", "pgd20"]`` -> attacks with their default step sizes: fgsm, mifgsm[-N] and
    pgd[-N] (N steps, default 20). HarnessError naming ``option`` on an unknown name, or when two names
    mean the same attack."""
    attacks = []
    for item in names:
        match = re.fullmatch(r"(fgsm|mifgsm|pgd)-?(\d*)", item)
        if match is None or (match[1] == "fgsm" and match[2]):
            raise HarnessError(f"unknown {what} {item!r} in {option}; use fgsm, mifgsm[-N] or pgd[-N] "
                               "(e.g. mifgsm,pgd-20)")
        attacks.append(make_attack(match[1], eps, int(match[2]) if match[2] else None))
    labels = [a.label for a in attacks]
    if len(set(labels)) != len(labels):
        raise HarnessError(f"{option} names the same {what} twice: {','.join(names)}")
    return attacks
