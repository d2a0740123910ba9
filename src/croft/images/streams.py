"""The stream store: every disk image's root as a read-only btrfs snapshot, one per version,
so an image ships as a full `btrfs send` stream and as an incremental one from the version
before it (the Butterknife model: a machine already running version N receives only the change).

The snapshots live in a btrfs filesystem in a file (.croft/images/templates.btrfs), mounted
while a build uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from croft.images.rootfs import mounted
from croft.run import run

FILE_SIZE = 16 << 30  # sparse: it takes only what its snapshots use


class Templates:
    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint

    def snapshot(self, name: str, version: str) -> Path:
        return self.mountpoint / f"{name}@{version}"

    def add(self, name: str, version: str, root: Path, parent: str | None) -> Path:
        """`root` as the read-only snapshot name@version (replacing a leftover one).

        With a parent version, the new one starts as a snapshot of it and only files whose
        content differs are rewritten, so unchanged files share their extents with the parent and
        `btrfs send -p` carries only the change.
        """
        snapshot = self.snapshot(name, version)
        if snapshot.exists():
            run(["btrfs", "-q", "subvolume", "delete", snapshot])
        staging = self.mountpoint / f".{name}@{version}.partial"
        if staging.exists():
            run(["btrfs", "-q", "subvolume", "delete", staging])
        if parent is None:
            run(["btrfs", "-q", "subvolume", "create", staging])
        else:
            run(["btrfs", "-q", "subvolume", "snapshot", self.snapshot(name, parent), staging])
        # --checksum: two builds stamp equal files with different times; compare their content.
        rsync = ["rsync", "-aHAX", "--numeric-ids", "--delete", "--checksum"]
        run([*rsync, f"{root}/", f"{staging}/"], timeout=1800)
        run(["btrfs", "-q", "subvolume", "snapshot", "-r", staging, snapshot])
        run(["btrfs", "-q", "subvolume", "delete", staging])
        return snapshot

    def send(self, snapshot: Path, output: Path, parent: Path | None = None) -> None:
        argv: list[str | Path] = ["btrfs", "-q", "send", "-f", output]
        if parent is not None:
            argv += ["-p", parent]
        run([*argv, snapshot], timeout=1800)

    def prune(self, name: str, keep: set[str]) -> None:
        """Delete name's snapshots but the versions in `keep`."""
        for snapshot in self.mountpoint.glob(f"{name}@*"):
            if snapshot.name.split("@", 1)[1] not in keep:
                run(["btrfs", "-q", "subvolume", "delete", snapshot])


@contextmanager
def opened(store_root: Path) -> Iterator[Templates]:
    image = store_root / "templates.btrfs"
    if not image.exists():
        partial = image.with_name(".templates.btrfs.partial")
        with partial.open("wb") as file:
            file.truncate(FILE_SIZE)
        run(["mkfs.btrfs", "-q", "-L", "croft-templates", partial])
        partial.rename(image)
    with mounted(image, store_root / "templates", "-o", "loop") as mountpoint:
        yield Templates(mountpoint)
