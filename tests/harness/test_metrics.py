import numpy as np
import pytest

from harness.data.synthetic import generate
from harness.errors import HarnessError
from harness.evaluation import evaluate
from harness.metrics import ConfusionMatrix
from harness.models import build_model


def test_scores_from_a_known_confusion():
    labels = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    preds = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = ConfusionMatrix(3)
    cm.update(preds, labels)
    s = cm.scores()
    assert s.n_pixels == 6
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    # IoU: class 0: tp 1, union 3; class 1: tp 2, union 3; class 2: tp 1, union 2.
    assert s.per_class_iou == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert s.mean_iou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_absent_classes_are_excluded_from_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    s = cm.scores()
    assert s.per_class_iou[2:] == [None, None] and s.mean_iou == 1.0


def test_out_of_range_labels_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        ConfusionMatrix(2).update(np.array([0]), np.array([5]))


@pytest.mark.parametrize("labels", [np.full(4, 255), np.array([], dtype=np.int64)], ids=["all ignored", "empty"])
def test_no_labelled_pixel_is_an_error_never_nan(labels):
    cm = ConfusionMatrix(3)
    cm.update(np.zeros(labels.shape, np.int64), labels)
    with pytest.raises(HarnessError, match="no labelled pixel"):
        cm.scores()


def test_scores_are_always_finite_fractions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        cm = ConfusionMatrix(4)
        labels = rng.integers(0, 4, 50)
        labels[rng.random(50) < 0.5] = 255
        labels[0] = 1
        cm.update(rng.integers(0, 4, 50), labels)
        s = cm.scores()
        assert 0 <= s.pixel_accuracy <= 1 and 0 <= s.mean_iou <= 1
        assert all(v is None or 0 <= v <= 1 for v in s.per_class_iou)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_evaluation_refuses_non_finite_logits(bad):
    data = generate("val", 4, size=32)
    model = build_model("fcn-resnet50", data.num_classes)

    def predict(images):
        logits = model(images)
        logits[0, 0, 0, 0] = bad
        return logits

    with pytest.raises(HarnessError, match="NaN or infinite"):
        evaluate(predict, data)
    assert 0 <= evaluate(model, data).pixel_accuracy <= 1
