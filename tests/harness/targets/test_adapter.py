"""The adapter: every input path and output kind against hand-computed values, gradients, and the runtime
checks that catch a card contradicting what the model returns."""

import math
from collections import OrderedDict, namedtuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.errors import HarnessError
from harness.targets.adapter import LOG_CLAMP, AdaptedModule, Adapter, check_logits, select_output
from harness.targets.card import InputSpec, ModelCard, OutputSpec, parse_card


def _card(inp: dict | None = None, out: dict | None = None, **top) -> ModelCard:
    return ModelCard(input=InputSpec(**(inp or {})), output=OutputSpec(**(out or {})), **top)


def _images(n: int = 2, h: int = 2, w: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- identity

def test_the_boundary_card_returns_the_same_objects():
    adapter = Adapter(ModelCard(name="x", class_names=("a", "b"), num_classes=2))
    assert adapter.identity and adapter.model_size(5, 7) == (5, 7)
    images = _images()
    assert adapter.to_model(images) is images and adapter.to_logits(images, (2, 3)) is images
    array = images.numpy()
    assert adapter.to_model_numpy(array) is array and adapter.to_logits_numpy(array, (2, 3)) is array


def test_a_card_that_changes_only_the_input_returns_the_output_without_a_copy():
    adapter = Adapter(_card({"scale": 255}))
    logits = np.random.default_rng(0).normal(size=(2, 4, 2, 3)).astype(np.float32)
    out = adapter.to_logits_numpy(logits, (2, 3))
    assert np.shares_memory(out, logits) and out.dtype == np.float32


def test_the_numpy_wrappers_accept_read_only_arrays():
    adapter = Adapter(_card({"channels": "bgr"}, {"layout": "NHWC"}))
    images = _images().numpy()
    images.flags.writeable = False
    assert np.array_equal(adapter.to_model_numpy(images), images[:, ::-1])
    logits = np.zeros((2, 2, 3, 4), np.float32)
    logits[..., 0] = 5
    logits.flags.writeable = False
    assert adapter.to_logits_numpy(logits, (2, 3)).shape == (2, 4, 2, 3)


# ---------------------------------------------------------------- input paths

def test_scale_mean_std_per_channel():
    adapter = Adapter(_card({"scale": 255, "mean": (10, 20, 30), "std": (2, 4, 5)}))
    x = torch.tensor([[[[0.0, 1.0]], [[0.5, 1.0]], [[0.2, 0.0]]]])  # (1, 3, 1, 2)
    expected = torch.tensor([[[[-5.0, 122.5]], [[(127.5 - 20) / 4, 235 / 4]], [[(51 - 30) / 5, -6.0]]]])
    assert torch.allclose(adapter.to_model(x), expected, atol=1e-5)


def test_mean_only_and_std_only():
    x = torch.full((1, 3, 1, 1), 0.5)
    assert torch.allclose(Adapter(_card({"mean": (0.5, 0.25, 0.0)})).to_model(x).flatten(),
                          torch.tensor([0.0, 0.25, 0.5]))
    assert torch.allclose(Adapter(_card({"std": (0.5, 0.25, 1.0)})).to_model(x).flatten(),
                          torch.tensor([1.0, 2.0, 0.5]))


def test_bgr_reverses_the_channels_and_the_imagenet_preset_follows():
    card = parse_card('[input]\nchannels = "bgr"\nmean = "imagenet"\nstd = "imagenet"\n', "c")
    x = torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1)
    expected = torch.tensor([(0.9 - 0.406) / 0.225, (0.5 - 0.456) / 0.224, (0.1 - 0.485) / 0.229])
    assert torch.allclose(Adapter(card).to_model(x).flatten(), expected, atol=1e-6)


def test_grey_is_the_bt601_luminance():
    adapter = Adapter(_card({"channels": "grey"}))
    x = torch.eye(3).view(3, 3, 1, 1)  # pure red, green, blue
    out = adapter.to_model(x)
    assert out.shape == (3, 1, 1, 1)
    assert torch.allclose(out.flatten(), torch.tensor([0.299, 0.587, 0.114]))
    grey = torch.full((1, 3, 2, 2), 0.4)  # a grey image stays itself
    assert torch.allclose(adapter.to_model(grey), torch.full((1, 1, 2, 2), 0.4))


