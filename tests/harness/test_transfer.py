"""Transfer evaluation (issue 6): ``python -m harness transfer`` and the harness.transfer API.

Two briefly trained reduced models (one per backbone family), 8 images and 2-step attacks keep
this file at about a minute or two on two CPU cores.
"""

import argparse
import json

import numpy as np
import pytest
import torch

from engines.availability import tensorrt_missing
from harness.attacks import make_attack
from harness.attacks.store import load_adversarial, save_adversarial
from harness.checkpoints import default_checkpoint_path, load_checkpoint, save_checkpoint
from harness.cli import main
from harness.commands.common import load_model
from harness.data import SegmentationData, data_key
from harness.errors import HarnessError
from harness.transfer import (
    EngineChoice,
    TransferSettings,
    adversarial_examples,
    engine_choices,
    example_provenance,
    load_models,
    parse_attacks,
    run_transfer,
)
from reports.tables import deployment_gap_table, transfer_table

VGG, RESNET = "fcn8s-vgg16", "fcn-resnet50"  # the models the other tests train too
N_IMAGES = 8
ATTACKS = "mifgsm-2,pgd-2"


@pytest.fixture(scope="module")
def models(trained_model, synthetic_val):
    for name in (VGG, RESNET):
        trained_model(name)  # trains once per session and caches the checkpoint where the CLI looks
    return load_models([VGG, RESNET], synthetic_val.subset(N_IMAGES))


@pytest.fixture(scope="module")
def transfer_run(models, tmp_path_factory):
    """One CLI run through torch and ort on both models: (exit code, stdout, stderr, records)."""
    results = tmp_path_factory.mktemp("transfer") / "transfer.json"
    argv = ["transfer", "--sources", f"{VGG},{RESNET}", "--targets", f"{VGG},{RESNET}", "--engines", "torch,ort",
            "--attacks", ATTACKS, "--n-images", str(N_IMAGES), "--json", str(results)]
    code = main(argv)
    records = json.loads(results.read_text())["results"] if results.is_file() else []
    return code, records


def test_cli_prints_table_2_and_the_deployment_gap_and_writes_records(transfer_run, capsys):
    code, records = transfer_run
    assert code == 0
    clean = [r for r in records if r["attack"] == "none"]
    adversarial = [r for r in records if r["attack"] != "none"]
    # 2 targets x 2 engines: one clean record and 2 sources x 2 attacks.
    assert len(clean) == 4 and len(adversarial) == 16
    assert all("source_model" not in r for r in clean)
    assert {(r["model"], r["engine"], r["precision"]) for r in clean} == {
        (m, e, "fp32") for m in (VGG, RESNET) for e in ("torch", "ort")}
    for r in adversarial:
        assert r["source_engine"] == "torch" and r["source_precision"] == "fp32"
        assert r["white_box"] == (r["source_model"] == r["model"])
        assert r["n_images"] == N_IMAGES and r["queries"] == N_IMAGES and 0 <= r["pixel_accuracy"] <= 1
        assert r["params"]["eps"] == 8.0 and r["params"]["steps"] == 2 and r["params"]["seed"] == 0
    by_key = {(r["model"], r["engine"], r["attack"], r.get("source_model")): r for r in records}
    for model in (VGG, RESNET):
        # The exported fp32 graph is the same function as the PyTorch model.
        for attack in ("none", "mifgsm", "pgd"):
            source = None if attack == "none" else model
            torch_acc = by_key[model, "torch", attack, source]["pixel_accuracy"]
            assert abs(by_key[model, "ort", attack, source]["pixel_accuracy"] - torch_acc) < 0.005
        # White-box examples hurt more than the clean images.
        assert by_key[model, "torch", "pgd", model]["pixel_accuracy"] < by_key[model, "torch", "none", None][
            "pixel_accuracy"]


def test_table_output(transfer_run, run_cli):
    # Same settings as transfer_run: every example set comes from the cache.
    code, out, err = run_cli(["transfer", "--sources", f"{VGG},{RESNET}", "--targets", f"{VGG},{RESNET}",
                              "--engines", "torch", "--attacks", ATTACKS, "--n-images", str(N_IMAGES),
                              "--metric", "both"])
    assert code == 0, err
    assert "Table 2, targets on torch fp32" in out and "Deployment gap" in out
    assert "pixel accuracy (%)" in out and "mIoU (%)" in out
    assert "mifgsm-2" in out and "pgd-2" in out and "*" in out
    assert "4 reused from the cache" in out


