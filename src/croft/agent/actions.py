"""The agent's built-in actions. Each runs as `python3 -m croft_agent.actions NAME` with its
parameters in the environment, prints its progress, and exits non-zero with a last line that
says what went wrong. See docs/workflows.md for every parameter.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import bootconfig

CHUNK = 1 << 20
# Magic numbers of the compressions image-to-disk understands, and the tool that undoes each.
DECOMPRESSORS = {
    b"\x28\xb5\x2f\xfd": ["zstd", "-d", "-c"],
    b"\xfd7zXZ": ["xz", "-d", "-c"],
    b"\x1f\x8b": ["gzip", "-d", "-c"],
}


class ActionError(Exception):
    """The action failed; its message is the action's last line of output."""


def param(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ActionError(f"missing parameter {name} (set it in the action's env)")
    return value


def sh(*argv: str, input: bytes | None = None) -> str:
    print(f"+ {shlex.join(argv)}", flush=True)
    result = subprocess.run(argv, input=input, capture_output=True)
    output = (result.stdout + result.stderr).decode(errors="replace")
    if output.strip():
        print(output.rstrip(), flush=True)
    if result.returncode != 0:
        raise ActionError(f"{argv[0]} exited {result.returncode}: {output.strip().splitlines()[-1:] or ''}")
    return result.stdout.decode(errors="replace")


def split_url(url: str) -> tuple[str, str | None]:
    """URL#sha256=HEX -> (URL, HEX)."""
    base, _, fragment = url.partition("#")
    return base, fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None


def download(url: str) -> Iterator[bytes]:
    """The body of `url` in chunks, with progress every 5 s; checks its sha256 when the URL
    carries one (URL#sha256=HEX) once the last chunk has been handed on."""
    address, expected = split_url(url)
    digest = hashlib.sha256()
    with urllib.request.urlopen(address, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done, started, shown = 0, time.monotonic(), time.monotonic()
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                rate = done / (shown - started) / 1e6
                share = f" of {total / 1e6:.0f} MB ({100 * done / total:.0f}%)" if total else ""
                print(f"{done / 1e6:.0f} MB{share}, {rate:.1f} MB/s", flush=True)
            yield chunk
    print(f"downloaded {done / 1e6:.1f} MB in {time.monotonic() - started:.1f} s", flush=True)
    if expected is not None and digest.hexdigest() != expected:
        raise ActionError(f"{address}: sha256 {digest.hexdigest()}, expected {expected}")


def stream_into(url: str, argv: list[str] | None, destination: str | None = None) -> None:
    """Download `url`, decompressed by its magic number, into `argv`'s stdin (or to `destination`)."""
    chunks = download(url)
    first = next(chunks, b"")
    decompress = next((tool for magic, tool in DECOMPRESSORS.items() if first.startswith(magic)), None)
    if destination is not None:
        sink = open(destination, "wb")  # noqa: SIM115 - closed below, after the pipeline
        consumer = subprocess.Popen(decompress or ["cat"], stdin=subprocess.PIPE, stdout=sink)
    else:
        assert argv is not None
        if decompress:
            decompressor = subprocess.Popen(decompress, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            consumer = subprocess.Popen(argv, stdin=decompressor.stdout)
        else:
            consumer = decompressor = subprocess.Popen(argv, stdin=subprocess.PIPE)
    feeder = consumer if destination is not None else decompressor
    assert feeder.stdin is not None
    try:
        feeder.stdin.write(first)
        for chunk in chunks:
            feeder.stdin.write(chunk)
    finally:
        feeder.stdin.close()
        codes = [feeder.wait(), consumer.wait()]
        if destination is not None:
            sink.close()
    if any(codes):
        raise ActionError(f"writing {url} failed (exit {codes})")


@contextmanager
def mounted(device: str, fstype: str | None = None) -> Iterator[str]:
    target = tempfile.mkdtemp(prefix="croft-")
    sh("mount", *(["-t", fstype] if fstype else []), device, target)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-R", target])
        os.rmdir(target)


def reread_partitions(disk: str) -> None:
    """Make the kernel read the new partition table, and see that each partition has its node."""
    subprocess.run(["sync"])
    subprocess.run(["blockdev", "--rereadpt", disk])
    # The kernel can decline a re-read (a loop device, a partition still open) while returning
    # success; partx adds and removes the partitions one by one instead.
    subprocess.run(["partx", "--update", disk], capture_output=True)
    if shutil.which("udevadm"):
        subprocess.run(["udevadm", "settle"])
    # Without udev, and on a static /dev, nobody makes the nodes: make them from sysfs.
    name = os.path.basename(os.path.realpath(disk))
    for entry in sorted(os.listdir(f"/sys/class/block/{name}")):
        dev_file = f"/sys/class/block/{name}/{entry}/dev"
        if entry.startswith(name) and os.path.exists(dev_file) and not os.path.exists(f"/dev/{entry}"):
            with open(dev_file) as file:
                major, minor = map(int, file.read().split(":"))
            os.mknod(f"/dev/{entry}", 0o660 | stat.S_IFBLK, os.makedev(major, minor))


def partition_path(disk: str, number: int) -> str:
    """/dev/sda + 2 -> /dev/sda2; /dev/nvme0n1 + 2 -> /dev/nvme0n1p2."""
    return f"{disk}p{number}" if disk[-1].isdigit() else f"{disk}{number}"


def resolve_partition(value: str) -> str:
    """A device path, or PARTLABEL=name / LABEL=name (found with blkid)."""
    if value.startswith(("PARTLABEL=", "LABEL=", "UUID=", "PARTUUID=")):
        found = sh("blkid", "-o", "device", "-t", value).strip().splitlines()
        if not found:
            raise ActionError(f"no partition with {value}")
        return found[0]
    return value


# -- the actions ---------------------------------------------------------------------------


def wipe_disk() -> None:
    """DEST_DISK: remove every signature and partition table, zero the first and last MiB."""
    disk = param("DEST_DISK")
    sh("wipefs", "--all", "--force", disk)
    size = int(sh("blockdev", "--getsize64", disk))
    with open(disk, "r+b") as device:
        device.write(bytes(CHUNK))
        device.seek(max(size - CHUNK, 0))
        device.write(bytes(CHUNK))
    reread_partitions(disk)


def partition() -> None:
    """DEST_DISK, LAYOUT (an sfdisk script; default: GPT with a 512 MiB ESP and a root named
    croft-root). A partition named esp gets a FAT filesystem (the bootloaders' home)."""
    disk = param("DEST_DISK")
    layout = param(
        "LAYOUT",
        "label: gpt\n"
        "size=512MiB, type=uefi, name=esp, attrs=LegacyBIOSBootable\n"
        f"type=linux, name={bootconfig.ROOT_LABEL}\n",
    )
    sh("sfdisk", "--wipe", "always", "--wipe-partitions", "always", disk, input=layout.encode())
    reread_partitions(disk)
    table = json.loads(sh("sfdisk", "--json", disk))["partitiontable"]
    for entry in table.get("partitions", []):
        if entry.get("name") == "esp":
            sh("mkfs.vfat", "-F", "32", "-n", "ESP", entry["node"])


def image_to_disk() -> None:
    """IMAGE_URL (#sha256=HEX to check), DEST_DISK: stream a raw image, zstd/xz/gzip or plain."""
    disk = param("DEST_DISK")
    stream_into(param("IMAGE_URL"), None, destination=disk)
    reread_partitions(disk)
    print(sh("sfdisk", "--list", disk), flush=True)


def archive_to_disk() -> None:
    """ARCHIVE_URL (a tar, compressed or not), DEST_PARTITION, FS_TYPE (made first when MKFS=1)."""
    device = resolve_partition(param("DEST_PARTITION"))
    fstype = param("FS_TYPE", "ext4")
    if param("MKFS", "0") == "1":
        sh(
            f"mkfs.{fstype}",
            *(["-F"] if fstype.startswith("ext") else ["-f"]),
            "-L",
            param("LABEL", "croft-root"),
            device,
        )
    with mounted(device, fstype) as root:
        stream_into(
            param("ARCHIVE_URL"),
            ["tar", "-x", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", root],
        )


def btrfs_receive() -> None:
    """STREAM_URL, DEST_PARTITION (btrfs; made first when MKFS=1), DEFAULT=1 to boot the received
    snapshot. An incremental stream needs its parent received there before."""
    device = resolve_partition(param("DEST_PARTITION"))
    if param("MKFS", "0") == "1":
        sh("mkfs.btrfs", "-f", "-L", param("LABEL", "croft-root"), device)
    with mounted(device, "btrfs") as top:
        before = set(os.listdir(top))
        stream_into(param("STREAM_URL"), ["btrfs", "receive", top])
        received = sorted(set(os.listdir(top)) - before)
        print(f"received {', '.join(received) or 'into an existing snapshot'}", flush=True)
        if param("DEFAULT", "0") == "1" and received:
            # The received snapshot is read-only; the machine runs a writable snapshot of it.
            live = os.path.join(top, "root")
            if os.path.exists(live):
                sh("btrfs", "subvolume", "delete", live)
            sh("btrfs", "subvolume", "snapshot", os.path.join(top, received[0]), live)
            subvolume_id = sh("btrfs", "inspect-internal", "rootid", live).strip()
            sh("btrfs", "subvolume", "set-default", subvolume_id, top)


def write_file() -> None:
    """DEST_PARTITION, DEST_PATH, CONTENTS, MODE (octal, default 0644), UID, GID."""
    device = resolve_partition(param("DEST_PARTITION"))
    with mounted(device) as root:
        path = os.path.join(root, param("DEST_PATH").lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as file:
            file.write(param("CONTENTS"))
        os.chmod(path, int(param("MODE", "0644"), 8))
        os.chown(path, int(param("UID", "0")), int(param("GID", "0")))
        print(f"wrote {param('DEST_PATH')} ({len(param('CONTENTS'))} bytes)", flush=True)


def install_bootloader() -> None:
    """DEST_DISK, ESP_PARTITION, ROOT_PARTITION, CMDLINE: copy the installed system's kernel
    and initrd to the ESP and install syslinux (BIOS) and systemd-boot (UEFI) there."""
    disk = param("DEST_DISK")
    esp = resolve_partition(param("ESP_PARTITION", partition_path(disk, 1)))
    root_device = resolve_partition(param("ROOT_PARTITION", partition_path(disk, 2)))
    cmdline = param("CMDLINE", bootconfig.kernel_cmdline())
    with mounted(root_device) as root, tempfile.TemporaryDirectory() as scratch:
        boot = os.path.join(root, "boot")
        kernels = sorted(name for name in os.listdir(boot) if name.startswith("vmlinuz-"))
        if not kernels:
            raise ActionError(f"no kernel in {root_device}:/boot")
        version = kernels[-1].removeprefix("vmlinuz-")
        # Copied out: the root is unmounted before the ESP is written.
        kernel, initrd = os.path.join(scratch, "vmlinuz"), os.path.join(scratch, "initrd.img")
        shutil.copyfile(os.path.join(boot, kernels[-1]), kernel)
        shutil.copyfile(os.path.join(boot, f"initrd.img-{version}"), initrd)
        bootconfig.fill_esp(esp, kernel, initrd, cmdline, lambda argv: sh(*argv), platform.machine())
    if platform.machine() == "x86_64":
        sh("dd", f"if={bootconfig.SYSLINUX_GPT_MBR}", f"of={disk}", "bs=440", "count=1", "conv=notrunc")


def exec_action() -> None:
    """DEST_PARTITION, CMD: a shell command chrooted into the installed system."""
    device = resolve_partition(param("DEST_PARTITION"))
    with mounted(device) as root:
        for name in ("dev", "proc", "sys"):
            sh("mount", "--rbind", f"/{name}", os.path.join(root, name))
        result = subprocess.run(["chroot", root, "/bin/sh", "-ec", param("CMD")])
        if result.returncode != 0:
            raise ActionError(f"the command exited {result.returncode}")


def kexec() -> None:
    """DEST_PARTITION, CMDLINE: boot the installed kernel now, without firmware."""
    device = resolve_partition(param("DEST_PARTITION"))
    with mounted(device) as root:
        boot = os.path.join(root, "boot")
        kernel = sorted(name for name in os.listdir(boot) if name.startswith("vmlinuz-"))[-1]
        initrd = os.path.join(boot, f"initrd.img-{kernel.removeprefix('vmlinuz-')}")
        sh(
            "kexec",
            "-l",
            os.path.join(boot, kernel),
            f"--initrd={initrd}",
            f"--append={param('CMDLINE', bootconfig.kernel_cmdline())}",
        )
    sh("kexec", "-e")


def reboot() -> None:
    """Reboot now (the agent has reported success already)."""
    subprocess.run(["sync"])
    sh("systemctl", "reboot", "--force", "--force")


ACTIONS: dict[str, Callable[[], None]] = {
    "wipe-disk": wipe_disk,
    "partition": partition,
    "image-to-disk": image_to_disk,
    "archive-to-disk": archive_to_disk,
    "btrfs-receive": btrfs_receive,
    "write-file": write_file,
    "install-bootloader": install_bootloader,
    "exec": exec_action,
    "kexec": kexec,
    "reboot": reboot,
}


def main(name: str) -> int:
    action = ACTIONS.get(name)
    if action is None:
        print(f"unknown action {name!r}; built-in actions: {', '.join(ACTIONS)}", flush=True)
        return 2
    try:
        action()
    except ActionError as error:
        print(error, flush=True)
        return 1
    except OSError as error:
        print(f"{name}: {error}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
