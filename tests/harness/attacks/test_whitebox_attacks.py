"""Contracts every white-box attack keeps, on a trained reduced model and real images (the fixtures ``model``
and ``batch``: conftest.py)."""

import pytest
import torch

from harness.attacks import (
    APGD,
    FGSM,
    MIFGSM,
    PGD,
    CosPGD,
    SegPGD,
    make_attack,
    pixel_cross_entropy,
    sea,
)
from harness.attacks.base import IterativeAttack
from harness.attacks.best_iterate import correct_pixels
from harness.attacks.losses import SEGMENTATION_LOSSES
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError
from harness.models import build_model

# The paper's cross-entropy attacks, then one instance of each later white-box attack (few steps: fast).
PAPER_ATTACKS = [FGSM(8), MIFGSM(8, steps=3), PGD(8, steps=3)]
ATTACKS = [*PAPER_ATTACKS, *(APGD(8, 4, loss) for loss in SEGMENTATION_LOSSES), APGD(8, 5, "mce", reduced_eps=True),
           SegPGD(8, 3), CosPGD(8, 3), PGD(8, 3, keep_best=True), MIFGSM(8, 3, keep_best=True),
           SegPGD(8, 3, keep_best=True), CosPGD(8, 3, keep_best=True), sea(8, 2)]
IDS = [a.label for a in ATTACKS]
PAPER_IDS = IDS[:len(PAPER_ATTACKS)]
ITERATIVE = [a for a in ATTACKS if isinstance(a, IterativeAttack)]
# The attacks that start from a random point of the ε-ball.
RANDOM_START = [PGD(8, steps=1), APGD(8, 1, "ce"), SegPGD(8, 1), CosPGD(8, 1)]


@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_stays_in_the_eps_ball_and_in_range(model, batch, attack):
    images, labels = batch
    result = attack(model, images, labels, seed=0)
    adv = result.images
    assert adv.shape == images.shape and adv.dtype == torch.float32 and not adv.requires_grad
    assert (adv - images).abs().max() <= 8 / 255 + 1e-6  # the reduced-ε schedule's 2ε stage never leaks
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv != images).float().mean() > 0.5  # it did perturb
    assert result.iterations == attack.iterations and result.queries == len(images) * attack.iterations
    assert result.seconds > 0


@pytest.mark.parametrize("attack", ITERATIVE, ids=[a.label for a in ITERATIVE])
def test_an_iterative_attack_runs_its_steps(attack):
    assert attack.iterations == attack.steps and attack.label == f"{attack.name}-{attack.steps}"


@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_lowers_the_accuracy(model, batch, attack):
    images, labels = batch
    with torch.no_grad():
        clean = correct_pixels(model(images), labels).sum()
        attacked = correct_pixels(model(attack(model, images, labels).images), labels).sum()
    assert attacked < clean


@pytest.mark.parametrize("attack", PAPER_ATTACKS, ids=PAPER_IDS)
def test_raises_the_loss(model, batch, attack):
    images, labels = batch
    adv = attack(model, images, labels).images
    with torch.no_grad():
        assert pixel_cross_entropy(model(adv), labels).mean() > pixel_cross_entropy(model(images), labels).mean()


@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_same_seed_same_result(model, batch, attack):
    images, labels = batch
    assert torch.equal(attack(model, images, labels, seed=5).images, attack(model, images, labels, seed=5).images)


@pytest.mark.parametrize("attack", RANDOM_START, ids=[a.label for a in RANDOM_START])
def test_the_seed_moves_the_random_start(model, batch, attack):
    images, labels = batch
    assert not torch.equal(attack(model, images, labels, seed=1).images, attack(model, images, labels, seed=2).images)


@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_does_not_touch_the_global_random_state(model, batch, attack):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    attack(model, *batch, seed=9)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_model_parameters_gradients_and_buffers_are_untouched(model, batch, attack):
    params = dict(model.named_parameters())
    # Some parameters carry a gradient from elsewhere (it must survive), the others have none.
    names = list(params)
    for name in names[::2]:
        params[name].grad = torch.full_like(params[name], 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: None if p.grad is None else p.grad.clone() for k, p in params.items()}
    assert any("running_mean" in k for k in state) and any("num_batches_tracked" in k for k in state)
    attack(model, *batch)
    after = model.state_dict()
    for k, v in state.items():
        assert torch.equal(after[k], v), k
    for k, p in params.items():
        assert (p.grad is None) == (grads[k] is None), k
        if p.grad is not None:
            assert torch.equal(p.grad, grads[k]), k
    assert not model.training
    for name in names:
        params[name].grad = None


