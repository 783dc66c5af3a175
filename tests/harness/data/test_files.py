"""VOC and image-folder loaders on small real image files written by the tests."""

import numpy as np
import pytest
from PIL import Image

from harness.data import load_data
from harness.errors import HarnessError


def _write_pair(image_path, mask_path, rng, size=(40, 30), top=20):
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(image_path)
    mask = rng.integers(0, top + 1, (size[1], size[0]), dtype=np.uint8)
    mask[0, :] = 255
    img = Image.fromarray(mask, mode="L").convert("P")
    img.save(mask_path)


@pytest.fixture
def voc_root(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = [f"2007_{i:06d}" for i in range(5)]
    for i in ids:
        _write_pair(voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClass" / f"{i}.png", rng)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[3:]) + "\n")
    return tmp_path


def test_voc_loads_resized_and_centre_cropped(voc_root):
    data = load_data("voc", "train", root=str(voc_root), size=32)
    assert data.images.shape == (3, 32, 32, 3) and data.num_classes == 21
    assert data.ids[0] == "2007_000000"
    # Nearest-neighbour resizing creates no label values that were not in the mask.
    assert set(np.unique(data.labels).tolist()) <= set(range(21)) | {255}
    assert len(load_data("voc", "val", root=str(voc_root / "VOCdevkit"), size=32)) == 2


def test_voc_missing_or_incomplete_is_one_clear_error(tmp_path, voc_root):
    with pytest.raises(HarnessError, match="not a PASCAL VOC 2012 folder"):
        load_data("voc", "val", root=str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages"))
    (voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000004.png").unlink()
    with pytest.raises(HarnessError, match="incomplete"):
        load_data("voc", "val", root=str(voc_root))
    with pytest.raises(HarnessError, match="needs --data-root"):
        load_data("voc", "val")


def test_image_folder_with_classes_and_default_split(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        _write_pair(tmp_path / "images" / f"im{i}.png", tmp_path / "masks" / f"im{i}.png", rng, top=2)
    (tmp_path / "classes.txt").write_text("ground\nroad\ncar\n")
    train = load_data("folder", "train", root=str(tmp_path), size=32)
    val = load_data("folder", "val", root=str(tmp_path), size=32)
    assert (len(train), len(val)) == (8, 2) and train.class_names == ["ground", "road", "car"]
    assert not set(train.ids) & set(val.ids)


def test_image_folder_errors(tmp_path):
    with pytest.raises(HarnessError, match="images/ and masks/"):
        load_data("folder", "val", root=str(tmp_path))
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(2)
    for i in range(5):
        _write_pair(tmp_path / "images" / f"a{i}.png", tmp_path / "masks" / f"a{i}.png", rng, top=4)
    (tmp_path / "masks" / "a4.png").unlink()
    with pytest.raises(HarnessError, match="no mask"):
        load_data("folder", "val", root=str(tmp_path))
    (tmp_path / "classes.txt").write_text("a\nb\n")
    _write_pair(tmp_path / "images" / "a4.png", tmp_path / "masks" / "a4.png", rng, top=4)
    with pytest.raises(HarnessError, match="only 2 classes"):
        load_data("folder", "val", root=str(tmp_path))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "masks" / "a4.png")
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(HarnessError, match="single-channel"):
        load_data("folder", "val", root=str(tmp_path))


def _voc(voc_root):
    return voc_root / "VOCdevkit" / "VOC2012"


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda voc: Image.fromarray(np.full((30, 40), 30, np.uint8)).save(voc / "SegmentationClass/2007_000004.png"),
     "holds label 30, but there are only 21 classes"),
    (lambda voc: Image.fromarray(np.zeros((40, 30), np.uint8)).save(voc / "SegmentationClass/2007_000004.png"),
     "but its image"),
    (lambda voc: (voc / "SegmentationClass/2007_000004.png").write_bytes(b""), "mask"),
    (lambda voc: (voc / "ImageSets/Segmentation/val.txt").write_bytes("2007_000004\n\xe9\n".encode("latin-1")),
     "not UTF-8"),
    (lambda voc: (voc / "ImageSets/Segmentation/val.txt").write_text("\n\n"), "lists no image ids"),
], ids=["label beyond 21 classes", "mask transposed", "empty mask", "Latin-1 list", "empty list"])
def test_voc_faults_are_one_line(voc_root, damage, expected):
    damage(_voc(voc_root))
    with pytest.raises(HarnessError, match=expected) as caught:
        load_data("voc", "val", root=str(voc_root), size=32)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("ids, expected", [
    ("2007_000003\n2007_000003\n", "more than once"),  # would count the image twice
    ("../../../VOCdevkit/VOC2012/JPEGImages/2007_000003\n", "not an image id"),  # a path, read from anywhere
    ("/tmp/2007_000003\n", "not an image id"),
])
def test_voc_lists_name_each_image_once_by_id(voc_root, ids, expected):
    (voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").write_text(ids)
    with pytest.raises(HarnessError, match=expected):
        load_data("voc", "val", root=str(voc_root), size=32)
