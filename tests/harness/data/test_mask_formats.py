"""Mask files as users have them: palette, 8-bit, 1-bit and 16-bit masks, 0/255 binary exports, colour masks.

Real PNG files written with Pillow; every expectation is on the labels the folder loader returns."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.data import MASK_FORMATS, load_data
from harness.data.masks import mask_to_labels
from harness.errors import HarnessError

IDS = [f"im{i}" for i in range(5)]  # default split: im4 is validation, im0-im3 training
SHAPE = (36, 48)  # height, width of every file


def _pattern(foreground: int, background: int = 0, ignore: int | None = None) -> np.ndarray:
    """A mask of one rectangle of ``foreground`` on ``background``, with an optional ``ignore`` border row."""
    mask = np.full(SHAPE, background, np.int64)
    mask[8:22, 10:30] = foreground
    if ignore is not None:
        mask[0, :] = ignore
    return mask


def _save_mask(path: Path, values: np.ndarray, mode: str) -> None:
    if mode == "1":
        Image.fromarray(values.astype(bool)).save(path)
    elif mode == "I;16":
        Image.fromarray(values.astype(np.uint16)).save(path)
    elif mode == "P":
        img = Image.fromarray(values.astype(np.uint8)).convert("P")  # a greyscale palette: index = value
        img.save(path)
    else:
        Image.fromarray(values.astype(np.uint8)).save(path)
    assert Image.open(path).mode == mode


def _folder(root: Path, masks: dict[str, np.ndarray] | np.ndarray, mode: str = "L",
            classes: str | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in IDS:
        Image.fromarray(rng.integers(0, 256, (*SHAPE, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        values = masks[i] if isinstance(masks, dict) else masks
        _save_mask(root / "masks" / f"{i}.png", values, mode)
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


def _load(root: Path, split: str = "train", mask_format: str = "index", size=40):
    return load_data("folder", split, root=str(root), size=size, mask_format=mask_format)


# mode, values written, labels expected with --mask-format index (255 = ignore)
INDEX_CASES = {
    "8-bit L": ("L", _pattern(2, ignore=255), _pattern(2, ignore=255)),
    "palette P": ("P", _pattern(3, background=1, ignore=255), _pattern(3, background=1, ignore=255)),
    "1-bit": ("1", _pattern(1), _pattern(1)),
    "16-bit": ("I;16", _pattern(7, ignore=255), _pattern(7, ignore=255)),
    "16-bit, 65535 = ignore": ("I;16", _pattern(7, ignore=65535), _pattern(7, ignore=255)),
}


@pytest.mark.parametrize(("mode", "written", "expected"), INDEX_CASES.values(), ids=INDEX_CASES.keys())
def test_index_masks_of_every_mode_keep_their_class_numbers(tmp_path, mode, written, expected):
    data = _load(_folder(tmp_path, written, mode), size=SHAPE)  # the files' own size: no resampling
    assert data.labels.shape == (4, *SHAPE)
    assert all(np.array_equal(labels, expected) for labels in data.labels)
    top = int(expected[expected != 255].max())
    assert data.class_names == [f"class{k}" for k in range(top + 1)]


# mode, values written: with --mask-format binary, 0 is background and every other value foreground
BINARY_CASES = {
    "0/255 8-bit": ("L", _pattern(255)),
    "0/1 8-bit": ("L", _pattern(1)),
    "0/255 palette": ("P", _pattern(255)),
    "1-bit": ("1", _pattern(1)),
    "0/65535 16-bit": ("I;16", _pattern(65535)),
    "0/1000 16-bit": ("I;16", _pattern(1000)),
    "anti-aliased 0..255": ("L", np.where(_pattern(1) == 1, np.arange(SHAPE[1])[None, :] * 5 + 10, 0)),
}


@pytest.mark.parametrize(("mode", "written"), BINARY_CASES.values(), ids=BINARY_CASES.keys())
def test_binary_masks_of_every_mode_are_background_and_foreground(tmp_path, mode, written):
    data = _load(_folder(tmp_path, written, mode), mask_format="binary", size=SHAPE)
    assert data.class_names == ["background", "foreground"]
    expected = (written != 0).astype(np.uint8)
    assert all(np.array_equal(labels, expected) for labels in data.labels)
    assert data.params["mask_format"] == "binary"


def test_binary_masks_with_two_names_in_classes_txt_take_those_names(tmp_path):
    root = _folder(tmp_path, _pattern(255), classes="sky\nbuilding\n")
    assert _load(root, mask_format="binary").class_names == ["sky", "building"]
    (root / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(HarnessError, match="lists 3 classes, but --mask-format binary has 2"):
        _load(root, mask_format="binary")


@pytest.mark.parametrize("mode", ["L", "P", "I;16"])
@pytest.mark.parametrize("classes", [None, "background\nobject\n"])
def test_zero_255_masks_are_refused_without_the_binary_option(tmp_path, run_cli, mode, classes):
    root = _folder(tmp_path, _pattern(65535 if mode == "I;16" else 255), mode, classes)
    for split in ("train", "val"):
        with pytest.raises(HarnessError, match="hold only the values 0 and 255.*pass --mask-format binary") as caught:
            _load(root, split)
        assert "\n" not in str(caught.value)
    code, out, err = run_cli(["eval", "--model", "fcn8s-vgg16", "--data", "folder", "--data-root", str(root),
                              "--image-size", "32"])
    assert code == 2 and err.count("\n") == 1 and "--mask-format binary" in err and out == ""


def test_the_binary_refusal_looks_at_the_whole_folder_not_only_the_split(tmp_path):
    # The validation mask alone is 0/255; a training mask holds class 1, so the folder is an index data set.
    masks = {i: _pattern(255) for i in IDS}
    masks["im0"] = _pattern(1, ignore=255)
    data = _load(_folder(tmp_path, masks), "val")
    assert set(np.unique(data.labels).tolist()) == {0, 255}


def test_a_small_class_region_lost_in_the_resize_still_counts_as_a_label(tmp_path):
    masks = {i: _pattern(255) for i in IDS}
    masks["im4"][3, 3] = 1  # one pixel of class 1: gone at 4x downscaling, but the file holds it
    data = _load(_folder(tmp_path, masks), "val", size=32)
    assert data.num_classes == 2


def test_an_index_mask_with_ignore_is_refused_as_binary(tmp_path):
    root = _folder(tmp_path, _pattern(1, ignore=255))
    with pytest.raises(HarnessError, match=r"holds the values 0, 1 and 255.*use --mask-format index"):
        _load(root, mask_format="binary")


@pytest.mark.parametrize("value", [256, 300, 1000, 65534])
def test_a_16_bit_index_mask_beyond_8_bit_labels_is_refused_naming_the_value(tmp_path, value):
    root = _folder(tmp_path, _pattern(value), "I;16")
    with pytest.raises(HarnessError, match=f"holds the value {value}: index masks hold class numbers 0-254") as caught:
        _load(root)
    assert str(root / "masks") in str(caught.value)


def test_32_bit_masks_hold_class_numbers_or_are_refused():
    # Pillow 13 writes no mode-I PNG, but older Pillows read 16-bit PNGs as "I": decode such an image directly.
    values = _pattern(4, ignore=65535).astype(np.int32)
    assert np.array_equal(mask_to_labels(Image.fromarray(values), Path("m.png")), _pattern(4, ignore=255))
    for bad in (-1, 70000):
        with pytest.raises(HarnessError, match=f"holds the value {bad}"):
            mask_to_labels(Image.fromarray(_pattern(bad).astype(np.int32)), Path("m.png"))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_masks_are_refused_with_the_advice_to_convert_them(tmp_path, mode):
    root = _folder(tmp_path, _pattern(1))
    Image.fromarray(np.zeros((*SHAPE, len(mode)), np.uint8)).save(root / "masks" / "im4.png")
    with pytest.raises(HarnessError, match=f"is a colour image \\({mode}\\).*convert it to an index mask") as caught:
        _load(root, "val")
    assert str(root / "masks" / "im4.png") in str(caught.value)


def test_a_mask_with_alpha_is_refused_in_one_line(tmp_path):
    root = _folder(tmp_path, _pattern(1))
    Image.new("LA", SHAPE[::-1]).save(root / "masks" / "im4.png")
    with pytest.raises(HarnessError, match=r"greyscale with alpha \(LA\)"):
        _load(root, "val", mask_format="binary")


@pytest.mark.parametrize("mask_format", ["binary", "rgb"])
@pytest.mark.parametrize(("source", "root_needed"), [("synthetic", False), ("voc", True)])
def test_mask_formats_are_for_folders_only(tmp_path, source, root_needed, mask_format):
    with pytest.raises(HarnessError, match=f"--mask-format {mask_format} is read by --data folder only; --data "
                                           f"{source}"):
        load_data(source, "val", root=str(tmp_path) if root_needed else None, mask_format=mask_format)
    with pytest.raises(HarnessError, match="unknown mask format 'colour'"):
        load_data("folder", "val", root=str(tmp_path), mask_format="colour")


def test_index_and_binary_readings_of_one_folder_are_different_data(tmp_path):
    from harness.data import data_key

    masks = {i: _pattern(255) for i in IDS}
    masks["im0"] = _pattern(1)  # a label 1 somewhere: index reads this folder (with 255 = ignore elsewhere)
    root = _folder(tmp_path, masks)
    index, binary = _load(root), _load(root, mask_format="binary")
    assert "mask_format" not in index.params  # index data keeps the key it had before mask formats existed
    assert data_key(index) != data_key(binary)


def test_a_palette_mask_is_read_by_its_index_not_its_colour(tmp_path):
    root = _folder(tmp_path, _pattern(1))
    labels = _pattern(2, background=0, ignore=255).astype(np.uint8)
    mask = Image.frombytes("P", SHAPE[::-1], labels.tobytes())
    palette = [0] * 768
    palette[3:9] = [128, 0, 0, 0, 128, 0]  # VOC's colours of classes 1 and 2
    palette[765:768] = [224, 224, 192]  # VOC's void colour at index 255
    mask.putpalette(palette)
    mask.save(root / "masks" / "im4.png")
    data = _load(root, "val", size=SHAPE)
    assert np.array_equal(data.labels[0], labels)


_VALUES = st.sampled_from([0, 1, 2, 3, 200, 254, 255, 256, 1000, 65535])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_VALUES, min_size=4, max_size=4), mode=st.sampled_from(["L", "P", "1", "I;16", "RGB"]),
       mask_format=st.sampled_from(MASK_FORMATS), with_classes=st.booleans())
def test_any_mask_under_any_format_is_a_valid_load_or_one_line(tmp_path_factory, values, mode, mask_format,
                                                                with_classes):
    """Four regions of random values in a random mode, read under a random format: labels within the classes,
    or one HarnessError; never a label the classes do not have, never a traceback."""
    mask = np.zeros(SHAPE, np.int64)
    for k, value in enumerate(values):
        mask[:, k * 12:(k + 1) * 12] = value
    if mode in ("L", "P"):
        mask = np.minimum(mask, 255)
    elif mode == "1":
        mask = mask != 0
    root = tmp_path_factory.mktemp("folder")
    if mode == "RGB":
        _folder(root, np.zeros(SHAPE, np.int64), "L", "a\nb\nc\n" if with_classes else None)
        Image.fromarray(np.repeat(np.minimum(mask, 255).astype(np.uint8)[..., None], 3, axis=2)).save(
            root / "masks" / "im4.png")
    else:
        _folder(root, mask, mode, "a\nb\nc\n" if with_classes else None)
    (root / "colors.txt").write_text("0 0 0\n1 1 1\n2 2 2\n255 255 255 ignore\n")
    try:
        data = _load(root, "val", mask_format=mask_format, size=32)
    except HarnessError as e:
        event(f"refused ({mask_format})")
        assert "\n" not in str(e) and str(root) in str(e)
    else:
        event(f"loaded ({mask_format})")
        assert data.labels.shape == (1, 32, 32) and (data.labels != 255).any()
        assert int(data.labels[data.labels != 255].max()) < data.num_classes
        if mask_format == "binary":
            assert set(np.unique(data.labels).tolist()) <= {0, 1}
