"""Corrupt, truncated and foreign ONNX files: one-line HarnessError with exit code 2, never a traceback."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engines.availability import tensorrt_missing
from engines.ort_engine import OrtEngine
from exporters.artifacts import ModelSource, onnx_artifact
from exporters.onnx_export import max_opset
from exporters.onnx_file import load_onnx
from harness.cli import main
from harness.errors import HarnessError


@pytest.fixture(scope="module")
def good_onnx(loaded_model, synthetic_val):
    model, source = loaded_model("fcn8s-vgg16")
    return onnx_artifact(model, ModelSource.from_loaded(source, synthetic_val.class_names), "fp32").path


def _assert_one_line_usage_error(error: HarnessError, *words: str) -> None:
    message = str(error)
    assert "\n" not in message and error.exit_code == 2
    for word in words:
        assert word in message


def _bad_files(good_onnx, tmp_path):
    data = good_onnx.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "truncated-early": data[:200],
        "garbage": np.random.default_rng(0).bytes(4096),
        "empty": b"",
        "text": b"this is not an ONNX model\n",
    }
    for name, content in files.items():
        (tmp_path / f"{name}.onnx").write_bytes(content)
    return [tmp_path / f"{name}.onnx" for name in files]


def test_corrupt_or_truncated_onnx_is_a_one_line_error(good_onnx, tmp_path):
    for path in _bad_files(good_onnx, tmp_path):
        with pytest.raises(HarnessError) as info:
            load_onnx(path)
        _assert_one_line_usage_error(info.value, str(path))
        with pytest.raises(HarnessError) as info:
            with OrtEngine(path):
                pass
        _assert_one_line_usage_error(info.value, str(path))


def test_missing_onnx_file_is_a_one_line_error(tmp_path):
    with pytest.raises(HarnessError) as info:
        load_onnx(tmp_path / "nothing.onnx")
    _assert_one_line_usage_error(info.value, "does not exist")


def _tiny_model(path, dtype=TensorProto.FLOAT, channels=3):
    x = helper.make_tensor_value_info("images", dtype, ["N", channels, "H", "W"])
    y = helper.make_tensor_value_info("logits", dtype, ["N", channels, "H", "W"])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["logits"])], "tiny", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_onnx_outside_the_harness_boundary_is_rejected(tmp_path):
    with pytest.raises(HarnessError) as info:
        load_onnx(_tiny_model(tmp_path / "int64.onnx", dtype=TensorProto.INT64))
    _assert_one_line_usage_error(info.value, "float32")
    with pytest.raises(HarnessError) as info:
        load_onnx(_tiny_model(tmp_path / "gray.onnx", channels=1))
    _assert_one_line_usage_error(info.value, "3 RGB channels")
    assert load_onnx(_tiny_model(tmp_path / "ok.onnx")).graph.node[0].op_type == "Identity"


def test_export_cli_usage_errors_exit_2_with_one_line(capsys):
    cases = [
        (["export", "--model", "fcn8s-vgg16", "--opset", "12"], "opset"),
        (["export", "--model", "fcn8s-vgg16", "--opset", "1000"], "opset"),
        (["export", "--model", "fcn8s-vgg16", "--opset", str(max_opset() + 1)], "opset"),
        (["export"], "--model NAME or --all"),
        (["export", "--all", "--model", "fcn8s-vgg16"], "not both"),
        (["export", "--model", "fcn8s-vgg16", "--min-agreement", "101"], "--min-agreement"),
    ]
    if tensorrt_missing():
        cases.append((["export", "--model", "fcn8s-vgg16", "--format", "trt"], "engine trt on cuda is not usable"))
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        # argparse's own errors carry the program name before "error:"
        assert len(err.splitlines()) == 1 and "error:" in err and words in err, err
