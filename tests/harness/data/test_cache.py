"""The synthetic data cache: verified by content on every load; a damaged file is regenerated with a note."""

import zipfile

import numpy as np
import pytest

from harness.data import arrays_digest, load_data
from harness.data.synthetic import generate

from ...conftest import forge_npy_header, npz_arrays


def _cache_file(cache):
    (path,) = (cache / "data").glob("synthetic-*-val-32px-*.npz")
    return path


def _write_member(path, name, data):
    with zipfile.ZipFile(path, "w") as archive:  # closed here: an unclosed archive warns whenever it is collected
        archive.writestr(name, data)


def _rewrite(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    load_data("synthetic", "val", size=32)  # writes the cache file
    return tmp_path


DAMAGE = {
    "empty": lambda p, a: p.write_bytes(b""),
    "truncated": lambda p, a: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "not a zip": lambda p, a: p.write_text("hello"),
    "zip of garbage": lambda p, a: _write_member(p, "images.npy", b"garbage"),
    "altered labels": lambda p, a: _rewrite(p, images=a["images"], labels=np.zeros_like(a["labels"]),
                                            sha256=a["sha256"]),
    "altered image": lambda p, a: _rewrite(p, images=a["images"][::-1].copy(), labels=a["labels"],
                                           sha256=a["sha256"]),
    "no digest (older format)": lambda p, a: _rewrite(p, images=a["images"], labels=a["labels"]),
    "wrong shapes": lambda p, a: _rewrite(p, images=a["images"][:3], labels=a["labels"][:3],
                                          sha256=np.array(arrays_digest(a["images"][:3], a["labels"][:3]))),
    "a header claiming 196 GB": lambda p, a: forge_npy_header(p, "images", (10**6, 256, 256, 3), "|u1"),
    "a pickle inside": lambda p, a: _rewrite(p, images=np.array([object()]), labels=a["labels"], sha256=a["sha256"]),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_cache_file_is_regenerated_with_a_note(cache, capsys, damage):
    path = _cache_file(cache)
    damage(path, npz_arrays(path))
    capsys.readouterr()
    data = load_data("synthetic", "val", size=32)
    expected = generate("val", 200, size=32)
    assert np.array_equal(data.labels, expected.labels) and np.array_equal(data.images, expected.images)
    err = capsys.readouterr().err
    assert f"note: the cached data file {path}" in err and "regenerating it" in err and err.count("\n") == 1
    # The regenerated file is intact again: the next load is silent.
    load_data("synthetic", "val", size=32)
    assert capsys.readouterr().err == ""


def test_an_intact_cache_is_used_and_stores_its_digest(cache, capsys):
    stored = npz_arrays(_cache_file(cache))
    assert str(stored["sha256"]) == arrays_digest(stored["images"], stored["labels"])
    assert load_data("synthetic", "val", size=32).labels.shape == (200, 32, 32)
    assert capsys.readouterr().err == ""


def test_an_unwritable_cache_still_gives_the_data(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("HARNESS_CACHE", str(blocker))
    data = load_data("synthetic", "val", size=32)
    assert len(data) == 200 and "cannot cache the synthetic data" in capsys.readouterr().err
