"""The delta a deploy sends, unpacked by apply.sh's own `receive` on a real tree: the new
generation matches the build, and the live generation it was made from is untouched (its files
are hard links the new one shares)."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest

from croft.build.manifest import Entry, Manifest
from croft.deploy import deployer, plan, transfer


def build(directory: Path, files: dict[str, str | tuple[str, int]], links: dict[str, str]) -> Manifest:
    """A build directory as the builder leaves it (root/, manifest.json, digest); a file is its
    text, or (text, mode)."""
    manifest = Manifest("m")
    for path, spec in files.items():
        text, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        target = directory / "root" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        manifest.entries[path] = Entry("file", mode, hashlib.sha256(text.encode()).hexdigest())
    for path, to in links.items():
        target = directory / "root" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(to)
        manifest.entries[path] = Entry("link", target=to)
    for path in {str(Path(p).parent) for p in [*files, *links]}:
        while path != ".":
            mode = (directory / "root" / path).stat().st_mode & 0o7777
            manifest.entries[path] = Entry("dir", mode)
            path = str(Path(path).parent)
    (directory / "manifest.json").write_text(manifest.to_json())
    (directory / "digest").write_text(manifest.digest + "\n")
    return manifest


def tree(root: Path) -> dict[str, tuple[str, int]]:
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = (f"-> {os.readlink(path)}", 0)
        elif path.is_dir():
            found[name] = ("dir", path.stat().st_mode & 0o7777)
        else:
            found[name] = (path.read_text(), path.stat().st_mode & 0o7777)
    return found


def receive(
    generations: Path, live: str, new: Manifest, old: Manifest, build_dir: Path, small: bool = False
) -> int:
    """apply.sh's receive(), as apply.sh runs it, fed what the deploy would send (with `small`,
    the archive made in memory, as for an edit)."""
    body = (Path(deployer.__file__).parent / "apply.sh").read_text()
    function = re.search(r"^receive\(\) \{\n.*?\n\}", body, re.S | re.M)
    assert function is not None
    changes = plan.file_changes(old, new)
    dropped = shlex.quote("\n".join(transfer.dropped(old, new, changes)))
    script = (
        f"GENERATIONS={generations}\nlive={live}\nnew={generations}/.new-2\nDIGEST={new.digest}\n"
        f"DROPPED={dropped}\nNL='\n'\n{function.group()}\nreceive\n"
    )
    with tempfile.TemporaryFile() as stream:
        if small:
            archive = transfer.small(build_dir, transfer.sent(changes))
            assert archive is not None
            stream.write(archive)
        else:
            transfer.write(stream, build_dir, transfer.sent(changes))
        stream.seek(0)
        return subprocess.run(["sh", "-c", script], stdin=stream, check=False).returncode


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("copied", [False, True])
def test_the_new_generation_is_the_build_and_the_live_one_stays_as_it_was(
    tmp_path: Path, copied: bool, small: bool
) -> None:
    """From the live generation itself, or (copied) from the copy of it the last switch made;
    the files streamed by tar, or (small) archived in memory."""
    generations = tmp_path / "generations"
    before = build(
        generations / "1",
        {
            "usr/local/share/a/kept.txt": "kept\n",
            "usr/local/share/a/edited.txt": "old\n",
            "usr/local/share/a/gone.txt": "gone\n",
            "usr/local/share/b/becomes-dir": "a file\n",
            "usr/local/bin/tool": ("#!/bin/sh\n", 0o755),
        },
        {"usr/local/share/a/link": "kept.txt"},
    )
    live = tree(generations / "1")
    if copied:  # as apply.sh's tidy makes it
        (generations / ".next-1").mkdir()
        subprocess.run(
            ["cp", "-al", generations / "1" / "root", generations / ".next-1" / "root"], check=True
        )
    after_dir = tmp_path / "build"
    after = build(
        after_dir,
        {
            "usr/local/share/a/kept.txt": "kept\n",
            "usr/local/share/a/edited.txt": "new\n",
            "usr/local/share/b/becomes-dir/inside.txt": "inside\n",
            "usr/local/bin/tool": ("#!/bin/sh\n", 0o700),  # the same content, another mode
            "usr/local/share/c/secret": ("s3cret\n", 0o600),
        },
        {"usr/local/share/a/link": "edited.txt"},
    )
    assert transfer.sent(plan.file_changes(before, after)) == [
        "usr/local/bin/tool",
        "usr/local/share/a/edited.txt",
        "usr/local/share/a/link",
        "usr/local/share/b/becomes-dir",
        "usr/local/share/b/becomes-dir/inside.txt",
        "usr/local/share/c",
        "usr/local/share/c/secret",
    ]
    assert "usr/local/share/a/kept.txt" not in transfer.dropped(
        before, after, plan.file_changes(before, after)
    )
    assert receive(generations, "1", after, before, after_dir, small) == 0
    made = generations / ".new-2"
    assert tree(made / "root") == tree(after_dir / "root")
    assert (made / "digest").read_text().strip() == after.digest
    edited = "root/usr/local/share/a/edited.txt"  # its time too (built files' times are their content's)
    assert (made / edited).stat().st_mtime_ns // 10**9 == (after_dir / edited).stat().st_mtime_ns // 10**9
    assert tree(generations / "1") == live  # no shared file was written in place
    kept = "usr/local/share/a/kept.txt"
    assert (made / "root" / kept).stat().st_ino == (generations / "1" / "root" / kept).stat().st_ino
    assert not (generations / ".next-1").exists()  # taken: never used twice


def test_a_stream_cut_short_makes_no_generation(tmp_path: Path) -> None:
    generations = tmp_path / "generations"
    new = build(tmp_path / "build", {"usr/local/share/big.bin": "x" * 100_000}, {})
    body = (Path(deployer.__file__).parent / "apply.sh").read_text()
    function = re.search(r"^receive\(\) \{\n.*?\n\}", body, re.S | re.M)
    assert function is not None
    with tempfile.TemporaryFile() as stream:
        transfer.write(stream, tmp_path / "build", transfer.sent(plan.file_changes(Manifest("m"), new)))
        stream.seek(0)
        whole = stream.read()
    script = (
        f"GENERATIONS={generations}\nlive=none\nnew={generations}/.new-1\nDIGEST={new.digest}\n"
        f"DROPPED=\nNL='\n'\n{function.group()}\nreceive\n"
    )
    cut = whole[:50_000]
    assert subprocess.run(["sh", "-c", script], input=cut, capture_output=True).returncode != 0
