"""``--torch MODULE:CALLABLE``: a function in the user's code that returns the ``torch.nn.Module`` under test.

The module is imported from the current directory or ``sys.path`` (as ``python -m`` would find it) and the
callable is called without arguments. Every way this can fail is one HarnessError line: a malformed entry, a
module that is not there (or that imports something missing), a missing attribute, a callable that raises
(its exception's first line), or a result that is not an ``nn.Module``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import sys
from types import ModuleType

from torch import nn

from harness.errors import HarnessError, error_line

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_ENTRY = re.compile(rf"(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})")
MAX_ENTRY_LENGTH = 300


def parse_entry(entry: str) -> tuple[str, str]:
    """``"pkg.module:build"`` -> ``("pkg.module", "build")``; HarnessError (one line) for anything else."""
    if not isinstance(entry, str) or len(entry) > MAX_ENTRY_LENGTH or _ENTRY.fullmatch(entry) is None:
        shown = repr(entry) if len(str(entry)) <= 60 else repr(str(entry)[:50]) + "..."
        raise HarnessError(f"--torch {shown} is not MODULE:CALLABLE (e.g. --torch mymodels:build, a function "
                           "build() in mymodels.py of the current directory that returns a torch.nn.Module)")
    match = _ENTRY.fullmatch(entry)
    assert match is not None
    return match["module"], match["attr"]


def entry_name(entry: str) -> str:
    """The callable's name, for the record's ``model`` field when the card names none."""
    return parse_entry(entry)[1].rsplit(".", 1)[-1]


def load_entry(entry: str) -> nn.Module:
    """Import ``entry``'s module, call its callable and return the ``nn.Module`` it builds."""
    module_name, attr = parse_entry(entry)
    module = _import(module_name, entry)
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise HarnessError(f"--torch {entry}: module {module_name} ({_origin(module)}) has no attribute "
                               f"{attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise HarnessError(f"--torch {entry}: {attr} is a {type(target).__name__}, not a function or class to call")
    try:
        built = target()
    except HarnessError:
        raise
    except (Exception, SystemExit) as e:  # the user's code may raise anything; say its first line
        raise HarnessError(f"--torch {entry}: {attr}() raised {type(e).__name__}: {error_line(e)}") from None
    if not isinstance(built, nn.Module):
        raise HarnessError(f"--torch {entry}: {attr}() returned a {type(built).__name__}, not a torch.nn.Module")
    return built


def _import(module_name: str, entry: str) -> ModuleType:
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        importlib.invalidate_caches()
        _forget_stale(module_name)
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")
        if e.name is not None and e.name in {".".join(top[:i]) for i in range(1, len(top) + 1)}:
            raise HarnessError(f"--torch {entry}: no module {e.name!r} in the current directory ({here}) or on "
                               "sys.path; run from the folder that holds it, or set PYTHONPATH") from None
        raise HarnessError(f"--torch {entry}: module {module_name} imports {e.name or 'a module'}, which is not "
                           "installed here") from None
    except SyntaxError as e:
        raise HarnessError(f"--torch {entry}: module {module_name} has a syntax error at "
                           f"{os.path.basename(e.filename or '?')} line {e.lineno}: {e.msg}") from None
    except (Exception, SystemExit) as e:
        raise HarnessError(f"--torch {entry}: importing {module_name} raised {type(e).__name__}: "
                           f"{error_line(e)}") from None
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _forget_stale(module_name: str) -> None:
    """Drop a cached import of ``module_name`` (with its package and the package's submodules) whose file is no
    longer the one the search path finds (the same process may run targets from several folders, e.g. the tests)."""
    top = module_name.split(".")[0]
    cached = sys.modules.get(top)
    if cached is None:
        return
    try:  # PathFinder searches sys.path itself; importlib.util.find_spec would answer from sys.modules
        spec = importlib.machinery.PathFinder.find_spec(top, sys.path)
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None)
    if origin is not None and getattr(cached, "__file__", None) not in (None, origin):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]


def _origin(module: ModuleType) -> str:
    return os.path.basename(getattr(module, "__file__", None) or module.__name__)