def test_diagonal_equals_the_whitebox_command_for_the_same_examples(transfer_run, tmp_path, run_cli):
    _, records = transfer_run
    whitebox = tmp_path / "whitebox.json"
    code, _, err = run_cli(["whitebox", "--models", VGG, RESNET, "--columns", ATTACKS, "--n-images", str(N_IMAGES),
                            "--json", str(whitebox)])
    assert code == 0, err
    expected = {(r["model"], r["attack"]): r for r in json.loads(whitebox.read_text())["results"]}
    diagonal = [r for r in records if r["engine"] == "torch" and r.get("white_box")]
    assert len(diagonal) == 4
    for r in diagonal:
        w = expected[r["model"], r["attack"]]
        assert w["params"] == r["params"]
        assert (r["pixel_accuracy"], r["mean_iou"]) == (w["pixel_accuracy"], w["mean_iou"])
    for r in records:
        if r["engine"] == "torch" and r["attack"] == "none":
            assert r["pixel_accuracy"] == expected[r["model"], "none"]["pixel_accuracy"]

    # The stored examples are exactly those `attack --save-adv` writes.
    adv_dir = tmp_path / "adv"
    code, _, err = run_cli(["attack", "--model", VGG, "--attack", "pgd", "--steps", "2", "--n-images", str(N_IMAGES),
                            "--save-adv", str(adv_dir)])
    assert code == 0, err
    (saved,) = adv_dir.iterdir()
    stored = load_adversarial(next(p for p in _cache_files() if f"{VGG}--reduced--pgd-2--" in p.name))
    assert np.array_equal(load_adversarial(saved).images, stored.images)


def _cache_files():
    from harness.fileio import cache_dir

    return sorted((cache_dir() / "adversarial").glob("*.npz"))


def test_cached_examples_are_reused_only_when_provenance_matches(models, synthetic_val, tmp_path):
    data = synthetic_val.subset(4)
    attack = make_attack("pgd", 8, 1)
    settings = TransferSettings(seed=3)
    first = adversarial_examples(VGG, models[VGG], data, attack, settings)
    again = adversarial_examples(VGG, models[VGG], data, attack, settings)
    assert not first.reused and again.reused and again.path == first.path
    assert np.array_equal(first.examples.images, again.examples.images)
    p = again.examples.provenance
    assert p["source_model"] == VGG and p["checkpoint_sha256"] == models[VGG][1]["sha256"]
    assert p["attack"] == "pgd" and p["params"] == attack.params() and p["seed"] == 3

    # Another seed, other images, other parameters: crafted anew.
    assert not adversarial_examples(VGG, models[VGG], data, attack, TransferSettings(seed=4)).reused
    assert not adversarial_examples(VGG, models[VGG], synthetic_val.subset(3), attack, settings).reused
    assert not adversarial_examples(VGG, models[VGG], data, make_attack("pgd", 4, 1), settings).reused
    edited = data.images.copy()
    edited[0, 0, 0] ^= 1  # one image edited in place: same ids, other pixels
    same_ids = SegmentationData(data.name, data.split, data.class_names, edited, data.labels, data.ids, data.params)
    assert not adversarial_examples(VGG, models[VGG], same_ids, attack, settings).reused

    # A file at the expected place whose provenance does not match is replaced, not trusted.
    provenance = example_provenance(VGG, models[VGG][1], data, attack, settings)
    save_adversarial(first.path, first.examples.images, data.labels, list(data.ids), {**provenance, "seed": 99})
    replaced = adversarial_examples(VGG, models[VGG], data, attack, settings)
    assert not replaced.reused and load_adversarial(first.path).provenance["seed"] == 3
    assert np.array_equal(replaced.examples.images, first.examples.images)

    # A changed checkpoint (other weights, other sha256) never reuses the old examples.
    model, meta = load_checkpoint(default_checkpoint_path(VGG, "reduced", data_key(synthetic_val)))
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)
    changed = tmp_path / "changed.safetensors"
    save_checkpoint(changed, model, {k: v for k, v in meta.items() if k not in ("versions", "created")})
    args = argparse.Namespace(model=VGG, size="reduced", checkpoint=str(changed), weights=None, data="synthetic")
    loaded = load_model(args, data)
    recrafted = adversarial_examples(VGG, loaded, data, attack, settings)
    assert not recrafted.reused and recrafted.path != first.path
    assert recrafted.examples.provenance["checkpoint_sha256"] == loaded[1]["sha256"] != models[VGG][1]["sha256"]
    assert not np.array_equal(recrafted.examples.images, first.examples.images)
    assert adversarial_examples(VGG, loaded, data, attack, settings).reused