def test_nhwc_moves_the_channels_last_contiguously():
    x = _images(2, 3, 4)
    out = Adapter(_card({"layout": "NHWC"})).to_model(x)
    assert out.shape == (2, 3, 4, 3) and out.is_contiguous()
    assert torch.equal(out, x.permute(0, 2, 3, 1))


def test_uint8_is_the_image_rounded_to_the_8_bit_grid():
    adapter = Adapter(_card({"dtype": "uint8", "scale": 255}))
    x = torch.tensor([0.0, 0.2, 0.5 / 255, 1.5 / 255, 100.4 / 255, 1.0]).view(1, 3, 1, 2)
    out = adapter.to_model(x)
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == [0.0, 51.0, 0.0, 2.0, 100.0, 255.0]  # round half to even
    array = adapter.to_model_numpy(x.numpy())
    assert array.dtype == np.uint8 and array.flatten().tolist() == [0, 51, 0, 2, 100, 255]


def test_uint8_rounding_is_exact_for_every_8_bit_value():
    adapter = Adapter(_card({"dtype": "uint8", "scale": 255, "layout": "NHWC"}))
    values = np.arange(256, dtype=np.float32) / 255
    images = np.broadcast_to(values.reshape(1, 1, 16, 16), (1, 3, 16, 16)).astype(np.float32)
    out = adapter.to_model_numpy(images)
    assert out.dtype == np.uint8 and out.shape == (1, 16, 16, 3)
    assert np.array_equal(out[..., 0].flatten(), np.arange(256))


def test_float16_is_cast_by_the_numpy_wrapper():
    adapter = Adapter(_card({"dtype": "float16", "mean": (0.5, 0.5, 0.5)}))
    x = _images()
    assert adapter.to_model(x).dtype == torch.float32
    array = adapter.to_model_numpy(x.numpy())
    assert array.dtype == np.float16 and np.allclose(array, x.numpy() - 0.5, atol=1e-3)


def test_a_fixed_size_resizes_bilinearly_without_antialiasing():
    adapter = Adapter(_card({"size": (2, 2)}))
    assert adapter.model_size(4, 4) == (2, 2) and not adapter.identity
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).expand(1, 3, 4, 4) / 16
    out = adapter.to_model(x)
    # halving samples at the centre of each 2x2 block: their mean
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]]) / 16
    assert out.shape == (1, 3, 2, 2) and torch.allclose(out[0, 0], expected)
    same = _images(1, 2, 2)
    assert torch.equal(adapter.to_model(same), same)  # already the size: not resampled


def test_the_input_must_be_boundary_images():
    with pytest.raises(HarnessError, match=r"\(N, 3, H, W\)"):
        Adapter(_card({"channels": "bgr"})).to_model(torch.zeros(1, 1, 4, 4))


# ---------------------------------------------------------------- output kinds

def test_logits_in_nhwc_come_back_channels_first():
    adapter = Adapter(_card(out={"layout": "NHWC"}))
    logits = torch.randn(2, 3, 4, 5)  # N, H, W, K
    out = adapter.to_logits(logits, (3, 4))
    assert out.shape == (2, 5, 3, 4) and out.is_contiguous() and torch.equal(out, logits.permute(0, 3, 1, 2))


def test_probabilities_become_their_log_clamped():
    adapter = Adapter(_card(out={"kind": "probabilities"}))
    p = torch.tensor([0.25, 1.0, 0.75, 0.0]).view(1, 2, 1, 2)  # pixels (0.25, 0.75) and (1, 0)
    out = adapter.to_logits(p, (1, 2))
    assert torch.allclose(out.flatten(), torch.tensor([math.log(0.25), 0.0, math.log(0.75), math.log(LOG_CLAMP)]))


def test_log_probabilities_are_taken_as_they_are():
    adapter = Adapter(_card(out={"kind": "log_probabilities"}))
    lp = torch.log_softmax(torch.randn(1, 3, 2, 2), 1)
    assert torch.equal(adapter.to_logits(lp, (2, 2)), lp)


def test_a_sigmoid_channel_becomes_two_class_logits():
    adapter = Adapter(_card(out={"kind": "sigmoid"}))
    p = torch.tensor([0.2, 1.0, 0.0, 0.5]).view(1, 1, 2, 2)
    out = adapter.to_logits(p, (2, 2))
    assert out.shape == (1, 2, 2, 2)
    assert torch.allclose(out[0, 0].flatten(), torch.tensor([math.log(0.8), math.log(LOG_CLAMP), 0.0, math.log(0.5)]))
    assert torch.allclose(out[0, 1].flatten(), torch.tensor([math.log(0.2), 0.0, math.log(LOG_CLAMP), math.log(0.5)]))


