"""``attack``: one white-box attack on one model; clean and adversarial scores of the same images."""

from __future__ import annotations

import argparse

from harness.attacks import WHITEBOX_ATTACKS, make_attack
from harness.commands.common import (
    add_model_arguments,
    console,
    data_from_args,
    float_in,
    int_in,
    load_model,
    pixel_scale,
)
from harness.commands.whitebox_common import (
    add_run_arguments,
    attack_records,
    gradient_progress,
    resolve_device,
    run_attack,
    save_examples,
)
from harness.fileio import check_outputs
from harness.limits import MAX_DECAY, MAX_STEPS
from harness.threads import set_threads
from reports.results import write_results
from reports.tables import scores_table

HELP = "attack a model with FGSM, MI-FGSM or PGD: clean and adversarial pixel accuracy and mIoU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--attack", required=True, choices=WHITEBOX_ATTACKS)
    parser.add_argument("--steps", type=int_in(1, MAX_STEPS), metavar="N",
                        help=f"iterations of mifgsm and pgd, 1-{MAX_STEPS} (default 20)")
    parser.add_argument("--alpha", type=pixel_scale,
                        help="step size on the 0-255 scale, in (0, 255] (default: pgd eps/4, mifgsm eps/steps)")
    parser.add_argument("--decay", type=float_in(0, MAX_DECAY),
                        help=f"mifgsm momentum decay mu, in [0, {MAX_DECAY:g}] (default 1.0)")
    parser.add_argument("--save-adv", metavar="DIR",
                        help="save the adversarial images (exact float32) with their provenance to DIR")
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    attack = make_attack(args.attack, args.eps, args.steps, args.alpha, args.decay)
    check_outputs({"--json": args.json}, {"--save-adv": args.save_adv})
    args.device = resolve_device(args.device)
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    model, source = load_model(args, data)
    model.to(args.device)
    with gradient_progress() as progress:
        task = progress.add_task(f"{args.model} {attack.label}", total=len(data) * attack.iterations)
        evaluation = run_attack(model, data, attack, args, progress, task, keep_adversarial=bool(args.save_adv))
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in attack.params().items())
    console.print(scores_table(
        f"{args.model} ({args.size}) under {attack.label} ({params}) on {data.name} {data.split}, "
        f"{len(data)} images, {evaluation.clean.n_pixels} labelled pixels (values in %)",
        data.class_names, [("clean", evaluation.clean), (attack.label, evaluation.attacked)]))
    console.print(f"attack time {evaluation.attack_seconds:.1f} s for {evaluation.queries} image gradients "
                  f"({1000 * evaluation.attack_seconds / max(evaluation.queries, 1):.1f} ms each)")
    if args.save_adv:
        path = save_examples(args.save_adv, args.model, source, data, attack, evaluation, args)
        console.print(f"wrote {path}")
    if args.json:
        write_results(args.json, attack_records(args.model, source, data, attack, evaluation, args))
        console.print(f"wrote {args.json}")
    return 0
