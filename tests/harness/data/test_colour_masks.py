"""Colour masks (``--mask-format rgb`` with ``DIR/colors.txt``): exact colours to classes, everything else refused.

Real PNG files written with Pillow."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import data_key, load_data
from harness.errors import HarnessError

IDS = [f"im{i}" for i in range(5)]
SHAPE = (36, 48)
COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0)}
IGNORE = (224, 224, 192)  # VOC's void colour
TABLE = "0 0 0\n128,0,0\n#008000\n224 224 192 ignore\n"


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:20, 4:20] = 1
    labels[20:34, 24:44] = 2
    labels[0, :] = 255
    return labels


def _paint(labels: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    for label, colour in {**COLOURS, 255: IGNORE}.items():
        rgb[labels == label] = colour
    return rgb


def _folder(root: Path, mode: str = "RGB", table: str | None = TABLE) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    mask = Image.fromarray(_paint(_labels()))
    if mode == "RGBA":
        mask = mask.convert("RGBA")
    elif mode == "P":  # the palette index is the label here, but rgb reads the palette's colours
        palette = [0] * 768
        for label, colour in {**COLOURS, 255: IGNORE}.items():
            palette[3 * label: 3 * label + 3] = colour
        mask = Image.frombytes("P", SHAPE[::-1], _labels().tobytes())
        mask.putpalette(palette)
    for i in IDS:
        Image.fromarray(rng.integers(0, 256, (*SHAPE, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        mask.save(root / "masks" / f"{i}.png")
    assert Image.open(root / "masks" / "im0.png").mode == mode
    if table is not None:
        (root / "colors.txt").write_text(table)
    return root


def _load(root: Path, split: str = "train", size=SHAPE):
    return load_data("folder", split, root=str(root), size=size, mask_format="rgb")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_colour_masks_become_the_classes_colors_txt_lists(tmp_path, mode):
    data = _load(_folder(tmp_path, mode))
    assert data.class_names == ["class0", "class1", "class2"]
    assert all(np.array_equal(labels, _labels()) for labels in data.labels)
    assert data.params["mask_format"] == "rgb" and len(data.params["colors"]) == 16


def test_class_names_come_from_classes_txt_one_per_colour(tmp_path):
    root = _folder(tmp_path)
    (root / "classes.txt").write_text("background\ncar\ntree\n")
    assert _load(root).class_names == ["background", "car", "tree"]
    (root / "classes.txt").write_text("background\ncar\n")
    with pytest.raises(HarnessError, match="lists 2 classes but .*colors.txt 3 class colours"):
        _load(root)


def test_another_colour_table_is_another_data_set(tmp_path):
    root = _folder(tmp_path)
    before = data_key(_load(root))
    (root / "colors.txt").write_text("0 0 0\n0 128 0\n128 0 0\n224 224 192 ignore\n")  # classes 1 and 2 swapped
    after = _load(root)
    assert data_key(after) != before and (after.labels == 2).sum() == (_labels() == 1).sum() * 4


def test_an_unlisted_colour_is_refused_naming_it_and_where(tmp_path):
    root = _folder(tmp_path)
    rgb = _paint(_labels())
    rgb[10, 7] = (127, 0, 0)  # one anti-aliased pixel: never matched to the nearest colour
    Image.fromarray(rgb).save(root / "masks" / "im4.png")
    with pytest.raises(HarnessError) as caught:
        _load(root, "val")
    message = str(caught.value)
    assert f"mask {root / 'masks' / 'im4.png'} holds the colour (127, 0, 0) at x=7, y=10 (1 pixels)" in message
    assert "colors.txt does not list" in message and "\n" not in message


def test_transparent_pixels_are_refused(tmp_path):
    root = _folder(tmp_path, "RGBA")
    rgba = np.asarray(Image.open(root / "masks" / "im4.png")).copy()
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(root / "masks" / "im4.png")
    with pytest.raises(HarnessError, match="has transparent pixels"):
        _load(root, "val")


TABLE_FAULTS = {
    "missing": (None, "colors.txt, which is missing"),
    "one colour": ("0 0 0\n", "lists 1 class colours"),
    "a colour twice": ("0 0 0\n1 1 1\n0,0,0\n", r"the colour \(0, 0, 0\) more than once"),
    "ignore colour also a class": ("0 0 0\n1 1 1\n0 0 0 ignore\n", "more than once"),
    "two ignore colours": ("0 0 0\n1 1 1\n2 2 2 ignore\n3 3 3 ignore\n", "second ignore colour"),
    "value above 255": ("0 0 0\n256 0 0\n", "line 2 is '256 0 0'"),
    "two numbers": ("0 0\n1 1 1\n", "line 1 is '0 0'"),
    "short hex": ("#fff\n0 0 0\n", "line 1 is '#fff'"),
    "negative": ("0 0 0\n-1 0 0\n", "line 2"),
    "non-ASCII digits": ("0 0 0\n١ 0 0\n", "line 2"),
    "ignore alone": ("0 0 0\n1 1 1\nignore\n", "line 3"),
    "not UTF-8": (b"0 0 0\n\xe9\n", "not UTF-8"),
}


@pytest.mark.parametrize(("table", "expected"), TABLE_FAULTS.values(), ids=TABLE_FAULTS.keys())
def test_a_bad_colors_txt_is_one_line_naming_it(tmp_path, table, expected):
    root = _folder(tmp_path, table=None)
    if isinstance(table, bytes):
        (root / "colors.txt").write_bytes(table)
    elif table is not None:
        (root / "colors.txt").write_text(table)
    with pytest.raises(HarnessError, match=expected) as caught:
        _load(root)
    assert str(root / "colors.txt") in str(caught.value) and "\n" not in str(caught.value)


def test_colour_masks_without_rgb_say_how_to_read_them(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(HarnessError, match="convert it to an index mask .* or list its colours in colors.txt beside "
                                           "images/ and masks/ and pass --mask-format rgb"):
        load_data("folder", "train", root=str(root), size=SHAPE)


def test_greyscale_masks_are_not_colour_masks(tmp_path):
    root = _folder(tmp_path)
    Image.fromarray(_labels()).save(root / "masks" / "im4.png")
    with pytest.raises(HarnessError, match=r"is 8-bit greyscale \(L\); --mask-format rgb reads colour masks"):
        _load(root, "val")


def test_grey_rgb_masks_are_read_as_binary_and_colour_ones_refused(tmp_path):
    root = _folder(tmp_path, table=None)
    grey = np.zeros((*SHAPE, 3), np.uint8)
    grey[5:15, 5:15] = 255
    for i in IDS:
        Image.fromarray(grey).save(root / "masks" / f"{i}.png")
    data = load_data("folder", "train", root=str(root), size=SHAPE, mask_format="binary")
    assert np.array_equal(data.labels[0], (grey[..., 0] != 0).astype(np.uint8))
    Image.fromarray(_paint(_labels())).save(root / "masks" / "im4.png")
    with pytest.raises(HarnessError, match="holds colours, not only black and grey/white"):
        load_data("folder", "val", root=str(root), size=SHAPE, mask_format="binary")