@pytest.mark.parametrize("layout, shape", [("NCHW", (1, 1, 1, 3)), ("NHWC", (1, 1, 3, 1)), ("NHW", (1, 1, 3))])
def test_a_binary_logit_becomes_zero_and_itself_in_every_layout(layout, shape):
    adapter = Adapter(_card(out={"kind": "binary_logits", "layout": layout}))
    z = torch.tensor([-1.5, 0.0, 2.0]).view(shape)
    out = adapter.to_logits(z, (1, 3))
    assert out.tolist() == [[[[0.0, 0.0, 0.0]], [[-1.5, 0.0, 2.0]]]]


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint16, np.float32, np.bool_])
def test_a_class_map_becomes_one_hot(dtype):
    adapter = Adapter(_card(out={"kind": "class_map", "layout": "NHW"}, num_classes=3))
    classes = np.array([[[0, 1], [1, 0]]]) if dtype == np.bool_ else np.array([[[0, 2], [1, 0]]])
    out = adapter.to_logits_numpy(classes.astype(dtype), (2, 2))
    assert out.dtype == np.float32 and out.shape == (1, 3, 2, 2)
    assert np.array_equal(out.argmax(1), classes) and np.array_equal(out.sum(1), np.ones((1, 2, 2)))


def test_a_class_map_with_a_channel_axis():
    adapter = Adapter(_card(out={"kind": "class_map"}, num_classes=2))
    out = adapter.to_logits(torch.tensor([[[[1, 0, 1]]]]), (1, 3))
    assert out.tolist() == [[[[0.0, 1.0, 0.0]], [[1.0, 0.0, 1.0]]]]


def test_reduced_scores_are_upsampled_bilinearly_after_becoming_logits():
    adapter = Adapter(_card(out={"kind": "probabilities", "resolution": "reduced"}))
    p = torch.tensor([[0.5, 0.25], [0.5, 0.75]]).view(1, 2, 1, 2)  # classes x (1 x 2)
    out = adapter.to_logits(p, (1, 4))
    a, b = math.log(0.5), math.log(0.25)
    # align_corners=False doubling: [a, 3/4 a + 1/4 b, 1/4 a + 3/4 b, b]
    assert torch.allclose(out[0, 0, 0], torch.tensor([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]))


def test_a_reduced_class_map_is_upsampled_nearest():
    adapter = Adapter(_card(out={"kind": "class_map", "layout": "NHW", "resolution": "reduced"}, num_classes=2))
    out = adapter.to_logits(torch.tensor([[[0, 1]]]), (1, 4))
    assert out.argmax(1).tolist() == [[[0, 0, 1, 1]]]


def test_with_a_fixed_size_the_logits_are_resized_back_to_the_images_size():
    adapter = Adapter(_card({"size": (1, 2)}))
    x = _images(1, 1, 4)
    assert adapter.to_model(x).shape == (1, 3, 1, 2)
    logits = torch.tensor([[[[1.0, 5.0]]]]).expand(1, 2, 1, 2) * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    out = adapter.to_logits(logits, (1, 4))
    assert torch.allclose(out[0, 0, 0], torch.tensor([1.0, 2.0, 4.0, 5.0]))
    assert torch.allclose(out[0, 1, 0], -torch.tensor([1.0, 2.0, 4.0, 5.0]))


def test_float16_scores_come_back_float32():
    adapter = Adapter(_card({"dtype": "float16"}, {"kind": "probabilities"}))
    p = torch.softmax(torch.randn(1, 3, 2, 2), 1).half().numpy()
    out = adapter.to_logits_numpy(p, (2, 2))
    assert out.dtype == np.float32 and np.allclose(np.exp(out).sum(1), 1, atol=1e-2)


