"""Damaged and forged adversarial example files are one HarnessError, never a traceback or a huge allocation."""

import json

import numpy as np
import pytest

from harness.attacks.store import images_sha256, load_adversarial, save_adversarial
from harness.errors import HarnessError

from ...conftest import forge_npy_header, npz_arrays


def saved(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 8, 8), dtype=np.float32)
    labels = rng.integers(0, 7, (2, 8, 8)).astype(np.uint8)
    path = tmp_path / "adv.npz"
    save_adversarial(path, images, labels, ["a", "b"], {"attack": "pgd"})
    return path


def rewrite(path, **changes):
    """Rewrite the file with some arrays replaced; the provenance hash follows the new images."""
    arrays = npz_arrays(path)
    arrays.update(changes)
    if "images" in changes and changes["images"].dtype == np.float32:
        provenance = json.loads(str(arrays["provenance"]))
        provenance["images_sha256"] = images_sha256(changes["images"])
        arrays["provenance"] = np.array(json.dumps(provenance))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "cannot be read"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cannot be read"),
    (lambda p: p.write_bytes(p.read_bytes()[:-30]), "cannot be read"),
    (lambda p: forge_npy_header(p, "images", (10**6, 3, 512, 512)), r"images claims shape \(1000000, 3, 512, 512\)"),
    (lambda p: rewrite(p, provenance=np.array("[" * 100_000)), "RecursionError"),
    (lambda p: rewrite(p, provenance=np.array(["a", "b"])), "not a readable"),
    (lambda p: rewrite(p, ids=np.array("x")), "not a readable"),
    (lambda p: rewrite(p, labels=np.zeros((2, 8), np.uint8)), "damaged"),
    (lambda p: rewrite(p, labels=np.zeros((2, 8, 8), np.float32)), "damaged"),
    (lambda p: rewrite(p, labels=np.array(3, np.uint8)), "damaged"),
    (lambda p: rewrite(p, images=np.full((2, 3, 8, 8), 2.0, np.float32)), "not finite values in"),
    (lambda p: rewrite(p, images=np.full((2, 3, 8, 8), np.nan, np.float32)), "not finite values in"),
    (lambda p: rewrite(p, images=np.zeros((2, 1, 8, 8), np.float32)), "damaged"),
])
def test_a_damaged_examples_file_is_one_harness_error(tmp_path, damage, message):
    path = saved(tmp_path)
    damage(path)
    with pytest.raises(HarnessError, match=message) as e:
        load_adversarial(path)
    assert "\n" not in str(e.value)
