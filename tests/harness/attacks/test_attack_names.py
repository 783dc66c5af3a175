"""Attack names: make_attack and attacks_from_names for the paper's attacks and the stronger ones."""

import pytest

from harness.attacks import APGD, PGD, WHITEBOX_ATTACKS, WorstCase, attacks_from_names, make_attack, parse_attack_name
from harness.errors import HarnessError
from harness.limits import MAX_STEPS
from reports.tables import attack_label

NAMES = {
    "fgsm": "fgsm", "mifgsm": "mifgsm-20", "pgd20": "pgd-20", "pgd-best-100": "pgd-best-100",
    "mifgsm-best-5": "mifgsm-best-5", "apgd-ce-100": "apgd-ce-100", "apgd-mce-100": "apgd-mce-100",
    "apgd-bmce-100": "apgd-bmce-100", "apgd-js-100": "apgd-js-100", "apgd-mce": "apgd-mce-100",
    "apgd-js-red-50": "apgd-js-red-50", "segpgd-20": "segpgd-20", "segpgd": "segpgd-20",
    "cospgd-best-7": "cospgd-best-7", "sea": "sea", "sea-100": "sea", "sea-30": "sea-30",
    "apgd-mce+pgd20": "apgd-mce-100+pgd-20", "fgsm+apgd-js-red-10+segpgd-best-5": "fgsm+apgd-js-red-10+segpgd-best-5",
}


@pytest.mark.parametrize(("name", "label"), NAMES.items())
def test_names_and_their_labels(name, label):
    (attack,) = attacks_from_names([name], 8, "--columns")
    assert attack.label == label and attack.eps == 8
    (again,) = attacks_from_names([label], 8, "--columns")  # a label names its attack again
    assert again.label == label and again.params() == attack.params()


@pytest.mark.parametrize("name", [*NAMES, "worst"])
def test_a_records_column_is_the_attacks_label(name):
    """Reports name a record's column from its attack name and params.steps: it must be the label, so that
    e.g. pgd-best-100 never lands in the pgd-100 column."""
    attack = WorstCase([PGD(8, 2), APGD(8, 3, "js")]) if name == "worst" else attacks_from_names([name], 8, "x")[0]
    assert attack_label({"attack": attack.name, "params": attack.params()}) == attack.label


@pytest.mark.parametrize("name", ["cw", "apgd", "apgd-dlr-100", "fgsm-3", "fgsm-best", "apgd-ce-best-100",
                                  "pgd-red-20", "sea-red", "sea-best", "segpgd-x", "pgd--3", "PGD-20", "",
                                  "apgd-ce-red-red-100", "pgd-100-best", "apgd-mce-100-red"])
def test_unknown_names(name):
    with pytest.raises(HarnessError, match=f"unknown column '{name}' in --columns; use fgsm, mifgsm") as info:
        attacks_from_names([name], 8, "--columns", "column")
    assert "apgd-{ce,mce,bmce,js,msph}[-red][-N]" in str(info.value) and "sea[-N]" in str(info.value)
    assert parse_attack_name(name) is None


@pytest.mark.parametrize("name", ["pgd-0", "apgd-ce-0", "sea-0", f"segpgd-{MAX_STEPS + 1}", "pgd-" + "9" * 5000])
def test_step_counts_out_of_range(name):
    with pytest.raises(HarnessError, match=f"number of steps must be 1-{MAX_STEPS}") as info:
        attacks_from_names([name], 8, "--attacks")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "message"), [
    ("sea+pgd-20", "'sea\\+pgd-20' in --attacks: a worst case cannot contain another worst case"),
    ("pgd-20+pgd20", "'pgd-20\\+pgd20' in --attacks: the worst case names the same attack twice"),
    ("pgd-20+", "unknown attack '' in --attacks"),
    ("pgd-20+cw", "unknown attack 'cw' in --attacks"),
    ("pgd-0+fgsm", "'pgd-0' in --attacks: the number of steps"),
])
def test_bad_worst_cases(name, message):
    with pytest.raises(HarnessError, match=message):
        attacks_from_names([name], 8, "--attacks")


def test_repeats_are_refused():
    with pytest.raises(HarnessError, match="names the same attack twice"):
        attacks_from_names(["sea", "sea-100"], 8, "--attacks")
    with pytest.raises(HarnessError, match="names the same attack twice"):
        attacks_from_names(["apgd-mce", "apgd-mce-100"], 8, "--attacks")
    assert len(attacks_from_names(["pgd-20", "pgd-best-20"], 8, "--attacks")) == 2


def test_make_attack_base_names_and_full_names():
    assert WHITEBOX_ATTACKS[:3] == ("fgsm", "mifgsm", "pgd")
    for name in WHITEBOX_ATTACKS:
        make_attack(name, 8)
    assert make_attack("apgd-mce", 8, 50).label == "apgd-mce-50"
    assert make_attack("apgd-mce-100", 4).label == "apgd-mce-100" and make_attack("apgd-mce-100", 4).eps == 4
    assert make_attack("sea", 8, 10).label == "sea-10"
    assert make_attack("segpgd", 8, 10, alpha=1.0).alpha == 1.0
    assert make_attack("pgd", 8, 10, keep_best=True).label == "pgd-best-10"
    assert make_attack("pgd-best-10").label == "pgd-best-10"


def test_make_attack_errors():
    with pytest.raises(HarnessError, match="unknown attack 'cw'; choose from: fgsm, mifgsm, pgd, apgd-ce"):
        make_attack("cw")
    with pytest.raises(HarnessError, match="unknown attack 'apgd-mce-100'"):
        make_attack("apgd-mce-100", steps=5)  # a full name carries its own steps
    with pytest.raises(HarnessError, match="apgd-js sets its own step size"):
        make_attack("apgd-js", alpha=2.0)
    with pytest.raises(HarnessError, match="sea sets its own step size"):
        make_attack("sea", alpha=2.0)
    with pytest.raises(HarnessError, match="mifgsm only"):
        make_attack("segpgd", decay=0.5)
    with pytest.raises(HarnessError, match="one step"):
        make_attack("fgsm", keep_best=True)
    with pytest.raises(HarnessError, match=f"at most {MAX_STEPS}"):
        make_attack("apgd-ce", steps=MAX_STEPS + 1)
    for name in ("mifgsm", "pgd", "apgd-ce", "segpgd", "cospgd", "sea"):
        with pytest.raises(HarnessError, match="outside \\(0, 255\\]"):
            make_attack(name, float("nan"))