def test_probabilities_an_ulp_apart_keep_the_models_decision():
    # float32: log(0.24999999) == log(0.25), so without care class 0 would take the decision from class 1.
    scores = torch.zeros(1, 4, 1, 2)
    scores[0, 0, 0, 0] = -5.9604645e-08
    p = torch.softmax(scores, 1)
    assert p.argmax(1).flatten().tolist() == [1, 0] and p[0, :, 0, 0].log().unique().numel() == 1
    adapter = Adapter(_card(out={"kind": "probabilities"}))
    logits = adapter.to_logits(p.clone(), (1, 2))
    assert logits.argmax(1).flatten().tolist() == [1, 0]
    torch.testing.assert_close(logits, p.log(), rtol=1e-6, atol=0)  # lifted by one ulp, nothing more
    tracked = p.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(adapter.to_logits(tracked, (1, 2))[:, 1].sum(), tracked)
    torch.testing.assert_close(grad[:, 1], 1 / p[:, 1])  # the gradient of the log, as if nothing was lifted


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (1, 4, 2, 3), elements=st.floats(-20, 20, width=32)))
def test_every_kind_keeps_the_models_decision(logits):
    """The kinds are conversions of one set of scores: the argmax (the model's decision) never changes."""
    t = torch.from_numpy(logits)
    decision = t.argmax(1)
    probabilities = Adapter(_card(out={"kind": "probabilities"})).to_logits(torch.softmax(t, 1), (2, 3))
    assert torch.equal(probabilities.argmax(1), torch.softmax(t, 1).argmax(1))
    log_probabilities = Adapter(_card(out={"kind": "log_probabilities"})).to_logits(torch.log_softmax(t, 1), (2, 3))
    assert torch.equal(log_probabilities.argmax(1), torch.log_softmax(t, 1).argmax(1))
    class_map = Adapter(_card(out={"kind": "class_map", "layout": "NHW"}, num_classes=4)).to_logits(decision, (2, 3))
    assert torch.equal(class_map.argmax(1), decision)
    z = t[:, :1]
    binary = Adapter(_card(out={"kind": "binary_logits"})).to_logits(z, (2, 3))
    assert torch.equal(binary.argmax(1), (z[:, 0] > 0).long())
    p = torch.sigmoid(z.double()).float()
    sigmoid = Adapter(_card(out={"kind": "sigmoid"})).to_logits(p, (2, 3))
    assert torch.equal(sigmoid.argmax(1), (p[:, 0] > 0.5).long())


# ---------------------------------------------------------------- gradients

def test_gradients_flow_through_the_input_conversion():
    card = _card({"channels": "bgr", "layout": "NHWC", "scale": 255, "mean": (1, 2, 3), "std": (5, 10, 51)})
    x = _images(1, 2, 2).requires_grad_()
    Adapter(card).to_model(x).sum().backward()
    gain = torch.tensor([255 / 51, 255 / 10, 255 / 5]).view(1, 3, 1, 1)  # model order bgr: image red is last
    assert torch.allclose(x.grad, gain.expand_as(x))


def test_uint8_has_a_straight_through_gradient():
    x = _images(1, 2, 2).requires_grad_()
    Adapter(_card({"dtype": "uint8", "scale": 255})).to_model(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 255.0))


def test_grey_and_resize_gradients():
    x = _images(1, 4, 4).requires_grad_()
    Adapter(_card({"channels": "grey", "size": (2, 2)})).to_model(x).sum().backward()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose(x.grad, (weights / 4).expand_as(x))  # each pixel is in one 2x2 block of 4


@pytest.mark.parametrize("kind, make, grad", [
    ("probabilities", lambda: torch.tensor([0.25, 0.75]).view(1, 2, 1, 1), lambda p: 1 / p),
    ("sigmoid", lambda: torch.tensor([0.2]).view(1, 1, 1, 1), lambda p: -1 / (1 - p) + 1 / p),
    ("binary_logits", lambda: torch.tensor([0.7]).view(1, 1, 1, 1), lambda z: torch.ones_like(z)),
    ("logits", lambda: torch.tensor([0.7, -2.0]).view(1, 2, 1, 1), lambda z: torch.ones_like(z)),
])
def test_gradients_flow_through_the_output_conversion(kind, make, grad):
    value = make().requires_grad_()
    Adapter(_card({"scale": 255}, {"kind": kind})).to_logits(value, (1, 1)).sum().backward()
    assert torch.allclose(value.grad, grad(value.detach()))


# ---------------------------------------------------------------- runtime checks

_PROBABILITIES = torch.softmax(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), 1)
_LOGITS = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 3


