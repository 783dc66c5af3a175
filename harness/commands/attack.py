"""``attack``: one white-box attack on one model; clean and adversarial scores of the same images."""

from __future__ import annotations

import argparse

from harness.attacks import (
    ATTACK_NAMES_HELP,
    WHITEBOX_ATTACKS,
    Attack,
    attacks_from_names,
    make_attack,
    parse_attack_name,
)
from harness.commands.common import console, data_from_args, float_in, int_in, pixel_scale
from harness.commands.target_options import WHITE_BOX_REFUSED, add_target_arguments, target_from_args, target_title
from harness.commands.whitebox_common import (
    AttackNameChoices,
    add_run_arguments,
    attack_records,
    gradient_progress,
    resolve_device,
    run_attack,
    save_examples,
)
from harness.errors import HarnessError
from harness.fileio import check_outputs
from harness.limits import MAX_DECAY, MAX_STEPS
from harness.targets.target import torch_model
from harness.threads import set_threads
from reports.results import write_results
from reports.tables import scores_table

HELP = "attack a model white-box (FGSM, MI-FGSM, PGD, APGD, SegPGD, CosPGD, SEA): clean and adversarial scores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, refused=WHITE_BOX_REFUSED)
    parser.add_argument("--attack", required=True, choices=AttackNameChoices(), metavar="NAME",
                        help=f"the attack: {ATTACK_NAMES_HELP}; N: steps (or --steps)")
    parser.add_argument("--steps", type=int_in(1, MAX_STEPS), metavar="N",
                        help=f"iterations, 1-{MAX_STEPS} (default: 100 for apgd-* and sea, 20 for the others)")
    parser.add_argument("--alpha", type=pixel_scale,
                        help="step size on the 0-255 scale, in (0, 255] (default: pgd eps/4, mifgsm eps/steps)")
    parser.add_argument("--decay", type=float_in(0, MAX_DECAY),
                        help=f"mifgsm momentum decay mu, in [0, {MAX_DECAY:g}] (default 1.0)")
    parser.add_argument("--save-adv", metavar="DIR",
                        help="save the adversarial images (exact float32) with their provenance to DIR")
    add_run_arguments(parser)


def attack_from_args(args: argparse.Namespace) -> Attack:
    """The attack ``--attack`` names, with ``--steps``, ``--alpha`` and ``--decay`` where given (a name that
    carries its steps, e.g. pgd-20, takes no --steps; a worst case A+B takes none of the three)."""
    name, options = args.attack, (args.steps, args.alpha, args.decay)
    if all(v is None for v in options) or name in WHITEBOX_ATTACKS:
        if name in WHITEBOX_ATTACKS:
            return make_attack(name, args.eps, args.steps, args.alpha, args.decay)
        return attacks_from_names([name], args.eps, "--attack")[0]
    if "+" in name:
        raise HarnessError(f"--attack {name}: a worst case of several attacks takes no --steps, --alpha or --decay; "
                           "put each member's steps in its name (e.g. apgd-ce-50+pgd-50)")
    parsed = parse_attack_name(name)
    assert parsed is not None  # argparse checked the name
    if parsed.steps is not None and args.steps is not None:
        raise HarnessError(f"--attack {name} names its steps ({parsed.steps}); drop --steps {args.steps} or the "
                           f"-{parsed.steps}")
    full = name if args.steps is None else f"{name}-{args.steps}"
    return make_attack(full, args.eps, None, args.alpha, args.decay)


def run(args: argparse.Namespace) -> int:
    attack = attack_from_args(args)
    check_outputs({"--json": args.json}, {"--save-adv": args.save_adv})
    args.device = resolve_device(args.device)
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    target = target_from_args(args, data)
    model, source = torch_model(target, data)
    model.to(args.device)
    with gradient_progress() as progress:
        task = progress.add_task(f"{target.name} {attack.label}", total=len(data) * attack.iterations)
        evaluation = run_attack(model, data, attack, args, progress, task, keep_adversarial=bool(args.save_adv))
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in attack.params().items())
    console.print(scores_table(
        f"{target_title(target)} under {attack.label} ({params}) on {data.name} {data.split}, "
        f"{len(data)} images, {evaluation.clean.n_pixels} labelled pixels (values in %)",
        data.class_names, [("clean", evaluation.clean), (attack.label, evaluation.attacked)]))
    console.print(f"attack time {evaluation.attack_seconds:.1f} s for {evaluation.queries} image gradients "
                  f"({1000 * evaluation.attack_seconds / max(evaluation.queries, 1):.1f} ms each)")
    if args.save_adv:
        path = save_examples(args.save_adv, target, source, data, attack, evaluation, args)
        console.print(f"wrote {path}")
    if args.json:
        write_results(args.json, attack_records(target, source, data, attack, evaluation, args))
        console.print(f"wrote {args.json}")
    return 0
