"""The black-box attacks by the name their records carry (``attack``): what ``blackbox --attack`` and the suite's
``[square] attack`` choose from, and what the sanity checks count as black-box.

``square``: the Square Attack (harness/attacks/square.py), reads the engine's scores; ``hardlabel``: the
decision-based attack (harness/attacks/hard_label.py), reads class maps only.
"""

from __future__ import annotations

from harness.attacks.hard_label import HardLabelAttack
from harness.attacks.query_loop import BlackBoxAttack
from harness.attacks.square import SquareAttack

ATTACK_CLASSES: dict[str, type[BlackBoxAttack]] = {"square": SquareAttack, "hardlabel": HardLabelAttack}
BLACKBOX_ATTACKS = tuple(ATTACK_CLASSES)


def title(name: str) -> str:
    """The attack ``name`` (a record's ``attack``) as messages and tables name it, e.g. "Square Attack"."""
    return ATTACK_CLASSES[name].title

# Options of the Square Attack that the hard-label attack does not have (it reads no scores and flips blocks of
# signs instead of placing squares): the suite's [square] keys.
SQUARE_ONLY_OPTIONS = ("loss", "p_init", "p_schedule")
