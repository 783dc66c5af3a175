"""Model cards: parsing, validation (one line naming the file and the field), writing, overrides, unknowns."""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.targets.card import (
    CHANNELS,
    DTYPES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINDS,
    LAYOUTS,
    LUMA_WEIGHTS,
    MAX_CARD_BYTES,
    ONE_CHANNEL_KINDS,
    OUTPUT_LAYOUTS,
    RESOLUTIONS,
    SCALES,
    TWO_CLASS_KINDS,
    UNKNOWN_FIELDS,
    CardError,
    InputSpec,
    ModelCard,
    OutputSpec,
    apply_overrides,
    boundary_card,
    card_to_toml,
    load_card,
    overridable_fields,
    parse_card,
    preset,
    require_resolved,
    write_card,
)

SPEC_EXAMPLE = """\
schema = 1
name = "lraspp"                 # the record's "model" field
num_classes = 2
class_names = ["background", "aeroplane"]

[input]
name = "input"
layout = "NHWC"
channels = "bgr"
dtype = "float32"
scale = 255
mean = "imagenet"
std = "imagenet"
size = [512, 384]
resize = "bilinear"

[output]
name = "out"
layout = "NCHW"
kind = "probabilities"
resolution = "reduced"
"""


def _error(text: str, where: str = "card c.toml") -> str:
    with pytest.raises(HarnessError) as info:
        parse_card(text, where)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    return message


def test_the_default_card_is_the_boundary_and_json_able():
    card = ModelCard()
    assert card.is_boundary and card.has_scores and card.unknown == ()
    assert parse_card("", "empty") == card == parse_card("schema = 1\n", "s")
    d = card.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert list(d) == ["schema", "name", "num_classes", "class_names", "input", "output", "unknown"]
    assert d["input"]["mean"] is None and d["input"]["size"] is None and d["output"]["kind"] == "logits"


def test_the_spec_example_parses_with_presets_resolved_in_the_models_channel_order_and_units():
    card = parse_card(SPEC_EXAMPLE, "card c.toml")
    assert card.name == "lraspp" and card.num_classes == 2 and card.class_names == ("background", "aeroplane")
    i, o = card.input, card.output
    assert (i.name, i.layout, i.channels, i.dtype, i.scale, i.size) == ("input", "NHWC", "bgr", "float32", 255.0,
                                                                         (512, 384))
    assert i.mean == pytest.approx((0.406 * 255, 0.456 * 255, 0.485 * 255))
    assert i.std == pytest.approx((0.225 * 255, 0.224 * 255, 0.229 * 255))
    assert (o.name, o.layout, o.kind, o.resolution) == ("out", "NCHW", "probabilities", "reduced")
    assert not card.is_boundary and card.has_scores
    assert parse_card(card_to_toml(card), "again") == card
    assert 'mean = "imagenet"' in card_to_toml(card)  # written back as the preset, not as numbers


@pytest.mark.parametrize("channels, mean, std", [
    ("rgb", IMAGENET_MEAN, IMAGENET_STD),
    ("bgr", IMAGENET_MEAN[::-1], IMAGENET_STD[::-1]),
    ("grey", (sum(w * m for w, m in zip(LUMA_WEIGHTS, IMAGENET_MEAN, strict=True)),),
     (sum(w * s for w, s in zip(LUMA_WEIGHTS, IMAGENET_STD, strict=True)),)),
])
@pytest.mark.parametrize("scale", [1, 255])
def test_the_imagenet_preset_per_channel_order_and_scale(channels, mean, std, scale):
    card = parse_card(f'[input]\nchannels = "{channels}"\nscale = {scale}\nmean = "imagenet"\nstd = "imagenet"\n',
                      "c")
    assert card.input.mean == pytest.approx(tuple(m * scale for m in mean))
    assert card.input.std == pytest.approx(tuple(s * scale for s in std))


