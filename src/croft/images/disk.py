"""Disk images for installation: a root filesystem with Debian's kernel package, as
(a) a raw GPT disk that boots with UEFI (systemd-boot) and on x86 with BIOS (syslinux), (b) a tar.zst of the
root, and (c, d) btrfs send streams (see streams.py).

The raw image is assembled without mounting anything: the ESP is a FAT image filled with mtools,
the root is written by `mkfs.ext4 -d` straight into its place in the disk file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from croft.agent import bootconfig
from croft.images.arch import KERNEL_ARCH
from croft.images.archive import Archive
from croft.images.kernel import Kernel
from croft.run import run

# Room for two kernels and initrds (Debian's initramfs: ~35 MB): the ESP hook copies the new pair
# beside the old one before it renames them into place.
ESP_MIB = 256
ESP_HOOK = Path(__file__).with_name("esp-hook.sh")
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ZSTD = ["zstd", "-q", "-T0", "-6"]


@dataclass(frozen=True)
class Bootloaders:
    arch: str
    """The machine architecture (x86_64, aarch64): x86_64 disks boot with BIOS too."""
    systemd_boot: Path
    """The directory with systemd-boot's EFI binaries for that architecture."""


def bootloaders(archive: Archive) -> Bootloaders:
    """systemd-boot from `archive` (the disk's suite and architecture), not the host's."""
    files = archive.unpack("systemd-boot-efi") / bootconfig.SYSTEMD_BOOT_DIR.lstrip("/")
    return Bootloaders(KERNEL_ARCH[archive.arch], files)


def boot_files(root: Path, package: str) -> Kernel:
    """The kernel installed in `root` (rootfs.debootstrap's `kernel`), and croft's hook that
    keeps the ESP booting the newest kernel apt installs there."""
    for hooks in ("etc/kernel/postinst.d", "etc/initramfs/post-update.d"):
        (root / hooks).mkdir(parents=True, exist_ok=True)
        shutil.copy2(ESP_HOOK, root / hooks / "zz-croft-esp")
        (root / hooks / "zz-croft-esp").chmod(0o755)
    (version,) = (path.name for path in (root / "lib" / "modules").iterdir())
    return Kernel(package, version, root)


def raw(
    root: Path, kernel: Kernel, size: int, cmdline: str, boot: Bootloaders, work: Path, output: Path
) -> None:
    """A GPT disk of `size` bytes: the ESP (kernel, initrd, bootloaders) and the root."""
    initrd = root / "boot" / f"initrd.img-{kernel.version}"
    esp = work / "esp.img"
    run(["mkfs.vfat", "-C", "-n", "CROFT-ESP", esp, str(ESP_MIB * 1024)])
    bootconfig.fill_esp(
        str(esp), str(kernel.vmlinuz), str(initrd), cmdline, run, boot.arch, str(boot.systemd_boot)
    )

    mib = 1 << 20
    root_start = (1 + ESP_MIB) * mib
    root_size = size - root_start - mib  # the last MiB holds the backup GPT
    with output.open("wb") as disk:
        disk.truncate(size)
    layout = (
        "label: gpt\n"
        f"start=2048, size={ESP_MIB * 2048}, type={ESP_TYPE}, name=esp, attrs=LegacyBIOSBootable\n"
        f"start={root_start // 512}, size={root_size // 512}, type={LINUX_TYPE}, "
        f"name={bootconfig.ROOT_LABEL}\n"
    )
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", output], input=layout)
    run(["dd", f"if={esp}", f"of={output}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"])
    if boot.arch == "x86_64":
        run(
            [
                "dd",
                f"if={bootconfig.SYSLINUX_GPT_MBR}",
                f"of={output}",
                "bs=440",
                "count=1",
                "conv=notrunc",
                "status=none",
            ]
        )
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            bootconfig.ROOT_LABEL,
            "-d",
            root,
            # Written in place: the root partition's offset in the disk file, its size in KiB.
            "-E",
            f"offset={root_start}",
            output,
            f"{root_size // 1024}k",
        ],
        timeout=1800,
    )


def compress(source: Path, output: Path) -> None:
    run([*ZSTD, "-f", "-o", output, source], timeout=1800)


def qcow2(source: Path, output: Path) -> None:
    # -c: compressed clusters, about the size of the zstd raw image, and still bootable as is.
    run(["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", source, output], timeout=1800)


def tar(root: Path, output: Path) -> None:
    # Numeric owners: the installing machine's /etc/passwd must not remap them. xattrs and ACLs
    # carry file capabilities (ping's cap_net_raw) and the like.
    run(
        [
            "sh",
            "-c",
            'tar -C "$1" --numeric-owner --xattrs --xattrs-include="*" --acls -cf - . | zstd -q -T0 -6 >"$2"',
            "tar",
            root,
            output,
        ],
        timeout=1800,
    )
