"""What the model-card adapter adds to an ONNX Runtime call: its time against the engine call's, side by side.

The reduced fcn-resnet50 (random weights, seed 0) is exported to ONNX in a temporary folder and opened in an
ONNX Runtime session (CPU, the engine's options). Per batch of 16 images of 64x64 px, each row times the
adapter of one card (``Adapter.to_model_numpy`` on the images plus ``Adapter.to_logits_numpy`` on an output in
the card's convention) against ``session.run`` on the same batch. The engine's output is turned into each
card's convention once, before the timing (softmax for probabilities, one channel for sigmoid, every fourth
pixel for a quarter-resolution output...), so the adapter does exactly the work a target with that card
costs; the engine runs on what the card feeds it where this graph takes it (the fixed size's smaller images),
else on the images. Engine call and adapter calls alternate ``--repeats`` times (so a change in the machine's
load affects both alike); each is the median of its calls. Both run on ``--threads`` threads (default 1) and
are measured in process CPU time, which time slices lost to other processes on a shared machine do not
inflate; the wall-clock overhead is shown beside it. Target: the adapter's time at most 5 % of the engine
call's for the boundary card and for normalisation outside the graph (exit 1 when missed); the other rows,
whose conversion of every output score (a log, a transpose, a resize, a one-hot) the model's own convention
requires, show their cost without a gate.

    .venv/bin/python benchmarks/adapter_overhead.py [--repeats 15] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.05
MODEL = "fcn-resnet50"
NUM_CLASSES = 7
BATCH, SIDE = 16, 64
ADAPTER_CALLS_PER_REPEAT = 5  # the adapter is short: several calls per repeat keep the timer's noise small

# Row name -> (card TOML, how the engine's logits become the card's output, gated). The cards cover every path.
# Gated rows (exit 1 above TARGET): the adapter as every engine call of a target pays it, the boundary card and
# normalisation outside the graph. The other rows add a conversion of every output score that the model's
# convention itself requires (a log, a transpose, a resize, a one-hot): shown with their cost, not gated.
CARDS: dict[str, tuple[str, str, bool]] = {
    "boundary (identity)": ("", "logits", True),
    "255 bgr imagenet, logits": ('[input]\nchannels = "bgr"\nscale = 255\nmean = "imagenet"\nstd = "imagenet"\n',
                                 "logits", True),
    "grey fp16, log-probabilities": ('[input]\nchannels = "grey"\ndtype = "float16"\nmean = [0.5]\nstd = [0.25]\n'
                                     '[output]\nkind = "log_probabilities"\n', "log_probabilities", False),
    "sigmoid, NHW": ('num_classes = 2\n[input]\nscale = 255\n[output]\nkind = "sigmoid"\nlayout = "NHW"\n',
                     "sigmoid", False),
    "class map, NHW": (f'num_classes = {NUM_CLASSES}\n[input]\nscale = 255\n[output]\nkind = "class_map"\n'
                       'layout = "NHW"\n', "class_map", False),
    "uint8 NHWC, NHWC logits": ('[input]\nlayout = "NHWC"\ndtype = "uint8"\nscale = 255\n[output]\n'
                                'layout = "NHWC"\n', "nhwc", False),
    "imagenet, probabilities": ('[input]\nmean = "imagenet"\nstd = "imagenet"\n[output]\nkind = "probabilities"\n',
                                "probabilities", False),
    "quarter-resolution logits": ('[input]\nmean = "imagenet"\n[output]\nresolution = "reduced"\n', "quarter",
                                  False),
    "fixed 48x48 input": ('[input]\nsize = [48, 48]\n', "fixed", False),
}


def _convention(logits: Any, how: str) -> Any:
    """The engine's logits (N, K, H, W) as the output of a model with the card's convention."""
    import numpy as np
    import torch

    t = torch.from_numpy(logits)
    if how == "probabilities":
        return torch.softmax(t, 1).numpy()
    if how == "log_probabilities":
        return torch.log_softmax(t, 1).numpy()
    if how == "nhwc":
        return np.ascontiguousarray(logits.transpose(0, 2, 3, 1))
    if how == "quarter":
        return np.ascontiguousarray(logits[:, :, ::4, ::4])
    if how == "fixed":
        return torch.nn.functional.interpolate(t, size=(48, 48), mode="bilinear", align_corners=False).numpy()
    if how == "sigmoid":
        return np.ascontiguousarray(torch.softmax(t, 1)[:, 1].numpy())
    if how == "class_map":
        return logits.argmax(1)
    return logits


def _export(directory: str) -> str:
    """The reduced fcn-resnet50 (random weights, seed 0) as an fp32 ONNX file in ``directory``."""
    import torch

    from exporters.onnx_export import export_onnx
    from harness.models import build_model

    torch.manual_seed(0)
    path = str(Path(directory) / f"{MODEL}.fp32.onnx")
    export_onnx(build_model(MODEL, NUM_CLASSES, "reduced"), path, {"model": MODEL, "size": "reduced"})
    return path


def _session(path: str, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the engine does
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _measure(session: Any, images: Any, repeats: int) -> list[dict[str, Any]]:
    """Per card: the median engine call and the median adapter call (to_model_numpy + to_logits_numpy)."""
    import numpy as np

    from harness.targets.adapter import Adapter
    from harness.targets.card import parse_card

    name = session.get_inputs()[0].name
    logits = session.run(None, {name: images})[0]
    rows = []
    for label, (text, how, gated) in CARDS.items():
        adapter = Adapter(parse_card(text, label))
        fed = adapter.to_model_numpy(images)
        # The engine runs on what the card feeds it where this graph takes that (a fixed size: the smaller
        # images); the other conventions (uint8, NHWC, grey, fp16) are timed on the images themselves.
        fed = fed if fed.dtype == np.float32 and fed.ndim == 4 and fed.shape[1] == 3 else images
        output = _convention(logits, how)
        check = adapter.to_logits_numpy(output, (SIDE, SIDE))  # warm-up, and the conversion is sane
        assert check.shape[::2] == (BATCH, SIDE) and check.shape[3] == SIDE and check.dtype == np.float32, label
        rows.append({"card": label, "gated": gated, "adapter": adapter, "fed": fed, "output": output,
                     "engine": {"cpu": [], "wall": []}, "adapter_calls": {"cpu": [], "wall": []}})
    session.run(None, {name: images})  # warm-up
    for _ in range(repeats):
        for row in rows:
            fed, adapter, output = row["fed"], row["adapter"], row["output"]
            _timed(row["engine"], 1, session.run, None, {name: fed})
            _timed(row["adapter_calls"], ADAPTER_CALLS_PER_REPEAT, _adapt, adapter, images, output)
    out = []
    for row in rows:
        result: dict[str, Any] = {"card": row["card"], "gated": row["gated"], "engine_input": list(row["fed"].shape)}
        for clock in ("cpu", "wall"):
            engine = statistics.median(row["engine"][clock])
            adapter = statistics.median(row["adapter_calls"][clock])
            result[clock] = {"engine_seconds": engine, "adapter_seconds": adapter, "overhead": adapter / engine}
        result["within_target"] = result["cpu"]["overhead"] <= TARGET
        out.append(result)
    return out


def _adapt(adapter: Any, images: Any, output: Any) -> None:
    """What the adapter adds to one engine call: the images in, the output back."""
    adapter.to_model_numpy(images)
    adapter.to_logits_numpy(output, (SIDE, SIDE))


def _timed(into: dict[str, list[float]], calls: int, work: Any, *args: Any) -> None:
    """Append the CPU time and the wall time per call of ``calls`` calls of ``work(*args)`` to ``into``."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        work(*args)
    into["cpu"].append((time.process_time() - cpu) / calls)
    into["wall"].append((time.perf_counter() - wall) / calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="alternating engine/adapter rounds (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="threads of ONNX Runtime and torch (default 1)")
    parser.add_argument("--out", help="JSON output (default: HARNESS_CACHE/benchmarks/adapter_overhead.json)")
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= 1000:
        parser.error("--repeats must be in 1..1000")
    if not 1 <= args.threads <= 256:
        parser.error("--threads must be in 1..256")

    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from harness.errors import HarnessError
    from harness.fileio import cache_dir, check_output_file, write_json_atomic
    from reports.results import environment

    console = Console()
    try:
        out_path = check_output_file(args.out or cache_dir() / "benchmarks" / "adapter_overhead.json", "--out")
        torch.set_num_threads(args.threads)
        images = torch.rand(BATCH, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0)).numpy()
        with tempfile.TemporaryDirectory(prefix="adapter-overhead-") as tmp:
            session = _session(_export(tmp), args.threads)
            rows = _measure(session, np.ascontiguousarray(images), args.repeats)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

    table = Table(title=f"reduced {MODEL}, ONNX Runtime CPU, {BATCH} images of {SIDE} px, {args.threads} thread(s): "
                        f"CPU ms per call (median of {args.repeats} rounds), wall-clock overhead beside it",
                  box=box.SIMPLE_HEAD)
    for header in ("card", "engine ms", "adapter ms", "overhead", "wall overhead", f"<= {TARGET:.0%}"):
        table.add_column(header, no_wrap=True, justify="left" if header == "card" else "right")
    for r in rows:
        cpu = r["cpu"]
        table.add_row(r["card"], f"{cpu['engine_seconds'] * 1e3:.2f}", f"{cpu['adapter_seconds'] * 1e3:.3f}",
                      f"{cpu['overhead']:.2%}", f"{r['wall']['overhead']:.2%}",
                      ("yes" if r["within_target"] else "NO") if r["gated"] else "(not gated)")
    console.width = max(console.width, 100)
    console.print(table)
    try:
        write_json_atomic(out_path, {"benchmark": "adapter_overhead", "model": MODEL, "size": "reduced",
                                     "batch_size": BATCH, "image_size": SIDE, "threads": args.threads,
                                     "repeats": args.repeats, "target_overhead": TARGET,
                                     "environment": environment(), "rows": rows})
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    console.print(f"wrote {out_path}")
    missed = [r["card"] for r in rows if r["gated"] and not r["within_target"]]
    if missed:
        print(f"error: the adapter adds more than {TARGET:.0%} to the engine call for: {', '.join(missed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
