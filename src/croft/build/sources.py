"""Composing a machine's file tree from its layers and its own tree.

Layers apply in the listed order, then the machine's own tree; a later file replaces an
earlier one at the same path. Each tree is walked once per process, however many machines
share it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from croft.build.render import TEMPLATE_SUFFIX
from croft.errors import Problem

Kind = Literal["file", "template", "link", "dir"]
DEREF_PREFIX = "!"
MACHINE_ORIGIN = "(machine)"


@dataclass(frozen=True, slots=True)
class Source:
    """One input of a machine's tree: where it comes from and what it becomes."""

    path: str
    """The target path, relative to /, e.g. usr/local/etc/web.conf."""
    file: Path
    """The file in the site (for a `!` path, the link; its target's content ships)."""
    kind: Kind
    origin: str
    """The layer it comes from, or "(machine)" for the machine's own tree."""
    stamp: tuple[int, int, int, int]
    """(mtime_ns, size, inode, mode) of what ships: the cache key for unchanged inputs."""


@dataclass
class Tree:
    """The walk of one layer or machine tree."""

    sources: list[Source] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


_walked: dict[tuple[Path, str], Tree] = {}


def walk(root: Path, origin: str) -> Tree:
    """Every file, link and directory under root/usr/local, as Sources (memoized)."""
    key = (root, origin)
    if key not in _walked:
        tree = Tree()
        base = root / "usr" / "local"
        if base.is_dir() and not base.is_symlink():
            _walk_dir(base, "usr/local", origin, tree, follow=False)
        _walked[key] = tree
    return _walked[key]


def walk_whole(root: Path, origin: str) -> Tree:
    """Every file, link and directory under root (an image's tree, which may fill any path)."""
    tree = Tree()
    if root.is_dir():
        _walk_dir(root, "", origin, tree, follow=False)
        del tree.sources[0]  # the root itself
    return tree


def forget_walks() -> None:
    """Drop memoized walks, for a long-running process that must see edits (--watch)."""
    _walked.clear()


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def _walk_dir(directory: Path, rel: str, origin: str, tree: Tree, follow: bool) -> None:
    tree.sources.append(Source(rel, directory, "dir", origin, _stamp(os.stat(directory))))
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            name = entry.name
            path = Path(entry.path)
            if "\t" in name or "\n" in name:
                tree.problems.append(Problem(path, "a tab or a line break in a file name", hint="rename it"))
                continue
            deref = name.startswith(DEREF_PREFIX)
            if deref:
                name = name[len(DEREF_PREFIX) :]
                if not name:
                    tree.problems.append(Problem(path, "a `!` name needs a name after the `!`"))
                    continue
            try:
                st = os.stat(path) if (deref or follow) else entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                tree.problems.append(
                    Problem(
                        path,
                        f"`!` link points nowhere ({os.readlink(path)} does not exist)",
                        hint="create the file it points to, or remove the link",
                    )
                )
                continue
            target = f"{rel}/{name}" if rel else name
            if entry.is_symlink() and not (deref or follow):
                tree.sources.append(Source(target, path, "link", origin, _stamp(st)))
            elif os.path.isdir(path) if (deref or follow) else entry.is_dir(follow_symlinks=False):
                _walk_dir(path, target, origin, tree, follow=follow or deref)
            elif name.endswith(TEMPLATE_SUFFIX):
                tree.sources.append(
                    Source(target[: -len(TEMPLATE_SUFFIX)], path, "template", origin, _stamp(st))
                )
            else:
                tree.sources.append(Source(target, path, "file", origin, _stamp(st)))


@dataclass
class Composition:
    """A machine's composed tree: the winning source per path and what each one overrode."""

    sources: dict[str, Source]
    overridden: dict[str, list[Source]]
    problems: list[Problem]


def compose(trees: list[Tree]) -> Composition:
    sources: dict[str, Source] = {}
    overridden: dict[str, list[Source]] = {}
    problems: list[Problem] = []
    for tree in trees:
        problems += tree.problems
        for source in tree.sources:
            previous = sources.get(source.path)
            if previous is not None:
                if (previous.kind == "dir") != (source.kind == "dir"):
                    problems.append(
                        Problem(
                            source.file,
                            f"{source.path} is a "
                            f"{'directory' if source.kind == 'dir' else 'file'} here but a "
                            f"{'directory' if previous.kind == 'dir' else 'file'} in "
                            f"{previous.origin}",
                            hint="a layer can replace a file with a file "
                            "or a directory with a directory, not one with the other",
                        )
                    )
                    continue
                if source.kind != "dir":
                    overridden.setdefault(source.path, []).append(previous)
            sources[source.path] = source
    return Composition(sources, overridden, problems)
