"""croft's initrd: busybox, the kernel modules a machine needs to boot, and init.sh.

One initrd boots both ways: over the network (a base squashfs plus overlays on tmpfs, the RackHD
model) and from an installed disk (root=), so netboot and disk images share it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from croft.images.archive import DEFAULT_MIRROR, Archive
from croft.images.kernel import DEFAULT_MODULES, Kernel
from croft.run import run

_HERE = Path(__file__).parent
COMPRESSORS = {"zstd": "zstd -q -19 -T0", "xz": "xz -q --check=crc32 -T0", "gzip": "gzip -9n"}


def build(
    archive: Archive, kernel: Kernel, modules: tuple[str, ...], compression: str, work: Path, output: Path
) -> None:
    """Write the initrd for `kernel` to `output`, loading croft's default modules and `modules`,
    with busybox from `archive` (the kernel's architecture)."""
    root = work / "initrd"
    for directory in (
        "bin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "newroot",
        "croft",
        "etc/croft",
        "lib/modules",
    ):
        (root / directory).mkdir(parents=True, exist_ok=True)
    # busybox-static: no shared libraries to copy.
    shutil.copy2(archive.unpack("busybox-static") / "bin" / "busybox", root / "bin" / "busybox")
    # The kernel panics when the initramfs lacks /bin/sh; init.sh installs the other applets.
    (root / "bin" / "sh").symlink_to("busybox")
    # Without /dev/console in the archive, init starts with no stdin, stdout or stderr.
    os.mknod(root / "dev" / "console", 0o600 | 0o020000, os.makedev(5, 1))
    files = kernel.modules([*DEFAULT_MODULES, *modules])
    for relative in files:
        shutil.copy2(kernel.modules_dir / relative, root / "lib" / "modules" / Path(relative).name)
    (root / "etc" / "croft" / "modules").write_text("".join(f"{Path(f).name}\n" for f in files))
    shutil.copy2(_HERE / "init.sh", root / "init")
    shutil.copy2(_HERE / "udhcpc.sh", root / "etc" / "croft" / "udhcpc.sh")
    for script in (root / "init", root / "etc" / "croft" / "udhcpc.sh"):
        script.chmod(0o755)
    # One time for every file: the same kernel and modules make the same initrd, byte for byte,
    # so a rebuilt disk image differs from the previous version only where its recipe does.
    for path in [root, *root.rglob("*")]:
        os.utime(path, (0, 0), follow_symlinks=False)
    pack_cpio(root, compression, output)


def pack_cpio(root: Path, compression: str, output: Path) -> None:
    """`root` as a compressed newc cpio archive (the format of initramfs and of cpio overlays),
    owned by root and in a sorted order, so the same tree always packs to the same bytes."""
    run(
        [
            "sh",
            "-c",
            'cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible '
            f'| {COMPRESSORS[compression]} >"$2"',
            "pack_cpio",
            root,
            output,
        ],
        timeout=600,
    )


def arm64_ipxe() -> Path:
    """iPXE for arm64 UEFI machines, which croft serve hands them before their kernel and initrd.
    Debian 12's ipxe package is x86 only; Debian 13's (architecture all) carries an arm64 build."""
    package = Archive("trixie", DEFAULT_MIRROR, "arm64").unpack("ipxe")
    return package / "usr" / "lib" / "ipxe" / "ipxe-arm64.efi"
