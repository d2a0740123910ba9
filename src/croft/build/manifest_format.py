"""The manifest's text: what its digest hashes, how an entry is written, which unit a path is of.

Kept free of imports beyond the standard library's json: the quick path of a build
(build/quick.py) writes manifests from the build state's rows without loading croft's models.
"""

from __future__ import annotations

import json

from croft.layout import UNIT_DIR

# Not `from typing import TYPE_CHECKING`: typing costs the quick path of a build ~7 ms to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

MANIFEST_VERSION = 1
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target", ".slice")


def entry_line(
    path: str, type: str, mode: int, sha256: str | None, target: str | None, units: Sequence[str]
) -> str:
    """What the digest hashes of one entry: what lands on the target, not where it came from."""
    return f"{path}\0{type}\0{mode}\0{sha256}\0{target}\0{','.join(units)}\n"


def wanted_line(unit: str, targets: Sequence[str]) -> str:
    return f"wanted\0{unit}\0{','.join(targets)}\n"


def packages_line(packages: Sequence[str]) -> str:
    """What the digest hashes of the package set; nothing when empty, so that trees without
    packages keep the digests they had before croft knew packages."""
    return f"packages\0{','.join(packages)}\n" if packages else ""


def outside_line(path: str, target: str) -> str:
    """What the digest hashes of a link croft keeps outside /usr/local."""
    return f"outside\0{path}\0{target}\n"


def member(path: str, entry: dict[str, Any]) -> str:
    """One entry as the manifest's JSON holds it: `"path":{...}`."""
    return json.dumps(path) + ":" + json.dumps(entry, separators=(",", ":"))


def unit_of(path: str) -> str | None:
    """The unit a path defines or configures by where it lies: its unit file or a drop-in."""
    if not path.startswith(UNIT_DIR + "/"):
        return None
    rest = path[len(UNIT_DIR) + 1 :]
    head, _, tail = rest.partition("/")
    if not tail and head.endswith(UNIT_SUFFIXES):
        return head
    if tail and "/" not in tail and head.endswith(".d") and head[:-2].endswith(UNIT_SUFFIXES):
        return head[:-2]
    return None


def is_unit_file(path: str) -> bool:
    """Whether the path is a unit file itself (not a drop-in): what can change what is wanted."""
    unit = unit_of(path)
    return unit is not None and path == f"{UNIT_DIR}/{unit}"