def test_a_sigmoid_card_with_a_squeezed_output_and_a_class_map_card():
    sigmoid = parse_card('num_classes = 2\n[output]\nkind = "sigmoid"\nlayout = "NHW"\n', "c")
    assert sigmoid.has_scores and sigmoid.output.layout == "NHW"
    class_map = parse_card('num_classes = 5\n[output]\nkind = "class_map"\nlayout = "NHW"\n', "c")
    assert not class_map.has_scores and not class_map.is_boundary


@pytest.mark.parametrize("text, field, allowed", [
    ("schema = 2", "schema", "schema = 1"),
    ("schema = true", "schema", "schema = 1"),
    ("colour = 1", "colour", "known: schema, name, num_classes, class_names, input, output"),
    ("[input]\ncolour = 'rgb'", "input.colour", "known: name, layout, channels, dtype, scale, mean, std, size"),
    ("[output]\nactivation = 'x'", "output.activation", "known: name, layout, kind, resolution"),
    ("[input.extra]\na = 1", "input.extra", "known:"),
    ("input = 3", "input", "expected a table"),
    ("output = [1]", "output", "expected a table"),
    ("name = ''", "name", "printable"),
    ("name = 3", "name", "printable"),
    ("name = ' padded'", "name", "space"),
    ('name = "a\\u0007b"', "name", "printable"),
    ("num_classes = 0", "num_classes", "[1, 255]"),
    ("num_classes = 256", "num_classes", "[1, 255]"),
    ("num_classes = 2.0", "num_classes", "[1, 255]"),
    ("num_classes = true", "num_classes", "[1, 255]"),
    ("num_classes = '3'", "num_classes", '"unknown"'),
    ("class_names = 'a'", "class_names", "list of names"),
    ("class_names = []", "class_names", "list of names"),
    ("class_names = ['a', 'a']", "class_names", "twice"),
    ("class_names = ['a', 2]", "class_names[1]", "printable"),
    ("class_names = ['a', '']", "class_names[1]", "printable"),
    ("num_classes = 3\nclass_names = ['a', 'b']", "class_names", "num_classes = 3"),
    ("[input]\nname = ''", "input.name", "tensor name"),
    ("[input]\nlayout = 'NCWH'", "input.layout", "NCHW, NHWC"),
    ("[input]\nlayout = 'unknown'", "input.layout", "NCHW, NHWC"),
    ("[input]\nchannels = 'RGB'", "input.channels", "rgb, bgr, grey"),
    ("[input]\ndtype = 'float64'", "input.dtype", "float32, float16, uint8"),
    ("[input]\nscale = 2", "input.scale", "1 or 255"),
    ("[input]\nscale = 'x'", "input.scale", "1 or 255"),
    ("[input]\nmean = 'imagenett'", "input.mean", '"none", "imagenet", "unknown"'),
    ("[input]\nmean = 0.5", "input.mean", "list of 3 numbers"),
    ("[input]\nmean = [0.5, 0.5]", "input.mean", "one per channel"),
    ("[input]\nchannels = 'grey'\nmean = [0.5, 0.5, 0.5]", "input.mean", "one number"),
    ("[input]\nmean = [0.5, 0.5, nan]", "input.mean", "finite"),
    ("[input]\nmean = [0.5, 0.5, inf]", "input.mean", "finite"),
    ("[input]\nmean = [0.5, true, 0.5]", "input.mean", "finite"),
    ("[input]\nmean = [0.5, 1" + "0" * 400 + ", 0.5]", "input.mean", "finite"),
    ("[input]\nscale = 1" + "0" * 400, "input.scale", "1 or 255"),
    ("num_classes = 1" + "0" * 400, "num_classes", "[1, 255]"),
    ("[input]\nsize = [1" + "0" * 400 + ", 3]", "input.size", "[1, 8192]"),
    ("[input]\nmean = [123.675, 116.28, 103.53]", "input.mean", "input.scale = 255"),
    ("[input]\nmean = [-0.1, 0.5, 0.5]", "input.mean", "[0, 1]"),
    ("[input]\nstd = [0.2, 0, 0.2]", "input.std", "(0, 1]"),
    ("[input]\nstd = [0.2, -1, 0.2]", "input.std", "(0, 1]"),
    ("[input]\nscale = 255\nstd = [58.4, 57.1, 300]", "input.std", "(0, 255]"),
    ("[input]\nsize = [0, 64]", "input.size", "[1, 8192]"),
    ("[input]\nsize = [64, 8193]", "input.size", "[1, 8192]"),
    ("[input]\nsize = [64]", "input.size", "[H, W]"),
    ("[input]\nsize = [64.0, 64]", "input.size", "[H, W]"),
    ("[input]\nsize = 'fixed'", "input.size", '"dynamic"'),
    ("[input]\nresize = 'crop'", "input.resize", "bilinear"),
    ("[input]\ndtype = 'uint8'", "input.scale", "input.scale = 255"),
    ("[input]\ndtype = 'uint8'\nscale = 255\nmean = 'imagenet'", "input.mean", '"none"'),
    ("[input]\ndtype = 'uint8'\nscale = 255\nstd = [1, 1, 1]", "input.std", '"none"'),
    ("[input]\ndtype = 'uint8'\nscale = 255\nmean = 'unknown'", "input.mean", '"none"'),
    ("[output]\nname = 7", "output.name", "tensor name"),
    ("[output]\nlayout = 'CHW'", "output.layout", "NCHW, NHWC, NHW"),
    ("[output]\nlayout = 'NHW'", "output.layout", "one-channel kinds"),
    ("[output]\nkind = 'softmax'", "output.kind", "logits, probabilities, log_probabilities, sigmoid"),
    ("[output]\nresolution = 'quarter'", "output.resolution", "input, reduced"),
    ("num_classes = 3\n[output]\nkind = 'sigmoid'", "num_classes", "num_classes = 2"),
    ("num_classes = 1\n[output]\nkind = 'binary_logits'", "num_classes", "num_classes = 2"),
    ("class_names = ['a', 'b', 'c']\n[output]\nkind = 'sigmoid'", "class_names", "two names"),
    ("[output]\nkind = 'class_map'", "num_classes", "num_classes = K"),
])
def test_every_bad_field_is_one_line_naming_the_file_the_field_and_what_is_allowed(text, field, allowed):
    message = _error(text)
    assert message.startswith(f"card c.toml: {field}: "), message
    assert allowed in message, message


