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
from typing import IO

import pytest

from croft.build.manifest import Entry, Manifest
from croft.deploy import deployer, plan, transfer


def build(directory: Path, files: dict[str, str | tuple[str, int]], links: dict[str, str]) -> Manifest:
    """A build directory as the builder leaves it (root/, manifest.json, digest); a file is its
    text, or (text, mode)."""
    entries: dict[str, Entry] = {}
    for path, spec in files.items():
        text, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        target = directory / "root" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        entries[path] = Entry("file", mode, hashlib.sha256(text.encode()).hexdigest())
    for path, to in links.items():
        target = directory / "root" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(to)
        entries[path] = Entry("link", target=to)
    for path in {str(Path(p).parent) for p in [*files, *links]}:
        while path != ".":
            mode = (directory / "root" / path).stat().st_mode & 0o7777
            entries[path] = Entry("dir", mode)
            path = str(Path(path).parent)
    manifest = Manifest("m", entries)
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
) -> Path | None:
    """apply.sh's receive(), as apply.sh runs it, fed what the deploy would send (with `small`,
    the archive made in memory, as for an edit): where it made the new generation, or None when
    it failed."""
    changes = plan.file_changes(old, new)
    with tempfile.TemporaryFile() as stream:
        if small:
            archive = transfer.small(build_dir, transfer.sent(changes))
            assert archive is not None
            stream.write(archive)
        else:
            transfer.write(stream, build_dir, transfer.sent(changes))
        stream.seek(0)
        return run_receive(generations, live, new.digest, transfer.dropped(old, new, changes), stream)


def run_receive(
    generations: Path, live: str, digest: str, dropped: list[str], stream: IO[bytes]
) -> Path | None:
    body = (Path(deployer.__file__).parent / "apply.sh").read_text()
    function = re.search(r"^receive\(\) \{\n.*?\n\}", body, re.S | re.M)
    assert function is not None
    script = (
        f"GENERATIONS={generations}\nlive={live}\nGEN=2\nCREATED=now\nBY=test\nDIGEST={digest}\n"
        f"DROPPED={shlex.quote(chr(10).join(dropped))}\nNL='\n'\n"
        f'{function.group()}\nreceive && echo "$new"\n'
    )
    result = subprocess.run(["sh", "-c", script], stdin=stream, capture_output=True, text=True, check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


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
    made = receive(generations, "1", after, before, after_dir, small)
    assert made == generations / (".next-1" if copied else ".new-2")
    assert tree(made / "root") == tree(after_dir / "root")
    assert (made / "digest").read_text().strip() == after.digest
    edited = "root/usr/local/share/a/edited.txt"  # its time too (built files' times are their content's)
    assert (made / edited).stat().st_mtime_ns // 10**9 == (after_dir / edited).stat().st_mtime_ns // 10**9
    assert tree(generations / "1") == live  # no shared file was written in place
    kept = "usr/local/share/a/kept.txt"
    assert (made / "root" / kept).stat().st_ino == (generations / "1" / "root" / kept).stat().st_ino
    assert (made / "info").read_text().startswith("generation=2\n")  # the copy is marked taken


def test_a_copy_taken_by_a_switch_that_never_ended_is_not_taken_again(tmp_path: Path) -> None:
    """The machine lost power mid-way: the copy holds half a delta (a file written into it, one
    removed). The next switch from the same live generation copies the live tree afresh."""
    generations = tmp_path / "generations"
    before = build(generations / "1", {"usr/local/share/a.txt": "a\n", "usr/local/share/b.txt": "b\n"}, {})
    copy = generations / ".next-1"
    copy.mkdir()
    subprocess.run(["cp", "-al", generations / "1" / "root", copy / "root"], check=True)
    (copy / "info").write_text("generation=2\n")
    (copy / "root/usr/local/share/b.txt").unlink()
    (copy / "root/usr/local/share/half.txt").write_text("half\n")
    after_dir = tmp_path / "build"
    after = build(after_dir, {"usr/local/share/a.txt": "A\n", "usr/local/share/b.txt": "b\n"}, {})
    made = receive(generations, "1", after, before, after_dir)
    assert made == generations / ".new-2"
    assert not copy.exists()
    assert tree(made / "root") == tree(after_dir / "root")


def test_a_stream_cut_short_makes_no_generation(tmp_path: Path) -> None:
    generations = tmp_path / "generations"
    new = build(tmp_path / "build", {"usr/local/share/big.bin": "x" * 100_000}, {})
    with tempfile.TemporaryFile() as stream:
        transfer.write(stream, tmp_path / "build", transfer.sent(plan.file_changes(Manifest("m"), new)))
        stream.seek(0)
        whole = stream.read()
    with tempfile.TemporaryFile() as cut:
        cut.write(whole[:50_000])
        cut.seek(0)
        assert run_receive(generations, "none", new.digest, [], cut) is None
