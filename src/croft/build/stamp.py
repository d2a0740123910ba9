"""The stat-only fast path: has anything a build read changed since it ran?

A build records the stat of every input it read (site and machine files, every file and
directory of every tree, facts) as they were before it started; a later command stats the
same paths and compares. Directory mtimes catch files added or removed. This module imports
nothing of croft's so that `croft build` with nothing to do stays a few milliseconds of work.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

Stamp = tuple[int, int, int, int]
# (path, follow symlinks, stamp); a stamp of (0, 0, 0, 0) records that the path did not exist.
Input = tuple[str, bool, Stamp]

_FILE = "stamp.json"


def selection_key(names: tuple[str, ...]) -> str:
    """How the stamp of a build is filed: the machine names as given, "*" for all."""
    return ",".join(names) or "*"


def stat(path: str, follow: bool = True) -> Stamp:
    try:
        st = os.stat(path, follow_symlinks=follow)
    except (FileNotFoundError, NotADirectoryError):
        return (0, 0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def _load(state_dir: str) -> dict[str, list[list[object]]]:
    try:
        data: dict[str, list[list[object]]] = json.loads(_read(os.path.join(state_dir, "build", _FILE)))
        return data
    except (OSError, ValueError):
        return {}


def record(state_dir: str, key: str, inputs: Iterable[Input]) -> None:
    data = _load(state_dir)
    data[key] = [[path, follow, *stamp] for path, follow, stamp in inputs]
    path = os.path.join(state_dir, "build", _FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as stream:
        stream.write(json.dumps(data))
    os.replace(path + ".tmp", path)


def _read(path: str) -> str:
    with open(path) as stream:
        return stream.read()


def fresh(state_dir: str, key: str) -> bool:
    """Whether every input recorded for `key` is as it was."""
    recorded = _load(state_dir).get(key)
    if not recorded:
        return False
    return all(list(stat(str(path), bool(follow))) == stamp for path, follow, *stamp in recorded)


def signature(state_dir: str, key: str) -> str:
    """A digest of the current stats of the inputs recorded for `key` (for --watch)."""
    h = hashlib.sha256()
    for path, follow, *_ in _load(state_dir).get(key, []):
        h.update(f"{path}{stat(str(path), bool(follow))}".encode())
    return h.hexdigest()