@pytest.mark.parametrize("text, reason", [
    ("schema = ", "not valid TOML"),
    ("[input]\n[input]", "not valid TOML"),
    ("a = " + "[" * 5000 + "]" * 5000, "card c.toml: "),
    ("num_classes = " + "9" * 5000, "card c.toml: "),
])
def test_text_that_is_not_toml_is_one_line(text, reason):
    assert reason in _error(text)


@pytest.mark.parametrize("field", UNKNOWN_FIELDS)
def test_unknown_is_recorded_and_refused_at_use_with_what_to_put(field):
    table, _, key = field.rpartition(".")
    text = f'[{table}]\n{key} = "unknown"\n' if table else f'{key} = "unknown"\n'
    card = parse_card(text, "c")
    assert card.unknown == (field,)
    assert card.is_boundary == (field in ("num_classes", "class_names"))  # unknown statistics are not the boundary
    assert parse_card(card_to_toml(card), "c") == card
    with pytest.raises(HarnessError) as info:
        require_resolved(card, "card c.toml")
    message = str(info.value)
    assert message.startswith(f'card c.toml: {field} is "unknown"; edit the card: {field} = ') and "\n" not in message
    require_resolved(card, "card c.toml", fields=[f for f in UNKNOWN_FIELDS if f != field])  # not asked for: fine


def test_several_unknowns_are_named_together_in_a_fixed_order():
    card = parse_card('class_names = "unknown"\nnum_classes = "unknown"\n[input]\nstd = "unknown"\n'
                      'mean = "unknown"\n', "c")
    assert card.unknown == UNKNOWN_FIELDS
    with pytest.raises(HarnessError, match='num_classes, class_names, input.mean, input.std are "unknown"'):
        require_resolved(card, "c")


