"""``[[targets]]`` tables of a suite file: the user's ONNX files, plans and PyTorch entry points, read and checked
before any work, with one-line errors naming the table and the key."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.suite.config import MAX_TARGETS, load_suite, parse_suite


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder with a suite's files: model.onnx, model.plan, weights.pt (their content is not read here)."""
    for name in ("model.onnx", "other.onnx", "model.plan", "weights.pt"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def suite(files: Path, text: str):
    path = files / "robustness.toml"
    path.write_text(text)
    return load_suite(path)


def test_a_suite_of_targets_only_trains_nothing_and_resolves_files_against_its_folder(files, monkeypatch):
    monkeypatch.chdir("/")  # relative names are the suite file's, not the current directory's
    config = suite(files, """
[[targets]]
name = "unet"
onnx = "model.onnx"

[[targets]]
name = "unet-trt"
plan = "./model.plan"
precision = "fp16"

[[targets]]
name = "unet-torch"
torch = "mypackage.models:build"
weights = "weights.pt"
""")
    assert config.models.names == ()
    unet, plan, torch_target = config.targets
    assert (unet.kind, unet.path, unet.card, unet.index) == ("onnx", str(files / "model.onnx"), None, 1)
    assert (plan.kind, plan.path, plan.precision) == ("plan", str(files / "model.plan"), "fp16")
    assert unet.folder == plan.folder == str(files)
    assert (torch_target.kind, torch_target.entry, torch_target.weights, torch_target.path) == \
        ("torch", "mypackage.models:build", str(files / "weights.pt"), None)
    assert [t.white_box for t in config.targets] == [False, False, True]
    assert config.white_box_names == ("unet-torch",)
    assert config.as_dict()["targets"][0]["path"] == str(files / "model.onnx")


def test_targets_join_the_experiments_that_apply_and_the_model_lists_name_built_in_models(files):
    config = suite(files, """
[models]
names = ["fcn8s-vgg16"]
[[targets]]
name = "unet"
onnx = "model.onnx"
[[targets]]
name = "mine"
torch = "pkg:build"
[whitebox]
columns = ["fgsm", "pgd-2"]
skip = { mine = ["pgd-2"] }
[sweep]
steps = [1]
[square]
queries = 5
[transfer]
attacks = ["pgd-2"]
[examples]
model = "mine"
attack = "fgsm"
""")
    assert config.whitebox.skip == {"mine": ("pgd-2",)}
    assert config.sweep.models == ("fcn8s-vgg16",) and config.square.models == ("fcn8s-vgg16",)
    assert config.transfer.sources == config.transfer.targets == ("fcn8s-vgg16",)
    assert config.examples.model == "mine"


def test_a_suite_of_targets_only_may_run_black_box_experiments_with_no_model_list(files):
    config = suite(files, '[[targets]]\nname = "unet"\nonnx = "model.onnx"\n[square]\nqueries = 5\n'
                          '[deployment]\nengines = ["ort"]\nprecisions = ["fp32", "int8"]\nn_images = 3\n')
    assert config.square.models == () and config.deployment.n_images == 3


ONNX = '[[targets]]\nname = "unet"\nonnx = "model.onnx"\n'


@pytest.mark.parametrize("text, message", [
    ('[[targets]]\nonnx = "model.onnx"\n', "[[targets]] #1 name: is required"),
    ('[[targets]]\nname = "a/b"\nonnx = "model.onnx"\n', "[[targets]] #1 name: 'a/b' must be at most 100 letters"),
    ('[[targets]]\nname = ".."\nonnx = "model.onnx"\n', "[[targets]] #1 name: '..' must be"),
    ('[[targets]]\nname = "x"\n', "[[targets]] #1 (x) name: give exactly one of onnx"),
    ('[[targets]]\nname = "x"\nonnx = "model.onnx"\nplan = "model.plan"\n',
     "[[targets]] #1 (x) plan: give exactly one of onnx = \"FILE\", plan = \"FILE\" or torch = \"module:callable\" "
     "(got onnx and plan)"),
    ('[[targets]]\nname = "x"\nonnx = "missing.onnx"\n', "[[targets]] #1 (x) onnx: 'missing.onnx': no such file"),
    ('[[targets]]\nname = "x"\nonnx = "."\n', "[[targets]] #1 (x) onnx: '.' is not a regular file"),
    ('[[targets]]\nname = "x"\nonnx = "a\\u0000b"\n', "[[targets]] #1 (x) onnx: 'a\\x00b': cannot be read"),
    ('[[targets]]\nname = "x"\nonnx = "' + "a" * 5000 + '"\n', "[[targets]] #1 (x) onnx: 'aaaa"),
    ('[[targets]]\nname = "x"\nonnx = 3\n', "[[targets]] #1 (x) onnx: expected a non-empty string, got 3"),
    ('[[targets]]\nname = "x"\nonnx = "model.onnx"\nweights = "weights.pt"\n',
     "[[targets]] #1 (x) weights: is read by torch = \"module:callable\" targets only"),
    ('[[targets]]\nname = "x"\ntorch = "no colon"\n', "[[targets]] #1 (x) torch: 'no colon' is not MODULE:CALLABLE"),
    ('[[targets]]\nname = "x"\ntorch = "pkg:build"\nweights = "nope.pt"\n',
     "[[targets]] #1 (x) weights: 'nope.pt': no such file"),
    ('[[targets]]\nname = "x"\nonnx = "model.onnx"\nkard = "c.toml"\n', "[[targets]] #1 (x) kard: unknown key"),
    ('[[targets]]\nname = "x"\nonnx = "model.onnx"\ncard = "nope.toml"\n', "[[targets]] #1 (x) card: 'nope.toml'"),
    ('[[targets]]\nname = "fcn8s-vgg16"\nonnx = "model.onnx"\n', "[[targets]] #1 name: 'fcn8s-vgg16' is a built-in"),
    ('[[targets]]\nname = "x"\nplan = "model.plan"\n', "[[targets]] #1 (x) precision: is required for a plan"),
    ('[[targets]]\nname = "x"\nplan = "model.plan"\nprecision = "int4"\n',
     "[[targets]] #1 (x) precision: 'int4' is not one of fp32, fp16, int8"),
    ('[[targets]]\nname = "x"\nonnx = "model.onnx"\nprecision = "fp16"\n',
     "[[targets]] #1 (x) precision: is read by plan targets only"),
    (ONNX + ONNX, "[[targets]] #2 (unet) name: 'unet' names an earlier [[targets]] table"),
    ('[targets]\nname = "x"\n', "targets: write one [[targets]] table per model"),
    ('targets = ["a.onnx"]\n', "targets: expected [[targets]] tables, got ['a.onnx']"),
    ("".join(f'[[targets]]\nname = "t{i}"\nonnx = "model.onnx"\n' for i in range(MAX_TARGETS + 1)),
     f"targets: {MAX_TARGETS + 1} [[targets]] tables; at most {MAX_TARGETS}"),
    (ONNX + "[whitebox]\ncolumns = [\"fgsm\"]\n", "[whitebox] columns: white-box attacks need a PyTorch model, and "
                                               "the suite has none: its targets are onnx files, add [models]"),
    (ONNX + "[sweep]\nsteps = [1]\n", "[sweep] models: the PGD sweep needs a PyTorch model"),
    (ONNX + "[transfer]\nattacks = [\"fgsm\"]\n", "[transfer] sources: transferred examples are crafted on a "
                                                  "PyTorch model"),
    (ONNX + "[examples]\nattack = \"fgsm\"\n", "[examples] attack: 'fgsm' must be a [whitebox] column run on a "
                                               "PyTorch model"),
    (ONNX + "[transfer]\nsources = [\"fcn8s-vgg16\"]\n", "[transfer] sources: 'fcn8s-vgg16' is not one of"),
    (ONNX + "[deployment]\nn_images = 0\n", "[deployment] n_images: expected an integer in [1, 1000000], got 0"),
    ('[models]\nnames = ["fcn8s-vgg16"]\n[deployment]\nn_images = 4\n',
     "[deployment] n_images: is the image count of the [[targets]]' clean evaluation, and the suite has no"),
    ('[models]\nnames = ["fcn8s-vgg16"]\n' + ONNX.replace('"unet"', '"fcn8s-vgg16"'),
     "[[targets]] #1 name: 'fcn8s-vgg16' is a built-in model's name"),
])
def test_a_bad_target_table_is_one_line_naming_the_table_and_the_key(files, text, message):
    with pytest.raises(HarnessError) as error:
        suite(files, text)
    assert str(error.value).startswith("robustness.toml: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_target_file_is_refused_when_it_cannot_be_read(files):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    locked = files / "locked"
    locked.mkdir()
    (locked / "model.onnx").write_bytes(b"x")
    locked.chmod(0)
    try:
        with pytest.raises(HarnessError, match=r"\[\[targets\]\] #1 \(x\) onnx: 'locked/model.onnx': cannot be read"):
            suite(files, '[[targets]]\nname = "x"\nonnx = "locked/model.onnx"\n')
    finally:
        locked.chmod(0o755)


def test_parse_suite_takes_relative_files_from_the_base_folder(files):
    config = parse_suite(ONNX, "s.toml", base=files)
    assert config.targets[0].path == str(files / "model.onnx")
    with pytest.raises(HarnessError, match="no such file"):
        parse_suite(ONNX, "s.toml", base=files / "elsewhere")


CLASS_MAP_CARD = 'schema = 1\nnum_classes = 7\n[output]\nkind = "class_map"\nlayout = "NHW"\n'


def test_a_card_is_read_and_validated_with_the_suite(files):
    (files / "card.toml").write_text('schema = 1\nname = "other"\n[input]\nmean = "imagenet"\nstd = "imagenet"\n')
    config = suite(files, ONNX + 'card = "card.toml"\n')
    target = config.targets[0]
    assert target.card == str(files / "card.toml") and target.card_data.input.mean is not None
    assert config.as_dict()["targets"][0]["card_data"]["input"]["std"] is not None  # JSON-able for suite.json


@pytest.mark.parametrize("card, message", [
    ('schema = 1\n[input]\nlayout = "NWHC"\n', "input.layout"),
    ("schema = 1\ncolour = 3\n", "colour"),
    ("not toml [", "not valid TOML"),
])
def test_a_bad_card_is_one_line_naming_the_table_and_the_card(files, card, message):
    (files / "card.toml").write_text(card)
    with pytest.raises(HarnessError) as error:
        suite(files, ONNX + 'card = "card.toml"\n')
    text = str(error.value)
    assert text.startswith(f"robustness.toml: [[targets]] #1 (unet) card: card {files / 'card.toml'}")
    assert message in text and "\n" not in text


def test_a_class_map_target_leaves_no_score_based_or_white_box_experiment_to_run(files):
    (files / "map.toml").write_text(CLASS_MAP_CARD)
    with pytest.raises(HarnessError, match=r"\[square\] models: the Square Attack needs scores"):
        suite(files, ONNX + 'card = "map.toml"\n[square]\nqueries = 5\n')
    torch_map = '[[targets]]\nname = "t"\ntorch = "pkg:build"\ncard = "map.toml"\n'
    with pytest.raises(HarnessError, match=r"\[whitebox\] columns: .*its torch targets output class maps"):
        suite(files, torch_map + '[whitebox]\ncolumns = ["fgsm"]\n')
    config = suite(files, torch_map)  # clean evaluation still applies
    assert not config.targets[0].white_box and config.white_box_names == ()


def _toml(value) -> str:
    """A TOML value (strings through JSON's escapes, which TOML's basic strings share)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


VALUES = st.recursive(st.booleans() | st.integers(-2**70, 2**70)
                      | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
                      | st.sampled_from(["model.onnx", "model.plan", "weights.pt", "pkg:build", "fp16", "x", ""]),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                  max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.dictionaries(st.sampled_from(["name", "onnx", "plan", "torch", "weights", "card", "precision",
                                              "other"]), VALUES, max_size=5))
def test_any_target_table_is_read_or_refused_in_one_line(files, table):
    lines = [f"{json.dumps(key)} = {_toml(value)}" for key, value in table.items()]
    try:
        config = parse_suite("[[targets]]\n" + "\n".join(lines) + "\n", "s.toml", base=files)
    except HarnessError as e:
        assert str(e).startswith("s.toml: ") and "\n" not in str(e)
    else:
        (target,) = config.targets
        assert target.kind in ("onnx", "plan", "torch") and Path(target.path or target.weights or files).exists()
