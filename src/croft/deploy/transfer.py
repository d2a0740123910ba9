"""What a deploy sends: the paths that differ from the live generation, as one tar stream.

croft knows both trees (the build's manifest and the live generation's), so finding the delta
needs no exchange over the wire, as rsync's file list does. The stream travels in the same
round trip as the switch: apply.sh, under the machine's lock, takes a copy of the live generation
as hard links (`cp -al`, made after the last switch), removes what went, and unpacks the stream
on top. No file is ever changed in place, so a hard link shared with an older generation keeps
that generation's content: GNU tar unlinks a file before writing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from croft.build.manifest import Manifest
from croft.run import run_binary

# Beside the tree: what apply.sh checks the received generation against.
RECORDS = ("manifest.json", "digest")


def sent(old: Manifest, new: Manifest) -> list[str]:
    """The paths the new tree has that the live one has not, as they are: parents first."""
    return sorted(
        path
        for path, entry in new.entries.items()
        if (before := old.entries.get(path)) is None or not before.same_on_target(entry)
    )


def dropped(old: Manifest, new: Manifest) -> list[str]:
    """The paths of the live tree apply.sh removes before unpacking: those the new tree does
    not have, and those that turn from a directory into a file or link or back. A file or link
    that changed is not among them: tar replaces it (unlinking it first), and a directory whose
    mode changed keeps its contents (the stream's entry sets its mode)."""
    return sorted(
        path
        for path, entry in old.entries.items()
        if (after := new.entries.get(path)) is None or (entry.type == "dir") != (after.type == "dir")
    )


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