@pytest.mark.parametrize("kwargs, field", [
    ({"unknown": ("input.layout",)}, "unknown"),
    ({"unknown": ("input.mean", "input.mean")}, "unknown"),
    ({"unknown": "input.mean"}, "unknown"),
    ({"unknown": ("num_classes",), "num_classes": 3}, "num_classes"),
    ({"input": InputSpec(mean=(0.5, 0.5, 0.5)), "unknown": ("input.mean",)}, "input.mean"),
    ({"input": "rgb"}, "input"),
    ({"output": None}, "output"),
])
def test_cards_made_in_code_are_checked_too(kwargs, field):
    with pytest.raises(CardError) as info:
        ModelCard(**kwargs)
    assert str(info.value).startswith(f"card: {field}: ")


def test_cards_made_in_code_are_normalised_to_hashable_tuples():
    spec = InputSpec(mean=[0.5, 0.5, 0.5], std=[1, 1, 1], size=[64, 32], scale=255)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (1.0, 1.0, 1.0) and spec.size == (64, 32)
    assert spec.scale == 255.0 and isinstance(spec.scale, float)
    card = ModelCard(class_names=["a", "b"], num_classes=2, unknown=["input.std"])
    assert card.class_names == ("a", "b") and card.unknown == ("input.std",)
    assert hash(card) == hash(ModelCard(class_names=("a", "b"), num_classes=2, unknown=("input.std",)))
    with pytest.raises(CardError, match="input.layout"):
        InputSpec(layout="nchw")
    with pytest.raises(CardError, match="output.kind"):
        OutputSpec(kind="softmax")


def test_boundary_card_carries_the_class_names():
    card = boundary_card(["background", "cat"], name="fcn8s-vgg16")
    assert card.is_boundary and card.num_classes == 2 and card.class_names == ("background", "cat")
    assert card.name == "fcn8s-vgg16" and boundary_card() == ModelCard()


def test_as_dict_is_the_same_for_equal_cards_and_differs_for_different_ones():
    a = parse_card(SPEC_EXAMPLE, "a")
    b = parse_card(card_to_toml(a), "b")
    assert json.dumps(a.as_dict()) == json.dumps(b.as_dict())
    c = apply_overrides(a, ["input.layout=NCHW"])
    assert json.dumps(a.as_dict()) != json.dumps(c.as_dict())


# ---------------------------------------------------------------- writing

def test_card_to_toml_writes_comments_on_one_line_and_reads_back(tmp_path):
    card = parse_card(SPEC_EXAMPLE, "c")
    text = card_to_toml(card, {"input.mean": "not in the graph:\nguessed", "output": "sure", "name": "from the file",
                               "input.std": "odd \ud800 \u2028 text"})
    assert "# not in the graph: guessed" in text and "[output]" in text.split("# sure")[0]
    assert "# odd     text" in text
    assert parse_card(text, "c") == card
    path = tmp_path / "sub" / "card.toml"
    write_card(card, path, {"input.mean": "x"})
    assert load_card(path) == card
    assert [p.name for p in path.parent.iterdir()] == ["card.toml"]  # no temporary file left


def test_write_card_into_a_directory_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(HarnessError) as info:
        write_card(ModelCard(), tmp_path / "file" / "card.toml")
    assert str(info.value).startswith("cannot write") and "\n" not in str(info.value)


@pytest.mark.parametrize("make, reason", [
    (lambda p: None, "does not exist"),
    (lambda p: os.mkdir(p), "not a regular file"),
    (lambda p: p.write_bytes(b"name = '\xff'"), "not UTF-8"),
    (lambda p: p.write_bytes(b"#" * (MAX_CARD_BYTES + 1)), "larger than"),
    (lambda p: p.write_text("[input]\nlayout = 'nhwc'\n"), "input.layout: 'nhwc' is not one of NCHW, NHWC"),
])
def test_load_card_faults_are_one_line_naming_the_file(tmp_path, make, reason):
    path = tmp_path / "card.toml"
    make(path)
    with pytest.raises(HarnessError) as info:
        load_card(path)
    message = str(info.value)
    assert message.startswith(f"card {path}") and reason in message and "\n" not in message


