"""The ESP croft boots from: the kernel, the initrd, syslinux (BIOS) and systemd-boot (UEFI) with
their configs. Filled with mtools, so the FAT is never mounted (no vfat module needed where it
is made). Shared by disk images built on the host (croft.images.disk) and the agent's
install-bootloader action."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

ROOT_LABEL = "croft-root"
# The serial console last: it becomes /dev/console, where installs and tests read the boot.
CONSOLES = "console=tty0 console=ttyS0"
SYSTEMD_BOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
SYSLINUX_GPT_MBR = "/usr/lib/syslinux/mbr/gptmbr.bin"


def kernel_cmdline(extra: str = "") -> str:
    return f"root=PARTLABEL={ROOT_LABEL} rw {CONSOLES} {extra}".strip()


def esp_files(cmdline: str) -> dict[str, str]:
    """ESP path -> content: syslinux (BIOS) and systemd-boot (UEFI) boot /vmlinuz with /initrd.img."""
    return {
        "syslinux.cfg": "DEFAULT croft\nPROMPT 0\nTIMEOUT 0\nLABEL croft\n  LINUX /vmlinuz\n"
        f"  INITRD /initrd.img\n  APPEND {cmdline}\n",
        "loader/loader.conf": "default croft.conf\ntimeout 0\n",
        "loader/entries/croft.conf": f"title croft\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n",
    }


def fill_esp(
    esp: str, kernel: str, initrd: str, cmdline: str, run: Callable[[Sequence[str]], object]
) -> None:
    """Write everything into `esp` (a FAT filesystem: a partition or an image file); `run` runs
    a command and raises when it fails (croft.run.run on the host, the agent's sh)."""
    mtools = ["-i", esp]
    run(["mmd", "-D", "s", *mtools, "::EFI", "::EFI/BOOT", "::loader", "::loader/entries"])
    copies = [(kernel, "::vmlinuz"), (initrd, "::initrd.img"), (SYSTEMD_BOOT, "::EFI/BOOT/BOOTX64.EFI")]
    with tempfile.TemporaryDirectory() as scratch:
        for name, content in esp_files(cmdline).items():
            path = os.path.join(scratch, name.replace("/", "_"))
            with open(path, "w") as file:
                file.write(content)
            copies.append((path, f"::{name}"))
        for source, target in copies:
            # -o: overwrite what an earlier install left
            run(["mcopy", "-o", *mtools, source, target])
    # BIOS: ldlinux.sys into the FAT; the disk's gptmbr.bin boots the partition flagged
    # LegacyBIOSBootable.
    run(["syslinux", "--install", esp])
