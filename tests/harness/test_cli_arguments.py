"""Every numeric option of every command has a documented, bounded type: hostile values are one line on stderr and
exit code 2 at parse time, before any work; the bounds themselves are accepted. Also the start-up paths of
``python -m harness``: no command, Ctrl-C while importing, and the last-resort line for an unexpected error."""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import build_parser

# What each command needs besides the option under test (the option fails first, but the line stays realistic).
REQUIRED = {"eval": ["--model", "fcn8s-vgg16"], "attack": ["--model", "fcn8s-vgg16", "--attack", "fgsm"],
            "blackbox": ["--model", "fcn8s-vgg16"], "export": ["--model", "fcn8s-vgg16"],
            "train": ["--model", "fcn8s-vgg16"], "check": ["--baseline", "baseline.json"],
            "inspect": ["model.onnx"]}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _numeric_options() -> list[tuple[str, str, tuple, bool]]:
    """(command, option, interval, integer?) of every option whose type has a bounded interval."""
    found = []
    for command, parser in _subcommands().items():
        for action in parser._actions:
            interval = getattr(action.type, "interval", None)
            if interval is not None:
                found.append((command, action.option_strings[-1], interval, action.type.__name__.startswith("int")))
    return found


NUMERIC = _numeric_options()


def test_every_typed_option_of_every_command_is_bounded():
    unbounded = [(command, action.option_strings, action.type) for command, parser in _subcommands().items()
                 for action in parser._actions
                 if action.type is not None and not hasattr(action.type, "interval")
                 and getattr(action.type, "__name__", "") != "attack_points"]  # ATTACK=POINTS, bounded by points
    assert unbounded == []
    options = {(c, o) for c, o, _, _ in NUMERIC}
    for expected in [("train", "--seed"), ("train", "--lr"), ("attack", "--seed"), ("blackbox", "--seed"),
                     ("blackbox", "--data-seed"), ("models", "--classes"), ("eval", "--image-size"),
                     ("export", "--opset"), ("blackbox", "--eps"), ("attack", "--alpha"), ("check", "--tolerance")]:
        assert expected in options


def _hostile(interval: tuple, integer: bool) -> st.SearchStrategy[str]:
    low, high, open_low, open_high = interval
    if integer:
        outside = st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1)).map(str)
        not_integers = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)).map(repr)
    else:
        outside = st.one_of(st.floats(max_value=low, exclude_max=not open_low, allow_nan=False, allow_infinity=False),
                            st.floats(min_value=high, exclude_min=not open_high, allow_nan=False,
                                      allow_infinity=False)).map(repr)
        not_integers = st.nothing()
    argv_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
    return st.one_of(
        outside, not_integers,
        st.sampled_from(["inf", "-inf", "+inf", "nan", "NaN", "-nan", "infinity", "1e999", "-1e999", "", " ",
                         "0x10", "1,5", "½", "١e5", "None", "--json"]),
        st.text(argv_text, max_size=30).filter(lambda t: not _parses(t)),
        st.integers(min_value=4400, max_value=50_000).map(lambda n: "9" * n),  # beyond int()'s digit limit
        st.text(argv_text, min_size=1000, max_size=2000),
    ).filter(lambda text: not _valid(text, interval, integer))


def _valid(text: str, interval: tuple, integer: bool) -> bool:
    """The reference: is ``text`` a value inside ``interval``? (Python's own int and float syntax.)"""
    low, high, open_low, open_high = interval
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        return False
    return math.isfinite(value) and (low < value if open_low else low <= value) and \
        (value < high if open_high else value <= high)


