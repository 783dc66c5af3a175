"""Images as users have them: non-square sizes (``--image-size HxW``) with labels aligned, and greyscale images
(8-bit, with alpha, 1-bit, 16-bit) turned into RGB. Real PNG and JPEG files written with Pillow."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.cli import build_parser
from harness.data import ImageSize, data_key, load_data
from harness.data.imagefiles import read_pair, to_rgb
from harness.errors import HarnessError

BLOCK = 8  # side of one labelled block of the test pattern, in source pixels


def _blocks(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A grid of BLOCK x BLOCK squares, each its own label 1..N and its own colour (red = 5 x label)."""
    yy, xx = np.mgrid[0:height, 0:width]
    labels = 1 + (yy // BLOCK) * (width // BLOCK) + xx // BLOCK
    rgb = np.stack([labels * 5, 255 - labels * 5, np.full_like(labels, 128)], axis=-1)
    return rgb.astype(np.uint8), labels.astype(np.uint8)


def _pattern_folder(root: Path, width: int, height: int) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rgb, labels = _blocks(width, height)
    for i in range(5):
        Image.fromarray(rgb).save(root / "images" / f"im{i}.png")
        Image.fromarray(labels).save(root / "masks" / f"im{i}.png")
    return root


# (source width, source height), --image-size, as (height, width) of the result
SIZES = {
    "wide image, wide size": ((80, 40), ImageSize(48, 64)),
    "wide image, tall size": ((80, 40), ImageSize(64, 48)),
    "tall image, wide size": ((40, 80), ImageSize(40, 56)),
    "tall image, square size": ((40, 80), 48),
    "native size": ((80, 40), ImageSize(40, 80)),
}


@pytest.mark.parametrize(("source", "size"), SIZES.values(), ids=SIZES.keys())
def test_a_non_square_size_covers_and_centre_crops_with_labels_aligned(tmp_path, source, size):
    width, height = source
    out_h, out_w = size if isinstance(size, tuple) else (size, size)
    data = load_data("folder", "train", root=str(_pattern_folder(tmp_path, width, height)), size=size)
    assert data.images.shape == (4, out_h, out_w, 3) and data.labels.shape == (4, out_h, out_w)
    assert data.image_size == (out_h, out_w)
    # The reference: scale to cover out_h x out_w at the image's aspect, crop the centre; each output pixel then
    # shows the source point below. Away from block edges its label and colour must be that block's.
    scale = max(out_h / height, out_w / width)
    top, left = (round(height * scale) - out_h) // 2, (round(width * scale) - out_w) // 2
    yy, xx = np.mgrid[0:out_h, 0:out_w]
    sy, sx = (yy + top + 0.5) / scale, (xx + left + 0.5) / scale
    interior = (np.abs(sy / BLOCK - np.round(sy / BLOCK)) * BLOCK > 1.5) & \
               (np.abs(sx / BLOCK - np.round(sx / BLOCK)) * BLOCK > 1.5)
    expected = 1 + (sy // BLOCK).astype(int) * (width // BLOCK) + (sx // BLOCK).astype(int)
    labels, red = data.labels[0].astype(int), data.images[0, ..., 0].astype(int)
    assert interior.mean() >= 0.2
    assert np.array_equal(labels[interior], expected[interior])
    assert np.abs(red[interior] - 5 * labels[interior]).max() <= 2  # the pixel shows its label's block
    assert set(np.unique(labels).tolist()) <= set(range(1, (width // BLOCK) * (height // BLOCK) + 1))


def test_a_square_size_given_either_way_is_the_same_data(tmp_path):
    rgb, labels = _blocks(80, 40)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(labels).save(tmp_path / "m.png")
    for a, b in zip(read_pair(tmp_path / "a.png", tmp_path / "m.png", 32),
                    read_pair(tmp_path / "a.png", tmp_path / "m.png", (32, 32)), strict=True):
        assert np.array_equal(a, b)


def test_the_data_key_and_description_name_a_non_square_size(tmp_path):
    root = _pattern_folder(tmp_path, 80, 40)
    wide = load_data("folder", "train", root=str(root), size=ImageSize(32, 64))
    square = load_data("folder", "train", root=str(root), size=32)
    assert wide.params["size"] == [32, 64] and square.params["size"] == 32
    assert data_key(wide).startswith("folder-32x64px-") and data_key(square).startswith("folder-32px-")


def test_synthetic_scenes_refuse_a_non_square_size():
    with pytest.raises(HarnessError, match="synthetic scenes are square"):
        load_data("synthetic", "val", size=ImageSize(64, 96))


def test_a_long_thin_image_is_refused_before_it_is_scaled_to_cover_a_wide_size(tmp_path):
    root = _pattern_folder(tmp_path, 80, 40)
    Image.fromarray(np.zeros((20_000, 40, 3), np.uint8)).save(root / "images" / "im4.png")
    Image.fromarray(np.zeros((20_000, 40), np.uint8)).save(root / "masks" / "im4.png")
    with pytest.raises(HarnessError, match="less extreme aspect ratio") as caught:  # 2048 wide: 1 G pixels
        load_data("folder", "val", root=str(root), size=ImageSize(32, 2048))
    assert str(root / "images" / "im4.png") in str(caught.value) and "\n" not in str(caught.value)


def _eval_parser():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices["eval"]


@pytest.mark.parametrize(("text", "expected"), [("192x256", ImageSize(192, 256)), ("256X192", ImageSize(256, 192)),
                                                ("64x64", 64), ("32", 32), ("2048x32", ImageSize(2048, 32))])
def test_image_size_option_reads_a_side_or_height_x_width(text, expected):
    value = _eval_parser().parse_args(["--model", "fcn8s-vgg16", "--image-size", text]).image_size
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", ["31x64", "64x2049", "64x", "x64", "64x64x64", "64*64", "0x10", "64x-64", "axb",
                                  "64 by 64", "1e3x64"])
def test_a_bad_height_x_width_is_one_line_naming_the_option(run_cli, tmp_path, text):
    code, out, err = run_cli(["--cache-dir", str(tmp_path / "cache"), "eval", "--model", "fcn8s-vgg16",
                              f"--image-size={text}"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--image-size" in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()


def test_a_missing_checkpoint_names_the_train_options_of_this_data(run_cli, tmp_path):
    root = _pattern_folder(tmp_path / "data", 80, 40)
    code, _, err = run_cli(["--cache-dir", str(tmp_path / "cache"), "eval", "--model", "fcn8s-vgg16", "--data",
                            "folder", "--data-root", str(root), "--image-size", "32x64", "--mask-format", "binary"])
    assert code == 2 and err.count("\n") == 1
    assert f"--data folder --data-root {root} --image-size 32x64 --mask-format binary" in err


def test_synthetic_data_refuses_height_x_width_on_the_command_line(run_cli, tmp_path):
    code, _, err = run_cli(["--cache-dir", str(tmp_path / "cache"), "eval", "--model", "fcn8s-vgg16",
                            "--image-size", "64x96"])
    assert code == 2 and "synthetic scenes are square" in err and err.count("\n") == 1


# What each kind of greyscale file holds, and the RGB value its pixels must become (at the file's own size).
GREY = {
    "8-bit L": (lambda: Image.fromarray(np.full((32, 48), 77, np.uint8)), 77),
    "8-bit L JPEG": (lambda: Image.fromarray(np.full((32, 48), 77, np.uint8)), 77),
    "L with alpha": (lambda: Image.new("LA", (48, 32), (77, 10)), 77),
    "1-bit": (lambda: Image.fromarray(np.ones((32, 48), bool)), 255),
    "16-bit 65535": (lambda: Image.fromarray(np.full((32, 48), 65535, np.uint16)), 255),
    "16-bit 1000": (lambda: Image.fromarray(np.full((32, 48), 1000, np.uint16)), 4),  # 3.89 rounded, not clipped
    "16-bit 385": (lambda: Image.fromarray(np.full((32, 48), 385, np.uint16)), 1),  # 1.498
    "16-bit 386": (lambda: Image.fromarray(np.full((32, 48), 386, np.uint16)), 2),  # 1.502
}


@pytest.mark.parametrize(("make", "expected"), GREY.values(), ids=GREY.keys())
def test_greyscale_images_become_rgb_by_repeating_the_scaled_grey_value(tmp_path, make, expected, request):
    jpeg = "JPEG" in request.node.callspec.id
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(5):
        make().save(tmp_path / "images" / f"im{i}.{'jpg' if jpeg else 'png'}")
        Image.fromarray(np.ones((32, 48), np.uint8)).save(tmp_path / "masks" / f"im{i}.png")
    data = load_data("folder", "val", root=str(tmp_path), size=ImageSize(32, 48))
    assert np.abs(data.images.astype(int) - expected).max() <= (1 if jpeg else 0)


def test_a_16_bit_gradient_is_scaled_not_clipped():
    values = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0, 257, ..., 65535
    rgb = np.asarray(to_rgb(Image.fromarray(values), Path("g.png")))
    assert np.array_equal(rgb[..., 0], np.arange(256).reshape(16, 16)) and (rgb == rgb[..., :1]).all()


@pytest.mark.parametrize(("image", "expected"), [
    (Image.fromarray(np.full((8, 8), 70000, np.int32)), "values outside 0-65535"),
    (Image.fromarray(np.full((8, 8), -1, np.int32)), "values outside 0-65535"),
    (Image.fromarray(np.full((8, 8), 0.5, np.float32)), "floating point (F)"),
], ids=["32-bit beyond 16 bits", "negative 32-bit", "floating point"])
def test_images_without_a_known_8_bit_scale_are_refused(image, expected):
    with pytest.raises(HarnessError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        to_rgb(image, Path("g.png"))


def test_a_32_bit_image_within_16_bits_is_scaled_as_16_bit():
    rgb = np.asarray(to_rgb(Image.fromarray(np.full((4, 4), 65535, np.int32)), Path("g.png")))
    assert (rgb == 255).all()
