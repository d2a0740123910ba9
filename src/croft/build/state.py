"""What the last build made each output from, kept in SQLite under .croft/cache/.

One row per machine and path: the source file, the cache key it was made with, its manifest
entry (as the JSON member the manifest holds), and for a template the names and includes it
read; per machine, the context its templates were rendered with. A build reuses a row whose
key still matches; an edit to one file finds the outputs to redo through an index on the
source, so it touches no other row. The manifest (JSON and digest) is assembled from the rows
as text.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

from croft import inplace
from croft.build.manifest_format import MANIFEST_VERSION, member, outside_line, packages_line, wanted_line

# Not `from typing import TYPE_CHECKING`: typing costs the quick path of a build ~7 ms to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from croft.build.manifest import Entry

SCHEMA_VERSION = 5
SCHEMA = """
CREATE TABLE outputs (
    machine TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    digest_line TEXT NOT NULL,
    deps TEXT,
    PRIMARY KEY (machine, path)
) WITHOUT ROWID;
CREATE INDEX outputs_by_source ON outputs (source);
CREATE TABLE includes (machine TEXT NOT NULL, path TEXT NOT NULL, source TEXT NOT NULL);
CREATE INDEX includes_by_source ON includes (source);
CREATE TABLE machines (machine TEXT PRIMARY KEY, level TEXT NOT NULL);
CREATE TABLE contexts (machine TEXT PRIMARY KEY, context TEXT NOT NULL);
"""


class Output:
    """One built path: the key it was made with, its manifest entry, where it came from.

    (A plain class: this module is on the quick path, which dataclasses would cost 10 ms.)
    """

    __slots__ = ("deps", "entry", "key", "kind", "origin", "source")

    def __init__(
        self,
        key: list[Any],
        entry: Entry,
        source: str,
        kind: str,
        origin: str,
        deps: dict[str, list[str]] | None = None,
    ) -> None:
        self.key = key
        self.entry = entry
        self.source = source
        self.kind = kind
        self.origin = origin
        self.deps = deps
        """For a template: the names it reads and the templates it includes."""


def output_key(kind: str, file: str, stamp: tuple[int, int, int, int], mode: int, origin: str) -> list[Any]:
    """The key of a file's output (what makes it current): its source, stat, mode and layer."""
    return [kind, file, *stamp, mode, origin]


class MachineLevel:
    """What a machine's manifest holds beyond its files: the units it wants started, its Debian
    packages, its links outside /usr/local. (A plain class: see Output.)"""

    __slots__ = ("outside", "packages", "wanted")

    def __init__(
        self, wanted: dict[str, tuple[str, ...]], packages: tuple[str, ...], outside: dict[str, str]
    ) -> None:
        self.wanted, self.packages, self.outside = wanted, packages, outside

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MachineLevel):
            return NotImplemented
        return (self.wanted, self.packages, self.outside) == (other.wanted, other.packages, other.outside)

    def to_json(self) -> str:
        return json.dumps(
            {
                "wanted": {unit: list(t) for unit, t in sorted(self.wanted.items())},
                "packages": list(self.packages),
                "outside": dict(sorted(self.outside.items())),
            }
        )


