"""Overlays: packages and files installed on top of a mounted base, captured as the copy-on-write
difference (overlayfs' upper directory) and packed small, without rebuilding the base."""

from __future__ import annotations

from pathlib import Path

from croft.images import rootfs, squashfs
from croft.images.initrd import pack_cpio
from croft.site.model import ImageConfig


def build(config: ImageConfig, tree: Path, base_squashfs: Path, work: Path, output: Path) -> None:
    lower, upper, overlay_work = work / "lower", work / "upper", work / "work"
    upper.mkdir(parents=True)
    overlay_work.mkdir()
    with rootfs.mounted(base_squashfs, lower, "-t", "squashfs", "-o", "loop,ro"):
        options = f"lowerdir={lower},upperdir={upper},workdir={overlay_work}"
        with rootfs.mounted("croft-overlay", work / "merged", "-t", "overlay", "-o", options) as merged:
            if config.packages:
                rootfs.install(merged, config.packages)
            rootfs.copy_tree(tree, merged)
            for command in config.commands:
                rootfs.in_root(merged, command)
    rootfs.strip(upper)
    if config.format == "squashfs":
        squashfs.pack(upper, output, config.compression)
    else:
        pack_cpio(upper, "gzip", output)
