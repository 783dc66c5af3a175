import os

import pytest

from harness.errors import HarnessError
from harness.fileio import (
    MAX_JSON_BYTES,
    atomic_path,
    check_output_dir,
    check_output_file,
    read_json,
    write_json_atomic,
)


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_written_files_get_the_mode_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", [])
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_a_rewrite_keeps_the_mode_the_user_gave_the_file(tmp_path):
    target = tmp_path / "baseline.json"
    write_json_atomic(target, [])
    target.chmod(0o600)
    write_json_atomic(target, [1])
    assert target.stat().st_mode & 0o777 == 0o600 and target.read_text() == "[\n  1\n]\n"


# --- temporary files of killed writers -------------------------------------------------------------------------

_WRITER = """
import sys, time
from harness.fileio import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of a file")
    print(tmp, flush=True)
    time.sleep(120)
"""


def _start_writer(target):
    """A real writer process stopped in the middle of an atomic write; returns it and its temporary file."""
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_file(), "the writer did not start its write"
    return proc, tmp


def test_a_writer_killed_mid_write_leaves_a_temp_file_that_the_next_write_removes(tmp_path):
    import signal

    target = tmp_path / "model.onnx"
    proc, tmp = _start_writer(target)
    assert f"-{proc.pid}." in tmp.name and tmp.name.startswith(".model.onnx.")  # the writer's pid is in the name
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert tmp.exists() and not target.exists()  # SIGKILL runs no clean-up
    write_json_atomic(target, {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_the_temp_file_of_a_live_writer_is_left_alone(tmp_path):
    target = tmp_path / "state.npz"
    proc, tmp = _start_writer(target)
    try:
        write_json_atomic(target, [])
        assert tmp.exists()  # its writer still runs: the file is its write in progress
    finally:
        proc.kill()
        proc.wait(timeout=30)
    write_json_atomic(target, [1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]


def test_temp_files_of_other_targets_and_foreign_files_are_not_touched(tmp_path):
    from harness.fileio import remove_stale_temp_files

    other = tmp_path / ".other.json.000000-1.0123456789ab.tmp"
    foreign = tmp_path / ".a.json.notours.tmp"
    for path in (other, foreign):
        path.write_text("x")
    assert remove_stale_temp_files(tmp_path / "a.json") == []
    assert other.exists() and foreign.exists()


def test_a_name_of_the_longest_length_can_be_written_atomically(tmp_path):
    # The temporary name is longer than the target's; it is shortened to fit the file system's limit.
    target = tmp_path / ("x" * 250 + ".json")
    write_json_atomic(target, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


# --- writes that cannot happen: one line, no traceback ---------------------------------------------------------

def test_an_oserror_at_write_time_is_one_harness_error_naming_the_target(tmp_path):
    from harness.errors import HarnessError

    (tmp_path / "afile").write_text("")
    for target in (tmp_path / "afile" / "x.json", "/proc/harness-test/x.json", tmp_path / ("x" * 300)):
        with pytest.raises(HarnessError, match="cannot write") as e:
            write_json_atomic(target, [])
        assert "\n" not in str(e.value)
    with pytest.raises(HarnessError, match="cannot write .*No such file"), atomic_path(tmp_path / "b.json") as tmp:
        open(tmp.parent / "missing" / "x")  # an OSError inside the write itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _failure_classes(tmp_path):
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "adir").mkdir()
    return {
        "parent is a file": tmp_path / "afile" / "out.json",
        "missing parent under a file": tmp_path / "afile" / "sub" / "out.json",
        "unwritable place": "/proc/harness-test/out.json",
        "name too long": tmp_path / ("x" * 300 + ".json"),
        "path too long": tmp_path.joinpath(*["y" * 200] * 25, "out.json"),
    }


@pytest.mark.parametrize("case", ["parent is a file", "missing parent under a file", "unwritable place",
                                  "name too long", "path too long"])
@pytest.mark.parametrize("kind", ["file", "dir"])
def test_output_checks_refuse_each_class_of_unwritable_path(tmp_path, case, kind):
    from harness.errors import HarnessError
    from harness.fileio import check_output_dir, check_output_file

    check = check_output_file if kind == "file" else check_output_dir
    path = _failure_classes(tmp_path)[case]
    with pytest.raises(HarnessError, match="^--opt ") as e:
        check(path, "--opt")
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # the probe left nothing
    assert (tmp_path / "afile").read_text() == "keep"


def test_output_checks_refuse_a_directory_for_a_file_a_file_for_a_directory_and_devices(tmp_path):
    from harness.errors import HarnessError
    from harness.fileio import check_output_dir, check_output_file

    _failure_classes(tmp_path)
    with pytest.raises(HarnessError, match="is a directory"):
        check_output_file(tmp_path / "adir", "--json")
    with pytest.raises(HarnessError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "afile", "--out")
    with pytest.raises(HarnessError, match="not a regular file"):
        check_output_file("/dev/null", "--json")  # an atomic rename would replace the device node


def test_output_checks_accept_new_and_existing_places_and_create_nothing(tmp_path):
    from harness.fileio import check_output_dir, check_output_file, check_outputs

    (tmp_path / "old.json").write_text("{}")
    check_output_file(tmp_path / "old.json", "--json")
    check_output_file(tmp_path / "new" / "deeper" / "x.json", "--json")
    check_output_dir(tmp_path / "new" / "run", "--out")
    check_output_dir(tmp_path, "--out")
    check_outputs({"--json": tmp_path / "a.json", "--curve": None}, {"--out": tmp_path / "d"})
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]


def test_two_output_options_naming_the_same_file_are_refused(tmp_path):
    from harness.errors import HarnessError
    from harness.fileio import check_outputs

    with pytest.raises(HarnessError, match="--json and --curve name the same file"):
        check_outputs({"--json": tmp_path / "a.json", "--curve": tmp_path / "." / "a.json"})


_SCRATCH = """
import sys, time
from harness.fileio import scratch_dir
with scratch_dir(sys.argv[1]) as tmp:
    (tmp / "prepared.onnx").write_text("half")
    print(tmp, flush=True)
    time.sleep(120)
"""


def test_a_scratch_dir_of_a_killed_process_is_removed_by_the_next_one(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from harness.fileio import scratch_dir

    target = tmp_path / "int8.onnx"
    proc = subprocess.Popen([sys.executable, "-c", _SCRATCH, str(target)], stdout=subprocess.PIPE, text=True)
    left = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait(timeout=30)
    assert (left / "prepared.onnx").is_file()
    with scratch_dir(target) as tmp:
        assert tmp.is_dir() and not left.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, message", [
    ('{"schema": 1, "results": [], "results": [{"pixel_accuracy": 0.9}]}', "'results' appears twice"),
    ('{"a": {"pixel_accuracy": 0.01, "pixel_accuracy": 0.99}}', "'pixel_accuracy' appears twice"),
])
def test_a_json_object_naming_a_key_twice_is_refused_not_read_as_its_last_value(tmp_path, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(HarnessError, match=message):
        read_json(path)


def test_a_json_file_too_large_to_be_harness_output_is_refused_without_being_read(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(MAX_JSON_BYTES + 1)  # sparse: reading it whole would take the memory of its size
    with pytest.raises(HarnessError, match="larger than"):
        read_json(path)


def test_a_broken_symbolic_link_is_refused_as_an_output_directory(tmp_path):
    link = tmp_path / "cache"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(HarnessError, match="symbolic link .* does not exist"):
        check_output_dir(link, "--cache-dir")
    check_output_file(link, "--json")  # a file is written over the link, as by open()
