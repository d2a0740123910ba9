"""Putting a finished file in place of an old one, cheaply.

On ext4, renaming a file over an existing one makes the kernel write the new file's data out
first (auto_da_alloc, a guard for programs that forget fsync): about 1.5 ms a file here, which
a build that rewrites a few dozen files cannot afford. Unlinking the old file first skips that
flush. The cost is a moment in which the path does not exist; croft's build outputs are only
ever read after their build finished, and a build interrupted there is redone by the next one.
"""

from __future__ import annotations

import os

# Only os.path here: the build's fast path imports this module, and pathlib costs it ~5 ms.
StrPath = str | os.PathLike[str]


def swap_in(new: StrPath, path: StrPath) -> None:
    """Rename `new` to `path`, replacing whatever is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        os.rmdir(path)  # a directory the build made here before; never one with content
    os.rename(new, path)


def write(path: StrPath, data: str | bytes, mode: int | None = None) -> None:
    """Write a whole file through a temporary one next to it."""
    directory, name = os.path.split(os.fspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.croft-tmp")
    with open(tmp, "wb") as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        os.chmod(tmp, mode)
    swap_in(tmp, path)


def publish(path: StrPath, data: bytes) -> None:
    """Write a whole file that other writers may be making at the same moment (the same content
    under the same name: a cache entry), each through a temporary file of its own."""
    import threading  # here: the build's fast path never publishes

    directory, name = os.path.split(os.fspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.croft-tmp")
    with open(tmp, "wb") as stream:
        stream.write(data)
    os.replace(tmp, path)


def produce(source: StrPath, target: StrPath, mode: int) -> str:
    """Put a copy of source at target with this mode and a time from its content; its sha256."""
    directory, name = os.path.split(os.fspath(target))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.croft-tmp")
    digest = copy_hashing(source, tmp)
    os.chmod(tmp, mode)
    stamp_content(tmp, digest)
    swap_in(tmp, target)
    return digest


def put(target: StrPath, data: bytes, digest: str, mode: int) -> bool:
    """Make `target` hold `data` (whose sha256 is `digest`) with this mode, stamped by its
    content; whether it had to be written."""
    try:
        same = sha256(target) == digest
    except FileNotFoundError:
        same = False
    if same:
        os.chmod(target, mode)
        return False
    write(target, data, mode)
    stamp_content(target, digest)
    return True


def sha256(path: StrPath) -> str:
    import hashlib

    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def copy_hashing(source: StrPath, destination: StrPath) -> str:
    """Copy a file and return the sha256 of what was copied (one read of the source)."""
    import hashlib

    h = hashlib.sha256()
    with open(source, "rb") as src, open(destination, "wb") as dst:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            dst.write(chunk)
    return h.hexdigest()


# 2001-01-01T00:00:00Z: files croft makes get times from here on, derived from their content.
_CONTENT_EPOCH_NS = 978_307_200 * 10**9


def stamp_content(path: StrPath, digest: str) -> None:
    """Give a file croft made a modification time derived from its content (a sha256).

    rsync's quick check (size and mtime, to the nanosecond with --modify-window=-1) then says
    "same" exactly when the content is the same: across generations, after a rebuild from
    nothing, and never for two edits of equal size saved within one clock tick. Such a time is
    also never "racy" for the build's fast path (see croft.build.stamp).
    """
    mtime = _CONTENT_EPOCH_NS + int(digest[:15], 16) % (2**58)
    os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
