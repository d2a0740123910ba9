"""CPU architectures: Debian's names for them (images), the kernel's (machines' [hardware]), and
running another architecture's programs while building its images (QEMU user emulation)."""

from __future__ import annotations

import platform
from pathlib import Path

from croft.errors import CroftError
from croft.run import run

# The kernel's name (uname -m, [hardware] arch) -> Debian's (images' arch).
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
KERNEL_ARCH = {debian: kernel for kernel, debian in DEBIAN_ARCH.items()}
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def host() -> str:
    """The build host's Debian architecture."""
    if platform.machine() not in DEBIAN_ARCH:
        raise CroftError(f"croft builds images on x86_64 and aarch64 hosts, not {platform.machine()}")
    return DEBIAN_ARCH[platform.machine()]


def ensure_runnable(arch: str) -> None:
    """Make `arch`'s programs run here, for debootstrap's second stage and commands in an image
    root: QEMU user emulation registered with binfmt_misc, as systemd-binfmt does at boot (where
    PID 1 is not systemd, nothing did). The F flag makes the kernel open the emulator at
    registration, so it also works inside chroots and containers that lack it."""
    if arch == host():
        return
    kernel_name = KERNEL_ARCH[arch]
    entry = BINFMT_MISC / f"qemu-{kernel_name}"
    if entry.exists() and entry.read_text().startswith("enabled"):
        return
    rule = Path(f"/usr/lib/binfmt.d/qemu-{kernel_name}.conf")
    if not rule.exists():
        raise CroftError(
            f"building {arch} images on {host()} needs QEMU user emulation: "
            "apt-get install qemu-user-static (scripts/setup does)"
        )
    if not (BINFMT_MISC / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_MISC])
    if not entry.exists():
        (BINFMT_MISC / "register").write_text(rule.read_text().strip())
    if not entry.read_text().startswith("enabled"):
        entry.write_text("1")
