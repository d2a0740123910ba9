"""Installing without a disk image: partition, unpack the tar.zst (or receive the btrfs stream),
install the bootloaders, with the agent's own actions on a loop device; the disk then boots in
QEMU (BIOS for one, UEFI for the other)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from croft.images.store import ImageManifest, Store
from croft.lab.qemu import Firmware, VirtualMachine
from croft.run import run, spawn
from tests.images.conftest import INSTALLED_ROOT

pytestmark = [pytest.mark.images, pytest.mark.qemu]


@pytest.fixture
def artifacts(store: Store) -> Iterator[str]:
    """The store over HTTP on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = spawn(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", store.objects]
    )
    run(
        [
            "sh",
            "-c",
            f"for i in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:{port}/ && exit 0; sleep 0.1; "
            "done",
        ]
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def loop_disk(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    image = tmp_path / "disk.raw"
    with image.open("wb") as file:
        file.truncate(2 << 30)
    device = run(["losetup", "--find", "--show", "--partscan", image]).stdout.strip()
    try:
        yield image, device
    finally:
        run(["losetup", "-d", device], check=False)


def action(name: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "croft.agent.actions", name],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    return result.stdout


def boot(image: Path, workdir: Path, firmware: Firmware) -> None:
    machine = VirtualMachine(f"installed-{firmware}", workdir, firmware=firmware, disks=[image])
    machine.start()
    try:
        machine.wait_for(INSTALLED_ROOT, 120)
        machine.wait_for(r"Reached target.*Multi-User System", 120)
        machine.wait_for(r"installed login:", 60)  # the hostname write-file wrote
    finally:
        machine.stop()


def url(artifacts: str, manifest: ImageManifest, role: str) -> str:
    digest = manifest.artifacts[role].sha256
    return f"{artifacts}/{digest}#sha256={digest}"


@pytest.mark.parametrize(
    ("role", "firmware"),
    [("tar.zst", "bios"), ("btrfs.zst", "uefi")],
)
def test_partition_unpack_and_install_the_bootloaders(
    images: dict[str, ImageManifest],
    artifacts: str,
    loop_disk: tuple[Path, str],
    tmp_path: Path,
    role: str,
    firmware: Firmware,
) -> None:
    image, disk = loop_disk
    debian = images["debian"]
    action("partition", DEST_DISK=disk)
    root = f"{disk}p2"
    if role == "tar.zst":
        output = action(
            "archive-to-disk", ARCHIVE_URL=url(artifacts, debian, role), DEST_PARTITION=root, MKFS="1"
        )
    else:
        output = action(
            "btrfs-receive",
            STREAM_URL=url(artifacts, debian, role),
            DEST_PARTITION=root,
            MKFS="1",
            DEFAULT="1",
        )
        assert f"received debian@{debian.recipe}" in output
    assert "downloaded" in output
    action("write-file", DEST_PARTITION=root, DEST_PATH="/etc/hostname", CONTENTS="installed\n")
    # exec: a command chrooted into the installed system
    assert "installed" in action(
        "exec", DEST_PARTITION=root, CMD="cat /etc/hostname; test -x /usr/sbin/sshd || true"
    )
    action("install-bootloader", DEST_DISK=disk, ESP_PARTITION=f"{disk}p1", ROOT_PARTITION=root)
    run(["losetup", "-d", disk])
    boot(image, tmp_path, firmware)


def test_a_damaged_download_fails_the_action_with_its_reason(
    images: dict[str, ImageManifest], artifacts: str, loop_disk: tuple[Path, str]
) -> None:
    _, disk = loop_disk
    digest = images["debian"].artifacts["raw.zst"].sha256
    result = subprocess.run(
        [sys.executable, "-m", "croft.agent.actions", "image-to-disk"],
        env={**os.environ, "IMAGE_URL": f"{artifacts}/{digest}#sha256={'0' * 64}", "DEST_DISK": disk},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1].endswith(f"sha256 {digest}, expected {'0' * 64}")


def test_an_unknown_action_says_which_exist() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "croft.agent.actions", "format-all"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown action 'format-all'; built-in actions: wipe-disk, partition" in result.stdout
