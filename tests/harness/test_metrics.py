import numpy as np
import pytest

from harness.metrics import ConfusionMatrix


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
