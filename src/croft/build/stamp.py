"""The stat-only fast path: what, of everything a build read, has changed since it ran?

A build records the stat of every input it read (site and machine files, every file and
directory of every tree, facts) as they were before it started; a later command stats the
same paths and compares. Directory mtimes catch files added or removed; since editors that save
by renaming also touch the directory, a directory counts as changed only when its list of
names did. This module imports next to nothing so that `croft build` with nothing to do stays
a few milliseconds of work.
"""

from __future__ import annotations

import marshal
import os
import stat as stat_module
import time
from collections.abc import Iterable

from croft.inplace import swap_in

Stamp = tuple[int, int, int, int]
# (path, follow symlinks, stamp); a stamp of (0, 0, 0, 0) records that the path did not exist.
Input = tuple[str, bool, Stamp]

# A file modified this close to the moment its stat was taken may be modified again within the
# same clock tick (a few ms) without its stat changing: such "racy" stats are filed as unknown,
# so the next check looks again (as git does for its index).
RACY_NS = 20_000_000

# marshal, not JSON: it loads several times faster and needs no `re` (6 ms of imports).
_FILE = "stamp.marshal"


class Changes:
    """What changed since a build (a plain class: dataclasses would cost this path 10 ms)."""

    def __init__(self) -> None:
        self.files: list[str] = []
        """Inputs whose content, kind or (for a directory) list of names changed."""
        self.restat: dict[str, Stamp] = {}
        """Every input whose stat changed, with its stat now: what a build records after it."""
        self.structural = False
        """Whether a path appeared, went or changed kind, or a directory's names changed."""
        self.taken_ns = time.time_ns()
        """When the stats were taken."""

    def __bool__(self) -> bool:
        return bool(self.files)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Changes) and (self.files, self.restat) == (other.files, other.restat)


def selection_key(names: tuple[str, ...]) -> str:
    """How the stamp of a build is filed: the machine names as given, "*" for all."""
    return ",".join(names) or "*"


def stat(path: str, follow: bool = True) -> Stamp:
    try:
        st = os.stat(path, follow_symlinks=follow)
    except (FileNotFoundError, NotADirectoryError):
        return (0, 0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def listing(path: str) -> str:
    """A digest of a directory's names (empty for anything else)."""
    import hashlib  # only when a directory changed

    try:
        names = sorted(os.listdir(path))
    except OSError:
        return ""
    return hashlib.sha1("\0".join(names).encode()).hexdigest()


def _path(state_dir: str) -> str:
    return os.path.join(state_dir, "build", _FILE)


# The last file loaded, by its path and stat: a build checks and then refreshes the same file.
_loaded: dict[str, tuple[Stamp, dict[str, list[list[object]]]]] = {}


def _load(state_dir: str) -> dict[str, list[list[object]]]:
    path = _path(state_dir)
    st = stat(path)
    if path in _loaded and _loaded[path][0] == st:
        return _loaded[path][1]
    try:
        with open(path, "rb") as stream:
            # loads(read()): marshal.load() reads a file in small pieces, ten times slower.
            data: dict[str, list[list[object]]] = marshal.loads(stream.read())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    _loaded[path] = (st, data)
    return data


def _store(state_dir: str, data: dict[str, list[list[object]]]) -> None:
    path = _path(state_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as stream:
        marshal.dump(data, stream)
    swap_in(path + ".tmp", path)
    _loaded[path] = (stat(path), data)


def racy(mtime_ns: int, taken_ns: int) -> bool:
    """Modified so close to when its stat was taken (taken_ns) that it may change again without
    its stat changing. What was made of such a file is never reused as it is."""
    return mtime_ns >= taken_ns - RACY_NS


def racy_mark() -> list[object]:
    """Appended to the key of an output made from a racy file: no later key equals it."""
    return ["racy", time.time_ns()]


def _filed(path: str, st: Stamp, taken_ns: int) -> list[object]:
    if racy(st[0], taken_ns):
        st = (-1, *st[1:])
    return [path, *st, listing(path) if stat_module.S_ISDIR(st[3]) else ""]


def record(state_dir: str, key: str, inputs: Iterable[Input], taken_ns: int) -> None:
    """File the stats a build read under `key` (directories with their list of names), taken
    at `taken_ns`."""
    data = _load(state_dir)
    data[key] = [[path, follow, *_filed(path, st, taken_ns)[1:]] for path, follow, st in inputs]
    _store(state_dir, data)


def refresh(state_dir: str, key: str, changes: Changes) -> None:
    """Update the stats filed under `key` after a build that read only the changed paths anew."""
    data = _load(state_dir)
    for item in data.get(key, []):
        path = str(item[0])
        if path in changes.restat:
            item[2:] = _filed(path, changes.restat[path], changes.taken_ns)[1:]
    _store(state_dir, data)


def changes(state_dir: str, key: str) -> Changes | None:
    """What changed among the inputs filed under `key`; None when no build filed any."""
    recorded = _load(state_dir).get(key)
    if not recorded:
        return None
    found = Changes()
    for path, follow, *was in recorded:
        now = stat(str(path), bool(follow))
        if list(now) == was[:4]:
            continue
        found.restat[str(path)] = now
        kind_now, kind_was = stat_module.S_IFMT(now[3]), stat_module.S_IFMT(int(str(was[3])))
        if stat_module.S_ISDIR(kind_now) and kind_now == kind_was:
            same_names = listing(str(path)) == was[4]
            if same_names and now[3] == was[3]:
                continue  # only touched, as a save by rename does
            found.structural = found.structural or not same_names
        elif kind_now != kind_was:
            found.structural = True
        found.files.append(str(path))
    return found


def signature(state_dir: str, key: str) -> str:
    """A digest of the current stats of the inputs recorded for `key` (for --watch)."""
    import hashlib

    h = hashlib.sha256()
    for path, follow, *_ in _load(state_dir).get(key, []):
        h.update(f"{path}{stat(str(path), bool(follow))}".encode())
    return h.hexdigest()
