"""Hostile image folders: every damaged, oversized, misaligned or mis-encoded file is one HarnessError naming it."""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.data import load_data
from harness.data.imagefiles import MAX_IMAGE_PIXELS
from harness.errors import HarnessError

IDS = [f"im{i}" for i in range(5)]  # im4 is the validation image of the default split
VAL = "im4"


def _png_header_only(path: Path, width: int, height: int, colour_type: int = 0) -> None:
    """A PNG whose header declares width x height and whose data is one tiny IDAT: a decompression bomb's
    shape without allocating it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def _folder(root: Path, size=(40, 30), top=2, classes: bytes | None = b"ground\nroad\ncar\n") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in IDS:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, top + 1, (size[1], size[0]), dtype=np.uint8), mode="L").save(
            root / "masks" / f"{i}.png")
    if classes is not None:
        (root / "classes.txt").write_bytes(classes)
    return root


def _save_array(path: Path, array: np.ndarray, fmt: str = "PNG", **kwargs) -> None:
    Image.fromarray(array).save(path, format=fmt, **kwargs)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


MASK = "masks/im4.png"
IMAGE = "images/im4.png"
FAULTS = {
    # name: (file, how to damage it, expected text)
    "zero-byte mask": (MASK, lambda p: p.write_bytes(b""), "not an image file"),
    "text mask": (MASK, lambda p: p.write_text("label,0\n1,2\n"), "not an image file"),
    "truncated mask": (MASK, _truncate, "damaged or truncated"),
    "RGB mask": (MASK, lambda p: _save_array(p, np.zeros((30, 40, 3), np.uint8)), "a colour image"),
    "16-bit mask beyond 8-bit labels": (MASK, lambda p: _save_array(p, np.full((30, 40), 300, np.uint16)),
                                        "holds the value 300"),
    "mask with alpha": (MASK, lambda p: Image.new("LA", (40, 30)).save(p), "greyscale with alpha (LA)"),
    "JPEG mask named .png": (MASK, lambda p: _save_array(p, np.ones((30, 40), np.uint8), "JPEG"), "JPEG file"),
    "mask of another size": (MASK, lambda p: _save_array(p, np.ones((31, 40), np.uint8)), "40 x 31 but its image"),
    "mask transposed": (MASK, lambda p: _save_array(p, np.ones((40, 30), np.uint8)), "30 x 40 but its image"),
    "label beyond classes.txt": (MASK, lambda p: _save_array(p, np.full((30, 40), 7, np.uint8)), "label 7"),
    "decompression-bomb mask": (MASK, lambda p: _png_header_only(p, 14000, 14000), "above the limit"),
    "zero-byte image": (IMAGE, lambda p: p.write_bytes(b""), "not an image file"),
    "text image": (IMAGE, lambda p: p.write_text("hello"), "not an image file"),
    "truncated image": (IMAGE, _truncate, "damaged or truncated"),
    "decompression-bomb image": (IMAGE, lambda p: _png_header_only(p, 14000, 14000, 2), "196,000,000 pixels"),
    "image just above the limit": (IMAGE, lambda p: _png_header_only(p, MAX_IMAGE_PIXELS // 1000 + 1, 1000, 2),
                                   "above the limit"),
}


@pytest.mark.parametrize(("where", "damage", "expected"), FAULTS.values(), ids=FAULTS.keys())
def test_a_bad_file_is_one_line_naming_that_file(tmp_path, where, damage, expected):
    root = _folder(tmp_path)
    damage(root / where)
    with pytest.raises(HarnessError) as caught:
        load_data("folder", "val", root=str(root), size=32)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    role = where.split("s/")[0]  # "mask" or "image": the file is named as what it is
    assert f"{role} {root / where}" in message


@pytest.mark.parametrize("where", [MASK, IMAGE])
def test_the_class_scan_without_classes_txt_names_a_damaged_mask(tmp_path, where):
    root = _folder(tmp_path, classes=None)
    _truncate(root / where)
    with pytest.raises(HarnessError, match=f"{'mask' if where == MASK else 'image'} {root / where}"):
        load_data("folder", "val", root=str(root), size=32)


def test_exif_orientation_is_applied_before_sizes_are_compared(tmp_path):
    root = _folder(tmp_path)
    (root / IMAGE).unlink()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed: the 40 x 30 file shows as 30 x 40
    jpeg = root / "images" / "im4.jpg"
    _save_array(jpeg, np.zeros((30, 40, 3), np.uint8), "JPEG", exif=exif)
    with pytest.raises(HarnessError) as caught:  # the mask fits the stored pixels, not the displayed image
        load_data("folder", "val", root=str(root), size=32)
    assert f"mask {root / MASK} is 40 x 30 but its image {jpeg} is 30 x 40" in str(caught.value)
    _save_array(root / MASK, np.ones((40, 30), np.uint8))
    data = load_data("folder", "val", root=str(root), size=32)
    assert data.ids == [VAL] and data.labels.shape == (1, 32, 32)


def test_all_ignore_masks_are_refused_not_scored_as_nan(tmp_path, run_cli):
    root = _folder(tmp_path)
    for i in IDS:
        _save_array(root / "masks" / f"{i}.png", np.full((30, 40), 255, np.uint8))
    with pytest.raises(HarnessError, match="no labelled pixel"):
        load_data("folder", "val", root=str(root), size=32)
    code, out, err = run_cli(["eval", "--model", "fcn8s-vgg16", "--data", "folder", "--data-root", str(root),
                              "--image-size", "32"])
    assert code == 2 and "no labelled pixel" in err and err.count("\n") == 1 and "NaN" not in out


TEXT_FAULTS = {
    "Latin-1 classes.txt": ("classes.txt", "caf\xe9\nroad\ncar\n".encode("latin-1"), "not UTF-8"),
    "binary classes.txt": ("classes.txt", b"\x00\x01\x02\nx\n", "NUL"),
    "one class": ("classes.txt", b"only\n", "lists 1 classes"),
    "escape code in a class": ("classes.txt", b"a\x1b[31m\nb\n", "control characters"),
    "duplicate class": ("classes.txt", b"a\nb\na\n", "'a' more than once"),
    "300 classes": ("classes.txt", "\n".join(f"c{i}" for i in range(300)).encode(), "list 2 to 255"),
    "Latin-1 val.txt": ("val.txt", "im4\n\xe9\n".encode("latin-1"), "not UTF-8"),
    "duplicate id": ("val.txt", b"im4\nim4\n", "'im4' more than once"),
    "id with a directory part": ("val.txt", b"../images/im4\n", "not an image id"),
    "absolute id": ("val.txt", b"/etc/im4\n", "not an image id"),
}


@pytest.mark.parametrize(("name", "content", "expected"), TEXT_FAULTS.values(), ids=TEXT_FAULTS.keys())
def test_bad_list_files_are_one_line(tmp_path, name, content, expected):
    root = _folder(tmp_path)
    (root / name).write_bytes(content)
    with pytest.raises(HarnessError) as caught:
        load_data("folder", "val", root=str(root), size=32)
    assert expected in str(caught.value) and str(root / name) in str(caught.value)


def test_utf8_classes_with_a_byte_order_mark_are_read(tmp_path):
    root = _folder(tmp_path, classes="\ufeffcafé\nroad\ncar\n".encode())
    assert load_data("folder", "val", root=str(root), size=32).class_names == ["café", "road", "car"]


def test_two_images_with_one_id_are_refused(tmp_path):
    root = _folder(tmp_path)
    _save_array(root / "images" / "im4.jpg", np.zeros((30, 40, 3), np.uint8), "JPEG")
    with pytest.raises(HarnessError, match="share the id 'im4'"):
        load_data("folder", "val", root=str(root), size=32)


def test_palette_masks_and_partly_ignored_masks_load(tmp_path):
    root = _folder(tmp_path)
    mask = np.full((30, 40), 255, np.uint8)
    mask[5:10, 5:10] = 2
    Image.fromarray(mask, mode="L").convert("P").save(root / MASK)
    data = load_data("folder", "val", root=str(root), size=32)
    assert set(np.unique(data.labels).tolist()) <= {2, 255} and (data.labels == 2).any()


_MODES = st.sampled_from(["L", "P", "RGB", "I;16", "1", "LA", "RGBA"])


@st.composite
def _mask_file(draw) -> bytes:
    """Random bytes, a real image of a random mode and size, or a real PNG cut short."""
    kind = draw(st.sampled_from(["bytes", "image", "cut", "fitting mask"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "fitting mask":  # the image's size, random labels: exercises the label checks and valid loads
        labels = np.array(draw(st.lists(st.sampled_from([0, 1, 2, 3, 200, 255]), min_size=1200, max_size=1200)),
                          np.uint8).reshape(30, 40)
        buffer = io.BytesIO()
        Image.fromarray(labels, mode="L").convert(draw(st.sampled_from(["L", "P"]))).save(buffer, format="PNG")
        return buffer.getvalue()
    mode = draw(_MODES)
    w, h = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    value = draw(st.integers(0, 255))
    img = Image.new(mode, (w, h), value if mode not in ("RGB", "RGBA", "LA") else (value,) * len(mode))
    buffer = io.BytesIO()
    img.save(buffer, format=draw(st.sampled_from(["PNG", "PNG", "BMP", "GIF"])) if mode in ("L", "P") else "PNG")
    data = buffer.getvalue()
    return data[: draw(st.integers(0, len(data)))] if kind == "cut" else data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mask=_mask_file(), image=st.one_of(st.none(), _mask_file()), with_classes=st.booleans())
def test_random_files_are_a_valid_load_or_one_harness_error(tmp_path_factory, mask, image, with_classes):
    root = _folder(tmp_path_factory.mktemp("folder"), classes=b"a\nb\nc\n" if with_classes else None)
    (root / MASK).write_bytes(mask)
    if image is not None:
        (root / IMAGE).write_bytes(image)
    try:
        data = load_data("folder", "val", root=str(root), size=32)
    except HarnessError as e:
        event("refused")
        assert "\n" not in str(e) and str(root) in str(e)
    else:
        event("loaded")
        assert data.images.shape == (1, 32, 32, 3) and (data.labels != 255).any()
        assert int(data.labels[data.labels != 255].max()) < data.num_classes


def test_train_and_val_never_share_an_image(tmp_path):
    root = _folder(tmp_path)
    (root / "val.txt").write_text("im0\nim1\n")  # only val listed: train is every other id, not 4 of each 5
    train, val = (load_data("folder", split, root=str(root), size=32) for split in ("train", "val"))
    assert val.ids == ["im0", "im1"] and train.ids == ["im2", "im3", "im4"]
    (root / "train.txt").write_text("im1\nim2\n")
    for split in ("train", "val"):
        with pytest.raises(HarnessError, match="both list 1 id.*'im1'.*must not be a training image"):
            load_data("folder", split, root=str(root), size=32)


@pytest.mark.parametrize("name", ["val.txt", "classes.txt"])
@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "broken link"])
def test_a_list_file_that_is_not_a_regular_file_is_refused_not_ignored(tmp_path, name, kind):
    root = _folder(tmp_path)
    path = root / name
    path.unlink(missing_ok=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero" if kind == "device" else root / "gone")
    with pytest.raises(HarnessError, match="is not a regular file") as caught:
        load_data("folder", "val", root=str(root), size=32)
    assert str(path) in str(caught.value)


def test_an_image_too_long_and_thin_to_scale_is_refused_before_it_is_resized(tmp_path):
    root = _folder(tmp_path, size=(40, 30))
    _save_array(root / IMAGE, np.zeros((2, 100_000, 3), np.uint8))  # 256 px high: 12.8 G pixels
    _save_array(root / MASK, np.zeros((2, 100_000), np.uint8))
    with pytest.raises(HarnessError, match="crop it to a less extreme aspect ratio") as caught:
        load_data("folder", "val", root=str(root), size=256)
    assert str(root / IMAGE) in str(caught.value)
