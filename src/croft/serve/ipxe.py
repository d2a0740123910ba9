"""The iPXE scripts croft serve answers /boot/MAC.ipxe with."""

from __future__ import annotations


def netboot_script(kernel_url: str, initrd_url: str, args: str) -> str:
    # initrd=NAME on the command line: iPXE's EFI loader (Debian's 2019 build) needs it to pass
    # the initrd to the kernel.
    return (
        "#!ipxe\n"
        "echo croft: netbooting the provisioning environment\n"
        f"kernel {kernel_url} initrd=initrd.img {args}\n"
        f"initrd --name initrd.img {initrd_url}\n"
        "boot\n"
    )


def local_boot_script(reason: str) -> str:
    # exit hands the machine back to its firmware, which boots the next device: its disk. With
    # a non-zero status, as a boot that failed: UEFI firmware (OVMF) treats an option that
    # returned success as done and opens its menu instead of trying the next one.
    return f"#!ipxe\necho croft: {reason}; booting from disk\nexit 1\n"
