import pytest
import torch
import torch.nn.functional as F

from harness.attacks import pixel_cross_entropy
from harness.data.base import IGNORE_INDEX


def _batch(seed: int = 0, n: int = 3, k: int = 5, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, size, size, generator=g)
    labels = torch.randint(0, k, (n, size, size), generator=g)
    labels[torch.rand(n, size, size, generator=g) < 0.3] = IGNORE_INDEX
    return logits, labels


def test_is_the_mean_over_each_images_labelled_pixels():
    logits, labels = _batch()
    loss = pixel_cross_entropy(logits, labels)
    assert loss.shape == (3,)
    for i in range(3):
        valid = labels[i] != IGNORE_INDEX
        expected = F.cross_entropy(logits[i].permute(1, 2, 0)[valid], labels[i][valid])
        torch.testing.assert_close(loss[i], expected)


def test_ignored_pixels_do_not_count():
    logits, labels = _batch()
    ignored = (labels == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    changed = logits.clone()
    changed[ignored] = torch.randn(int(ignored.sum())) * 100
    assert torch.equal(pixel_cross_entropy(changed, labels), pixel_cross_entropy(logits, labels))
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(pixel_cross_entropy(logits, labels).sum(), logits)
    assert grad[ignored].abs().max() == 0 and grad[~ignored].abs().max() > 0


def test_each_image_is_independent_of_its_batch():
    logits, labels = _batch(n=4)
    together = pixel_cross_entropy(logits, labels)
    alone = torch.cat([pixel_cross_entropy(logits[i:i + 1], labels[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)


def test_an_image_without_labelled_pixels_has_zero_loss():
    logits, labels = _batch(n=2)
    labels[1] = IGNORE_INDEX
    loss = pixel_cross_entropy(logits, labels)
    assert loss[1] == 0 and torch.isfinite(loss).all() and loss[0] > 0


def test_bad_shapes_and_labels_are_errors():
    logits, labels = _batch()
    with pytest.raises(ValueError, match="do not fit"):
        pixel_cross_entropy(logits, labels[:, :4])
    with pytest.raises(ValueError, match="do not fit"):
        pixel_cross_entropy(logits[0], labels[0])
    labels[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"0\.\.4 or 255"):
        pixel_cross_entropy(logits, labels)
