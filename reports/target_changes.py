"""What changed in a user's targets between a baseline and a results file: the notes ``check`` prints.

A record of a user's model (an ``[[targets]]`` entry, or ``--onnx``/``--plan``/``--torch``) carries
``target``: the target's ``describe()``, whose ``sha256`` identifies the file (or the weights) and whose
``card`` says how it was fed. The regression key does not hold them, on purpose: the gate exists to compare
a new version of a model with the baseline of the previous one ("did my retrained, re-exported model lose
robustness?"), as it compares a retrained built-in model (whose ``weights_sha256`` is not in the key either).
Making a changed file an input mismatch would force ``--update-baseline`` on every model change, i.e. adopt
the new numbers unchecked. What must not happen is that the change goes unsaid: :func:`target_changes`
lists, per model name, a changed sha256, kind or card, and a model that was a built-in model on one side
and a user's target on the other. Pure; runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MAX_NOTES = 20  # one line per changed model; a file of hundreds of models does not need hundreds of lines


def _flat(card: Any, prefix: str = "") -> dict[str, str]:
    """A card's ``as_dict()`` as dotted field -> repr of its value (``input.mean``), for comparing and naming."""
    if not isinstance(card, Mapping):
        return {prefix.rstrip(".") or "card": repr(card)}
    flat: dict[str, str] = {}
    for key, value in card.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": repr(value)})
    return flat


def _identities(records: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """model name -> the identities its records state: ``kind sha256 card`` of a target, "built-in" otherwise."""
    found: dict[str, set[str]] = {}
    for record in records:
        target = record.get("target")
        if isinstance(target, Mapping):
            identity = f"{target.get('kind')} {target.get('sha256')} {sorted(_flat(target.get('card')).items())}"
        else:
            identity = "built-in"
        found.setdefault(str(record.get("model")), set()).add(identity)
    return found


def _describe(records: Iterable[Mapping[str, Any]], model: str) -> dict[str, Any]:
    return next((dict(r["target"]) for r in records if r.get("model") == model and isinstance(r.get("target"),
                                                                                                Mapping)), {})


def target_changes(baseline: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    """One line per model present on both sides whose target differs (see the module docstring), sorted by name."""
    before, now = _identities(baseline), _identities(results)
    notes = []
    for model in sorted(set(before) & set(now)):
        if before[model] == now[model]:
            continue
        old, new = _describe(baseline, model), _describe(results, model)
        if not old or not new:
            kinds = ("a built-in model", "a user's target")
            was, became = kinds if not old else kinds[::-1]
            notes.append(f"note: {model} was {was} in the baseline and is {became} now; its records are compared "
                         "by name")
            continue
        what = []
        if old.get("kind") != new.get("kind"):
            what.append(f"kind {old.get('kind')} -> {new.get('kind')}")
        if old.get("sha256") != new.get("sha256"):
            what.append(f"sha256 {str(old.get('sha256'))[:12]} -> {str(new.get('sha256'))[:12]}")
        old_card, new_card = _flat(old.get("card")), _flat(new.get("card"))
        if old_card != new_card:
            changed = sorted(k for k in {*old_card, *new_card} if old_card.get(k) != new_card.get(k))
            what.append(f"card: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
        if len(before[model]) > 1 or len(now[model]) > 1:
            what.append("records of several versions on one side")
        notes.append(f"note: target {model} changed since the baseline ({'; '.join(what)}): the new version is "
                     "gated against the previous one's numbers")
    if len(notes) > MAX_NOTES:
        notes = notes[:MAX_NOTES] + [f"note: and {len(notes) - MAX_NOTES} more changed target(s)"]
    return notes
