"""``eval``: clean pixel accuracy, mean IoU and per-class IoU of a model on a data split.

Evaluation runs through an Engine (``--engine torch|ort|trt``, ``--precision``, ``--device``), so
every engine and precision is scored by the same code on the same images.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engines.base import engine_predictor
from harness import distributed
from harness.commands.common import add_data_arguments, console, data_from_args, int_in
from harness.commands.engine_options import add_engine_arguments, target_engine_from_args
from harness.commands.target_options import add_target_arguments, record_fields, target_from_args, target_title
from harness.evaluation import evaluate
from harness.fileio import check_outputs
from harness.limits import MAX_BATCH, MAX_IMAGES
from harness.threads import set_threads
from reports.results import make_record, write_results
from reports.tables import scores_table

HELP = "evaluate a model on clean images through any engine: pixel accuracy, mean IoU, per-class IoU"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    add_engine_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--n-images", type=int_in(1, MAX_IMAGES), metavar="N",
                        help=f"evaluate the first N images, 1-{MAX_IMAGES} (default: all)")
    parser.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=32, metavar="N",
                        help=f"images per batch, 1-{MAX_BATCH} (default 32)")
    parser.add_argument("--json", metavar="FILE", help="write results.json (README: Results schema) to FILE")


def run(args: argparse.Namespace) -> int:
    check_outputs({"--json": args.json})
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    target = target_from_args(args, data)
    with target_engine_from_args(args, target, data) as engine:
        start = time.perf_counter()
        scores = evaluate(engine_predictor(engine), data, args.batch_size)
        seconds = time.perf_counter() - start
        info, engine_seconds = engine.info, engine.seconds
        queries = int(distributed.sum_over_ranks(np.array([engine.queries], np.int64))[0])  # all ranks' images
    console.print(scores_table(f"{target_title(target)}, {info.name} {info.precision} on {info.device}, "
                               f"{data.name} {data.split}, {len(data)} images, {scores.n_pixels} labelled pixels "
                               "(values in %)", data.class_names, [("clean", scores)]))
    if args.json:
        record = make_record(model=target.name, engine=info.name, precision=info.precision, attack="none",
                             params={}, n_images=len(data), scores=scores, queries=queries, seconds=seconds,
                             **record_fields(target), data=data.describe(),
                             weights_sha256=target.sha256 or info.artifact_sha256,
                             engine_info=info.as_dict(), engine_seconds=round(engine_seconds, 4))
        write_results(args.json, [record])
        console.print(f"wrote {args.json}")
    return 0
