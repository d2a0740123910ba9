"""Reading TOML files with errors that name the file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from croft.errors import Problem

_TOML_LINE = re.compile(r"at line (\d+)")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def read_toml(path: Path) -> tuple[dict[str, Any], str] | Problem:
    """The parsed document and its text, or the Problem that stops it from parsing."""
    import tomllib

    try:
        text = path.read_text()
    except OSError as exc:
        return Problem(path, f"cannot read: {exc.strerror}")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        return Problem(
            path,
            f"invalid TOML: {_TOML_LINE.sub('', str(exc)).rstrip(' ()')}",
            line=int(match.group(1)) if match else None,
        )


def _split_key(key: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", key)
    return [part.strip("\"'") for part in parts]


def locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """The line (1-based) where the value at `loc` is written, or its nearest enclosing table.

    Enough of TOML for error messages: table headers, arrays of tables (`[[x]]`, located by
    their index), dotted and quoted keys.
    """
    wanted = [str(part) for part in loc]
    best_line, best_depth = None, 0
    table: list[str] = []
    arrays: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            if line.lstrip().startswith("[["):
                arrays[tuple(table)] = arrays.get(tuple(table), -1) + 1
                table = [*table, str(arrays[tuple(table)])]
            path = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            path = table + _split_key(key.group(1))
        depth = 0
        for have, want in zip(path, wanted, strict=False):
            if have != want:
                break
            depth += 1
        if depth == len(path) and depth > best_depth:
            best_line, best_depth = number, depth
            if depth == len(wanted):
                break
    return best_line


class Reporter:
    """Problems found in one TOML file, each located at the line of the key it is about."""

    def __init__(
        self, file: Path, problems: list[Problem], *, prefix: tuple[str, ...] = (), label: str = ""
    ) -> None:
        self.file, self.problems, self.prefix, self.label = file, problems, prefix, label
        self.text = file.read_text() if file.exists() else ""

    def __call__(self, loc: tuple[str | int, ...], message: str, hint: str | None = None) -> None:
        full = (*self.prefix, *loc)
        self.problems.append(
            Problem(
                self.file,
                f"{self.label}{message}",
                line=locate(self.text, full),
                field=".".join(str(part) for part in full) or None,
                hint=hint,
            )
        )
