import os

import pytest

from harness.fileio import atomic_path, write_json_atomic


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
