"""Suite files: the built-in default, a valid custom suite, and one-line errors naming the key."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.suite.config import load_suite, parse_suite

MINIMAL = """
[models]
names = ["fcn8s-vgg16", "fcn-resnet50"]
"""


def test_the_built_in_default_suite_runs_every_experiment_on_the_four_models():
    suite = load_suite()
    assert suite.name == "default" and suite.source == "built-in default"
    assert suite.models.names == ("fcn8s-vgg16", "fcn16s-vgg16", "fcn-resnet50", "fcn-resnet101")
    assert None not in (suite.whitebox, suite.sweep, suite.square, suite.transfer, suite.examples)
    assert suite.whitebox.skip["fcn-resnet50"] == ("pgd-200",)
    assert suite.sweep.steps == (20, 40, 60, 80, 100)
    assert suite.square.inits == ("vertical", "horizontal")
    assert ("ort", "int8") in suite.deployment.pairs() and ("torch", "int8") not in suite.deployment.pairs()


def test_a_minimal_suite_runs_no_experiment_and_takes_the_defaults():
    suite = parse_suite(MINIMAL, "minimal.toml")
    assert suite.whitebox is suite.sweep is suite.square is suite.transfer is suite.examples is None
    assert suite.data.source == "synthetic" and suite.batch_size == 16
    assert suite.check.tolerance == 1.0 and suite.check.attack_tolerance == {}


def test_a_custom_suite_is_read_with_its_values():
    suite = parse_suite(MINIMAL + """
