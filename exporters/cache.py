"""The artifact cache: one folder per content-derived key, with a manifest that vouches for the file.

A key is the sha256 of a JSON document of everything the artifact depends on: the sha256 of
the file it is made from (checkpoint or ONNX), the build settings and the library versions.
A changed input therefore gets a new key and never meets a stale artifact. A cached file is
reused only while its sha256 still equals the one recorded in its manifest when it was built,
so a damaged or edited cache entry is rebuilt rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import distributed
from harness.fileio import build_lock, cache_dir, sha256_file, write_json_atomic

MANIFEST = "manifest.json"


def cache_key(fields: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``fields``."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def artifact_dir(group: str, kind: str, fields: dict[str, Any]) -> Path:
    """``cache_dir()/artifacts/<group>/<kind>-<key prefix>``: where the artifact keyed by ``fields`` lives."""
    return cache_dir() / "artifacts" / group / f"{kind}-{cache_key(fields)[:20]}"


def cached_sha256(path: Path) -> str | None:
    """The sha256 of ``path`` if it is a valid cache entry (file present and matching its manifest)."""
    manifest = path.parent / MANIFEST
    if not path.is_file() or not manifest.is_file():
        return None
    try:
        recorded = json.loads(manifest.read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    actual = sha256_file(path)
    return actual if actual == recorded else None


def cached_artifact(group: str, kind: str, fields: dict[str, Any], filename: str,
                    build: Callable[[Path], None]) -> tuple[Path, str, bool]:
    """The artifact keyed by ``fields``, built with ``build(path)`` unless validly cached.

    ``build`` must write ``path`` atomically. Returns ``(path, sha256, reused)``. One process builds while
    others that need the same artifact (the ranks of a torchrun job, other runs on the cache) wait for it.
    """
    path = artifact_dir(group, kind, fields) / filename
    with build_lock(path), distributed.local():
        sha = cached_sha256(path)
        if sha is not None:
            return path, sha, True
        build(path)
        sha = sha256_file(path)
        write_json_atomic(path.parent / MANIFEST, {"file": filename, "sha256": sha, "key": fields})
    return path, sha, False
