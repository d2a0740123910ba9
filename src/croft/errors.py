"""Errors croft reports to users: each says where the problem is and how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class CroftError(Exception):
    """An error meant for the user; the CLI prints it without a traceback."""


class Problem(NamedTuple):
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


def template_syntax_hint(message: str) -> str:
    """What usually causes a Jinja2 syntax error with this message."""
    message = message.lower()
    if "unexpected end of template" in message:
        return "a {% for %} or {% if %} is not closed: add its {% endfor %} or {% endif %}"
    if "unexpected '}'" in message or "unexpected char" in message:
        return "expressions are {{ name }}, statements {% if ... %}; check the braces on that line"
    if "encountered unknown tag" in message:
        return "a statement Jinja2 does not know (a typo, or an {% end... %} without its opening tag)"
    return "see https://jinja.palletsprojects.com/en/stable/templates/ for the syntax"
