"""The manifest: what a machine's built tree holds, and what deploy compares.

Per path: type, mode, content hash or link target, the layer it came from, the units it
belongs to, and whether it is secret. Per unit: whether it is wanted (started at boot).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

from croft.build.manifest_format import (
    MANIFEST_VERSION,
    UNIT_SUFFIXES,
    entry_line,
    outside_line,
    packages_line,
    unit_of,
    wanted_line,
)

__all__ = [
    "MANIFEST_VERSION",
    "UNIT_SUFFIXES",
    "Entries",
    "Entry",
    "Manifest",
    "install_targets",
    "unit_of",
]

EntryType = Literal["file", "link", "dir"]


class Entry(NamedTuple):
    """One path of a tree. A named tuple, not a dataclass: a deploy reads two manifests of a
    few hundred entries per machine, and a tuple is made three times faster."""

    type: EntryType
    mode: int = 0
    sha256: str | None = None
    target: str | None = None
    origin: str = ""
    units: tuple[str, ...] = ()
    secret: bool = False

    def same_on_target(self, other: Entry) -> bool:
        """Whether the target would hold the same thing (origin does not matter there)."""
        return self[:4] == other[:4]  # type, mode, sha256, target

    def digest_line(self, path: str) -> str:
        return entry_line(path, self.type, self.mode, self.sha256, self.target, self.units)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "origin": self.origin}
        if self.type != "link":
            data["mode"] = f"{self.mode:04o}"
        if self.sha256:
            data["sha256"] = self.sha256
        if self.target is not None:
            data["target"] = self.target
        if self.units:
            data["units"] = list(self.units)
        if self.secret:
            data["secret"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        get = data.get
        return cls(  # positional: keywords cost a third more, times every entry
            data["type"],
            int(get("mode", "0"), 8),
            get("sha256"),
            get("target"),
            get("origin", ""),
            tuple(get("units", ())),
            get("secret", False),
        )


class Entries(Mapping[str, Entry]):
    """The entries of a manifest read from its JSON, each made an Entry when first asked for: a
    deploy compares two manifests of hundreds of paths per machine (same_on_target compares
    their JSON), and looks closer only at the few that differ."""

    __slots__ = ("_made", "json")

    def __init__(self, json: dict[str, dict[str, Any]]) -> None:
        self.json = json
        self._made: dict[str, Entry] = {}

    def __getitem__(self, path: str) -> Entry:
        try:
            return self._made[path]
        except KeyError:
            entry = self._made[path] = Entry.from_json(self.json[path])
            return entry

    def __contains__(self, path: object) -> bool:
        return path in self.json

    def __iter__(self) -> Iterator[str]:
        return iter(self.json)

    def __len__(self) -> int:
        return len(self.json)


def same_on_target(old: Mapping[str, Entry], new: Mapping[str, Entry], path: str) -> bool:
    """Whether `path`, in both, would be the same thing on the target: two manifests read from
    JSON first compare what they read (equal JSON is an equal entry), without making entries."""
    if isinstance(old, Entries) and isinstance(new, Entries) and old.json[path] == new.json[path]:
        return True
    return old[path].same_on_target(new[path])


class Manifest:
    def __init__(
        self,
        machine: str,
        entries: Mapping[str, Entry] | None = None,
        wanted: dict[str, tuple[str, ...]] | None = None,
        packages: tuple[str, ...] = (),
        outside: dict[str, str] | None = None,
    ) -> None:
        self.machine = machine
        self.entries: Mapping[str, Entry] = entries if entries is not None else {}
        self.wanted = wanted if wanted is not None else {}
        """Units started at boot, with the targets that want them."""
        self.packages = packages
        """Debian packages the machine needs (sorted): its layers', its own, and those of what
        croft generates for it."""
        self.outside = outside if outside is not None else {}
        """Links croft keeps outside /usr/local, where a program reads only its own directory
        (apt reads /etc/apt): path -> the path in the tree it points to (both relative to the
        root)."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        mine = (self.machine, self.entries, self.wanted, self.packages, self.outside)
        return mine == (other.machine, other.entries, other.wanted, other.packages, other.outside)

    def __repr__(self) -> str:
        return f"Manifest({self.machine!r}, {len(self.entries)} entries, digest {self.digest[:12]})"

    @cached_property
    def digest(self) -> str:
        """Equal digests mean equal trees on the target: the no-op deploy test.

        Computed once: a manifest is not changed after it is made.
        """
        import hashlib  # here: reading a manifest, as a no-op deploy does, never needs it

        h = hashlib.sha256()
        for path in sorted(self.entries):
            h.update(self.entries[path].digest_line(path).encode())
        for unit in sorted(self.wanted):
            h.update(wanted_line(unit, self.wanted[unit]).encode())
        h.update(packages_line(self.packages).encode())
        for path in sorted(self.outside):
            h.update(outside_line(path, self.outside[path]).encode())
        return h.hexdigest()

    @property
    def units(self) -> set[str]:
        """Every unit this tree defines or configures."""
        return {unit for entry in self.entries.values() for unit in entry.units}

    def to_json(self) -> str:
        data = {
            "version": MANIFEST_VERSION,
            "machine": self.machine,
            "digest": self.digest,
            "wanted": {unit: list(targets) for unit, targets in sorted(self.wanted.items())},
            "packages": list(self.packages),
            "outside": dict(sorted(self.outside.items())),
            "entries": {path: self.entries[path].to_json() for path in sorted(self.entries)},
        }
        # Compact: `indent` would make json fall back from its C encoder to pure Python, ten times
        # slower on a 500-path manifest, and a build writes one per machine.
        return json.dumps(data, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str, *, trusted: bool = False) -> Manifest:
        """The manifest in `text`; `trusted` (croft wrote it, here) takes the digest it records
        instead of computing it again."""
        data = json.loads(text)
        manifest = cls(
            machine=data["machine"],
            entries=Entries(data["entries"]),
            wanted={unit: tuple(targets) for unit, targets in data.get("wanted", {}).items()},
            packages=tuple(data.get("packages", ())),
            outside=dict(data.get("outside", {})),
        )
        if trusted and "digest" in data:
            manifest.__dict__["digest"] = data["digest"]  # (what cached_property fills)
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """A manifest croft wrote on this machine: a build's, or one it cached by its digest."""
        return cls.from_json(path.read_text(), trusted=True)


def empty(machine: str) -> Manifest:
    """The manifest of a machine croft has never deployed to (or has reset)."""
    return Manifest(machine)


def install_targets(unit_text: str) -> tuple[str, ...]:
    """The dependency directories a unit's [Install] section puts it in.

    WantedBy=multi-user.target gives "multi-user.target.wants"; RequiredBy= gives ".requires".
    croft ships these links itself, under /usr/local, instead of running `systemctl enable`,
    which would write to /etc.
    """
    targets: list[str] = []
    section = ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Install]" and "=" in line:
            key, _, value = line.partition("=")
            suffix = {"WantedBy": ".wants", "RequiredBy": ".requires"}.get(key.strip())
            if suffix:
                targets += [target + suffix for target in value.split()]
    return tuple(targets)
