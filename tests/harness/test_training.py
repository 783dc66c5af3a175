import torch

from harness.data.base import IGNORE_INDEX
from harness.data.synthetic import generate
from harness.evaluation import evaluate
from harness.models import build_model
from harness.training import TrainConfig, train


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
