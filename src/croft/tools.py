"""The system tools croft runs, the Debian package of each, and what needs them (tools.txt).

scripts/setup installs from the same file, `croft doctor` checks it, and a command that needs a
tool the host lacks says which package to install instead of failing with a traceback.
Standard library only: `croft deploy` consults it only when a command is missing.
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from croft.errors import CroftError

LIST = Path(__file__).with_name("tools.txt")
PURPOSES = ("deploy", "image", "arm64", "serve", "lab", "fleet", "repo", "vpn", "test")


@dataclass(frozen=True)
class Tool:
    name: str
    """A command on PATH, or an absolute path (a glob where a version is part of it)."""
    package: str
    needed_by: tuple[str, ...]

    def present(self) -> bool:
        if self.name.startswith("/"):
            return any(os.path.exists(path) for path in glob.glob(self.name))
        return shutil.which(self.name) is not None


def load() -> list[Tool]:
    tools = []
    for line in LIST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, package, needed_by, *_apt = line.split()
            tools.append(Tool(name, package, tuple(needed_by.split(","))))
    return tools


def missing(*purposes: str) -> list[Tool]:
    """The tools that `purposes` need (all of them when none is named) and the host lacks."""
    return [
        tool
        for tool in load()
        if (not purposes or set(tool.needed_by) & set(purposes)) and not tool.present()
    ]


def install_hint(tools: list[Tool]) -> str:
    packages = " ".join(sorted({tool.package for tool in tools}))
    return f"apt-get install {packages} (scripts/setup installs all croft needs; `croft doctor` checks it)"


def require(*purposes: str) -> None:
    """Raise a CroftError naming each missing tool and its package, before any work starts."""
    absent = missing(*purposes)
    if absent:
        names = ", ".join(tool.name for tool in absent)
        raise CroftError(f"{'/'.join(purposes)} needs what this host lacks: {names}; {install_hint(absent)}")


def not_found(command: str) -> CroftError:
    """The error for a command that is not installed, naming its package when croft knows it."""
    known = [tool for tool in load() if tool.name == command]
    if known:
        return CroftError(f"{command} is not installed: {install_hint(known)}")
    return CroftError(f"command not found: {command} (`croft doctor` checks what croft needs)")
