"""What the ESP holds besides the kernel and initrd: syslinux's and systemd-boot's configs.
Shared by disk images built on the host (croft.images.disk) and the agent's install-bootloader."""

from __future__ import annotations

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
