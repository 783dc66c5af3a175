"""Independent implementations of APGD (ce, mce, msph), SegPGD and CosPGD, and their comparison with the harness's.

Issue 14's last acceptance line: the harness's numbers are compared with independent implementations of these
attacks on the same models; a gap of more than 2 points at equal budget needs an explanation. The attacks below
were written from the papers' method descriptions only, without reading ``harness/attacks``' implementations;
the attack code shares nothing with the harness; only the comparison loads models and data through it.

Every attack function takes ``(model, images, labels, eps, steps, seed)``: a model that maps [0, 1] images to
logits (N, K, H, W), images float32 (N, 3, H, W) in [0, 1], labels int64 (N, H, W) with 255 = ignore, ``eps`` in
[0, 1] units (8/255), the number of gradient steps and a seed; it returns adversarial images within ``eps`` of
``images`` (L∞) and in [0, 1]. Ignored pixels take part in no loss and in no accuracy.

Choices where a paper leaves a detail open (each the paper's reference default where it has one):

- Random start, every attack: x₀ = x + U(-ε, ε) per pixel, clipped to [0, 1].
- APGD (Croce & Hein 2020, Algorithm 1): η₀ = 2ε per image; momentum α = 0.75 from the second step on (the first
  step is a plain projected sign step); checkpoints wⱼ = ⌈pⱼ·N⌉ with p₀ = 0, p₁ = 0.22,
  pⱼ₊₁ = pⱼ + max(pⱼ - pⱼ₋₁ - 0.03, 0.06) (kept while pⱼ <= 1); at each checkpoint the step halves, and the
  walk restarts from the point of highest loss (with its gradient), when (1) fewer than ρ = 0.75 of the steps
  since the last checkpoint raised the loss, or (2) the step was not halved at the last checkpoint and the highest
  loss has not risen since. N = ``steps`` update steps (the AutoAttack layout: a gradient at x₀, then one per
  step). The loss that drives the schedule is the image's mean over its labelled pixels. Returned: per image,
  the iterate (x₀..x_N) with the fewest correct labelled pixels (SEA's choice for segmentation; the
  classification APGD likewise returns its best adversarial point).
- Losses (Croce, Singh & Hein 2024, SEA): ``ce``: pixel cross entropy averaged over the image's labelled pixels;
  ``mce``: the cross entropy of the pixels the current iterate still classifies correctly (the mask is not
  differentiated), summed and divided by the count of labelled pixels (a constant per image, so neither the sign
  step nor the schedule's comparisons depend on it); ``msph``: SEA's masked spherical loss, the label's logit
  after the logit vector is scaled to unit L2 length, negated, at the still-correct pixels (mask not
  differentiated, the scaling differentiated), summed and divided by the count of labelled pixels.
- SegPGD (Gu et al. 2022): at step t = 1..T the loss is ((1 - λ(t))·Σ_correct CE + λ(t)·Σ_wrong CE) / labelled
  pixels with λ(t) = (t - 1) / (2T) and correct/wrong from the current prediction (not differentiated); step
  α = 0.01 (about 2.55/255; the step recalled from SegPGD's and CosPGD's segmentation experiments at ε = 8/255,
  not checked against their text here; ``--alpha`` changes it); the last iterate is returned, as in PGD.
- CosPGD (Agnihotri et al.): each pixel's CE is multiplied by cos(softmax(logits), onehot(y)) (= p_y / ‖p‖₂),
  a constant weight at each step (not differentiated); averaged over labelled pixels; step α = 0.01; last
  iterate returned. (The first version differentiated the weight too, a reading of the paper's "smooth and
  fully differentiable" scaling: it left about 50 % pixel accuracy where the harness leaves 1-5 %. The authors'
  released ``cospgd_scale`` multiplies by ``cossim.detach()``: that first version was a bug of this file.)

Details where SEA's released code differs from the paper's text and both sides here follow the text: condition
(2) may fire at the first checkpoint (SEA's code: not; measured with its choice: the same numbers on these models),
the oscillation test is strict (<); and ties in the returned iterate keep the earlier one (SEA's code: the later).

The row ``apgd-mce/f=-correct`` is a diagnostic: this file's APGD-mCE with the schedule's f (conditions and x_max)
set to minus the count of correct labelled pixels, the harness's documented choice for its masked losses
(harness/attacks/apgd.py); it is compared with the harness's plain ``apgd-mce``.

The comparison (``main``): for each model (the default trained checkpoints), the first ``--n-images`` validation
images, ε ``--eps``/255, each of ``--steps``, each attack and each of ``--seeds``: pixel accuracy (labelled
pixels, all images together) after the independent attack and after the harness's
(``attacks_from_names([...-STEPS])``, its public ``__call__``). Prints a table and writes JSON (``--json``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/independent_attacks.py [--models fcn-resnet50 fcn8s-vgg16]
        [--n-images 16] [--steps 100 20] [--seeds 0 1 2] [--eps 8] [--alpha 0.01] [--json FILE]

Exit 0 when no gap exceeds max(2 points, the seeds' spread), 1 when one does (the table flags it), 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from harness.attacks import attacks_from_names
from harness.checkpoints import default_checkpoint_path, load_checkpoint
from harness.data import data_key, load_data
from harness.errors import HarnessError
from harness.fileio import write_json_atomic
from harness.limits import MAX_STEPS
from reports.tables import ReadableTable

IGNORE = 255
APGD_MOMENTUM = 0.75
APGD_RHO = 0.75
PAPER_ALPHA = 0.01  # SegPGD's and CosPGD's step at eps 8/255, [0, 1] units
GAP_POINTS = 2.0
ATTACKS = ("apgd-ce", "apgd-mce", "apgd-msph", "segpgd", "cospgd")
DIAGNOSTIC = "apgd-mce/f=-correct"  # the independent APGD-mCE with the harness's schedule, to explain a gap
MODELS = ("fcn-resnet50", "fcn8s-vgg16")

# ---------------------------------------------------------------------------------------------------- helpers


def _labelled(labels: torch.Tensor) -> torch.Tensor:
    return labels != IGNORE


def _class_indices(labels: torch.Tensor) -> torch.Tensor:
    """Labels with ignored pixels set to class 0 (they are masked out wherever this is used)."""
    return labels.masked_fill(~_labelled(labels), 0)


def _pixel_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W) cross entropy per pixel; 0 on ignored pixels."""
    ce = F.cross_entropy(logits, _class_indices(labels), reduction="none")
    return ce * _labelled(labels)