class BuildState:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Autocommit; `with self.db:` groups a machine's changes into one transaction.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A cache: a commit lost to a power cut costs a rebuild, so no fsync per build.
        self.db.execute("PRAGMA synchronous=OFF")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self._create()

    def _create(self) -> None:
        """Start afresh: the state of another croft version is only a cache."""
        tables = self.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        drops = "".join(f"DROP TABLE {name};" for (name,) in tables)
        self.db.executescript(f"BEGIN;{drops}{SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")

    def close(self) -> None:
        self.db.close()

    def forget(self, machine: str) -> None:
        """Drop a machine's rows (a forced build, or a build tree removed by hand)."""
        with self.db:
            self.db.execute("BEGIN")
            for table in ("outputs", "includes", "machines", "contexts"):
                self.db.execute(f"DELETE FROM {table} WHERE machine = ?", (machine,))

    def outputs(self, machine: str, paths: Iterable[str] | None = None) -> dict[str, Output]:
        from croft.build.manifest import Entry

        query = "SELECT path, key, member, source, kind, origin, deps FROM outputs WHERE machine = ?"
        if paths is None:
            rows = self.db.execute(query, (machine,)).fetchall()
        else:
            paths = list(paths)
            query += f" AND path IN ({','.join('?' * len(paths))})"
            rows = self.db.execute(query, (machine, *paths)).fetchall()
        return {
            path: Output(
                json.loads(key),
                Entry.from_json(json.loads(text[len(json.dumps(path)) + 1 :])),
                source,
                kind,
                origin,
                json.loads(deps) if deps else None,
            )
            for path, key, text, source, kind, origin, deps in rows
        }

    def templates(self, machine: str) -> dict[str, str]:
        """The machine's template names (tree path + .j2) and their source files."""
        rows = self.db.execute(
            "SELECT path, source FROM outputs WHERE machine = ? AND kind = 'template'", (machine,)
        )
        return {path + ".j2": source for path, source in rows}

    def affected(self, files: Iterable[str]) -> tuple[set[str], dict[str, set[str]]]:
        """Which of these files are known (some output is made from them or some template
        includes them), and per machine, the paths to make again."""
        files = list(files)
        marks = ",".join("?" * len(files))
        rows = self.db.execute(
            f"SELECT machine, path, source FROM outputs WHERE source IN ({marks}) "
            f"UNION SELECT machine, path, source FROM includes WHERE source IN ({marks})",
            files * 2,
        )
        known: set[str] = set()
        paths: dict[str, set[str]] = {}
        for machine, path, source in rows:
            known.add(source)
            paths.setdefault(machine, set()).add(path)
        return known, paths

    def outputs_from(self, files: list[str]) -> list[tuple[str, str, str, str, list[Any], str, Any]] | None:
        """(machine, path, source, kind, key, entry JSON, deps) of every output made from these
        files, or None when one is neither a file's nor a template's, or a template includes one."""
        marks = ",".join("?" * len(files))
        if self.db.execute(f"SELECT 1 FROM includes WHERE source IN ({marks}) LIMIT 1", files).fetchone():
            return None
        rows = self.db.execute(
            f"SELECT machine, path, source, kind, key, member, deps FROM outputs WHERE source IN ({marks})",
            files,
        ).fetchall()
        if any(kind not in ("file", "template") for _, _, _, kind, _, _, _ in rows):
            return None
        return [
            (
                machine,
                path,
                source,
                kind,
                json.loads(key),
                text[len(json.dumps(path)) + 1 :],
                deps and json.loads(deps),
            )
            for machine, path, source, kind, key, text, deps in rows
        ]

    def update_outputs(self, updates: list[tuple[str, str, list[Any], str, str, Any]]) -> None:
        """New keys, manifest members, digest lines and deps for (machine, path)s."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE outputs SET key = ?, member = ?, digest_line = ?, deps = ? "
                "WHERE machine = ? AND path = ?",
                [
                    (json.dumps(key), text, line, deps and json.dumps(deps), machine, path)
                    for machine, path, key, text, line, deps in updates
                ],
            )

    def save_context(self, machine: str, context: dict[str, Any]) -> None:
        """Keep the context a machine's templates are rendered with, for the quick path; not
        when JSON would change it (a TOML date, say), since then only the builder renders alike."""
        text = json.dumps(context, sort_keys=True)
        with self.db:
            if json.loads(text) == context:
                self.db.execute("INSERT OR REPLACE INTO contexts VALUES (?, ?)", (machine, text))
            else:
                self.db.execute("DELETE FROM contexts WHERE machine = ?", (machine,))

    def contexts(self, machines: Iterable[str]) -> dict[str, dict[str, Any]]:
        machines = list(machines)
        rows = self.db.execute(
            f"SELECT machine, context FROM contexts WHERE machine IN ({','.join('?' * len(machines))})",
            machines,
        )
        return {machine: json.loads(text) for machine, text in rows}

    def machine_level(self, machine: str) -> MachineLevel | None:
        """What the last whole build worked out for the machine beyond its files."""
        row = self.db.execute("SELECT level FROM machines WHERE machine = ?", (machine,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        wanted = {unit: tuple(targets) for unit, targets in data["wanted"].items()}
        return MachineLevel(wanted, tuple(data["packages"]), data["outside"])

    def save(
        self,
        machine: str,
        changed: dict[str, Output],
        removed: Iterable[str],
        templates: dict[str, str],
        level: MachineLevel | None = None,
    ) -> None:
        """Store changed and drop removed outputs; `templates` resolves include names to files."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "DELETE FROM outputs WHERE machine = ? AND path = ?", [(machine, p) for p in removed]
            )
            self.db.executemany(
                "DELETE FROM includes WHERE machine = ? AND path = ?", [(machine, p) for p in changed]
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        machine,
                        path,
                        out.source,
                        out.kind,
                        out.origin,
                        json.dumps(out.key),
                        member(path, out.entry.to_json()),
                        out.entry.digest_line(path),
                        json.dumps(out.deps) if out.deps is not None else None,
                    )
                    for path, out in changed.items()
                ],
            )
            self.db.executemany(
                "INSERT INTO includes VALUES (?, ?, ?)",
                [
                    (machine, path, templates[name])
                    for path, out in changed.items()
                    if out.deps
                    for name in _included(out.deps, templates)
                ],
            )
            if level is not None:
                self.db.execute("INSERT OR REPLACE INTO machines VALUES (?, ?)", (machine, level.to_json()))

    def write_manifest(self, machine: str, directory: str | os.PathLike[str]) -> None:
        """Write the machine's manifest.json and digest into its build directory."""
        text, digest = self.manifest_text(machine)
        inplace.write(os.path.join(directory, "manifest.json"), text)
        # The digest alone is what a deploy reads first on the target to find it has nothing to do.
        inplace.write(os.path.join(directory, "digest"), digest + "\n")

    def manifest_text(self, machine: str) -> tuple[str, str]:
        """The machine's manifest.json and its digest, assembled from the rows without parsing them.

        Equal to Manifest.to_json() and Manifest.digest of the same entries (tested).
        """
        rows = self.db.execute(
            "SELECT member, digest_line FROM outputs WHERE machine = ? ORDER BY path", (machine,)
        ).fetchall()
        level = self.machine_level(machine) or MachineLevel({}, (), {})
        wanted = level.wanted
        lines = [line for _, line in rows]
        lines += [wanted_line(unit, wanted[unit]) for unit in sorted(wanted)]
        lines.append(packages_line(level.packages))
        lines += [outside_line(path, level.outside[path]) for path in sorted(level.outside)]
        digest = hashlib.sha256("".join(lines).encode()).hexdigest()
        head = json.dumps(
            {
                "version": MANIFEST_VERSION,
                "machine": machine,
                "digest": digest,
                "wanted": {unit: list(targets) for unit, targets in sorted(wanted.items())},
                "packages": list(level.packages),
                "outside": dict(sorted(level.outside.items())),
            },
            separators=(",", ":"),
        )
        entries = ",".join(member for member, _ in rows)
        return f'{head[:-1]},"entries":{{{entries}}}}}\n', digest


def _included(deps: dict[str, list[str]], templates: dict[str, str]) -> list[str]:
    includes = deps.get("includes", [])
    if "*" in includes:
        return list(templates)
    return [name for name in includes if name in templates]
