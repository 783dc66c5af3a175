"""``python -m harness attack | whitebox | sweep`` end to end on a trained reduced model."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.attacks.store import load_adversarial
from harness.checkpoints import default_checkpoint_path
from harness.data import data_key
from harness.fileio import sha256_file
from harness.metrics import ConfusionMatrix

MODEL = "fcn8s-vgg16"


@pytest.fixture(scope="module")
def checkpoint(trained_model, synthetic_train):
    trained_model(MODEL)  # trains once per session and caches the checkpoint where the CLI looks
    return default_checkpoint_path(MODEL, "reduced", data_key(synthetic_train))


def test_attack_prints_both_scores_writes_records_and_exact_examples(checkpoint, synthetic_val, tmp_path, run_cli):
    results, adv_dir = tmp_path / "r.json", tmp_path / "adv"
    code, out, err = run_cli(["attack", "--model", MODEL, "--attack", "pgd", "--steps", "2", "--n-images", "3",
                              "--batch-size", "2", "--seed", "4", "--json", str(results),
                              "--save-adv", str(adv_dir)])
    assert code == 0, err
    assert "clean" in out and "pgd-2" in out and "mIoU" in out  # narrow consoles wrap "pixel acc"
    clean, adv = json.loads(results.read_text())["results"]
    assert clean["attack"] == "none" and clean["params"] == {} and clean["n_images"] == 3
    assert adv["attack"] == "pgd" and adv["params"] == {"eps": 8.0, "steps": 2, "alpha": 2.0,
                                                         "random_start": True, "seed": 4}
    assert adv["queries"] == 6 and adv["seconds"] > 0 and adv["weights_sha256"] == sha256_file(checkpoint)

    (saved,) = adv_dir.iterdir()
    examples = load_adversarial(saved)
    p = examples.provenance
    assert p["attack"] == "pgd" and p["params"]["eps"] == 8.0 and p["seed"] == 4
    assert p["source_model"] == MODEL and p["checkpoint_sha256"] == sha256_file(checkpoint)
    assert examples.ids == synthetic_val.ids[:3]
    images, labels = synthetic_val.tensors(slice(0, 3))
    assert np.array_equal(examples.labels, labels.numpy())
    assert np.abs(examples.images - images.numpy()).max() <= 8 / 255 + 1e-6
    # Lossless: the saved images give exactly the adversarial score that was reported.
    from harness.checkpoints import load_checkpoint

    model = load_checkpoint(checkpoint)[0]
    confusion = ConfusionMatrix(7)
    with torch.no_grad():
        confusion.update(model(torch.from_numpy(examples.images)).argmax(1), labels)
    assert confusion.scores().pixel_accuracy == adv["pixel_accuracy"]


def test_whitebox_table(checkpoint, tmp_path, run_cli):
    results = tmp_path / "t1.json"
    code, out, err = run_cli(["whitebox", "--models", MODEL, "--columns", "fgsm,mifgsm-2,pgd-2", "--n-images", "2",
                              "--json", str(results)])
    assert code == 0, err
    assert "pixel accuracy" in " ".join(out.split()) and "mIoU" in out and "mifgsm-2" in out  # titles wrap
    records = json.loads(results.read_text())["results"]
    assert [(r["attack"], r["params"].get("steps")) for r in records] == [
        ("none", None), ("fgsm", None), ("mifgsm", 2), ("pgd", 2)]
    assert all(r["model"] == MODEL and r["n_images"] == 2 for r in records)


def test_sweep_writes_json_and_png(checkpoint, tmp_path, run_cli):
    results, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    code, out, err = run_cli(["sweep", "--models", MODEL, "--sweep-steps", "2,1", "--n-images", "2",
                              "--json", str(results), "--png", str(png)])
    assert code == 0, err
    records = json.loads(results.read_text())["results"]
    assert [(r["attack"], r["params"].get("steps"), r["params"].get("alpha")) for r in records] == [
        ("none", None, None), ("pgd", 1, 8.0), ("pgd", 2, 4.0)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD = [
    (["attack", "--model", MODEL, "--attack", "pgd", "--eps", "0"], "--eps: '0' is outside (0, 255]"),
    (["attack", "--model", MODEL, "--attack", "pgd", "--eps", "-2"], "outside (0, 255]"),
    (["attack", "--model", MODEL, "--attack", "fgsm", "--eps", "256"], "outside (0, 255]"),
    (["attack", "--model", MODEL, "--attack", "mifgsm", "--eps", "nan"], "--eps: 'nan' is not a finite number"),
    (["attack", "--model", MODEL, "--attack", "pgd", "--steps", "0"], "--steps: '0' is outside [1, 100000]"),
    (["attack", "--model", MODEL, "--attack", "pgd", "--steps", "-5"], "is outside [1, 100000]"),
    (["attack", "--model", MODEL, "--attack", "cw"], "invalid choice: 'cw'"),
    (["attack", "--model", MODEL, "--attack", "fgsm", "--steps", "3"], "fgsm takes exactly one step"),
    (["attack", "--model", MODEL, "--attack", "pgd", "--alpha", "0"], "--alpha: '0' is outside"),
    (["attack", "--model", MODEL, "--attack", "pgd", "--device", "tpu"], "--device"),
    (["attack", "--model", MODEL, "--attack", "pgd", "--checkpoint", "/nonexistent.safetensors"],
     "does not exist"),
    (["whitebox", "--columns", "fgsm,pgd-x"], "unknown column 'pgd-x'"),
    (["whitebox", "--columns", "pgd-20,pgd20"], "--columns names the same column twice"),
    (["whitebox", "--columns", "pgd-20,pgd-20"], "twice"),
    (["whitebox", "--eps", "300"], "outside (0, 255]"),
    (["sweep", "--sweep-steps", "0,20"], "must be in [1, 100000]"),
    (["sweep", "--sweep-steps", "twenty"], "comma-separated integers"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, run_cli):
    code, out, err = run_cli(argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_input_from_a_shell(session_cache):
    proc = subprocess.run([sys.executable, "-m", "harness", "attack", "--model", MODEL, "--attack", "pgd",
                           "--eps", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("python -m harness attack: error: argument --eps: '0' is outside (0, 255]")
    assert len(proc.stderr.strip().splitlines()) == 1
