"""Checkpoints: round trip, and every damaged or contradictory file is one HarnessError naming it."""

import json

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from harness.checkpoints import (
    cached_checkpoint_problem,
    load_checkpoint,
    metadata_problem,
    read_metadata,
    save_checkpoint,
)
from harness.commands.models import _trained
from harness.errors import HarnessError
from harness.models import build_model

NAMES = ["a", "b", "c"]
GOOD_META = {"model": "fcn-resnet50", "size": "reduced", "class_names": NAMES,
             "val_metrics": {"pixel_accuracy": 0.5, "mean_iou": 0.25, "per_class_iou": [0.5, None, 0.0]}}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model("fcn-resnet50", len(NAMES))


def _state(model):
    return {k: v.detach().contiguous() for k, v in model.net.state_dict().items()}


def _write_raw(path, model, raw_metadata: str):
    """A safetensors file with the model's tensors and the given (possibly broken) harness metadata text."""
    save_file(_state(model), str(path), metadata={"harness": raw_metadata})
    return path


def test_round_trip_keeps_weights_and_metadata(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_model, GOOD_META)
    loaded, meta = load_checkpoint(path)
    assert meta["class_names"] == NAMES and "torch" in meta["versions"]
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert cached_checkpoint_problem(path, "fcn-resnet50", "reduced", NAMES) is None


def test_corrupt_or_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        load_checkpoint(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(HarnessError, match="cannot read checkpoint"):
        read_metadata(bad)


def test_metadata_requires_identity(tmp_path):
    with pytest.raises(ValueError, match="'model'"):
        save_checkpoint(tmp_path / "x.safetensors", build_model("fcn-resnet50", 2), {"model": "m", "size": "reduced"})
    assert not (tmp_path / "x.safetensors").exists()


BAD_METADATA = {
    "not JSON": "{not json",
    "empty": "",
    "a list": json.dumps([GOOD_META]),
    "a string": json.dumps("fcn16s-vgg16"),
    "no model": json.dumps({k: v for k, v in GOOD_META.items() if k != "model"}),
    "unknown model": json.dumps({**GOOD_META, "model": "unet"}),
    "model a list": json.dumps({**GOOD_META, "model": ["fcn16s-vgg16"]}),
    "no size": json.dumps({k: v for k, v in GOOD_META.items() if k != "size"}),
    "class_names 7": json.dumps({**GOOD_META, "class_names": 7}),
    "class_names a string": json.dumps({**GOOD_META, "class_names": "abc"}),
    "class_names of numbers": json.dumps({**GOOD_META, "class_names": [1, 2, 3]}),
    "one class": json.dumps({**GOOD_META, "class_names": ["a"]}),
    "class name with an escape code": json.dumps({**GOOD_META, "class_names": ["a\x1b[31m", "b", "c"]}),
    "class name with a newline": json.dumps({**GOOD_META, "class_names": ["a\nb", "b", "c"]}),
    "duplicate classes": json.dumps({**GOOD_META, "class_names": ["a", "a", "b"]}),
    "too many classes": json.dumps({**GOOD_META, "class_names": [f"c{i}" for i in range(300)]}),
    "NaN accuracy": json.dumps({**GOOD_META, "val_metrics": {"pixel_accuracy": float("nan")}}),
    "accuracy 1.5": json.dumps({**GOOD_META, "val_metrics": {"pixel_accuracy": 1.5}}),
    "accuracy a string": json.dumps({**GOOD_META, "val_metrics": {"mean_iou": "0.5"}}),
    "val_metrics a list": json.dumps({**GOOD_META, "val_metrics": [0.5]}),
    "per_class_iou too short": json.dumps({**GOOD_META, "val_metrics": {"per_class_iou": [0.5]}}),
    "data a string": json.dumps({**GOOD_META, "data": "synthetic"}),
    "versions of numbers": json.dumps({**GOOD_META, "versions": {"torch": 2}}),
    "input_size negative": json.dumps({**GOOD_META, "input_size": [-1, 64]}),
    "deeply nested": "[" * 200_000 + "]" * 200_000,
}


@pytest.mark.parametrize("raw", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_bad_metadata_is_one_line_naming_the_file(tmp_path, tiny_model, raw):
    path = _write_raw(tmp_path / "bad.safetensors", tiny_model, raw)
    for read in (read_metadata, load_checkpoint):
        with pytest.raises(HarnessError) as caught:
            read(path)
        message = str(caught.value)
        assert str(path) in message and "\n" not in message and len(message) < 400
    found, unreadable = _trained_in(tmp_path, path)
    assert found == {} and len(unreadable) == 1 and str(path.name) in unreadable[0]


def _trained_in(cache, path):
    (cache / "checkpoints").mkdir(exist_ok=True)
    path.rename(cache / "checkpoints" / path.name)
    return _trained()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))