def _image_mean(per_pixel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) sum over each image's labelled pixels divided by their count (0 for an image with none)."""
    valid = _labelled(labels)
    return (per_pixel * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)


def _correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: labelled pixels the logits classify as their label."""
    return (logits.argmax(1) == labels) & _labelled(labels)


def correct_counts(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) number of correctly classified labelled pixels per image."""
    with torch.no_grad():
        return _correct(model(images), labels).flatten(1).sum(1)


def pixel_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of labelled pixels (all images together) classified correctly."""
    total = int(_labelled(labels).sum())
    return 100.0 * int(correct_counts(model, images, labels).sum()) / max(total, 1)


def _random_start(images: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images + (2 * noise - 1) * eps).clamp(0.0, 1.0)


def _projector(images: torch.Tensor, eps: float) -> Callable[[torch.Tensor], torch.Tensor]:
    low, high = (images - eps).clamp(min=0.0), (images + eps).clamp(max=1.0)
    return lambda z: torch.maximum(torch.minimum(z, high), low)


# A per-image loss: (logits, labels) -> (N,); summed over images for the gradient, so images stay independent.
ImageLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _loss_and_grad(model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                   loss_fn: ImageLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image loss (N,), its input gradient and the logits (both detached)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = loss_fn(logits, labels)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad, logits.detach()


# ----------------------------------------------------------------------------------------------------- losses


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SEA's pixel CE: mean over the labelled pixels, per image."""
    return _image_mean(_pixel_ce(logits, labels), labels)


def masked_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SEA's masked CE: CE of the still-correct pixels only, divided by the count of labelled pixels."""
    still_correct = _correct(logits.detach(), labels)
    return _image_mean(_pixel_ce(logits, labels) * still_correct, labels)