[models.epochs]
fcn8s-vgg16 = 2
[whitebox]
columns = ["fgsm", "pgd-3"]
n_images = 4
eps = 4.5
skip = { fcn8s-vgg16 = ["pgd-3"] }
[sweep]
models = ["fcn-resnet50"]
steps = [3, 1]
[square]
queries = 10
inits = ["horizontal"]
precision = "int8"
[examples]
model = "fcn-resnet50"
attack = "pgd-3"
n_images = 2
[check]
tolerance = 0.5
attack_tolerance = { square = 3 }
""", "custom.toml")
    assert suite.models.epochs == {"fcn8s-vgg16": 2}
    assert suite.whitebox.columns == ("fgsm", "pgd-3") and suite.whitebox.eps == 4.5
    assert suite.sweep.steps == (1, 3)  # sorted: the curve's x axis
    assert suite.square.models == ("fcn8s-vgg16",) and suite.square.precision == "int8"
    assert suite.check.attack_tolerance == {"square": 3.0}


@pytest.mark.parametrize("extra, message", [
    ("colour = 1", "custom.toml: [models] colour: unknown key"),
    ("[whitebox]\nstep = 3", "[whitebox] step: unknown key"),
    ("[plots]\nx = 1", "plots: unknown key"),
    ("[sweep]\nmodels = [\"fcn-resnet50\"]\nsteps = [20]\nimages = 4", "[sweep] images: unknown key"),
])
def test_an_unknown_key_is_named(extra, message):
    with pytest.raises(HarnessError, match=r"^custom\.toml: ") as error:
        parse_suite(MINIMAL + extra, "custom.toml")
    assert message in str(error.value)


def test_an_unknown_top_level_key_is_named():
    with pytest.raises(HarnessError, match=r"^custom\.toml: colour: unknown key \(known here: batch_size, check"):
        parse_suite("colour = 1\n" + MINIMAL, "custom.toml")


@pytest.mark.parametrize("extra, message", [
    ("[whitebox]\nn_images = 0", "[whitebox] n_images: expected an integer in [1, 1000000], got 0"),
    ("[whitebox]\nn_images = \"4\"", "[whitebox] n_images: expected an integer in [1, 1000000], got '4'"),
    ("[whitebox]\neps = 300", "[whitebox] eps: 300 is outside (0, 255]"),
    ("[whitebox]\ncolumns = [\"pgd-x\"]", "[whitebox] columns: 'pgd-x' is not an attack column"),
    ("[whitebox]\ncolumns = [\"fgsm\"]\nskip = { fcn16s-vgg16 = [\"fgsm\"] }", "[whitebox] skip.fcn16s-vgg16: not one"),
    ("[sweep]\nsteps = [20, 20]", "[sweep] steps: names a value twice"),
    ("[sweep]\nmodels = [\"fcn-resnet101\"]", "[sweep] models: 'fcn-resnet101' is not one of"),
    ("[square]\nprecision = \"int4\"", "[square] precision: 'int4' is not one of fp32, fp16, int8"),
    ("[square]\nengine = \"torch\"\nprecision = \"int8\"", "[square] precision: 'int8' is not one of fp32"),
    ("[square]\np_init = 0", "[square] p_init: expected a fraction in (0, 1]"),
    ("[deployment]\nengines = [\"tensorflow\"]", "[deployment] engines: 'tensorflow' is not one of"),
    ("[deployment]\nengines = [\"torch\"]\nprecisions = [\"int8\"]", "[deployment] precisions: no engine"),
    ("[examples]\nattack = \"pgd-20\"", "[examples] attack: 'pgd-20' must be a [whitebox] column"),
    ("[check]\ntolerance = -1", "[check] tolerance: expected a finite number >= 0"),
    ("[check]\nattack_tolerance = { square = \"2\" }", "[check] attack_tolerance.square: expected a number"),
    ("[data]\nsource = \"voc\"", "[data] root: data source voc needs root"),
    ("[data]\nimage_size = 16", "[data] image_size: expected an integer in [32, 512]"),
    ("batch_size = true", "batch_size: expected an integer in [1, 4096], got True"),
    ("name = \"../up\"", "name: '../up' must be a plain file name"),
    ("threads = 0", "threads: expected an integer in [1, 4096], got 0"),
    ("whitebox = 3", "whitebox: expected a table, got 3"),
])
def test_a_bad_value_is_named_with_what_was_expected(extra, message):
    # Top-level keys must come before the first table in TOML; "[models]" then follows them.
    text = extra + MINIMAL if not extra.startswith("[") else MINIMAL + extra
    with pytest.raises(HarnessError) as error:
        parse_suite(text, "custom.toml")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_models_are_required_and_must_exist():
    with pytest.raises(HarnessError, match=r"a suite needs \[models\] names = \[...\] .* or \[\[targets\]\] tables"):
        parse_suite("name = 'x'", "custom.toml")
    with pytest.raises(HarnessError, match=r"\[models\] names: 'fcn-vgg99' is not one of"):
        parse_suite("[models]\nnames = ['fcn-vgg99']", "custom.toml")
    with pytest.raises(HarnessError, match=r"\[models\] epochs.fcn-resnet101: not one of the suite's models"):
        parse_suite(MINIMAL + "epochs = { fcn-resnet101 = 2 }", "custom.toml")


def test_not_toml_and_a_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(HarnessError, match=r"custom\.toml: not valid TOML"):
        parse_suite("[models\nnames = 1", "custom.toml")
    with pytest.raises(HarnessError, match="does not exist"):
        load_suite(tmp_path / "nope.toml")


def test_the_suite_command_rejects_a_bad_file_with_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "[square]\nquerys = 100\n")
    result = subprocess.run([sys.executable, "-m", "harness", "suite", "--config", str(bad), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                            env={"HARNESS_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: bad.toml: [square] querys: unknown key (known here: attack, colour, " \
                                    "engine, eps, inits, loss, models, n_images, p_init, p_schedule, precision, " \
                                    "queries, seed)"
    assert not (tmp_path / "run").exists()


# Every number of a suite file has the bounds of the command line's option (harness.limits); a value beyond
# them is one line naming the key, before any work (not a MemoryError or numpy's seed error mid-run).
OUT_OF_BOUNDS = {
    "batch_size = 5000": "batch_size",
    "threads = 100000": "threads",
    "[data]\nimage_size = 600": "[data] image_size",  # synthetic: at most 512
    "[data]\nseed = 4294967296": "[data] seed",
    "epochs = 100000": "[models] epochs",
    "seed = 4294967296": "[models] seed",
    "n_train = 2000000": "[models] n_train",
    "[whitebox]\ncolumns = ['fgsm']\nn_images = 2000000": "[whitebox] n_images",
    "[sweep]\nsteps = [1000000]": "[sweep] steps",
    "[sweep]\nsteps = [" + ", ".join(str(i) for i in range(1, 102)) + "]": "[sweep] steps",
    "[square]\nqueries = 2000000": "[square] queries",
    "[square]\nseed = 4294967296": "[square] seed",
    "[deployment]\ncalibration_images = 2000000": "[deployment] calibration_images",
    "[check]\ntolerance = 1e300": "[check] tolerance",
    "[check]\nattack_tolerance = { square = 1000 }": "[check] attack_tolerance.square",
}


@pytest.mark.parametrize("extra", list(OUT_OF_BOUNDS))
def test_numbers_beyond_the_documented_bounds_are_refused_naming_the_key(extra):
    top_level = extra.startswith(("batch_size", "threads"))  # before any table; the rest go after [models]
    text = extra + "\n" + MINIMAL if top_level else MINIMAL + extra
    with pytest.raises(HarnessError, match=r"^s\.toml: " + re.escape(OUT_OF_BOUNDS[extra]) + ":") as e:
        parse_suite(text, "s.toml")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n" + MINIMAL, "nested too deeply"),
    ("x = " + "{a=" * 2000 + "1" + "}" * 2000 + "\n" + MINIMAL, "nested too deeply"),
    ("x = " + "9" * 5000 + "\n" + MINIMAL, "4300 digits"),
    ('[data]\nroot = "/tmp"\n' + MINIMAL, "read by source"),  # ignored by synthetic data: refused, not ignored
    ('[data]\nsource = "folder"\nroot = "/tmp"\nseed = 3\n' + MINIMAL, "selects synthetic scenes"),
])
def test_unreadable_or_ignored_settings_are_one_line(text, message):
    with pytest.raises(HarnessError, match=message) as e:
        parse_suite(text, "s.toml")
    assert "\n" not in str(e.value)


def test_a_suite_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_suite(path).models.names == ("fcn8s-vgg16", "fcn-resnet50")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "latin-1", "huge"])
def test_a_suite_path_that_is_not_a_short_utf8_file_is_one_line_and_never_blocks(tmp_path, kind):
    path = tmp_path / "suite.toml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block for ever
    elif kind == "device":
        path = Path("/dev/zero")  # reading it would never end
    elif kind == "directory":
        path.mkdir()
    elif kind == "latin-1":
        path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    else:
        with open(path, "wb") as f:
            f.truncate(2 << 20)
    with pytest.raises(HarnessError, match="not a regular file|not UTF-8|larger than") as e:
        load_suite(path)
    assert "\n" not in str(e.value)
