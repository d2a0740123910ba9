"""What a deploy sends: the paths that differ from the live generation, as one tar stream.

croft knows both trees (the build's manifest and the live generation's), so finding the delta
needs no exchange over the wire, as rsync's file list does. The stream travels in the same
round trip as the switch: apply.sh, under the machine's lock, takes a copy of the live generation
as hard links (`cp -al`, made after the last switch), removes what went, and unpacks the stream
on top. No file is ever changed in place, so a hard link shared with an older generation keeps
that generation's content: GNU tar unlinks a file before writing it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from croft.build.manifest import Manifest
from croft.deploy.plan import FileChanges
from croft.run import run_binary

# Beside the tree: what apply.sh checks the received generation against.
RECORDS = ("manifest.json", "digest")
# A delta this small (an edit) is archived here, in memory, and sent in one piece: starting tar
# and a thread to feed it costs a deploy of ten machines more than the archive itself.
SMALL_PATHS = 32
SMALL_BYTES = 1 << 20


def sent(changes: FileChanges) -> list[str]:
    """The paths the new tree has that the live one has not, as they are: parents first."""
    return sorted(changes.added + changes.changed)


def dropped(old: Manifest, new: Manifest, changes: FileChanges) -> list[str]:
    """The paths of the live tree apply.sh removes before unpacking: those the new tree does
    not have, and those that turn from a directory into a file or link or back. A file or link
    that changed is not among them: tar replaces it (unlinking it first), and a directory whose
    mode changed keeps its contents (the stream's entry sets its mode)."""
    turned = [
        path
        for path in changes.changed
        if (old.entries[path].type == "dir") != (new.entries[path].type == "dir")
    ]
    return sorted(changes.removed + turned)


def write(stream: IO[bytes], build: Path, paths: list[str]) -> None:
    """The stream: the build's records and `paths` from its root/, owned by root, written by
    tar itself straight into `stream` (no Python between the files and the connection)."""
    names = [*RECORDS, *(f"root/{path}" for path in paths)]
    run_binary(
        # --no-recursion: exactly the paths listed, directories too (with their mode), parents
        # first; the list comes NUL-separated on stdin. GNU format: long names, no per-file
        # extended headers.
        ["tar", "-c", "-f", "-", "-C", build, "--no-recursion", "--null", "-T", "-",
         "--owner=root:0", "--group=root:0", "--format=gnu"],
        input="".join(f"{name}\0" for name in names).encode(),
        stdout=stream,
    )  # fmt: skip


def small(build: Path, paths: list[str]) -> bytes | None:
    """The stream write() makes, made here with tarfile, when `paths` are few and small; else
    None (write() streams it)."""
    if len(paths) > SMALL_PATHS:
        return None
    names = [*RECORDS, *(f"root/{path}" for path in paths)]
    stats = [os.lstat(build / name) for name in names]
    if sum(st.st_size for st in stats if stat.S_ISREG(st.st_mode)) > SMALL_BYTES:
        return None
    import io
    import tarfile  # here: a first deploy (GNU tar's) never needs it

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, st in zip(names, stats, strict=True):
            # From the stat taken above, not gettarinfo(): that looks up the owner's and group's
            # names (a read of /etc/passwd and /etc/group for each path), which are root's here.
            info = tarfile.TarInfo(name)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = st.st_mtime
            info.uname = info.gname = "root"
            if stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(build / name, "rb") as content:
                    archive.addfile(info, content)
                continue
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(build / name)
            else:
                return None  # (a build holds nothing else; tar says what it is)
            archive.addfile(info)
    return buffer.getvalue()
