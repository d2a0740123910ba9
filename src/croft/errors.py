"""Errors croft reports to users: each says where the problem is and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class CroftError(Exception):
    """An error meant for the user; the CLI prints it without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a site: where it is, what is wrong, how to fix it."""

    file: Path
    message: str
    line: int | None = None
    field: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.field + ': ' if self.field else ''}{self.message}"
        return text + (f"\n    hint: {self.hint}" if self.hint else "")


class SiteError(CroftError):
    """The site is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        lines = [f"the site has {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  {problem}" for problem in problems]
        super().__init__("\n".join(lines))