# ---------------------------------------------------------------- overrides

@pytest.mark.parametrize("item, check", [
    ("input.mean=imagenet", lambda c: c.input.mean == IMAGENET_MEAN),
    ("input.mean=[0.5, 0.25, 0]", lambda c: c.input.mean == (0.5, 0.25, 0.0)),
    ("input.layout=NHWC", lambda c: c.input.layout == "NHWC"),
    ("input.size=512x384", lambda c: c.input.size == (512, 384)),
    ("input.size=[32, 16]", lambda c: c.input.size == (32, 16)),
    ("input.size=dynamic", lambda c: c.input.size is None),
    ("input.name=input:0", lambda c: c.input.name == "input:0"),
    ("input.name='my input'", lambda c: c.input.name == "my input"),
    ("output.name=\"out\"", lambda c: c.output.name == "out"),
    ("output.kind = sigmoid", lambda c: c.output.kind == "sigmoid"),
    ("num_classes=2", lambda c: c.num_classes == 2),
    ("num_classes=unknown", lambda c: c.unknown == ("num_classes",)),
    ("class_names=['bg', 'fg']", lambda c: c.class_names == ("bg", "fg")),
    ("name=my-model_v2.1", lambda c: c.name == "my-model_v2.1"),
    ("output.name=1234", lambda c: c.output.name == "1234"),
    ("input.name=1e3", lambda c: c.input.name == "1e3"),
    ("name=inf", lambda c: c.name == "inf"),
])
def test_an_override_sets_one_field(item, check):
    assert check(apply_overrides(ModelCard(), [item]))


def test_presets_are_resolved_after_all_overrides():
    card = apply_overrides(ModelCard(), ["input.mean=imagenet", "input.std=imagenet"])
    card = apply_overrides(card, ["input.scale=255", "input.channels=bgr"])
    assert card.input.mean == tuple(m * 255 for m in IMAGENET_MEAN[::-1])
    assert card.input.std == tuple(s * 255 for s in IMAGENET_STD[::-1])
    # an intermediate state may be inconsistent: only the result is checked
    both = apply_overrides(ModelCard(), ["output.kind=class_map", "num_classes=4"])
    assert both.output.kind == "class_map" and both.num_classes == 4


@pytest.mark.parametrize("item, fragment", [
    ("input.mean", "expected FIELD=VALUE"),
    ("=3", "expected FIELD=VALUE"),
    ("input.colour=rgb", "is not a card field (fields: name, num_classes"),
    ("schema=2", "is not a card field"),
    ("input=3", "is not a card field"),
    ("input.mean=", "no value"),
    ("name=a b", "neither TOML"),
    ("num_classes=1\nname=x", "neither TOML"),
    ("input.mean=[0.5, 0.5", "neither TOML"),
    ("input.mean=imagenett", "card (with --card-set): input.mean: "),
    ("input.size=5", "card (with --card-set): input.size: "),
    ("input.size=0x5", "card (with --card-set): input.size: "),
    ("num_classes=300", "card (with --card-set): num_classes: "),
    ("input.dtype=uint8", "card (with --card-set): input.scale: "),
    ("output.kind=class_map", "card (with --card-set): num_classes: "),
])
def test_a_bad_override_is_one_line(item, fragment):
    with pytest.raises(HarnessError) as info:
        apply_overrides(ModelCard(), [item])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_apply_overrides_names_the_card_it_was_given():
    with pytest.raises(HarnessError, match=r"^card c.toml \(with --card-set\): input.layout: "):
        apply_overrides(ModelCard(), ["input.layout=nhwc"], where="card c.toml")