def test_api_checks_before_any_work(models, synthetic_val):
    data = synthetic_val.subset(2)
    attacks = parse_attacks("fgsm", 8)
    with pytest.raises(HarnessError, match="calibration"):
        run_transfer(models, [VGG], [VGG], [EngineChoice("ort", "int8")], attacks, data, TransferSettings())
    with pytest.raises(HarnessError, match="not loaded"):
        run_transfer({}, [VGG], [VGG], [EngineChoice("torch", "fp32")], attacks, data, TransferSettings())


def test_parsing():
    assert [a.label for a in parse_attacks("mifgsm,pgd20", 8)] == ["mifgsm-20", "pgd-20"]
    assert [a.label for a in parse_attacks("fgsm, mifgsm-5,pgd", 4)] == ["fgsm", "mifgsm-5", "pgd-20"]
    assert engine_choices(["torch", "ort"], ["fp32", "int8"]) == [
        EngineChoice("torch", "fp32"), EngineChoice("ort", "fp32"), EngineChoice("ort", "int8")]
    for bad in ("mifgsm,cw", "fgsm3", "pgd-20,pgd20", ","):
        with pytest.raises(HarnessError):
            parse_attacks(bad, 8)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--sources", "fcn8s-vgg16,unet", "unknown model 'unet' in --sources"),
    ("--targets", "fcn32s", "unknown model 'fcn32s' in --targets"),
    ("--engines", "torch,tflite", "unknown engine 'tflite' in --engines"),
    ("--precisions", "fp32,bf16", "unknown precision 'bf16' in --precisions"),
    ("--attacks", "mifgsm,cw", "unknown attack 'cw' in --attacks"),
    ("--eps", "300", "'300' is outside (0, 255]"),
])
def test_cli_errors_are_one_line_with_exit_2(option, value, message, run_cli):
    code, out, err = run_cli(["transfer", option, value])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_torch_alone_runs_no_int8_and_trt_without_gpu_is_the_factorys_error(run_cli):
    code, _, err = run_cli(["transfer", "--engines", "torch", "--precisions", "int8"])
    assert code == 2 and "torch runs fp32 only" in err and len(err.strip().splitlines()) == 1
    reason = tensorrt_missing()
    if reason is None:
        pytest.skip("TensorRT is usable here")
    code, _, err = run_cli(["transfer", "--engines", "torch,trt"])
    assert code == 2 and err.startswith("error: engine trt on cuda is not usable here: ")
    assert len(err.strip().splitlines()) == 1


def test_tables_mark_white_box_cells_and_highlight_gaps():
    def record(model, engine, precision, attack, acc, source=None):
        r = {"model": model, "engine": engine, "precision": precision, "attack": attack, "params": {"steps": 20},
             "pixel_accuracy": acc, "mean_iou": acc / 2}
        return r if source is None else {**r, "source_model": source}

    records = [record("a", "torch", "fp32", "none", 0.9), record("b", "torch", "fp32", "none", 0.8),
               record("a", "torch", "fp32", "pgd", 0.1, "a"), record("b", "torch", "fp32", "pgd", 0.7, "a"),
               record("a", "ort", "int8", "none", 0.85), record("a", "ort", "int8", "pgd", 0.105, "a")]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(transfer_table("T2", records))
    text = console.export_text()
    assert "10.00*" in text and "70.00 " in text and "70.00*" not in text and "clean" in text
    console.print(deployment_gap_table("gap", records))
    text = console.export_text()
    assert "85.00 (-5.0)" in text and "10.50 " in text and "(+0.5)" not in text
