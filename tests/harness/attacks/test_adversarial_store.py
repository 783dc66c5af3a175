import numpy as np
import pytest

from harness.attacks.store import FORMAT, load_adversarial, save_adversarial
from harness.errors import HarnessError


def _examples(n: int = 3):
    rng = np.random.default_rng(0)
    images = rng.random((n, 3, 8, 8), dtype=np.float32)  # arbitrary floats, not multiples of 1/255
    labels = rng.integers(0, 7, (n, 8, 8)).astype(np.uint8)
    labels[:, 0] = 255
    return images, labels, [f"img-{i}" for i in range(n)]


def test_round_trip_is_exact_and_keeps_provenance(tmp_path):
    images, labels, ids = _examples()
    provenance = {"attack": "pgd", "params": {"eps": 8.0, "steps": 20, "alpha": 1.0}, "seed": 0,
                  "source_model": "fcn8s-vgg16", "checkpoint_sha256": "ab" * 32}
    path = tmp_path / "sub" / "adv.npz"
    written = save_adversarial(path, images, labels, ids, provenance)
    loaded = load_adversarial(path)
    # What save returns is what load reads back: the ranks of a torchrun job use it without reading rank 0's file.
    assert np.array_equal(written.images, loaded.images) and np.array_equal(written.labels, loaded.labels)
    assert written.labels.dtype == loaded.labels.dtype and written.ids == loaded.ids
    assert written.provenance == loaded.provenance
    assert loaded.images.dtype == np.float32 and np.array_equal(loaded.images.view(np.uint32), images.view(np.uint32))
    assert np.array_equal(loaded.labels, labels) and loaded.ids == ids
    assert loaded.provenance["format"] == FORMAT and loaded.provenance["n_images"] == 3
    for key, value in provenance.items():
        assert loaded.provenance[key] == value
    assert [p.name for p in path.parent.iterdir()] == ["adv.npz"]  # no temporary file left


def test_missing_corrupt_foreign_and_damaged_files_are_errors(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        load_adversarial(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(HarnessError, match="not a readable adversarial examples file"):
        load_adversarial(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, images=np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(HarnessError, match="not a readable"):
        load_adversarial(foreign)
    images, labels, ids = _examples()
    path = tmp_path / "adv.npz"
    save_adversarial(path, images, labels, ids, {})
    with np.load(path) as z:
        arrays = dict(z)
    arrays["images"] = arrays["images"] + np.float32(1e-7)  # one ulp-scale change is caught
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    with pytest.raises(HarnessError, match="damaged"):
        load_adversarial(tampered)


def test_save_checks_its_input(tmp_path):
    images, labels, ids = _examples()
    with pytest.raises(ValueError, match="float32"):
        save_adversarial(tmp_path / "a.npz", images.astype(np.float64), labels, ids, {})
    with pytest.raises(ValueError, match="do not fit"):
        save_adversarial(tmp_path / "a.npz", images, labels, ids[:2], {})