def test_every_overridable_field_is_a_card_field():
    doc = ModelCard().as_dict()
    for field in overridable_fields():
        table, _, key = field.rpartition(".")
        assert key in (doc[table] if table else doc)


# ---------------------------------------------------------------- round trip (property)

_PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc"))
_tensor_names = st.text(_PRINTABLE, min_size=1, max_size=30).filter(str.isprintable)
_plain_names = st.text(_PRINTABLE, min_size=1, max_size=30).filter(lambda s: s.isprintable() and s == s.strip())


@st.composite
def cards(draw) -> ModelCard:
    unknown = []
    channels = draw(st.sampled_from(CHANNELS))
    dtype = draw(st.sampled_from(DTYPES))
    scale = 255.0 if dtype == "uint8" else draw(st.sampled_from(SCALES))
    n = 1 if channels == "grey" else 3
    stats = {}
    for key, positive in (("mean", False), ("std", True)):
        how = "none" if dtype == "uint8" else draw(st.sampled_from(["none", "imagenet", "numbers", "unknown"]))
        if how == "unknown":
            unknown.append(f"input.{key}")
        if how == "imagenet":
            stats[key] = preset(key, channels, scale)
        elif how == "numbers":
            number = st.floats(min_value=0.0, max_value=scale, exclude_min=positive, allow_nan=False)
            stats[key] = tuple(draw(st.lists(number, min_size=n, max_size=n)))
    size = draw(st.none() | st.tuples(st.integers(1, 8192), st.integers(1, 8192)))
    spec_input = InputSpec(name=draw(st.none() | _tensor_names), layout=draw(st.sampled_from(LAYOUTS)),
                           channels=channels, dtype=dtype, scale=scale, size=size, **stats)
    kind = draw(st.sampled_from(KINDS))
    layouts = OUTPUT_LAYOUTS if kind in ONE_CHANNEL_KINDS else LAYOUTS
    spec_output = OutputSpec(name=draw(st.none() | _tensor_names), layout=draw(st.sampled_from(layouts)), kind=kind,
                             resolution=draw(st.sampled_from(RESOLUTIONS)))
    classes = draw(st.sampled_from(["int", "unknown"] if kind == "class_map" else ["int", "unknown", "none"]))
    num_classes = None
    if classes == "unknown":
        unknown.append("num_classes")
    elif classes == "int":
        num_classes = 2 if kind in TWO_CLASS_KINDS else draw(st.integers(1, 255))
    names_how = draw(st.sampled_from(["none", "unknown", "names"]))
    class_names = None
    if names_how == "unknown":
        unknown.append("class_names")
    elif names_how == "names":
        count = num_classes or (2 if kind in TWO_CLASS_KINDS else draw(st.integers(1, 6)))
        class_names = tuple(draw(st.lists(_plain_names, min_size=count, max_size=count, unique=True)))
    return ModelCard(name=draw(st.none() | _plain_names), input=spec_input, output=spec_output,
                     num_classes=num_classes, class_names=class_names, unknown=tuple(unknown))


@settings(max_examples=300, deadline=None)
@given(cards(), st.dictionaries(st.sampled_from(overridable_fields()), st.text(max_size=20), max_size=3))
def test_every_card_reads_back_equal_from_its_toml(card, comments):
    text = card_to_toml(card, comments)
    again = parse_card(text, "c")
    assert again == card
    assert json.dumps(again.as_dict()) == json.dumps(card.as_dict())
    assert apply_overrides(card, []) == card


@settings(max_examples=100, deadline=None)
@given(cards(), st.sampled_from(["input.layout", "output.resolution", "name", "input.name", "output.name"]))
def test_an_override_with_the_cards_own_value_changes_nothing(card, field):
    table, _, key = field.rpartition(".")
    value = getattr(getattr(card, table) if table else card, key)
    if value is not None:
        assert apply_overrides(card, [f"{field}={json.dumps(value, ensure_ascii=False)}"]) == card