@pytest.mark.parametrize("damage", ["truncated", "zero bytes", "header only", "tensor missing", "wrong shape",
                                    "NaN weight", "another model's tensors"])
def test_damaged_weights_are_refused_and_never_reused_as_cached(tmp_path, tiny_model, damage):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_model, GOOD_META)
    raw = json.dumps(read_metadata(path))
    state = _state(tiny_model)
    first = next(iter(state))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "zero bytes":
        path.write_bytes(b"")
    elif damage == "header only":
        data = path.read_bytes()
        path.write_bytes(data[: 8 + int.from_bytes(data[:8], "little")])
    elif damage == "tensor missing":
        save_file({k: v for k, v in state.items() if k != first}, str(path), metadata={"harness": raw})
    elif damage == "wrong shape":
        save_file({**state, first: torch.zeros(1)}, str(path), metadata={"harness": raw})
    elif damage == "NaN weight":
        save_file({**state, first: torch.full_like(state[first], float("nan"))}, str(path), metadata={"harness": raw})
    else:
        other = build_model("fcn8s-vgg16", len(NAMES))
        save_file(_state(other), str(path), metadata={"harness": raw})
    with pytest.raises(HarnessError) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    problem = cached_checkpoint_problem(path, "fcn-resnet50", "reduced", NAMES)
    assert problem is not None and str(path) in problem


def test_a_cached_checkpoint_of_another_model_size_or_classes_is_not_reused(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_model, GOOD_META)
    assert "fcn-resnet50" in cached_checkpoint_problem(path, "fcn8s-vgg16", "reduced", NAMES)
    assert "--size reduced" in cached_checkpoint_problem(path, "fcn-resnet50", "paper", NAMES)
    assert "classes" in cached_checkpoint_problem(path, "fcn-resnet50", "reduced", ["x", "y", "z"])


@pytest.mark.parametrize("bad", ["nan", "inf", "buffer"])
def test_non_finite_models_are_never_saved(tmp_path, bad):
    model = build_model("fcn-resnet50", len(NAMES))
    with torch.no_grad():
        if bad == "buffer":
            next(b for n, b in model.net.named_buffers() if n.endswith("running_var")).fill_(float("inf"))
        else:
            next(model.net.parameters()).view(-1)[0] = float(bad)
    path = tmp_path / "m.safetensors"
    with pytest.raises(HarnessError, match="NaN or infinite"):
        save_checkpoint(path, model, GOOD_META)
    assert list(tmp_path.iterdir()) == []


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=12)
_KEYS = ["model", "size", "class_names", "data", "data_key", "input_size", "train", "val_metrics", "versions",
         "created", "other"]
_VALUES = (_json | st.sampled_from(["fcn-resnet50", "fcn8s-vgg16", "reduced", "x"]) | st.just(NAMES)
           | st.just({"pixel_accuracy": 0.5}) | st.just([64, 64]) | st.just({}))
_fields = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=11)
# A valid record with some fields replaced or removed: valid loads as well as every kind of refusal.
_mutated = st.builds(lambda extra, drop: {k: v for k, v in {**GOOD_META, **extra}.items() if k not in drop},
                     st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=3),
                     st.sets(st.sampled_from(_KEYS), max_size=2))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=_json | _fields | _mutated | st.text(max_size=40))
def test_random_metadata_is_a_valid_load_or_one_harness_error(tmp_path_factory, tiny_model, meta):
    path = tmp_path_factory.mktemp("meta") / "m.safetensors"
    raw = meta if isinstance(meta, str) else json.dumps(meta)
    _write_raw(path, tiny_model, raw)
    try:
        loaded = read_metadata(path)
    except HarnessError as e:
        event("metadata refused")
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert metadata_problem(loaded) is None
    try:
        load_checkpoint(path)
    except HarnessError as e:  # e.g. valid metadata naming another model than the tensors
        event("weights refused")
        assert "\n" not in str(e) and str(path) in str(e)
    else:
        event("loaded")
