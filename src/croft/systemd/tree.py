"""Generated trees: the files croft's generators produce (units, drop-ins, links, config), and
the two ways they reach a root: `write_tree` makes a directory hold exactly them (the build's
generated trees), `place` adds them to a root that has other content (an image being built)."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from croft import inplace
from croft.layout import UNIT_DIR


@dataclass(frozen=True)
class GeneratedFile:
    content: str
    """The file's text, or a symlink's target when `link`."""
    mode: int = 0o644
    link: bool = False


def wanted_by(
    target: str, unit: str, to: str | None = None, unit_dir: str = UNIT_DIR
) -> dict[str, GeneratedFile]:
    """The link that makes `target` start `unit`: croft's `systemctl enable`, shipped under
    /usr/local (or `unit_dir`). It points at the unit file beside it (a template's, for an
    instance), or at `to` (a unit of the distribution's)."""
    if to is None:
        prefix, at, rest = unit.partition("@")
        to = f"../{prefix}@{rest[rest.index('.') :]}" if at else f"../{unit}"
    return {f"{unit_dir}/{target}.wants/{unit}": GeneratedFile(to, link=True)}


def write_tree(root: Path, files: dict[str, GeneratedFile]) -> None:
    """Make root hold exactly these files, rewriting only those that differ (their stats drive
    the incremental build)."""
    wanted = set(files)
    if root.is_dir():
        for path in sorted(root.rglob("*"), reverse=True):
            rel = path.relative_to(root).as_posix()
            if path.is_dir() and not path.is_symlink():
                if not any(name == rel or name.startswith(rel + "/") for name in wanted):
                    shutil.rmtree(path)
            elif rel not in wanted:
                path.unlink()
    place(root, files)


def write_machine_trees(root: Path, trees: dict[str, dict[str, GeneratedFile]]) -> None:
    """Make root hold a tree for each of these machines (root/NAME), and no other."""
    if root.is_dir():
        for stale in root.iterdir():
            if stale.name not in trees:
                shutil.rmtree(stale)
    for name, files in trees.items():
        write_tree(root / name, files)


def place(root: Path, files: dict[str, GeneratedFile]) -> None:
    """Put these files under root, each stamped by its content; those that already match stay."""
    for rel, generated in files.items():
        path = root / rel
        digest = hashlib.sha256(generated.content.encode()).hexdigest()
        if generated.link:
            if not (path.is_symlink() and os.readlink(path) == generated.content):
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_symlink() or path.exists():
                    path.unlink()
                path.symlink_to(generated.content)
                inplace.stamp_content(path, digest)
            continue
        try:
            same = path.read_text() == generated.content and (path.stat().st_mode & 0o7777) == generated.mode
        except OSError:
            same = False
        if not same:
            inplace.write(path, generated.content, generated.mode)
            inplace.stamp_content(path, digest)
