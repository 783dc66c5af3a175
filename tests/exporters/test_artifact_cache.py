"""Cache keys: a changed checkpoint or ONNX file never reuses a stale artifact or TensorRT plan."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from engines.ort_engine import OrtEngine
from exporters.artifacts import ModelSource, onnx_artifact
from exporters.cache import cached_artifact
from exporters.tensorrt_plan import PlanSettings, plan_key_fields
from harness.checkpoints import save_checkpoint
from harness.commands.common import load_model
from harness.fileio import write_bytes_atomic

GPU = {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def test_cache_reuses_only_an_intact_entry_with_the_same_key(session_cache):
    builds = []

    def build(path):
        builds.append(path)
        write_bytes_atomic(path, b"artifact %d" % len(builds))

    fields = {"kind": "test", "source_sha256": "a" * 64}
    path, sha, reused = cached_artifact("test", "blob", fields, "blob.bin", build)
    assert not reused and len(builds) == 1
    assert cached_artifact("test", "blob", fields, "blob.bin", build)[1:] == (sha, True)
    path.write_bytes(b"edited after the build")  # a damaged or edited entry is rebuilt, not trusted
    _, sha2, reused = cached_artifact("test", "blob", fields, "blob.bin", build)
    assert not reused and len(builds) == 2 and path.read_bytes() == b"artifact 2"
    other, _, reused = cached_artifact("test", "blob", {**fields, "source_sha256": "b" * 64}, "blob.bin", build)
    assert not reused and other != path


def test_a_changed_checkpoint_gets_a_new_export(loaded_model, synthetic_val, tmp_path):
    model, source = loaded_model("fcn8s-vgg16")
    names = synthetic_val.class_names
    original = onnx_artifact(model, ModelSource.from_loaded(source, names), "fp32")
    # Same architecture and name, different weights: a retrained or fine-tuned checkpoint.
    changed = load_model(argparse.Namespace(model="fcn8s-vgg16", size="reduced", checkpoint=None, weights=None,
                                            data="synthetic"), synthetic_val)[0]
    with torch.no_grad():
        changed.net.score_fr.bias.add_(torch.linspace(-2.0, 2.0, len(names)))
    path = tmp_path / "changed.safetensors"
    save_checkpoint(path, changed, {"model": "fcn8s-vgg16", "size": "reduced", "class_names": names})
    changed, changed_source = load_model(argparse.Namespace(model="fcn8s-vgg16", size="reduced", checkpoint=str(path),
                                                            weights=None, data="synthetic"), synthetic_val)
    assert changed_source["sha256"] != source["sha256"]
    fresh = onnx_artifact(changed, ModelSource.from_loaded(changed_source, names), "fp32")
    assert not fresh.reused and fresh.path != original.path and fresh.sha256 != original.sha256
    images = synthetic_val.tensors(slice(0, 4))[0]
    with torch.inference_mode():
        expected = changed(images).numpy()
    with OrtEngine(fresh.path) as ort:
        assert np.abs(ort.infer(images.numpy()) - expected).max() < 1e-3
    # Everything derived from the fp32 file is keyed by its hash, so it changes too.
    fp16_old = onnx_artifact(model, ModelSource.from_loaded(source, names), "fp16")
    fp16_new = onnx_artifact(changed, ModelSource.from_loaded(changed_source, names), "fp16")
    assert fp16_new.path != fp16_old.path


def test_a_damaged_cached_onnx_is_rebuilt(loaded_model, synthetic_val):
    model, source = loaded_model("fcn8s-vgg16")
    ms = ModelSource.from_loaded(source, synthetic_val.class_names)
    first = onnx_artifact(model, ms, "fp16")
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])  # truncated in place
    again = onnx_artifact(model, ms, "fp16")
    assert not again.reused and again.sha256 == first.sha256
    with OrtEngine(again.path) as ort:
        assert ort.infer(synthetic_val.tensors(slice(0, 1))[0].numpy()).shape[0] == 1


def test_plan_key_changes_with_onnx_settings_tensorrt_and_gpu():
    base = plan_key_fields("1" * 64, PlanSettings(), "10.13.0.35", GPU)
    assert plan_key_fields("1" * 64, PlanSettings(), "10.13.0.35", GPU) == base
    changed = [
        plan_key_fields("2" * 64, PlanSettings(), "10.13.0.35", GPU),  # another ONNX file
        plan_key_fields("1" * 64, PlanSettings(max_batch=64), "10.13.0.35", GPU),
        plan_key_fields("1" * 64, PlanSettings(precision="fp16"), "10.13.0.35", GPU),
        plan_key_fields("1" * 64, PlanSettings(height=128, width=128), "10.13.0.35", GPU),
        plan_key_fields("1" * 64, PlanSettings(), "10.14.1.48", GPU),
        plan_key_fields("1" * 64, PlanSettings(), "10.13.0.35", {**GPU, "gpu": "NVIDIA A100-SXM4-40GB"}),
        plan_key_fields("1" * 64, PlanSettings(), "10.13.0.35", {**GPU, "compute_capability": "8.0"}),
    ]
    from exporters.cache import cache_key

    keys = {cache_key(f) for f in changed}
    assert len(keys) == len(changed) and cache_key(base) not in keys
