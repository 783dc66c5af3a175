import math

import pytest
import torch

from harness.data.base import IGNORE_INDEX
from harness.data.synthetic import generate
from harness.errors import HarnessError
from harness.evaluation import evaluate
from harness.models import build_model
from harness.training import TrainConfig, train, train_and_save


def test_training_reduces_the_loss_and_is_reproducible():
    data = generate("train", 48, size=32)
    losses = {}
    weights = []
    for run in range(2):
        torch.manual_seed(1)
        model = build_model("fcn-resnet50", data.num_classes)
        seen = []
        config = TrainConfig(epochs=3, batch_size=16, seed=1)
        train(model, data, config, on_step=lambda r, seen=seen: seen.append(r.loss))
        losses[run] = seen
        weights.append(next(model.parameters()).detach().clone())
        assert not model.training
    assert losses[0] == losses[1] and torch.equal(weights[0], weights[1])
    assert sum(losses[0][-3:]) < sum(losses[0][:3])


def test_trained_fixture_model_segments_the_built_in_data(trained_model, synthetic_val):
    data = synthetic_val.subset(64)
    scores = evaluate(trained_model("fcn-resnet50"), data)
    labelled = data.labels[data.labels != IGNORE_INDEX]
    background_only = float((labelled == 0).mean())  # the accuracy of predicting background everywhere
    assert scores.pixel_accuracy > background_only + 0.05 and scores.mean_iou > 0.35


@pytest.mark.parametrize("settings", [
    {"lr": float("inf")}, {"lr": float("nan")}, {"lr": 0.0}, {"lr": -1e-3}, {"lr": 1e6},
    {"weight_decay": float("nan")}, {"weight_decay": -1.0}, {"weight_decay": float("inf")},
    {"epochs": 0}, {"epochs": 2.5}, {"batch_size": 0}, {"batch_size": True}, {"seed": -1}, {"seed": 2**40},
    {"lr": "0.01"},
], ids=repr)
def test_train_config_refuses_settings_that_cannot_train(settings):
    with pytest.raises(HarnessError):
        TrainConfig(**settings)


def _exploding_weights(tmp_path, name="fcn8s-vgg16", num_classes=7):
    """A real backbone file whose finite but huge weights overflow the activations to infinity."""
    model = build_model(name, num_classes)
    state = {k: (torch.full_like(v, 1e30) if v.is_floating_point() else v) for k, v in model.net.state_dict().items()}
    path = tmp_path / "huge.pth"
    torch.save(state, path)
    return path


def test_a_diverging_run_stops_with_one_line_and_saves_nothing(tmp_path):
    data = generate("train", 8, size=32)
    weights = _exploding_weights(tmp_path)
    out = tmp_path / "ckpt.safetensors"
    with pytest.raises(HarnessError, match="training diverged") as caught:
        train_and_save("fcn8s-vgg16", "reduced", data, data, TrainConfig(epochs=1, batch_size=8), out, str(weights))
    assert "\n" not in str(caught.value) and "lower --lr" in str(caught.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_batch_without_labelled_pixels_is_not_divergence():
    data = generate("train", 4, size=32)
    data.labels[:2] = IGNORE_INDEX  # with batch size 1, two steps an epoch see no labelled pixel
    model = build_model("fcn8s-vgg16", data.num_classes)
    seen = []
    train(model, data, TrainConfig(epochs=1, batch_size=1), on_step=lambda r: seen.append(r.loss))
    assert len(seen) == 4 and all(math.isfinite(v) for v in seen) and seen.count(0.0) == 2


def test_the_cli_refuses_nonfinite_learning_rates(run_cli):
    for value in ("inf", "nan", "-inf"):
        code, _, err = run_cli(["train", "--model", "fcn8s-vgg16", "--lr", value, "--epochs", "1"])
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
