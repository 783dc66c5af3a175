"""harness.targets.inspect and ``python -m harness inspect``: the guessed card of real ONNX graphs in every
convention, how each field is known, the written card, and hostile files (one line, exit 2, nothing written)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnx_conventions
import pytest
from onnx import TensorProto, helper, numpy_helper

from exporters.onnx_file import write_metadata
from harness.targets.card import apply_overrides, load_card
from harness.targets.inspect import FIELDS, GUESSED, SURE, UNKNOWN, Inspection, guess_from_io, inspect_onnx
from harness.targets.onnx_io import GraphInfo, TensorInfo, check_card, read_graph_info

CONVENTIONS = onnx_conventions.CONVENTIONS
COMBINATIONS = onnx_conventions.COMBINATIONS  # one input-side and one output-side convention, e.g. "nhwc+softmax"

# How inspect knows each field of each convention; a field not listed is "sure".
COMMON_MARKS = {"input.channels": GUESSED, "input.scale": GUESSED, "output.kind": GUESSED, "class_names": UNKNOWN}
MARKS = {
    "norm_outside": {"input.mean": UNKNOWN, "input.std": UNKNOWN},
    "grey": {"input.channels": SURE},
    "uint8_norm_inside": {"input.scale": SURE},
    "sigmoid": {"num_classes": GUESSED},
    "binary_logits": {"num_classes": GUESSED},
    "argmax": {"output.kind": SURE, "num_classes": UNKNOWN},
    "quarter": {"output.layout": GUESSED, "output.resolution": GUESSED, "num_classes": GUESSED},
    "two_outputs": {"output.name": GUESSED},
}
# What a user sets after inspecting a torchvision-style model (normalisation outside the graph).
EDITS = ["input.mean=imagenet", "input.std=imagenet", "class_names=['a','b','c']"]
# Guessed fields whose guess may differ from the truth: what nothing outside the graph can show.
MAY_DIFFER = {"bgr": {"input.channels"}}


def expected_marks(name: str) -> dict[str, str]:
    marks = dict(COMMON_MARKS)
    for convention in name.split("+"):
        marks.update(MARKS.get(convention, {}))
    return {f: marks.get(f, SURE) for f in FIELDS}


def may_differ(name: str) -> set[str]:
    return set().union(*(MAY_DIFFER.get(c, set()) for c in name.split("+")))


def card_values(card) -> dict[str, object]:
    doc = card.as_dict()
    flat = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    for table in ("input", "output"):
        flat.update({f"{table}.{k}": v for k, v in doc[table].items()})
    return {f: flat[f] for f in FIELDS}


def check_guess(inspection: Inspection, truth, name: str) -> None:
    """Sure fields equal the truth; unknown fields are None and listed; guessed ones equal it unless they may
    differ; the marks are the expected ones."""
    marks = {v.field: v.mark for v in inspection.verdicts}
    assert marks == expected_marks(name)
    guess, correct = card_values(inspection.card), card_values(truth)
    for f in FIELDS:
        if marks[f] == UNKNOWN:
            assert guess[f] is None and f in inspection.card.unknown, f
        elif f not in may_differ(name):
            assert guess[f] == correct[f], (f, guess[f], correct[f])
        assert inspection.verdict(f).why, f
    check_card(inspection.card, inspection.info, name)  # the guess never contradicts the graph


@pytest.mark.parametrize("num_classes", [3, 5])
@pytest.mark.parametrize("name", CONVENTIONS)
def test_guess_of_each_convention(name: str, num_classes: int, convention_onnx) -> None:
    path, truth = convention_onnx(name, num_classes)
    inspection = inspect_onnx(path)
    check_guess(inspection, truth, name)
    assert inspection.probe is not None and inspection.probe.outputs
    if name == "bgr":
        assert inspection.card.input.channels == "rgb"
        assert "Gather [2, 1, 0]" in inspection.verdict("input.channels").why


@pytest.mark.parametrize("name", COMBINATIONS)
def test_guess_of_each_combination(name: str, convention_onnx) -> None:
    path, truth = convention_onnx(name, 4)
    check_card(truth, read_graph_info(onnx.load(str(path))), name)
    check_guess(inspect_onnx(path), truth, name)


def test_guess_of_torchvision_lraspp(tmp_path: Path) -> None:
    path, truth = onnx_conventions.build_lraspp(tmp_path / "lraspp.onnx")
    inspection = inspect_onnx(path)
    marks = {v.field: v.mark for v in inspection.verdicts}
    # its class axis is an unnamed dim of the exported graph: the channel count comes from the probe
    assert marks == {**expected_marks("norm_outside"), "num_classes": GUESSED}
    edited = apply_overrides(inspection.card, EDITS)
    assert edited == replace(truth, class_names=("a", "b", "c"))


@pytest.mark.parametrize("name", CONVENTIONS)
def test_cli_writes_a_card_that_load_card_reads(name: str, convention_onnx, run_cli, tmp_path: Path) -> None:
    path, truth = convention_onnx(name)
    out = tmp_path / "sub" / "card.toml"
    code, stdout, stderr = run_cli(["inspect", str(path), "--card", str(out)])
    assert (code, stderr) == (0, "")
    card = load_card(out)
    assert card == inspect_onnx(path).card
    for line in stdout.splitlines():
        assert "Traceback" not in line
    assert "Guessed model card" in stdout and "sure" in stdout
    text = out.read_text()
    for v in inspect_onnx(path).verdicts:  # each guessed/unknown line says so
        key = v.field.rpartition(".")[2]
        lines = [line for line in text.splitlines() if line.startswith(f"{key} =")]
        assert any((f"# {v.mark}:" in line) == (v.mark != SURE) for line in lines), (v.field, lines)
    if name == "norm_outside":  # the user edits the unknown fields: the card is then the correct one
        edited = apply_overrides(card, EDITS)
        assert edited == replace(truth, class_names=("a", "b", "c"))


def test_harness_exported_file_is_the_boundary(convention_onnx, tmp_path: Path) -> None:
    source, _ = convention_onnx("boundary")
    model = onnx.load(str(source))
    write_metadata(model, {"model": "tiny", "class_names": ["sky", "road", "car"], "precision": "fp32"})
    path = tmp_path / "tiny.onnx"
    onnx.save_model(model, str(path))
    inspection = inspect_onnx(path)
    assert all(v.mark == SURE and "harness-exported" in v.why for v in inspection.verdicts)
    card = inspection.card
    assert card.is_boundary and (card.name, card.class_names, card.num_classes) == ("tiny", ("sky", "road", "car"), 3)


@pytest.mark.parametrize("names", ["{0: 'sky', 1: 'road', 2: 'car'}", '["sky", "road", "car"]'])
def test_class_names_from_a_producers_metadata(names: str, convention_onnx, tmp_path: Path) -> None:
    for convention in ("softmax", "argmax"):
        model = onnx.load(str(convention_onnx(convention)[0]))
        model.metadata_props.add(key="names", value=names)  # as YOLO exporters write it
        path = tmp_path / f"{convention}.onnx"
        onnx.save_model(model, str(path))
        inspection = inspect_onnx(path)
        assert inspection.card.class_names == ("sky", "road", "car") and inspection.card.num_classes == 3
        assert inspection.verdict("class_names").mark == GUESSED and inspection.card.unknown == ()


@pytest.mark.parametrize("names", ["[" * 60_000, "{'a': 'sky', 'b': 'road', 'c': 'car'}", "[1, 2, 3]",
                                   "['sky', 'sky', 'car']", "__import__('os').system('false')", "x" * 70_000])
def test_unusable_class_names_in_metadata_stay_unknown(names: str, convention_onnx, tmp_path: Path) -> None:
    model = onnx.load(str(convention_onnx("softmax")[0]))
    model.metadata_props.add(key="class_names", value=names)
    path = _save(tmp_path / "m.onnx", model)
    inspection = inspect_onnx(path)
    assert inspection.card.class_names is None and inspection.verdict("class_names").mark == UNKNOWN


_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
_CONV = ("Conv", ["x", "w"], {})


@pytest.mark.parametrize("nodes, consts, scale", [
    ([("Div", ["x", "c"], {}), ("Sub", ["x", "m"], {}), ("Div", ["x", "s"], {}), _CONV],
     {"c": np.float32(255), "m": _MEAN, "s": _STD}, 255),
    ([("Mul", ["x", "c"], {}), ("Sub", ["x", "m"], {}), ("Div", ["x", "s"], {}), _CONV],
     {"c": np.float32(1 / 255), "m": _MEAN, "s": _STD}, 255),
    ([("Sub", ["x", "m"], {}), ("Div", ["x", "s"], {}), _CONV], {"m": _MEAN * 255, "s": _STD * 255}, 255),
    ([("Add", ["m", "x"], {}), ("Mul", ["x", "s"], {}), _CONV], {"m": -_MEAN, "s": 1 / _STD}, 1),
])
def test_normalisation_inside_and_its_scale(nodes, consts, scale, tmp_path: Path) -> None:
    path = _save(tmp_path / "m.onnx", _graph(nodes, ["N", 3, "H", "W"], ["N", 3, "H", "W"], consts={**consts, **_W3}))
    inspection = inspect_onnx(path)
    assert inspection.card.input.scale == scale and inspection.verdict("input.scale").mark == GUESSED
    assert inspection.card.input.mean is None and inspection.verdict("input.mean").mark == SURE


@pytest.mark.parametrize("x_shape, layout, words", [
    (["N", "H", "W", 3], "NHWC", "axis 3 holds the channels"),
    (["N", 3, "H", "W"], "NCHW", "axis 1 holds the channels"),
    (["N", "C", "H", "W"], "NCHW", "ambiguous"),
])
def test_layout_from_the_shape_when_the_graph_does_not_say(x_shape, layout, words, tmp_path: Path) -> None:
    """A Pad before any Conv stops the walk from the input: the layout is guessed from the shape."""
    nodes = [("Pad", ["x", "pads"], {}), ("Identity", ["x"], {})]
    if layout == "NHWC":
        nodes.append(("Transpose", ["x"], {"perm": [0, 3, 1, 2]}))
    nodes.append(_CONV)
    path = _save(tmp_path / "m.onnx", _graph(nodes, x_shape, ["N", 3, "H", "W"],
                                             consts={**_W3, "pads": np.zeros(8, np.int64)}))
    inspection = inspect_onnx(path)
    verdict = inspection.verdict("input.layout")
    assert inspection.card.input.layout == layout and verdict.mark == GUESSED and words in verdict.why
    assert "Pad" in verdict.why and inspection.card.unknown == ("class_names", "input.mean", "input.std")


@pytest.mark.parametrize("y_shape, kind, layout, classes", [
    (("?", 21, "?", "?"), "logits", "NCHW", 21),
    (("?", "?", "?", 21), "logits", "NHWC", 21),
    (("?", 1, "?", "?"), "binary_logits", "NCHW", 2),
    (("?", "?", "?"), "class_map", "NHW", None),
])
def test_guess_from_declared_io_alone(y_shape, kind, layout, classes) -> None:
    """What a TensorRT plan shows (dynamic dims as "?", no operators, no probe): guessed, never sure of the kind."""
    info = GraphInfo((TensorInfo("images", "float32", ("?", 3, "?", "?")),),
                     (TensorInfo("scores", "int32" if kind == "class_map" else "float32", y_shape),), 0, "TensorRT", {})
    inspection = guess_from_io(Path("model.plan"), info)
    card = inspection.card
    assert (card.output.kind, card.output.layout, card.num_classes) == (kind, layout, classes)
    assert inspection.verdict("input.mean").mark == UNKNOWN and "plan" in inspection.verdict("input.mean").why
    assert inspection.verdict("output.kind").mark == (SURE if kind == "class_map" else GUESSED)
    assert inspection.probe is None and inspection.format == "plan"


def test_probe_size_of_a_graph_that_takes_one_size(tmp_path: Path, run_cli) -> None:
    path = _save(tmp_path / "reshape.onnx", _graph([("Reshape", ["x", "shape"], {})], ["N", 3, "H", "W"],
                                                    ["N", 3, "H", "W"], consts={"shape": np.array([1, 3, 64, 96])}))
    code, _, err = run_cli(["inspect", str(path)])
    assert code == 2 and "--probe-size" in err and err.count("\n") == 1
    code, out, err = run_cli(["inspect", str(path), "--probe-size", "64x96"])
    assert code == 0 and err == "" and "[1, 3, 64, 96]" in out


def test_probe_size_ignored_for_a_fixed_graph(convention_onnx) -> None:
    inspection = inspect_onnx(convention_onnx("fixed_1024")[0], (64, 64))
    assert inspection.probe is not None and inspection.probe.input_shape == (1, 3, 1024, 1024)
    assert any("--probe-size ignored" in n for n in inspection.notes)


# ---------------------------------------------------------------- hostile files

def _graph(nodes: list[tuple[str, list[str], dict]], x_shape: list, y_shape: list, *, x_type: int = TensorProto.FLOAT,
           inputs: int = 1, consts: dict | None = None, opset: int = 17) -> onnx.ModelProto:
    """A graph x -> nodes (each writing t0, t1, ...; the last one the output y)."""
    made, tensor = [], "x"
    for i, (op, ins, attrs) in enumerate(nodes):
        out = "y" if i == len(nodes) - 1 else f"t{i}"
        made.append(helper.make_node(op, [tensor if a == "x" else a for a in ins], [out], **attrs))
        tensor = out
    xs = [helper.make_tensor_value_info("x" if i == 0 else f"x{i}", x_type, x_shape) for i in range(inputs)]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()]
    graph = helper.make_graph(made, "hostile", xs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _save(path: Path, model: onnx.ModelProto) -> Path:
    onnx.save_model(model, str(path))
    return path


_W3 = {"w": np.ones((3, 3, 1, 1), np.float32)}
HOSTILE_GRAPHS = {
    "two_inputs": (_graph([("Add", ["x", "x1"], {})], ["N", 3, "H", "W"], ["N", 3, "H", "W"], inputs=2), "2 inputs"),
    "rank3_input": (_graph([("Identity", ["x"], {})], ["N", 3, "H"], ["N", 3, "H"]), "rank 4"),
    "four_channels": (_graph([("Conv", ["x", "w"], {})], ["N", 4, "H", "W"], ["N", 3, "H", "W"],
                             consts={"w": np.ones((3, 4, 1, 1), np.float32)}), "4 channels"),
    "int32_input": (_graph([("Cast", ["x"], {"to": TensorProto.FLOAT})], ["N", 3, "H", "W"], ["N", 3, "H", "W"],
                           x_type=TensorProto.INT32), "int32"),
    "multilabel_sigmoid": (_graph([("Conv", ["x", "w"], {}), ("Sigmoid", ["x"], {})], ["N", 3, "H", "W"],
                                  ["N", 3, "H", "W"], consts=_W3), "multi-label"),
    "huge_fixed_size": (_graph([("Identity", ["x"], {})], [1, 3, 100_000, 100_000], [1, 3, 100_000, 100_000]),
                        "at most 8192"),
    "huge_fixed_batch": (_graph([("Identity", ["x"], {})], [100_000, 3, 8, 8], [100_000, 3, 8, 8]), "fixed batch"),
    "one_fixed_side": (_graph([("Identity", ["x"], {})], ["N", 3, 512, "W"], ["N", 3, 512, "W"]), "one fixed side"),
    "larger_output": (_graph([("Conv", ["x", "w"], {}), ("Resize", ["x", "", "scales"], {"mode": "linear"})],
                             ["N", 3, "H", "W"], ["N", 3, "H2", "W2"],
                             consts={**_W3, "scales": np.array([1, 1, 2, 2], np.float32)}), "larger than the input"),
    "rank5_output": (_graph([("Conv", ["x", "w"], {}), ("Unsqueeze", ["x", "axes"], {})], ["N", 3, "H", "W"],
                            [1, "N", 3, "H", "W"], consts={**_W3, "axes": np.array([0])}), "rank"),
    "many_classes": (_graph([("Conv", ["x", "w"], {})], ["N", 3, "H", "W"], ["N", 300, "H", "W"],
                            consts={"w": np.ones((300, 3, 1, 1), np.float32)}), "at most 255 classes"),
    "bad_operator": (_graph([("NoSuchOp", ["x"], {})], ["N", 3, "H", "W"], ["N", 3, "H", "W"]), "checker"),
}


def _hostile_file(kind: str, tmp_path: Path, convention_onnx) -> tuple[Path, str]:
    """(path, words the one-line error must hold) of one hostile input file."""
    good = convention_onnx("boundary")[0].read_bytes()
    path = tmp_path / f"{kind}.onnx"
    if kind in HOSTILE_GRAPHS:
        model, words = HOSTILE_GRAPHS[kind]
        path.write_bytes(model.SerializeToString())  # no checker here: some are what a careless exporter writes
        return path, words
    if kind == "missing":
        return path, "does not exist"
    if kind == "directory":
        path.mkdir()
        return path, "does not exist"
    contents = {"empty": b"", "truncated": good[: len(good) // 2], "random": bytes(range(256)) * 64,
                "text": b"this is not a model\n", "plan": b"\x00" * 64}
    if kind == "plan":
        path = tmp_path / "model.plan"
    path.write_bytes(contents[kind])
    return path, "gpu extra" if kind == "plan" else ""


HOSTILE = [*HOSTILE_GRAPHS, "missing", "directory", "empty", "truncated", "random", "text", "plan"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_file_one_line_exit_2_nothing_written(kind: str, convention_onnx, run_cli, tmp_path: Path) -> None:
    if kind == "plan":
        from engines.availability import tensorrt_missing

        if tensorrt_missing() is None:
            pytest.skip("TensorRT is usable here: a zero plan fails to load instead (tests/engines)")
    path, words = _hostile_file(kind, tmp_path, convention_onnx)
    card = tmp_path / "card.toml"
    card.write_text("kept = true\n")
    code, out, err = run_cli(["inspect", str(path), "--card", str(card)])
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in out + err
    assert words in err, err
    assert card.read_text() == "kept = true\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".card.toml")] == []


def test_card_may_not_overwrite_the_model(convention_onnx, run_cli) -> None:
    path = convention_onnx("softmax")[0]
    before = path.read_bytes()
    code, _, err = run_cli(["inspect", str(path), "--card", str(path)])
    assert code == 2 and "FILE itself" in err and path.read_bytes() == before


@pytest.mark.parametrize("args, words", [(["--card", "{dir}"], "is a directory"),
                                         (["--probe-size", "0x5"], "probe-size"),
                                         (["--probe-size", "big"], "probe-size")])
def test_bad_options_before_any_work(args: list[str], words: str, convention_onnx, run_cli, tmp_path: Path) -> None:
    path = convention_onnx("boundary")[0]
    code, out, err = run_cli(["inspect", str(path), *[a.format(dir=tmp_path) for a in args]])
    assert code == 2 and words in err and err.count("\n") == 1 and "Guessed" not in out


def test_unwritable_card_directory(convention_onnx, run_cli, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        target = blocker / "card.toml"  # a file where a directory should be: fails for root too
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "card.toml"
    code, out, err = run_cli(["inspect", str(convention_onnx("boundary")[0]), "--card", str(target)])
    assert code == 2 and "--card" in err and "Guessed" not in out


def test_inspect_is_listed_in_help(run_cli) -> None:
    code, out, _ = run_cli(["--help"])
    assert code == 0 and "inspect" in out


def test_graph_info_of_a_convention(convention_onnx) -> None:
    info = read_graph_info(onnx.load(str(convention_onnx("two_outputs")[0])))
    assert [o.name for o in info.outputs] == ["aux", "out"] and info.opset == 17
    assert info.inputs[0].shape == ("N", 3, "H", "W") and info.producer == "onnx_conventions 1"
