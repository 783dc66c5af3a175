"""The suite file's options that the commands have: ``[square]`` attack, p_schedule, colour, inits and loss (the
``blackbox`` command's), ``[data]`` image_size as "HxW" and mask_format (the commands' --image-size and
--mask-format); each bad value is one line naming the key."""

import pytest

from harness.attacks.hard_label import HardLabelConfig
from harness.attacks.oracle import ORACLES
from harness.attacks.square import COLOURS, P_SCHEDULES, STARTS, SquareConfig
from harness.data import MASK_FORMATS
from harness.data.sizes import ImageSize
from harness.errors import HarnessError
from harness.suite.config import parse_suite
from harness.suite.square import configs

MINIMAL = '[models]\nnames = ["fcn-resnet50"]\n'
FOLDER = 'source = "folder"\nroot = "/tmp"\n'


def _square(text: str):
    return parse_suite(MINIMAL + "[square]\n" + text, "s.toml").square


@pytest.mark.parametrize("p_schedule", P_SCHEDULES)
@pytest.mark.parametrize("colour", COLOURS)
@pytest.mark.parametrize("loss", ORACLES)
def test_every_square_option_of_blackbox_reaches_the_attack(p_schedule, colour, loss):
    spec = _square(f'p_schedule = "{p_schedule}"\ncolour = "{colour}"\nloss = "{loss}"\n'
                   f'inits = {list(STARTS)!r}\n'.replace("'", '"'))
    assert configs(spec) == [SquareConfig(eps=8.0, queries=1000, init=init, loss=loss, p_schedule=p_schedule,
                                          colour=colour) for init in STARTS]


@pytest.mark.parametrize("colour", COLOURS)
def test_the_hard_label_attack_takes_its_own_options(colour):
    spec = _square(f'attack = "hardlabel"\ncolour = "{colour}"\ninits = ["checker", "auto"]\nqueries = 50\n'
                   'eps = 4\nseed = 3\n')
    assert configs(spec) == [HardLabelConfig(eps=4.0, queries=50, init=init, seed=3, colour=colour)
                             for init in ("checker", "auto")]


@pytest.mark.parametrize("text, message", [
    ('attack = "hardlabel"\nloss = "mce"', '[square] loss: applies to attack = "square"'),
    ('attack = "hardlabel"\np_init = 0.1', '[square] p_init: applies to attack = "square"'),
    ('attack = "hardlabel"\np_schedule = "scaled"', '[square] p_schedule: applies to attack = "square"'),
    ('attack = "dla"', "[square] attack: 'dla' is not one of square, hardlabel"),
    ('attack = 1', "[square] attack: expected a non-empty string, got 1"),
    ('p_schedule = "fast"', "[square] p_schedule: 'fast' is not one of paper, scaled"),
    ('colour = "red"', "[square] colour: 'red' is not one of rgb, grey"),
    ('inits = ["diagonal"]', "[square] inits: 'diagonal' is not one of vertical, horizontal, checker, auto"),
    ('inits = ["auto", "auto"]', "[square] inits: names an entry twice"),
    ('loss = "js"', "[square] loss: 'js' is not one of"),
    ('attack = "hardlabel"\neps = 0.0001', "[square] eps: expected at least 0.001"),
])
def test_a_bad_square_option_is_one_line_naming_the_key(text, message):
    with pytest.raises(HarnessError) as error:
        _square(text + "\n")
    assert str(error.value).startswith("s.toml: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_only_the_hard_label_attack_runs_when_every_target_is_a_class_map(tmp_path, convention_onnx):
    from harness.targets.card import write_card

    path, card = convention_onnx("argmax", 7)
    write_card(card, tmp_path / "map.toml")
    targets = f'[[targets]]\nname = "map"\nonnx = "{path}"\ncard = "{tmp_path / "map.toml"}"\n'
    with pytest.raises(HarnessError, match=r'\[square\] models: the Square Attack needs scores.*attack = "hardlabel"'):
        parse_suite(targets + "[square]\n", "s.toml")
    assert parse_suite(targets + '[square]\nattack = "hardlabel"\n', "s.toml").square.attack == "hardlabel"


@pytest.mark.parametrize("value, size", [
    ('"192x256"', ImageSize(192, 256)), ('"256X192"', ImageSize(256, 192)), ('"128x128"', 128), ('"96"', 96),
    ("96", 96), ('"2048x32"', ImageSize(2048, 32)),
])
def test_image_size_is_px_or_height_x_width_as_on_the_command_line(value, size):
    suite = parse_suite(f"[data]\n{FOLDER}image_size = {value}\n" + MINIMAL, "s.toml")
    assert suite.data.image_size == size
    recorded = suite.as_dict()["data"]["image_size"]  # suite.json: as the suite file writes it
    assert recorded == (f"{size.height}x{size.width}" if isinstance(size, ImageSize) else size)


@pytest.mark.parametrize("data, message", [
    ('image_size = "192x"', 'expected PX (an integer in [32, 2048]) or "HEIGHTxWIDTH"'),
    ('image_size = "x256"', 'expected PX'),
    ('image_size = "16x256"', 'expected PX'),
    ('image_size = "192x4096"', 'expected PX'),
    ('image_size = "192x256x3"', 'expected PX'),
    ('image_size = "-192x256"', 'expected PX'),
    ('image_size = ""', 'expected PX'),
    ('image_size = 1.5', 'expected PX'),
    ('image_size = [192, 256]', 'expected PX'),
    ('image_size = true', 'expected PX'),
    ('image_size = "9' + "9" * 5000 + 'x9"', 'expected PX'),
])
def test_a_bad_image_size_is_one_line_naming_the_key(data, message):
    with pytest.raises(HarnessError) as error:
        parse_suite(f"[data]\n{FOLDER}{data}\n" + MINIMAL, "s.toml")
    assert str(error.value).startswith("s.toml: [data] image_size: ") and message in str(error.value)
    assert "\n" not in str(error.value) and len(str(error.value)) < 300


@pytest.mark.parametrize("data, message", [
    ('image_size = "64x96"', "the synthetic scenes are square"),
    ('image_size = "600"', "each side is at most 512 px"),
    ('image_size = "600x600"', "each side is at most 512 px"),
])
def test_synthetic_scenes_take_one_side_within_their_bound(data, message):
    with pytest.raises(HarnessError, match=r"^s\.toml: \[data\] image_size: .*" + message):
        parse_suite(f"[data]\n{data}\n" + MINIMAL, "s.toml")


@pytest.mark.parametrize("mask_format", MASK_FORMATS)
def test_mask_format_is_read_for_folder_data(mask_format):
    suite = parse_suite(f'[data]\n{FOLDER}mask_format = "{mask_format}"\n' + MINIMAL, "s.toml")
    assert suite.data.mask_format == mask_format
    assert parse_suite(MINIMAL, "s.toml").data.mask_format == "index"


@pytest.mark.parametrize("data, message", [
    ('mask_format = "binary"', 'mask_format: \'binary\' is read by source = "folder" only'),
    ('source = "voc"\nroot = "/tmp"\nmask_format = "rgb"', 'mask_format: \'rgb\' is read by source = "folder"'),
    (FOLDER + 'mask_format = "palette"', "mask_format: 'palette' is not one of index, binary, rgb"),
    (FOLDER + "mask_format = 1", "mask_format: expected a non-empty string"),
])
def test_a_bad_mask_format_is_one_line_naming_the_key(data, message):
    with pytest.raises(HarnessError) as error:
        parse_suite(f"[data]\n{data}\n" + MINIMAL, "s.toml")
    assert str(error.value).startswith("s.toml: [data] ") and message in str(error.value)
