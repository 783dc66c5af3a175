import math
import re

import pytest
import torch

from harness.checkpoints import metadata_problem, read_metadata
from harness.data.base import IGNORE_INDEX
from harness.data.synthetic import generate
from harness.errors import HarnessError
from harness.evaluation import evaluate
from harness.models import build_model
from harness.training import AdversarialTraining, TrainConfig, parse_adversarial, train, train_and_save


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


# PGD adversarial training (train --adversarial pgd-K --eps E).

def _batchnorm_batches(model) -> list[int]:
    return [int(m.num_batches_tracked) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_adversarial_training_attacks_in_eval_mode_and_updates_batchnorm_once_per_step():
    data = generate("train", 8, size=32)
    runs = []
    for adversarial in (None, AdversarialTraining(steps=2, eps=8), AdversarialTraining(steps=2, eps=8)):
        torch.manual_seed(0)
        model = build_model("fcn-resnet50", data.num_classes)
        seen = []
        train(model, data, TrainConfig(epochs=2, batch_size=4), lambda r, seen=seen: seen.append(r.loss), adversarial)
        # 2 epochs x 2 steps: the K attack passes of each step left the running statistics alone.
        assert set(_batchnorm_batches(model)) == {4} and not model.training
        runs.append((seen, [p.detach().clone() for p in model.parameters()]))
    (standard, _), (first, first_weights), (second, second_weights) = runs
    assert first == second and all(torch.equal(a, b) for a, b in zip(first_weights, second_weights, strict=True))
    assert first != standard  # the batches were replaced by their PGD examples
    assert all(math.isfinite(v) for v in first)


def test_adversarial_training_survives_batches_without_labelled_pixels():
    data = generate("train", 4, size=32)
    data.labels[:2] = IGNORE_INDEX
    model = build_model("fcn8s-vgg16", data.num_classes)
    seen = []
    train(model, data, TrainConfig(epochs=1, batch_size=1), lambda r: seen.append(r.loss), AdversarialTraining(1, 4))
    assert len(seen) == 4 and all(math.isfinite(v) for v in seen)


@pytest.mark.parametrize(("text", "eps", "match"), [
    ("pgd-0", 8, "steps must be an integer from 1"), ("pgd-101", 8, "steps must be an integer from 1"),
    ("pgd-99999999999", 8, "expected pgd-K"), ("fgsm", 8, "expected pgd-K"), ("pgd-3", 0, r"eps must be"),
    ("pgd-3", 256, r"eps must be"), ("pgd-3", float("nan"), r"eps must be"), ("", 8, "expected pgd-K"),
    ("pgd--3", 8, "expected pgd-K"),
])
def test_bad_adversarial_settings_are_refused(text, eps, match):
    with pytest.raises(HarnessError, match=match):
        parse_adversarial(text, eps)


def test_adversarial_settings_name_the_checkpoint_and_are_recorded(tmp_path):
    adversarial = parse_adversarial("pgd3", 4)
    assert (adversarial.steps, adversarial.eps, adversarial.alpha) == (3, 4, pytest.approx(10 / 3))
    assert adversarial.tag == "adv-pgd3-eps4" == parse_adversarial("pgd-3", 4.0).tag
    data = generate("train", 4, size=32)
    path = tmp_path / "defended.safetensors"
    train_and_save("fcn8s-vgg16", "reduced", data, data, TrainConfig(epochs=1, batch_size=4), path,
                   adversarial=adversarial)
    assert read_metadata(path)["train"]["adversarial"] == {"attack": "pgd", "steps": 3, "eps": 4.0,
                                                           "alpha": adversarial.alpha, "random_start": True}


@pytest.mark.parametrize("bad", [{"attack": "fgsm", "steps": 3, "eps": 8, "alpha": 1}, [3],
                                 {"attack": "pgd", "steps": 0, "eps": 8, "alpha": 1},
                                 {"attack": "pgd", "steps": True, "eps": 8, "alpha": 1},
                                 {"attack": "pgd", "steps": 3, "eps": 300, "alpha": 1},
                                 {"attack": "pgd", "steps": 3, "eps": 8}], ids=repr)
def test_checkpoint_metadata_refuses_a_malformed_adversarial_training(bad):
    meta = {"model": "fcn8s-vgg16", "size": "reduced", "class_names": ["a", "b"], "train": {"adversarial": bad}}
    assert "train.adversarial" in metadata_problem(meta)
    assert metadata_problem({**meta, "train": {"adversarial": None}}) is None


def test_the_cli_keeps_the_defended_checkpoint_apart(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    base = ["train", "--model", "fcn8s-vgg16", "--epochs", "1", "--n-train", "4", "--batch-size", "4"]
    assert run_cli([*base, "--adversarial", "pgd-1", "--eps", "4"])[0] == 0
    assert run_cli(base)[0] == 0
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(files) == 2
    defended = [f for f in files if "--adv-pgd1-eps4" in f]
    assert len(defended) == 1 and read_metadata(tmp_path / "checkpoints" / defended[0])["train"]["adversarial"]
    undefended = [f for f in files if "--adv-" not in f]
    assert "adversarial" not in read_metadata(tmp_path / "checkpoints" / undefended[0])["train"]
    code, out, _ = run_cli([*base, "--adversarial", "pgd-1", "--eps", "4"])
    assert code == 0 and "cached" in out  # the same training is reused...
    code, _, err = run_cli([*base, "--adversarial", "pgd-2", "--eps", "4"])
    assert code == 0 and len(list((tmp_path / "checkpoints").iterdir())) == 3  # ...another one is not


@pytest.mark.parametrize(("args", "match"), [
    (["--eps", "4"], "use it with --adversarial"), (["--adversarial", "pgd-0"], "steps must be"),
    (["--adversarial", "madry"], "expected pgd-K"), (["--adversarial", "pgd-3", "--eps", "0"], "eps"),
    (["--adversarial", "pgd-3", "--eps", "nan"], "eps"),
])
def test_the_cli_refuses_bad_adversarial_options(run_cli, args, match):
    code, _, err = run_cli(["train", "--model", "fcn8s-vgg16", "--epochs", "1", *args])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and re.search(match, err), err
