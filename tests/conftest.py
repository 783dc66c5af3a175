"""Shared fixtures: a per-session cache and briefly trained reduced models.

The session cache (``HARNESS_CACHE``) holds the synthetic data and the checkpoints that
``trained_model`` writes at their default path, so CLI tests find them like a user would.
"""

from __future__ import annotations

import argparse
import io
import os
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from harness.checkpoints import default_checkpoint_path, load_checkpoint
from harness.cli import main
from harness.commands.common import load_model
from harness.data import SegmentationData, data_key, load_data
from harness.models.normalize import SegmentationModel
from harness.threads import set_threads
from harness.training import TrainConfig, train_and_save


def _register_test_module(name: str) -> None:
    """Make tests/NAME.py importable as ``NAME`` (the tests are not a package, and importlib mode puts nothing on
    sys.path): the one place test modules share builders from (onnx_conventions, user_models)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses look their module up while a class is made
    spec.loader.exec_module(module)


for _name in ("onnx_conventions", "user_models"):
    _register_test_module(_name)

# Short training keeps the suite fast: about 80-90 % pixel accuracy on the built-in data (the defaults reach 91-96 %).
TEST_EPOCHS = {"fcn8s-vgg16": 6, "fcn16s-vgg16": 4, "fcn-resnet50": 5, "fcn-resnet101": 5}


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # HARNESS_TEST_CACHE (development only) keeps the trained test models between pytest runs; CI leaves it unset.
    path = os.environ.get("HARNESS_TEST_CACHE") or str(tmp_path_factory.mktemp("harness-cache"))
    previous = os.environ.get("HARNESS_CACHE")
    os.environ["HARNESS_CACHE"] = path
    set_threads()  # the CLI's policy: OMP_NUM_THREADS when set, else the idle cores
    yield path
    if previous is None:
        os.environ.pop("HARNESS_CACHE", None)
    else:
        os.environ["HARNESS_CACHE"] = previous


@pytest.fixture(scope="session")
def int8_min_agreement() -> float:
    """The int8 argmax agreement with fp32 that the briefly trained test models promise (fraction).

    Not the export command's default (98 %, for the models ``train`` makes): these models are less certain, and
    their agreement (97.7-99.7 % measured) moves with the thread count that trained them. A constant map of the
    reference's majority class already agrees on 81-98 %, so tests/exporters/test_onnx_fp16_int8.py adds the
    bounds on the logits that tell a broken quantisation from a correct one.
    """
    return 0.96


@pytest.fixture(scope="session")
def synthetic_train(session_cache: str) -> SegmentationData:
    return load_data("synthetic", "train")


@pytest.fixture(scope="session")
def synthetic_val(session_cache: str) -> SegmentationData:
    return load_data("synthetic", "val")


@pytest.fixture(scope="session")
def trained_model(synthetic_train: SegmentationData, synthetic_val: SegmentationData
                  ) -> Callable[[str], SegmentationModel]:
    """``trained_model(name)``: a reduced model trained briefly on the built-in data (once per session).

    The checkpoint is saved at its default cache path, so ``python -m harness eval --model name``
    finds it. Each call returns a fresh copy loaded from that checkpoint (eval mode).
    """

    def get(name: str) -> SegmentationModel:
        path = default_checkpoint_path(name, "reduced", data_key(synthetic_train))
        if not path.is_file():
            # Always one thread: float sums, hence the trained weights, change with the thread count, so
            # training on what the thread policy picks would make every test of model quality depend on the
            # machine's load. One thread gives the same models on any machine of this CPU kind.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train_and_save(name, "reduced", synthetic_train, synthetic_val,
                               TrainConfig(epochs=TEST_EPOCHS[name], seed=0), path)
            finally:
                torch.set_num_threads(threads)
        return load_checkpoint(path)[0]

    return get


@pytest.fixture(scope="session")
def loaded_model(trained_model: Callable[[str], SegmentationModel], synthetic_val: SegmentationData
                 ) -> Callable[[str], tuple[SegmentationModel, dict[str, Any]]]:
    """``loaded_model(name)``: (model, source) exactly as ``load_model`` returns them for the cached checkpoint."""

    def get(name: str) -> tuple[SegmentationModel, dict[str, Any]]:
        trained_model(name)  # trains and caches the checkpoint once per session
        args = argparse.Namespace(model=name, size="reduced", checkpoint=None, weights=None, data="synthetic")
        return load_model(args, synthetic_val)

    return get


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    """``run_cli(argv)``: ``python -m harness ARGV`` in this process, as (exit code, stdout, stderr)."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def npz_arrays(path: os.PathLike) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``, by name."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def forge_npy_header(path: os.PathLike, name: str, shape: tuple[int, ...], descr: str = "<f4") -> None:
    """Rewrite the .npz at ``path`` with its member ``name`` replaced by a header that claims ``shape`` over a
    few bytes of data (numpy would allocate the claimed size first); the other members stay as they were."""
    arrays = npz_arrays(path)
    with zipfile.ZipFile(path, "w") as archive:
        for member, array in arrays.items():
            buffer = io.BytesIO()
            if member == name:
                np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                              "shape": shape})
                buffer.write(b"\0" * 64)
            else:
                np.lib.format.write_array(buffer, array)
            archive.writestr(f"{member}.npy", buffer.getvalue())


@pytest.fixture(scope="session")
def convention_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Any, Any]]:
    """``convention_onnx(name, num_classes=3)``: (path, card) of a real ONNX graph in one of the I/O conventions
    of tests/onnx_conventions.py (built once per session and name) and the model card that describes it."""
    import onnx_conventions

    folder = tmp_path_factory.mktemp("conventions")
    built: dict[tuple[str, int], tuple[Any, Any]] = {}

    def build(name: str, num_classes: int = 3) -> tuple[Any, Any]:
        if (name, num_classes) not in built:
            path = folder / f"{name}-{num_classes}.onnx"
            built[(name, num_classes)] = onnx_conventions.build_convention(name, path, num_classes)
        return built[(name, num_classes)]

    return build