@pytest.mark.parametrize("card, output, field, fragment", [
    (_card(out={"kind": "probabilities"}), _LOGITS, "output.kind = probabilities", "set output.kind = logits"),
    (_card(out={"kind": "probabilities"}), _PROBABILITIES * 0.5, "output.kind = probabilities", "sum to 1"),
    (_card(out={"kind": "probabilities"}), torch.sigmoid(_LOGITS), "output.kind = probabilities", "sum to 1"),
    (_card({"scale": 255}), _PROBABILITIES, "output.kind = logits", "set output.kind = probabilities"),
    (_card(out={"kind": "log_probabilities"}), _PROBABILITIES, "output.kind = log_probabilities", "reach"),
    (_card(out={"kind": "sigmoid"}), _LOGITS[:, :1], "output.kind = sigmoid", "binary_logits"),
    (_card(out={"kind": "sigmoid"}), _PROBABILITIES, "output.kind = sigmoid", "has one channel"),
    (_card(out={"kind": "binary_logits"}), _LOGITS, "output.kind = binary_logits", "has one channel"),
    (_card(out={"kind": "class_map"}, num_classes=3), _PROBABILITIES[:, :1], "output.kind = class_map",
     "whole class numbers"),
    (_card(out={"kind": "class_map"}, num_classes=3), torch.full((2, 1, 4, 4), 3), "num_classes = 3", "[0, 2]"),
    (_card(out={"kind": "class_map"}, num_classes=3), torch.full((2, 1, 4, 4), -1), "num_classes = 3", "[0, 2]"),
    (_card(out={"kind": "class_map"}, num_classes=3), _LOGITS.argmax(1), "output.layout = NCHW", "output.layout = NHW"),
    (_card(out={"kind": "class_map", "layout": "NHW"}, num_classes=3), _LOGITS, "output.layout = NHW", "NCHW or NHWC"),
    (_card({"scale": 255}, num_classes=4), _LOGITS, "num_classes = 4", "3 channels"),
    (_card({"scale": 255}), _LOGITS[:, :1], "output.kind = logits with one channel", "sigmoid"),
    (_card({"scale": 255}), _LOGITS[:, :, :2], "output.resolution = input", "set output.resolution = reduced"),
    (_card(out={"resolution": "reduced"}), torch.randn(2, 3, 8, 8), "output.resolution = reduced", "8x8"),
    (_card(out={"layout": "NHWC"}), _LOGITS, "output.resolution = input", "check output.layout"),
    (_card({"scale": 255}), _LOGITS[0], "output.layout = NCHW expects a 4-d output", "(3, 4, 4)"),
    (_card({"scale": 255}), torch.full((2, 3, 4, 4), float("nan")), "NaN", "broken"),
    (_card(out={"kind": "probabilities"}), torch.full((2, 3, 4, 4), float("inf")), "NaN or infinite", "broken"),
    (_card({"scale": 255}), _LOGITS.long(), "output.kind = logits", "set output.kind = class_map"),
])
def test_a_card_contradicting_the_output_is_one_line_naming_the_field(card, output, field, fragment):
    adapter = Adapter(card)
    with pytest.raises(HarnessError) as info:
        adapter.to_logits(output, (4, 4))
    message = str(info.value)
    assert field in message and fragment in message and "\n" not in message, message
    with pytest.raises(HarnessError):
        adapter.to_logits_numpy(output.numpy(), (4, 4))


def test_the_checks_allow_what_fp16_and_int8_outputs_do_to_probabilities():
    p = _PROBABILITIES.clone()
    p[:, 0] += 0.004  # an int8 softmax output: a few quantisation steps off
    out = Adapter(_card(out={"kind": "probabilities"})).to_logits(p.half().float(), (4, 4))
    assert torch.equal(out.argmax(1), p.argmax(1))


def test_an_unresolved_card_is_refused_with_what_to_put():
    card = parse_card('name = "m"\n[input]\nmean = "unknown"\n', "c")
    with pytest.raises(HarnessError, match=r'^card m: input.mean is "unknown"; edit the card'):
        Adapter(card)
    class_map = parse_card('num_classes = "unknown"\n[output]\nkind = "class_map"\nlayout = "NHW"\n', "c")
    with pytest.raises(HarnessError, match="num_classes"):
        Adapter(class_map)
    Adapter(parse_card('class_names = "unknown"\n', "c"))  # not needed to adapt