@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_labels_changed_under_the_ignore_mask_leave_the_attack_unchanged(model, batch, attack):
    """What lies under an ignored pixel (here: the model's own prediction there) cannot matter."""
    images, labels = batch
    labels = labels.clone()
    labels[:, ::4, :] = IGNORE_INDEX
    other = labels.clone()
    other[labels == IGNORE_INDEX] = IGNORE_INDEX  # identical mask ...
    with torch.no_grad():
        logits = model(images)
    shifted = logits.clone()
    mask = (labels == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    shifted[mask] += 50.0  # ... and arbitrary predictions under it: same loss
    assert torch.equal(pixel_cross_entropy(logits, labels), pixel_cross_entropy(shifted, other))
    assert torch.equal(attack(model, images, labels, seed=1).images, attack(model, images, other, seed=1).images)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_any_batch_size(model, batch, attack, n):
    images, labels = batch
    adv = attack(model, images[:n], labels[:n]).images
    assert adv.shape == (n, 3, *images.shape[2:]) and (adv - images[:n]).abs().max() <= 8 / 255 + 1e-6


@pytest.mark.parametrize("attack", ATTACKS, ids=IDS)
def test_inside_inference_mode(model, batch, attack):
    with torch.inference_mode():
        images, labels = (t.clone() for t in batch)
        adv = attack(model, images, labels).images
    assert (adv - images).abs().max() > 0


def test_defaults_and_parameters():
    assert FGSM().params() == {"eps": 8.0}
    assert MIFGSM().params() == {"eps": 8.0, "steps": 20, "decay": 1.0, "alpha": 0.4}
    assert PGD().params() == {"eps": 8.0, "steps": 20, "alpha": 2.0, "random_start": True}
    assert PGD(8, steps=100).alpha == 2.0  # independent of the number of steps
    assert PGD(4, steps=100, alpha=0.5).params()["alpha"] == 0.5
    assert make_attack("pgd", 8, 100).label == "pgd-100" and make_attack("mifgsm").label == "mifgsm-20"
    assert make_attack("fgsm").label == "fgsm"


@pytest.mark.parametrize("eps", [0, -1, 255.5, 1000, float("nan"), float("inf")])
def test_eps_out_of_range(eps):
    for name in ("fgsm", "mifgsm", "pgd"):
        with pytest.raises(HarnessError, match="outside \\(0, 255\\]"):
            make_attack(name, eps)


def test_bad_parameters():
    with pytest.raises(HarnessError, match="steps must be"):
        PGD(8, steps=0)
    with pytest.raises(HarnessError, match="steps must be"):
        MIFGSM(8, steps=-3)
    with pytest.raises(HarnessError, match="alpha"):
        PGD(8, alpha=0)
    with pytest.raises(HarnessError, match="decay"):
        MIFGSM(8, decay=-1)
    with pytest.raises(HarnessError, match="unknown attack 'cw'"):
        make_attack("cw")
    with pytest.raises(HarnessError, match="one step"):
        make_attack("fgsm", steps=10)
    with pytest.raises(HarnessError, match="mifgsm only"):
        make_attack("pgd", decay=0.5)


def test_bad_batches_are_one_line_errors(model, batch):
    images, labels = batch
    pgd = PGD(8, steps=1)
    cases = [
        (images[0], labels[0], "images must be float32 \\(N, 3, H, W\\)"),
        (images[:, :1], labels, "images must be float32"),
        (images.double(), labels, "images must be float32"),
        (images[:0], labels[:0], "N >= 1"),
        (images, labels[:, :10], "labels must be int64"),
        (images, labels[:2], "labels must be int64"),
        (images, labels.int(), "labels must be int64"),
        (images * 255, labels, "values in \\[0, 1\\]"),
        (images - 0.5, labels, "values in \\[0, 1\\]"),
        (images, labels.clamp(max=254) + 2, "class indices 0..6 or 255"),
        (images, torch.where(labels == 0, 7, labels), "class indices 0..6 or 255"),
        (images.numpy(), labels, "images must be"),
    ]
    for x, y, message in cases:
        with pytest.raises(HarnessError, match=message) as info:
            pgd(model, x, y)
        assert "\n" not in str(info.value)


def test_model_in_training_mode_is_refused(model, batch):
    model.train()
    try:
        with pytest.raises(HarnessError, match="eval mode"):
            FGSM()(model, *batch)
    finally:
        model.eval()
    model.net.backbone[1].train()  # one BatchNorm left in training mode is enough to refuse
    try:
        with pytest.raises(HarnessError, match="eval mode.*backbone.1"):
            FGSM()(model, *batch)
    finally:
        model.eval()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_contract(model, batch):
    gpu_model = build_model("fcn8s-vgg16", 7).cuda()
    images, labels = (t.cuda() for t in batch)
    for attack in ATTACKS:
        adv = attack(gpu_model, images, labels, seed=0).images
        assert adv.is_cuda and (adv - images).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with pytest.raises(HarnessError, match="is on cpu"):
        FGSM()(model, images, labels)
