"""The ESP croft boots from: the kernel, the initrd, syslinux (BIOS, x86 only) and systemd-boot
(UEFI) with their configs. Filled with mtools, so the FAT is never mounted (no vfat module needed
where it is made). Shared by disk images built on the host (croft.images.disk) and the agent's
install-bootloader action. Architectures by the kernel's names: x86_64, aarch64."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable, Sequence

ROOT_LABEL = "croft-root"
# The serial console last: it becomes /dev/console, where installs and tests read the boot.
CONSOLES = {"x86_64": "console=tty0 console=ttyS0", "aarch64": "console=tty0 console=ttyAMA0"}
SYSTEMD_BOOT_DIR = "/usr/lib/systemd/boot/efi"
# systemd-boot's file for the architecture, and the name UEFI firmware boots from removable media.
SYSTEMD_BOOT = {
    "x86_64": ("systemd-bootx64.efi", "BOOTX64.EFI"),
    "aarch64": ("systemd-bootaa64.efi", "BOOTAA64.EFI"),
}
SYSLINUX_GPT_MBR = "/usr/lib/syslinux/mbr/gptmbr.bin"


def kernel_cmdline(extra: str = "", arch: str | None = None) -> str:
    """The installed system's kernel arguments; `arch` defaults to this machine's."""
    return f"root=PARTLABEL={ROOT_LABEL} rw {CONSOLES[arch or platform.machine()]} {extra}".strip()


def esp_files(cmdline: str) -> dict[str, str]:
    """ESP path -> content: syslinux (BIOS) and systemd-boot (UEFI) boot /vmlinuz with /initrd.img."""
    return {
        "syslinux.cfg": "DEFAULT croft\nPROMPT 0\nTIMEOUT 0\nLABEL croft\n  LINUX /vmlinuz\n"
        f"  INITRD /initrd.img\n  APPEND {cmdline}\n",
        "loader/loader.conf": "default croft.conf\ntimeout 0\n",
        "loader/entries/croft.conf": f"title croft\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n",
    }


def fill_esp(
    esp: str,
    kernel: str,
    initrd: str,
    cmdline: str,
    run: Callable[[Sequence[str]], object],
    arch: str,
    systemd_boot_dir: str = SYSTEMD_BOOT_DIR,
) -> None:
    """Write everything for an `arch` machine into `esp` (a FAT filesystem: a partition or an
    image file); `run` runs a command and raises when it fails (croft.run.run on the host, the
    agent's sh)."""
    mtools = ["-i", esp]
    run(["mmd", "-D", "s", *mtools, "::EFI", "::EFI/BOOT", "::loader", "::loader/entries"])
    systemd_boot, boot_name = SYSTEMD_BOOT[arch]
    copies = [
        (kernel, "::vmlinuz"),
        (initrd, "::initrd.img"),
        (os.path.join(systemd_boot_dir, systemd_boot), f"::EFI/BOOT/{boot_name}"),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for name, content in esp_files(cmdline).items():
            path = os.path.join(scratch, name.replace("/", "_"))
            with open(path, "w") as file:
                file.write(content)
            copies.append((path, f"::{name}"))
        for source, target in copies:
            # -o: overwrite what an earlier install left
            run(["mcopy", "-o", *mtools, source, target])
    if arch == "x86_64":
        # BIOS: ldlinux.sys into the FAT; the disk's gptmbr.bin boots the partition flagged
        # LegacyBIOSBootable.
        run(["syslinux", "--install", esp])
