"""``--torch MODULE:CALLABLE``: the user's module is imported from the current directory, its callable called;
every way that fails is one line naming what to fix."""

from __future__ import annotations

import itertools
import sys
import textwrap

import pytest
from torch import nn

from harness.errors import HarnessError
from harness.targets.torch_entry import entry_name, load_entry, parse_entry

_names = (f"h3_user_models_{i}" for i in itertools.count())  # one module name per test: sys.modules is shared


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_module(source)``: write ``source`` as a fresh module in the current directory; its name."""
    monkeypatch.chdir(tmp_path)
    written = []

    def write(source: str, name: str | None = None) -> str:
        name = name or next(_names)
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_an_entry_in_the_current_directory_builds_its_module(user_module):
    name = user_module("""
        from torch import nn
        def build():
            return nn.Conv2d(3, 2, 1)
        class Models:
            @staticmethod
            def small():
                return nn.Identity()
        """)
    assert isinstance(load_entry(f"{name}:build"), nn.Conv2d)
    assert isinstance(load_entry(f"{name}:Models.small"), nn.Identity)
    assert entry_name(f"{name}:Models.small") == "small"
    assert parse_entry("pkg.sub:make") == ("pkg.sub", "make")


def test_a_module_rewritten_in_another_folder_is_imported_again(user_module, tmp_path, monkeypatch):
    name = user_module("from torch import nn\ndef build():\n    return nn.Identity()\n")
    assert isinstance(load_entry(f"{name}:build"), nn.Identity)
    other = tmp_path / "other"
    other.mkdir()
    (other / f"{name}.py").write_text("from torch import nn\ndef build():\n    return nn.ReLU()\n")
    monkeypatch.chdir(other)
    assert isinstance(load_entry(f"{name}:build"), nn.ReLU)


BAD_ENTRIES = {
    "no colon": ("mymodels", "is not MODULE:CALLABLE"),
    "empty callable": ("mymodels:", "is not MODULE:CALLABLE"),
    "path instead of module": ("./mymodels.py:build", "is not MODULE:CALLABLE"),
    "spaces": ("my models:build", "is not MODULE:CALLABLE"),
    "very long": ("a" * 5000 + ":b", "is not MODULE:CALLABLE"),
    "control characters": ("m\x1b[31m:build", "is not MODULE:CALLABLE"),
}


@pytest.mark.parametrize(("entry", "expected"), BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_a_malformed_entry_is_one_line(entry, expected):
    with pytest.raises(HarnessError) as caught:
        load_entry(entry)
    message = str(caught.value)
    assert expected in message and "\n" not in message and len(message) < 400 and "\x1b" not in message


FAILING_MODULES = {
    "missing module": (None, "build", "no module"),
    "missing attribute": ("from torch import nn\n", "build", "has no attribute 'build'"),
    "not callable": ("build = 3\n", "build", "not a function or class"),
    "raising callable": ("def build():\n    raise ValueError('depth must be 18 or 34\\nsecond line')\n", "build",
                         "build() raised ValueError: depth must be 18 or 34"),
    "exit in callable": ("import sys\ndef build():\n    sys.exit(3)\n", "build", "raised SystemExit"),
    "not a module": ("def build():\n    return {'weights': 1}\n", "build", "returned a dict, not a torch.nn.Module"),
    "syntax error": ("def build(:\n", "build", "syntax error"),
    "raising import": ("raise RuntimeError('no GPU here')\n", "build", "raised RuntimeError: no GPU here"),
    "missing dependency": ("import h3_surely_not_installed\n", "build", "imports h3_surely_not_installed, which is "
                                                                       "not installed"),
}


@pytest.mark.parametrize(("source", "attr", "expected"), FAILING_MODULES.values(), ids=FAILING_MODULES.keys())
def test_every_failing_entry_is_one_line(user_module, source, attr, expected):
    name = user_module(source) if source is not None else "h3_no_such_module_here"
    with pytest.raises(HarnessError) as caught:
        load_entry(f"{name}:{attr}")
    message = str(caught.value)
    assert expected in message and "\n" not in message and "Traceback" not in message
