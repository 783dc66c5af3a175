"""``[models] defended`` (one built-in model trained with PGD adversarial training, a model of its own in the
records) and ``[whitebox] defended_eps`` / ``defended_columns`` (its accuracy over eps): parsing, defaults, and
one line naming the key for every bad value."""

import pytest

from harness.errors import HarnessError
from harness.suite.config import DEFENDED_COLUMNS, DefendedSpec, load_suite, parse_suite

DEFENDED = '[models]\nnames = ["fcn-resnet50"]\ndefended = { model = "fcn-resnet50", adversarial = "pgd-2", eps = 4 }\n'


def _error(text: str) -> str:
    with pytest.raises(HarnessError) as caught:
        parse_suite(text, "s.toml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("s.toml: ")
    return message


def test_the_defended_model_has_a_record_name_of_its_own_and_joins_the_white_box_models():
    config = parse_suite(DEFENDED + "[whitebox]\ncolumns = [\"pgd-2\"]\ndefended_eps = [12, 4, 8]\n", "s.toml")
    defended = config.models.defended
    assert defended == DefendedSpec("fcn-resnet50", 2, 4.0)
    assert defended.name == "fcn-resnet50-adv-pgd2-eps4" != defended.model
    assert defended.adversarial.tag == "adv-pgd2-eps4"
    assert config.models.all_names == ("fcn-resnet50", "fcn-resnet50-adv-pgd2-eps4")
    assert config.white_box_names == config.models.all_names
    assert config.whitebox.defended_eps == (4.0, 8.0, 12.0)  # in increasing order
    assert config.whitebox.defended_columns == DEFENDED_COLUMNS
    assert config.as_dict()["models"]["defended"]["steps"] == 2


def test_a_suite_may_hold_the_defended_model_alone_and_name_it_in_skip_and_examples():
    text = ('[models]\ndefended = { model = "fcn8s-vgg16", adversarial = "pgd-1", eps = 2.5, epochs = 3, lr = 0.001 }\n'
            '[whitebox]\ncolumns = ["fgsm", "pgd-2"]\nskip = { "fcn8s-vgg16-adv-pgd1-eps2.5" = ["fgsm"] }\n'
            '[examples]\nmodel = "fcn8s-vgg16-adv-pgd1-eps2.5"\nattack = "pgd-2"\n')
    config = parse_suite(text, "s.toml")
    assert config.models.names == () and config.models.all_names == ("fcn8s-vgg16-adv-pgd1-eps2.5",)
    assert config.models.defended == DefendedSpec("fcn8s-vgg16", 1, 2.5, 3, 0.001)
    assert config.examples.model == "fcn8s-vgg16-adv-pgd1-eps2.5"


def test_the_built_in_default_suite_has_one_defended_model_with_an_eps_curve():
    config = load_suite()
    assert config.models.defended is not None and config.models.defended.name not in config.models.names
    assert config.whitebox.defended_eps == (4.0, 8.0, 12.0) and "sea" in config.whitebox.defended_columns
    assert config.whitebox.eps in config.whitebox.defended_eps  # its Table 1 cells are the curve's middle point


@pytest.mark.parametrize(("defended", "expected"), [
    ('3', '[models] defended: expected a table such as { model = "fcn-resnet50"'),
    ('{ adversarial = "pgd-2" }', "[models] defended model: is required"),
    ('{ model = "unet", adversarial = "pgd-2" }', "[models] defended model: 'unet' is not one of fcn8s-vgg16"),
    ('{ model = "fcn-resnet50" }', "[models] defended adversarial: is required"),
    ('{ model = "fcn-resnet50", adversarial = "fgsm" }', "[models] defended adversarial: expected pgd-K"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-0" }', "[models] defended adversarial: adversarial training "
                                                          "steps must be an integer from 1 to 100, got 0"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-101" }', "from 1 to 100, got 101"),
    ('{ model = "fcn-resnet50", adversarial = 2 }', "[models] defended adversarial: expected a non-empty string"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", eps = 0 }', "[models] defended eps: 0 is outside (0, 255]"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", eps = 256 }', "[models] defended eps: 256 is outside"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", eps = "4" }', "[models] defended eps: expected a finite"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", eps = nan }', "[models] defended eps: expected a finite"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", epochs = 0 }', "[models] defended epochs: expected an integer"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", epochs = 2.5 }', "[models] defended epochs: expected an int"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", epochs = true }', "[models] defended epochs: expected an int"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", lr = 0 }', "[models] defended lr: expected a learning rate"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", lr = 1 }', "[models] defended lr: expected a learning rate"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", lr = -1e-3 }', "[models] defended lr: expected a learning"),
    ('{ model = "fcn-resnet50", adversarial = "pgd-2", name = "x" }', "[models] defended name: unknown key (known "
                                                                      "here: adversarial, epochs, eps, lr, model)"),
])
def test_each_bad_defended_value_is_one_line_naming_its_key(defended, expected):
    assert expected in _error(f'[models]\nnames = ["fcn-resnet50"]\ndefended = {defended}\n')


@pytest.mark.parametrize(("whitebox", "expected"), [
    ("defended_eps = 8", "[whitebox] defended_eps: expected a list of 1 to 100 radii in (0, 255]"),
    ("defended_eps = []", "[whitebox] defended_eps: expected a list"),
    ("defended_eps = [0]", "[whitebox] defended_eps: expected a list"),
    ("defended_eps = [300]", "[whitebox] defended_eps: expected a list"),
    ("defended_eps = [true]", "[whitebox] defended_eps: expected a list"),
    ('defended_eps = ["8"]', "[whitebox] defended_eps: expected a list"),
    (f"defended_eps = {list(range(1, 102))}", "[whitebox] defended_eps: expected a list of 1 to 100"),
    ("defended_eps = [4, 4.0]", "[whitebox] defended_eps: names a radius twice"),
    ("defended_eps = [4]\ndefended_columns = []", "[whitebox] defended_columns: expected a non-empty list"),
    ('defended_eps = [4]\ndefended_columns = ["pgd"]', "[whitebox] defended_columns: 'pgd' is not an attack column"),
    ('defended_eps = [4]\ndefended_columns = ["pgd-2", "pgd-2"]', "[whitebox] defended_columns: names an entry twice"),
    ('defended_columns = ["pgd-2"]', "[whitebox] defended_columns: are run at each radius of defended_eps, and "
                                     "there is none"),
])
def test_each_bad_eps_curve_value_is_one_line_naming_its_key(whitebox, expected):
    assert expected in _error(DEFENDED + f'[whitebox]\ncolumns = ["pgd-2"]\n{whitebox}\n')


def test_an_eps_curve_without_a_defended_model_says_what_to_add():
    message = _error('[models]\nnames = ["fcn-resnet50"]\n[whitebox]\ncolumns = ["pgd-2"]\ndefended_eps = [4]\n')
    assert "[whitebox] defended_eps: runs on the defended model, and the suite has none: add [models] defended" \
        in message


@pytest.mark.parametrize("section", ["[sweep]\nmodels", "[transfer]\nsources", "[square]\nmodels"])
def test_the_defended_model_is_in_table1_only(section):
    message = _error(DEFENDED + f'{section} = ["fcn-resnet50-adv-pgd2-eps4"]\n')
    assert message.endswith("'fcn-resnet50-adv-pgd2-eps4' is not one of fcn-resnet50")


def test_a_target_may_not_take_the_defended_models_record_name(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    message = _error(DEFENDED + f'[[targets]]\nname = "fcn-resnet50-adv-pgd2-eps4"\nonnx = "{onnx}"\n')
    assert "is also the name of [models] defended" in message
