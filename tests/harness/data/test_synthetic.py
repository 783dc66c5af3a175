from pathlib import Path

import numpy as np

from harness.data import IGNORE_INDEX, load_data
from harness.data.synthetic import CLASS_NAMES, GENERATOR_VERSION, generate


def test_generation_is_deterministic_and_splits_differ():
    a, b = generate("train", 8, seed=3), generate("train", 8, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    val = generate("val", 8, seed=3)
    assert not np.array_equal(a.images, val.images)
    assert not np.array_equal(a.images, generate("train", 8, seed=4).images)


def test_scenes_have_several_classes_and_an_ignore_band():
    data = generate("train", 64, size=48)
    assert data.images.shape == (64, 48, 48, 3) and data.labels.shape == (64, 48, 48)
    assert len(CLASS_NAMES) >= 6 and CLASS_NAMES[0] == "background"
    values = set(np.unique(data.labels).tolist())
    assert values == set(range(len(CLASS_NAMES))) | {IGNORE_INDEX}
    ignored = (data.labels == IGNORE_INDEX).mean()
    assert 0.01 < ignored < 0.15
    # Every object pixel that touches another region is on the band: no two different
    # non-ignored labels are horizontal neighbours.
    left, right = data.labels[:, :, :-1], data.labels[:, :, 1:]
    both = (left != IGNORE_INDEX) & (right != IGNORE_INDEX)
    assert np.all(left[both] == right[both])
    objects_per_image = [len(set(np.unique(lab).tolist()) - {0, IGNORE_INDEX}) for lab in data.labels]
    assert np.mean(objects_per_image) >= 2


def test_tensors_follow_the_boundary_contract():
    data = generate("val", 4)
    images, labels = data.tensors(slice(0, 4))
    assert images.dtype.is_floating_point and images.shape == (4, 3, 64, 64)
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    assert labels.dtype.__str__() == "torch.int64" and labels.shape == (4, 64, 64)


def test_load_data_caches_to_disk(session_cache):
    first = load_data("synthetic", "val", size=32, limit=5)
    second = load_data("synthetic", "val", size=32, limit=5)
    assert len(first) == 5 and np.array_equal(first.images, second.images)
    cached = [p.name for p in (Path(session_cache) / "data").iterdir()]
    assert any(name.startswith(f"synthetic-v{GENERATOR_VERSION}-val-32px") for name in cached)