def test_a_non_array_or_an_object_array_is_one_line():
    adapter = Adapter(_card({"scale": 255}))
    with pytest.raises(HarnessError, match="numpy array"):
        adapter.to_logits_numpy([[1.0]], (1, 1))
    with pytest.raises(HarnessError, match="not scores"):
        adapter.to_logits_numpy(np.array([[["a"]]], dtype=object), (1, 1))


# ---------------------------------------------------------------- AdaptedModule

class _Net(torch.nn.Module):
    """A tiny NHWC model (conv on the channel-last input) returning ``shape`` of its scores."""

    def __init__(self, wrap) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.wrap = wrap
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor):
        self.seen.append(x.detach())
        return self.wrap(self.conv(x.permute(0, 3, 1, 2)))


Pair = namedtuple("Pair", ["aux", "out"])


@pytest.mark.parametrize("wrap, name", [
    (lambda y: y, None),
    (lambda y: {"out": y, "aux": y * 0}, "out"),
    (lambda y: OrderedDict(out=y), None),
    (lambda y: Pair(aux=y * 0, out=y), "out"),
    (lambda y: Pair(aux=y * 0, out=y), "1"),
    (lambda y: (y * 0, y), "1"),
    (lambda y: [y], None),
])
def test_adapted_module_picks_the_named_output_and_gives_boundary_logits(wrap, name):
    torch.manual_seed(0)
    net = _Net(wrap)
    card = _card({"layout": "NHWC", "scale": 255}, {"name": name})
    model = AdaptedModule(net, card, 3)
    x = _images(2, 4, 5).requires_grad_()
    logits = model(x)
    assert logits.shape == (2, 3, 4, 5) and logits.dtype == torch.float32
    assert torch.allclose(net.seen[0], x.detach().permute(0, 2, 3, 1) * 255)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert set(dict(model.named_parameters())) == {"module.conv.weight", "module.conv.bias"}
    model.eval()
    assert not net.training


@pytest.mark.parametrize("wrap, name, fragment", [
    (lambda y: {"out": y, "aux": y}, None, "a dict (out, aux); set output.name"),
    (lambda y: {"out": y, "aux": y}, "logits", "output.name = 'logits', but the model returned a dict (out, aux)"),
    (lambda y: (y, y), None, "a tuple of 2 (0, 1)"),
    (lambda y: (y, y), "2", "output.name = '2'"),
    (lambda y: Pair(y, y), "main", "a Pair (aux, out)"),
    (lambda y: {}, None, "nothing in it"),
    (lambda y: {"out": "text"}, None, "picks a str, not a tensor"),
    (lambda y: 3.0, None, "returned a float; expected a tensor"),
])
def test_adapted_module_says_what_the_module_returned(wrap, name, fragment):
    model = AdaptedModule(_Net(wrap), _card({"layout": "NHWC"}, {"name": name}), 3)
    with pytest.raises(HarnessError) as info:
        model(_images(1, 4, 4))
    assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_adapted_module_checks_the_class_count():
    with pytest.raises(HarnessError, match="num_classes = 4, but the data has 3"):
        AdaptedModule(_Net(lambda y: y), _card(num_classes=4), 3)
    with pytest.raises(HarnessError, match="gives two classes, but the data has 3"):
        AdaptedModule(_Net(lambda y: y), _card(out={"kind": "sigmoid"}), 3)
    model = AdaptedModule(_Net(lambda y: y), _card({"layout": "NHWC"}), 5)
    with pytest.raises(HarnessError, match="num_classes = 5, but the model returns 3 channels"):
        model(_images(1, 4, 4))
    boundary = AdaptedModule(torch.nn.Conv2d(3, 2, 1), ModelCard(), 3)  # identity card: checked all the same
    with pytest.raises(HarnessError, match=r"expected \(1, 3, 4, 4\)"):
        boundary(_images(1, 4, 4))
    smaller = AdaptedModule(torch.nn.Conv2d(3, 3, 1, stride=2), ModelCard(), 3)
    with pytest.raises(HarnessError, match="output.resolution = reduced"):
        smaller(_images(1, 4, 4))


def test_adapted_module_of_a_sigmoid_model():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.Sigmoid())
    model = AdaptedModule(net, _card(out={"kind": "sigmoid"}), 2)
    assert model.card.num_classes == 2
    logits = model(_images(1, 4, 4))
    p = net(_images(1, 4, 4))
    assert torch.allclose(logits.softmax(1)[:, 1:], p, atol=1e-6)


