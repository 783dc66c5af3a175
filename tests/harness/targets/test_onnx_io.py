"""harness.targets.onnx_io: the declared I/O of real ONNX graphs, and the check of a card against it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnx_conventions
import onnxruntime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from harness.errors import HarnessError
from harness.targets.card import (
    DTYPES,
    KINDS,
    OUTPUT_LAYOUTS,
    CardError,
    InputSpec,
    ModelCard,
    OutputSpec,
    apply_overrides,
)
from harness.targets.onnx_io import GraphInfo, TensorInfo, check_card, read_graph_info

CONVENTIONS = onnx_conventions.CONVENTIONS


def test_read_graph_info_declared_io() -> None:
    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, None, 64])
    x.type.tensor_type.shape.dim[2].Clear()  # neither a value nor a name
    w_in = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 1, 1])  # IR 3 style: weights listed as inputs
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, "?", 64])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x, w_in], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.x", 1)],
                              producer_name="maker", producer_version="2.1")
    model.metadata_props.add(key="names", value="{0: 'a', 1: 'b'}")
    info = read_graph_info(model)
    assert info.inputs == (TensorInfo("x", "float32", ("batch", 3, "?", 64)),)
    assert info.outputs == (TensorInfo("y", "float32", ("batch", 2, "?", 64)),)
    assert (info.opset, info.producer, info.metadata) == (13, "maker 2.1", {"names": "{0: 'a', 1: 'b'}"})


@pytest.mark.parametrize("elem, name", [(TensorProto.UINT8, "uint8"), (TensorProto.FLOAT16, "float16"),
                                        (TensorProto.INT64, "int64"), (TensorProto.BFLOAT16, "bfloat16"),
                                        (TensorProto.STRING, "object"), (TensorProto.UNDEFINED, "undefined")])
def test_dtype_names(elem: int, name: str) -> None:
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("x", elem, [1])],
                              [helper.make_tensor_value_info("x", elem, [1])])
    assert read_graph_info(helper.make_model(graph)).inputs[0].dtype == name


def test_undeclared_shape_and_non_positive_dims() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, -5, 7])
    info = read_graph_info(helper.make_model(helper.make_graph([], "g", [x], [y])))
    assert info.inputs[0].shape == () and info.outputs[0].shape == ("?", "?", 7)


@pytest.mark.parametrize("name", CONVENTIONS)
def test_each_convention_runs_and_its_card_agrees(name: str, convention_onnx) -> None:
    path, card = convention_onnx(name)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    check_card(card, read_graph_info(model), str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = session.get_inputs()[0]
    shape = [1 if d == "N" else 1024 if d == 1024 else d if isinstance(d, int) else 32 for d in x.shape]
    dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}[x.type]
    outputs = session.run(None, {x.name: np.zeros(shape, dtype)})
    assert all(np.isfinite(o.astype(np.float64)).all() for o in outputs)


# (convention, card fields to change, the field the one-line error must name)
CONTRADICTIONS = [
    ("boundary", ["input.name='nope'"], "input.name"),
    ("boundary", ["output.name='nope'"], "output.name"),
    ("two_outputs", ["output.name='logits'"], "output.name"),
    ("uint8_norm_inside", ["input.dtype=float32", "input.scale=1"], "input.dtype"),
    ("boundary", ["input.dtype=float16"], "input.dtype"),
    ("nhwc", ["input.layout=NCHW"], "input.layout"),
    ("boundary", ["input.layout=NHWC"], "input.layout"),
    ("grey", ["input.channels=rgb"], "input.channels"),
    ("boundary", ["input.channels=grey"], "input.channels"),
    ("fixed_1024", ["input.size=dynamic"], "input.size"),
    ("fixed_1024", ["input.size=512x512"], "input.size"),
    ("argmax", ["output.kind=logits", "output.layout=NCHW", "num_classes=3"], "output.kind"),
    ("argmax", ["output.layout=NCHW"], "output.layout"),
    ("boundary", ["output.kind=class_map", "output.layout=NHW"], "output.layout"),
    ("sigmoid", ["output.kind=logits"], "output.kind"),
    ("softmax", ["num_classes=5"], "num_classes"),
    ("boundary", ["output.kind=sigmoid", "num_classes=2"], "output.kind"),
    ("nhwc_output", ["output.layout=NCHW"], "output.layout"),
    ("boundary", ["output.layout=NHWC"], "output.layout"),
]


@pytest.mark.parametrize("name, changes, field", CONTRADICTIONS, ids=[f"{c[0]}-{c[2]}" for c in CONTRADICTIONS])
def test_contradicting_card_names_the_field(name: str, changes: list[str], field: str, convention_onnx) -> None:
    path, card = convention_onnx(name)
    card = apply_overrides(card, changes)
    with pytest.raises(HarnessError) as e:
        check_card(card, read_graph_info(onnx.load(str(path))), str(path))
    message = str(e.value)
    assert "\n" not in message and field in message and str(path) in message


def test_several_outputs_without_output_name(convention_onnx) -> None:
    path, card = convention_onnx("two_outputs")
    card = replace(card, output=replace(card.output, name=None))
    with pytest.raises(HarnessError, match=r"2 outputs \('aux', 'out'\).*set output.name"):
        check_card(card, read_graph_info(onnx.load(str(path))), str(path))


def _info(x: tuple, y: tuple, x_dtype: str = "float32", y_dtype: str = "float32", extra_inputs: int = 0) -> GraphInfo:
    inputs = (TensorInfo("x", x_dtype, x),) + tuple(TensorInfo(f"x{i}", "float32", x) for i in range(extra_inputs))
    return GraphInfo(inputs, (TensorInfo("y", y_dtype, y),), 17, "", {})


@pytest.mark.parametrize("info, card, words", [
    (_info(("N", 3, "H", "W"), ("N", 3, "H", "W"), extra_inputs=1), ModelCard(), "2 inputs"),
    (_info(("N", 3, "H"), ("N", 3, "H", "W")), ModelCard(), "rank 4"),
    (_info(("N", 4, "H", "W"), ("N", 3, "H", "W")), ModelCard(), "4 channels"),
    (_info(("N", 3, 10_000, 10_000), ("N", 3, 10_000, 10_000)), ModelCard(input=InputSpec(size=(8192, 8192))),
     "at most 8192"),
    (_info(("N", 3, 512, "W"), ("N", 3, 512, "W")), ModelCard(), "one fixed side"),
    (_info(("N", 3, 1024, 1024), ("N", 3, 256, 256)), ModelCard(input=InputSpec(size=(1024, 1024))),
     "output.resolution"),
    (_info(("N", 3, 256, 256), ("N", 3, 512, 512)),
     ModelCard(input=InputSpec(size=(256, 256)), output=OutputSpec(resolution="reduced")), "larger than the input"),
    (_info(("N", 3, "H", "W"), ("N", 3, "H", "W"), y_dtype="string"), ModelCard(), "float scores"),
    (_info(("N", 3, "H", "W"), ("N", "H", "W", 21)), ModelCard(num_classes=21), "output.layout"),
    (_info(("N", 3, "H", "W"), ("N", 5, "H", "W")), ModelCard(output=OutputSpec(kind="class_map"), num_classes=5),
     "one channel"),
    (_info(("N", 3, "H", "W"), ()), ModelCard(), "not declared"),
])
def test_declared_io_the_harness_cannot_take(info: GraphInfo, card: ModelCard, words: str) -> None:
    with pytest.raises(HarnessError) as e:
        check_card(card, info, "model.onnx")
    assert words in str(e.value) and "\n" not in str(e.value)


_dims = st.one_of(st.integers(1, 12_000), st.sampled_from(["N", "H", "W", "?", "C"]))


@settings(max_examples=300, deadline=None)
@given(x=st.lists(_dims, max_size=5), y=st.lists(_dims, max_size=5), x_dtype=st.sampled_from(DTYPES + ("int64",)),
       y_dtype=st.sampled_from(("float32", "float16", "int64", "bool")), layout=st.sampled_from(("NCHW", "NHWC")),
       channels=st.sampled_from(("rgb", "bgr", "grey")), out_layout=st.sampled_from(OUTPUT_LAYOUTS),
       kind=st.sampled_from(KINDS), num_classes=st.one_of(st.none(), st.integers(1, 30)),
       size=st.one_of(st.none(), st.tuples(st.integers(1, 2048), st.integers(1, 2048))))
def test_check_card_passes_or_says_one_line(x, y, x_dtype, y_dtype, layout, channels, out_layout, kind, num_classes,
                                            size) -> None:
    """Whatever a graph declares and a card says: check_card passes or raises one HarnessError line, never
    anything else."""
    try:
        scale = 255 if x_dtype == "uint8" else 1
        card = ModelCard(input=InputSpec(layout=layout, channels=channels,
                                         dtype=x_dtype if x_dtype in DTYPES else "float32", scale=scale, size=size),
                         output=OutputSpec(layout=out_layout, kind=kind),
                         num_classes=2 if kind in ("sigmoid", "binary_logits") else num_classes or 3)
    except CardError:
        return
    try:
        check_card(card, _info(tuple(x), tuple(y), x_dtype, y_dtype), "m.onnx")
    except HarnessError as e:
        assert "\n" not in str(e) and str(e).startswith("m.onnx: ")
