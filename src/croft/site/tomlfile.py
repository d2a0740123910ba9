"""Reading TOML files with errors that name the file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from croft.errors import Problem

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)")
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
        # tomllib says "MESSAGE (at line N, column M)": the line goes to the Problem.
        match = _TOML_POSITION.search(str(exc))
        message = _TOML_POSITION.sub("", str(exc)).strip()
        if match and match.group(2):
            message += f" at column {match.group(2)}"
        elif "end of document" in str(exc):
            message += " at the end of the file"
        return Problem(
            path,
            f"invalid TOML: {message}",
            line=int(match.group(1)) if match and match.group(1) else None,
            hint=_toml_hint(message),
        )


def _toml_hint(message: str) -> str:
    """What usually causes a TOML error with this message."""
    if "Illegal character" in message or "Unterminated string" in message:
        return 'a string must close on its line: key = "value" (use """...""" for several lines)'
    if "Cannot overwrite" in message or "Cannot declare" in message:
        return "each key and [table] may appear once in a file"
    if "Invalid value" in message or "Expected" in message:
        return 'values are "strings", numbers, true/false, [arrays] or { inline = "tables" }'
    return "see https://toml.io for the syntax"


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
