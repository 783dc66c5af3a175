"""The installed TensorRT, read from package metadata: side-by-side CUDA builds, import and start failures.

The metadata is real: dist-info folders in a temporary directory placed on ``sys.path``, read by the
real ``importlib.metadata`` (as pip would have left them). The failures are real exception objects,
most of them raised by the real loader on this machine.
"""

from __future__ import annotations

import ctypes
import importlib
import re

import pytest
import torch

from engines.availability import check, tensorrt_missing
from engines.tensorrt_env import (
    MAX_LOGGED,
    LogRecorder,
    driver_cuda_version,
    import_failure,
    start_failure,
    tensorrt_conflict,
    tensorrt_cuda_majors,
    tensorrt_distributions,
    tensorrt_packages,
)
from harness.cli import main
from harness.errors import HarnessError

TORCH_CUDA = (torch.version.cuda or "").split(".")[0] or None


def _tensorrt_installed() -> bool:
    try:
        importlib.import_module("tensorrt")
    except Exception:
        return False
    return True


def _dist(root, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A dist-info folder as pip writes it (file name with underscores, Name with the project's spelling)."""
    folder = root / f"{re.sub(r'[-.]+', '_', name)}-{version}.dist-info"
    folder.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {r}" for r in requires)]
    (folder / "METADATA").write_text("\n".join(lines) + "\n")


CU12 = [("tensorrt-cu12", "10.13.3.9"), ("tensorrt_cu12_bindings", "10.13.3.9"), ("tensorrt_cu12_libs", "10.13.3.9")]
CU13 = [("tensorrt-cu13", "11.4.0.31"), ("tensorrt_cu13_bindings", "11.4.0.31"), ("tensorrt_cu13_libs", "11.4.0.31")]
META13 = [("tensorrt", "11.4.0.31", ("tensorrt-cu13==11.4.0.31",))]
META12 = [("tensorrt", "10.13.3.9", ("tensorrt_cu12==10.13.3.9",))]

SIDE_BY_SIDE = {
    "cu12 and cu13 builds": CU12 + CU13,
    "tensorrt meta (cu13) beside tensorrt-cu12": META13 + CU12,
    "tensorrt meta (cu12) beside the cu13 bindings": META12 + CU13[1:2],
    "two bindings only": CU12[1:2] + CU13[1:2],
}
SINGLE = {
    "meta with its cu13 build": META13 + CU13,
    "cu12 build alone": CU12,
    "meta without requirements beside cu12": [("tensorrt", "10.0.1", ())] + CU12,
    "lean and dispatch modules are other modules": CU13 + [("tensorrt-lean-cu12", "10.13.3.9"),
                                                         ("tensorrt-dispatch-cu12", "10.13.3.9")],
    "nothing": [],
}


def _install(tmp_path, monkeypatch, dists) -> None:
    for entry in dists:
        _dist(tmp_path, *entry)
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.skipif(_tensorrt_installed(), reason="a real TensorRT is installed; its metadata would join the fakes")
@pytest.mark.parametrize("case", list(SIDE_BY_SIDE))
def test_two_cuda_builds_side_by_side_are_named_with_what_to_uninstall(case, tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, SIDE_BY_SIDE[case])
    assert len(tensorrt_cuda_majors()) == 2
    line = tensorrt_conflict()
    assert line is not None and "\n" not in line and "side by side" in line and "pip uninstall -y" in line
    for dist in tensorrt_distributions():
        assert str(dist) in line  # every installed distribution is listed with its version
    if TORCH_CUDA in tensorrt_cuda_majors():
        # Keep the build torch is built for; uninstall exactly the other major's distributions.
        removed = line.split("pip uninstall -y ")[1].split(",")[0].split()
        expected = sorted(d.name for d in tensorrt_distributions() if d.cuda != TORCH_CUDA)
        assert sorted(removed) == expected and f"keep the CUDA {TORCH_CUDA} build" in line


@pytest.mark.skipif(_tensorrt_installed(), reason="a real TensorRT is installed; its metadata would join the fakes")
@pytest.mark.parametrize("case", list(SINGLE))
def test_one_cuda_build_is_no_conflict(case, tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, SINGLE[case])
    assert tensorrt_conflict() is None
    names = {d.name for d in tensorrt_distributions()}
    assert not any("lean" in n or "dispatch" in n for n in names)
    assert all(n == "tensorrt" or n.startswith("tensorrt-cu") for n in names)  # normalised spelling


@pytest.mark.skipif(_tensorrt_installed(), reason="a real TensorRT is installed; its metadata would join the fakes")
def test_engines_command_shows_the_side_by_side_builds(tmp_path, monkeypatch, capsys):
    _install(tmp_path, monkeypatch, CU12 + CU13)
    status = check("trt", "cuda")
    assert not status.usable and "side by side" in status.reason and "\n" not in status.reason
    assert status.version == "10.13.3.9"  # from the metadata: the module itself cannot be imported
    assert main(["engines"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "tensorrt packages: " + ", ".join(tensorrt_packages()) in text
    assert "share the tensorrt module" in text and "pip uninstall -y" in text


def _load_error(library: str) -> OSError:
    try:
        ctypes.CDLL(library)
    except OSError as e:
        return e
    pytest.skip(f"{library} is present on this machine")


@pytest.mark.parametrize("library, words", [
    ("libnvinfer.so.10", ["native library libnvinfer.so.10", "libs wheel", "NVIDIA's package index"]),
    ("libnvonnxparser.so.11", ["native library libnvonnxparser.so.11", "libs wheel"]),
    ("libcudart.so.99", ["CUDA runtime library libcudart.so.99", "tensorrt-cu12 or tensorrt-cu13"]),
    ("libcublasLt.so.99", ["CUDA runtime library libcublasLt.so.99"]),
    ("libcuda.so.1", ["NVIDIA driver library libcuda.so.1", "nvidia-smi"]),
    ("libsomething_else.so.3", ["native library libsomething_else.so.3"]),
])
@pytest.mark.parametrize("as_import_error", [False, True])
def test_a_missing_native_library_is_named_with_its_fix(library, words, as_import_error):
    error = _load_error(library)  # the real dlopen message
    if as_import_error:  # what `from .tensorrt import *` raises when the extension cannot load it
        error = ImportError(str(error))
    message = import_failure(error)
    assert "\n" not in message and "not installed" not in message
    for word in words:
        assert word in message, message


@pytest.mark.skipif(_tensorrt_installed(), reason="tensorrt imports here")
def test_tensorrt_not_installed_at_all(tmp_path, monkeypatch):
    with pytest.raises(ModuleNotFoundError) as info:
        importlib.import_module("tensorrt")
    message = import_failure(info.value)
    assert message.startswith("tensorrt not installed") and "NVIDIA's package index" in message
    assert tensorrt_missing() == message
    # The same error with TensorRT distributions installed means their module files are gone.
    _install(tmp_path, monkeypatch, META13 + CU13)
    message = import_failure(info.value)
    assert "module is missing although TensorRT packages are installed" in message
    assert "tensorrt-cu13-bindings 11.4.0.31" in message


def test_missing_compiled_bindings_are_not_reported_as_not_installed():
    error = ModuleNotFoundError("No module named 'tensorrt.tensorrt'", name="tensorrt.tensorrt")
    message = import_failure(error)
    assert "compiled bindings are missing" in message and "bindings wheel" in message and "\n" not in message


@pytest.mark.skipif(_tensorrt_installed(), reason="a real TensorRT is installed; its metadata would join the fakes")
def test_the_libs_wheel_of_the_installed_cuda_build_is_named(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, CU13[:2])  # front-end and bindings, no libs wheel
    assert "tensorrt-cu13-libs wheel" in import_failure(_load_error("libnvinfer.so.11"))


NULLPTR = "pybind11::init(): factory function returned nullptr"


@pytest.mark.parametrize("what", ["trt.Builder", "trt.Runtime"])
def test_cuda_start_failure_is_one_line_naming_the_cause(what):
    record = LogRecorder()
    record.add("warning", "Unable to determine GPU memory usage")
    record.add("warning", "CUDA initialization failure with error: 35. Please check your CUDA installation:\n  url")
    error = start_failure(TypeError(NULLPTR), what, "11.4.0.31", record)
    message = str(error)
    assert isinstance(error, HarnessError) and error.exit_code == 2 and "\n" not in message
    for word in (f"TensorRT 11.4.0.31 could not start CUDA ({what} returned nullptr",
                 "CUDA initialization failure with error: 35", "no NVIDIA GPU visible", "nvidia-smi",
                 "CUDA major", "README: GPU install"):
        assert word in message, message
    driver = driver_cuda_version()
    assert (f"this driver supports CUDA {driver}" if driver else "no NVIDIA driver library found") in message


def test_another_type_error_is_not_blamed_on_cuda():
    try:
        int([])  # a real TypeError of another kind
    except TypeError as e:
        error = start_failure(e, "trt.Builder", "10.13.3.9")
    assert "could not start CUDA" not in str(error) and "int()" in str(error) and "\n" not in str(error)


def test_the_log_recorder_is_bounded_and_keeps_first_lines():
    record = LogRecorder()
    for i in range(10 * MAX_LOGGED):
        record.add("error", f"error {i}\nsecond line")
        record.add("warning", "")
    assert len(record.errors) == MAX_LOGGED == len(record.warnings)
    assert record.first() == "error 0" and record.first("error 7") == "error 7" and record.first("absent") is None


def test_driver_cuda_version_is_none_or_major_minor():
    version = driver_cuda_version()
    assert version is None or re.fullmatch(r"\d+\.\d+", version)
