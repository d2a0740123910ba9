"""Packing trees as squashfs, the format of the netboot base and of overlays."""

from __future__ import annotations

from pathlib import Path

from croft.run import run


def pack(root: Path, output: Path, compression: str) -> None:
    # Whiteouts (0/0 character devices) and overlayfs' trusted.* xattrs are kept, so an overlay's
    # deletions and opaque directories survive packing.
    run(
        ["mksquashfs", root, output, "-noappend", "-quiet", "-no-progress", "-comp", compression],
        timeout=1800,
    )