def masked_spherical_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SEA's masked spherical loss: minus the unit-length logit vector's label entry, still-correct pixels only."""
    unit = F.normalize(logits, p=2, dim=1)
    label_entry = unit.gather(1, _class_indices(labels).unsqueeze(1)).squeeze(1)
    still_correct = _correct(logits.detach(), labels)
    return _image_mean(-label_entry * still_correct, labels)


def segpgd_loss(logits: torch.Tensor, labels: torch.Tensor, t: int, total: int) -> torch.Tensor:
    """SegPGD at step t of ``total`` (1-based): (1-λ) on correct, λ on wrong pixels, λ = (t-1)/(2·total)."""
    lam = (t - 1) / (2 * total)
    correct = _correct(logits.detach(), labels)
    weights = torch.where(correct, 1.0 - lam, lam)
    return _image_mean(_pixel_ce(logits, labels) * weights, labels)


def cospgd_loss(logits: torch.Tensor, labels: torch.Tensor, detach_scale: bool = True) -> torch.Tensor:
    """CosPGD: each pixel's CE scaled by cos(softmax(logits), onehot(label)), the scale a constant weight
    (``detach_scale=False``: differentiated too, the first reading of the paper, kept for the record)."""
    probs = (logits.detach() if detach_scale else logits).softmax(1)
    onehot = F.one_hot(_class_indices(labels), logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    cosine = F.cosine_similarity(probs, onehot, dim=1)
    return _image_mean(_pixel_ce(logits, labels) * cosine, labels)


# ---------------------------------------------------------------------------------------------------- attacks


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations w₁ < w₂ < ... <= steps at which APGD checks its progress (w₀ = 0 excluded)."""
    points, previous, current = [], 0.0, 0.22
    while current <= 1.0 + 1e-9:
        points.append(math.ceil(current * steps - 1e-9))
        previous, current = current, current + max(current - previous - 0.03, 0.06)
    return sorted({w for w in points if 0 < w <= steps})


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image: ``a`` where ``mask`` (N,) holds, else ``b``."""
    return torch.where(mask.view(-1, *([1] * (a.ndim - 1))), a, b)


def apgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int, seed: int,
         loss: str = "ce", schedule: str = "loss") -> torch.Tensor:
    """APGD (Algorithm 1) with SEA's ``ce``, ``mce`` or ``msph`` loss; returns each image's iterate with fewest correct.

    ``schedule``: the f of the step-size conditions and of the restart point x_max: ``loss`` (the paper's and
    SEA's code: the attacked loss itself) or ``correct`` (minus the count of correct labelled pixels, the
    harness's choice for its masked losses; here only to explain the gap it makes).
    """
    loss_fn = {"ce": ce_loss, "mce": masked_ce_loss, "msph": masked_spherical_loss}[loss]
    if schedule not in ("loss", "correct"):
        raise ValueError(f"schedule must be loss or correct, got {schedule!r}")

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        value, grad, logits = _loss_and_grad(model, x, labels, loss_fn)
        count = _correct(logits, labels).flatten(1).sum(1)
        return (value if schedule == "loss" else -count.float()), grad, count

    generator = torch.Generator().manual_seed(seed)
    project = _projector(images, eps)
    n = len(images)
    checkpoints = set(apgd_checkpoints(steps))
    x = project(_random_start(images, eps, generator))
    f, grad, count = evaluate(x)
    eta = torch.full((n,), 2 * eps, device=images.device)
    f_max, x_max, grad_max = f.clone(), x.clone(), grad.clone()  # highest loss so far (restart point)
    fewest, x_out = count, x.clone()  # what is returned
    x_prev = x.clone()
    rises = torch.zeros(n, device=images.device)
    last_check = 0
    halved_last = torch.zeros(n, dtype=torch.bool, device=images.device)
    f_max_last = f_max.clone()
    for k in range(steps):
        z = project(x + eta.view(-1, 1, 1, 1) * grad.sign())
        x_new = z if k == 0 else project(x + APGD_MOMENTUM * (z - x) + (1 - APGD_MOMENTUM) * (x - x_prev))
        f_new, grad_new, count = evaluate(x_new)
        rises += (f_new > f).float()
        higher = f_new > f_max
        f_max = torch.where(higher, f_new, f_max)
        x_max, grad_max = _where(higher, x_new, x_max), _where(higher, grad_new, grad_max)
        fewer = count < fewest
        fewest, x_out = torch.where(fewer, count, fewest), _where(fewer, x_new, x_out)
        x_prev, x, grad, f = x, x_new, grad_new, f_new
        if k + 1 in checkpoints:
            window = k + 1 - last_check
            halve = (rises < APGD_RHO * window) | (~halved_last & (f_max <= f_max_last))
            eta = torch.where(halve, eta / 2, eta)
            x, grad, f = _where(halve, x_max, x), _where(halve, grad_max, grad), torch.where(halve, f_max, f)
            halved_last, f_max_last = halve, f_max.clone()
            rises.zero_()
            last_check = k + 1
    return x_out.detach()


def apgd_ce(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
            seed: int) -> torch.Tensor:
    return apgd(model, images, labels, eps, steps, seed, "ce")


def apgd_mce(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
             seed: int) -> torch.Tensor:
    return apgd(model, images, labels, eps, steps, seed, "mce")


def apgd_msph(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
              seed: int) -> torch.Tensor:
    return apgd(model, images, labels, eps, steps, seed, "msph")


def _signed_pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int, seed: int,
                alpha: float, loss_at: Callable[[int], ImageLoss]) -> torch.Tensor:
    """x_{t} = Π(x_{t-1} + α·sign(∇ loss_at(t))) for t = 1..steps from a random start; the last iterate."""
    generator = torch.Generator().manual_seed(seed)
    project = _projector(images, eps)
    x = project(_random_start(images, eps, generator))
    for t in range(1, steps + 1):
        _, grad, _ = _loss_and_grad(model, x, labels, loss_at(t))
        x = project(x + alpha * grad.sign())
    return x.detach()


def segpgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int, seed: int,
           alpha: float = PAPER_ALPHA) -> torch.Tensor:
    return _signed_pgd(model, images, labels, eps, steps, seed, alpha,
                       lambda t: lambda logits, y: segpgd_loss(logits, y, t, steps))


def cospgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int, seed: int,
           alpha: float = PAPER_ALPHA, detach_scale: bool = True) -> torch.Tensor:
    return _signed_pgd(model, images, labels, eps, steps, seed, alpha,
                       lambda t: lambda logits, y: cospgd_loss(logits, y, detach_scale))


def apgd_mce_correct_schedule(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
                              steps: int, seed: int) -> torch.Tensor:
    """Diagnostic: APGD-mCE whose schedule follows the correct-pixel count (the harness's documented choice)."""
    return apgd(model, images, labels, eps, steps, seed, "mce", schedule="correct")


INDEPENDENT: dict[str, Callable[..., torch.Tensor]] = {"apgd-ce": apgd_ce, "apgd-mce": apgd_mce,
                                                        "apgd-msph": apgd_msph, "segpgd": segpgd, "cospgd": cospgd,
                                                        DIAGNOSTIC: apgd_mce_correct_schedule}
# The harness attack each row is compared with (the diagnostic row: the harness's plain apgd-mce).
HARNESS_NAME = {**{name: name for name in ATTACKS}, DIAGNOSTIC: "apgd-mce"}

# ------------------------------------------------------------------------------------------------- comparison


def _check_adversarial(adv: torch.Tensor, images: torch.Tensor, eps: float, who: str) -> None:
    """A silent wrong number is worse than an error: refuse images outside the ε-ball or [0, 1]."""
    if adv.shape != images.shape or bool(adv.isnan().any()):
        raise HarnessError(f"{who} returned images of shape {tuple(adv.shape)} or with NaN")
    if float((adv - images).abs().max()) > eps + 1e-6 or float(adv.min()) < 0 or float(adv.max()) > 1:
        raise HarnessError(f"{who} left the eps-ball or [0, 1]")


def _summary(values: list[float]) -> dict[str, Any]:
    return {"per_seed": values, "mean": statistics.fmean(values), "spread": max(values) - min(values)}


def compare(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: str, steps: int, eps: float,
            seeds: list[int], alpha: float) -> dict[str, Any]:
    """Pixel accuracy after each side's ``attack`` (``steps`` iterations, ε in [0, 1] units) over ``seeds``."""
    harness_attack = attacks_from_names([f"{HARNESS_NAME[attack]}-{steps}"], eps * 255, "--attacks")[0]
    ours = INDEPENDENT[attack]
    extra = {"alpha": alpha} if attack in ("segpgd", "cospgd") else {}
    independent, harness, seconds = [], [], {"independent": 0.0, "harness": 0.0}
    for seed in seeds:
        start = time.perf_counter()
        adv = ours(model, images, labels, eps, steps, seed, **extra)
        seconds["independent"] += time.perf_counter() - start
        _check_adversarial(adv, images, eps, f"independent {attack}")
        independent.append(pixel_accuracy(model, adv, labels))
        start = time.perf_counter()
        adv = harness_attack(model, images, labels, seed=seed).images
        seconds["harness"] += time.perf_counter() - start
        _check_adversarial(adv, images, eps, f"harness {attack}")
        harness.append(pixel_accuracy(model, adv, labels))
    ind, har = _summary(independent), _summary(harness)
    gap = har["mean"] - ind["mean"]
    allowed = max(GAP_POINTS, ind["spread"], har["spread"])
    return {"attack": attack, "steps": steps, "independent": ind, "harness": har, "gap_points": gap,
            "allowed_points": allowed, "flagged": abs(gap) > allowed, "seconds": seconds,
            "harness_label": harness_attack.label, "harness_params": harness_attack.params()}


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_STEPS:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_STEPS}, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--attacks", nargs="+", default=[*ATTACKS, DIAGNOSTIC], choices=[*ATTACKS, DIAGNOSTIC])
    parser.add_argument("--n-images", type=_positive, default=16)
    parser.add_argument("--steps", nargs="+", type=_positive, default=[100, 20])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eps", type=float, default=8.0, help="0-255 scale (8 means 8/255)")
    parser.add_argument("--alpha", type=float, default=PAPER_ALPHA,
                        help="SegPGD/CosPGD step of the independent side, [0, 1] units (default 0.01)")
    parser.add_argument("--json", default="independent_attacks.json")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 110))  # the table in one piece
    try:
        if not 0 < args.eps <= 255:
            raise HarnessError(f"--eps {args.eps} is outside (0, 255]; it is on the 0-255 scale")
        if not 0 < args.alpha <= 1:
            raise HarnessError(f"--alpha {args.alpha} is outside (0, 1]; it is in [0, 1] units (0.01)")
        data = load_data("synthetic", "val")
        if args.n_images > len(data):
            raise HarnessError(f"--n-images {args.n_images}: the validation set has {len(data)} images")
        images, labels = data.tensors(slice(0, args.n_images))
        eps = args.eps / 255
        rows: list[dict[str, Any]] = []
        clean: dict[str, float] = {}
        for name in args.models:
            path = default_checkpoint_path(name, "reduced", data_key(data))
            if not path.is_file():
                raise HarnessError(f"no trained {name} in the cache ({path}); run: python -m harness train "
                                   f"--model {name}")
            model = load_checkpoint(path)[0]
            clean[name] = pixel_accuracy(model, images, labels)
            console.print(f"{name}: clean pixel accuracy {clean[name]:.2f}%")
            for steps in args.steps:
                for attack in args.attacks:
                    row = compare(model, images, labels, attack, steps, eps, args.seeds, args.alpha)
                    row["model"] = name
                    rows.append(row)
                    console.print(f"  {attack}-{steps}: independent {row['independent']['mean']:.2f}  "
                                  f"harness {row['harness']['mean']:.2f}  gap {row['gap_points']:+.2f}")
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    table = ReadableTable("attack", "model", "iterations", "independent %", "harness %", "gap (points)", "flag",
                          key_columns=2, title=f"pixel accuracy, {args.n_images} images, eps {args.eps:g}/255, "
                                               f"mean ± spread (max-min) over seeds {args.seeds}")
    for row in rows:
        ind, har = row["independent"], row["harness"]
        table.add_row(row["attack"], row["model"], str(row["steps"]), f"{ind['mean']:.2f} ± {ind['spread']:.2f}",
                      f"{har['mean']:.2f} ± {har['spread']:.2f}", f"{row['gap_points']:+.2f}",
                      "GAP" if row["flagged"] else "")
    console.print(table)
    try:
        write_json_atomic(args.json, {"n_images": args.n_images, "eps": args.eps, "seeds": args.seeds,
                                      "independent_alpha": args.alpha, "clean_pixel_accuracy": clean, "rows": rows})
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"error: cannot write {args.json}: {error.strerror}; pass --json a writable path", file=sys.stderr)
        return 2
    console.print(f"wrote {args.json}")
    return 1 if any(row["flagged"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