def _parses(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


IDS = [f"{c} {o}" for c, o, _, _ in NUMERIC]


@pytest.mark.parametrize("command, option, interval, integer", NUMERIC, ids=IDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_values_of_a_numeric_option_are_one_line_and_exit_2(run_cli, tmp_path, monkeypatch, command, option,
                                                                    interval, integer, data):
    value = data.draw(_hostile(interval, integer))
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # one fresh directory per example
    monkeypatch.chdir(work)
    code, out, err = run_cli(["--cache-dir", str(work / "cache"), command, *REQUIRED.get(command, []),
                              f"{option}={value}"])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert option in err
    assert list(work.iterdir()) == []  # nothing written: no cache, no output


@pytest.mark.parametrize("command, option, interval, integer", NUMERIC, ids=IDS)
def test_the_bounds_of_a_numeric_option_are_accepted(command, option, interval, integer):
    low, high, open_low, open_high = interval
    parser = _subcommands()[command]
    # A closed end is accepted as is; an open one just inside.
    values = [low if not open_low else low + (high - low) * 1e-3, high if not open_high else high - (high - low) * 1e-3]
    for value in values:
        args = parser.parse_args([*REQUIRED.get(command, []), f"{option}={value}"])
        assert getattr(args, option.lstrip("-").replace("-", "_")) == value


@pytest.mark.parametrize("argv", [
    ["attack", "--model", "fcn8s-vgg16", "--attack", "pgd", "--seed", "-1"],
    ["attack", "--model", "fcn8s-vgg16", "--attack", "pgd", "--data-seed=-1"],
    ["blackbox", "--model", "fcn8s-vgg16", "--seed=-1"],
    ["blackbox", "--model", "fcn8s-vgg16", "--data-seed", "4294967296"],
    ["train", "--model", "fcn8s-vgg16", "--seed", "-1"],
    ["train", "--model", "fcn8s-vgg16", "--data-seed=-1"],
    ["train", "--model", "fcn8s-vgg16", "--lr", "inf"],
    ["train", "--model", "fcn8s-vgg16", "--lr", "nan"],
    ["train", "--model", "fcn8s-vgg16", "--lr", "0"],
    ["models", "--classes", "0"],
    ["models", "--classes", "100000"],
    ["eval", "--model", "fcn8s-vgg16", "--image-size", "100000"],
    ["export", "--model", "fcn8s-vgg16", "--opset", "1000"],
    ["export", "--model", "fcn8s-vgg16", "--opset", "16"],
    ["check", "--baseline", "b.json", "--tolerance", "inf"],
])
def test_the_values_of_the_issue_are_refused_at_parse_time(run_cli, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["--cache-dir", str(tmp_path / "cache"), *argv])
    assert code == 2 and len(err.strip().splitlines()) == 1 and ("outside" in err or "finite" in err)
    assert list(tmp_path.iterdir()) == []


def test_the_opset_bound_is_what_the_installed_exporter_supports():
    from exporters.onnx_export import DEFAULT_OPSET, MIN_OPSET, max_opset

    assert MIN_OPSET <= DEFAULT_OPSET <= max_opset()
    (interval,) = [i for c, o, i, _ in NUMERIC if (c, o) == ("export", "--opset")]
    assert interval[:2] == (MIN_OPSET, max_opset())


def test_synthetic_images_larger_than_their_bound_are_refused_before_generating(run_cli, tmp_path):
    code, _, err = run_cli(["--cache-dir", str(tmp_path / "cache"), "eval", "--model", "fcn8s-vgg16",
                            "--image-size", "1024"])
    assert code == 2 and "at most 512" in err and not (tmp_path / "cache").exists()


def _harness(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120,
                          **kwargs)


def test_no_command_is_a_one_line_usage_error_on_stderr():
    result = _harness()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["python -m harness: error: give a COMMAND (see --help)"]
    assert "usage:" in result.stdout


def test_ctrl_c_while_torch_is_imported_is_one_line_and_exit_130():
    # As a terminal's foreground job: a shell without job control starts background jobs (`cmd &`, nohup) with
    # SIGINT ignored, which Python and the harness then rightly keep, and pytest under such a job passes that on.
    proc = subprocess.Popen([sys.executable, "-m", "harness", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "libtorch" not in maps.read_text():
        time.sleep(0.005)  # wait until the import of torch has started loading its libraries
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted"]


def test_an_unexpected_error_deep_inside_is_one_line_and_exit_2_never_1(run_cli, tmp_path):
    # 200,000 nested brackets: json's recursion limit. Whatever raises, `check` must fail closed with exit 2.
    results = tmp_path / "results.json"
    results.write_text("[" * 200_000 + "]" * 200_000)
    code, _, err = run_cli(["check", "--results", str(results), "--baseline", str(results)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: ")
    assert os.environ.get("HARNESS_TRACEBACK") is None or "Traceback" in err