def test_select_output_of_a_plain_tensor_ignores_the_name():
    t = torch.zeros(1)
    assert select_output(t, "out") is t


# ---------------------------------------------------------------- in-place work never touches the caller's data

_INPUT_CARDS = [
    {"scale": 255, "mean": (10, 20, 30), "std": (2, 4, 5)},
    {"channels": "bgr", "mean": (0.5, 0.4, 0.3)},
    {"channels": "grey", "std": (0.5,)},
    {"dtype": "uint8", "scale": 255, "layout": "NHWC"},
    {"dtype": "float16", "layout": "NHWC", "size": (3, 3)},
    {"size": (2, 5)},
]


@pytest.mark.parametrize("inp", _INPUT_CARDS)
def test_to_model_leaves_the_images_alone_and_matches_with_and_without_autograd(inp):
    adapter = Adapter(_card(inp))
    images = _images(2, 4, 6, seed=3)
    kept = images.clone()
    tracked = adapter.to_model(images.clone().requires_grad_())
    with torch.no_grad():
        untracked = adapter.to_model(images)
    array = adapter.to_model_numpy(images.numpy())
    assert torch.equal(images, kept)
    assert torch.allclose(tracked.detach(), untracked, atol=1e-5)
    assert np.allclose(array.astype(np.float32), untracked.numpy(), atol=1e-2 if inp.get("dtype") else 1e-6)


_OUTPUT_CASES = [
    ({"kind": "probabilities"}, lambda: _PROBABILITIES),
    ({"kind": "probabilities", "layout": "NHWC"}, lambda: _PROBABILITIES.permute(0, 2, 3, 1).contiguous()),
    ({"kind": "sigmoid"}, lambda: _PROBABILITIES[:, :1].contiguous()),
    ({"kind": "logits", "resolution": "reduced"}, lambda: _LOGITS[:, :, ::2, ::2].contiguous()),
    ({"kind": "binary_logits", "layout": "NHW"}, lambda: _LOGITS[:, 0].contiguous()),
]


@pytest.mark.parametrize("out, make", _OUTPUT_CASES)
def test_to_logits_leaves_the_output_alone_and_matches_with_and_without_autograd(out, make):
    adapter = Adapter(_card({"scale": 255}, out))
    output = make()
    kept = output.clone()
    tracked = adapter.to_logits(output.clone().requires_grad_(), (4, 4))
    with torch.no_grad():
        untracked = adapter.to_logits(output, (4, 4))
    array = adapter.to_logits_numpy(output.numpy(), (4, 4))
    assert torch.equal(output, kept)
    assert torch.allclose(tracked.detach(), untracked) and np.allclose(array, untracked.numpy())
    assert untracked.is_contiguous() and untracked.dtype == torch.float32 and untracked.shape[2:] == (4, 4)


def test_probabilities_in_nhwc_are_checked_over_their_class_axis():
    adapter = Adapter(_card(out={"kind": "probabilities", "layout": "NHWC"}))
    nhwc = _PROBABILITIES.permute(0, 2, 3, 1).contiguous()
    assert torch.allclose(adapter.to_logits(nhwc, (4, 4)).softmax(1), _PROBABILITIES, atol=1e-6)
    with pytest.raises(HarnessError, match="do not sum to 1"):
        adapter.to_logits(_PROBABILITIES.contiguous().view(2, 4, 4, 3) * 0.9, (4, 4))


def test_an_empty_output_is_one_line():
    adapter = Adapter(_card(out={"resolution": "reduced"}))
    with pytest.raises(HarnessError, match="empty output of shape"):
        adapter.to_logits(torch.zeros(2, 3, 0, 0), (4, 4))


@pytest.mark.parametrize("make, axis", [
    (lambda t: t, 1),
    (lambda t: t.numpy(), 1),
    (lambda t: t.permute(0, 2, 3, 1).contiguous(), -1),
])
def test_check_logits_refuses_probabilities_in_any_form(make, axis):
    with pytest.raises(HarnessError, match="set output.kind = probabilities"):
        check_logits(make(_PROBABILITIES), axis)
    check_logits(make(_LOGITS), axis)  # real logits pass
    check_logits(make(torch.ones(2, 1, 4, 4)), 1)  # one channel: nothing to tell
    check_logits(make(torch.zeros(2, 3, 0, 4)), 1)  # empty: nothing to tell
