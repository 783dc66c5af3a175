import pytest
import torch

from harness.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from harness.errors import HarnessError
from harness.models import build_model


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = build_model("fcn16s-vgg16", 3)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {"model": "fcn16s-vgg16", "size": "reduced", "class_names": ["a", "b", "c"],
                                  "val_metrics": {"pixel_accuracy": 0.5}})
    loaded, meta = load_checkpoint(path)
    assert meta["class_names"] == ["a", "b", "c"] and "torch" in meta["versions"]
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_corrupt_or_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        load_checkpoint(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(HarnessError, match="cannot read checkpoint"):
        read_metadata(bad)


def test_metadata_requires_identity(tmp_path):
    with pytest.raises(ValueError, match="class_names"):
        save_checkpoint(tmp_path / "x.safetensors", build_model("fcn-resnet50", 2), {"model": "m", "size": "reduced"})
