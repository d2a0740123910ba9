"""croft's initrd netboots the test site's base and overlay in QEMU (TCG), over HTTP from a
server inside a network namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from croft.images.store import ImageManifest, Store
from croft.lab.qemu import VirtualMachine
from tests.images.conftest import SERVER, BootLan

pytestmark = [pytest.mark.images, pytest.mark.qemu]

MAC = "52:54:00:78:00:10"


def netboot(
    images: dict[str, ImageManifest], store: Store, lan: BootLan, workdir: Path, overlays: str
) -> VirtualMachine:
    kernel = images["initrd"].artifacts
    base = images["netboot"].artifacts["squashfs"].sha256
    machine = VirtualMachine(
        "netboot",
        workdir,
        kernel=store.path(kernel["kernel"].sha256),
        initrd=store.path(kernel["initrd"].sha256),
        append=f"croft.server=http://{SERVER}:8000 croft.base={lan.url(base)} croft.overlays={overlays}",
        tap=lan.tap,
        mac=MAC,
        netns=lan.netns,
    )
    machine.start()
    return machine


def test_netboot_unions_base_and_overlay_and_starts_its_service(
    images: dict[str, ImageManifest], store: Store, boot_lan: BootLan, tmp_path: Path
) -> None:
    hello = images["hello"].artifacts["squashfs"].sha256
    note = images["note"].artifacts["cpio.gz"].sha256
    machine = netboot(images, store, boot_lan, tmp_path, f"{boot_lan.url(hello)},{boot_lan.url(note)}")
    try:
        machine.wait_for(r"croft-init: \S+ \(52:54:00:78:00:10\) has 10\.78\.0\.\d+", 90)
        machine.wait_for(r"croft-init: root is the base \+ 2 overlay\(s\) on overlayfs", 60)
        # hello's service, started by systemd in the union root, reads what the cpio overlay
        # stacked above it wrote and sees the base's file it deleted gone.
        machine.wait_for(r"hello-overlay: overlay marker from the cpio overlay; issue.net: deleted", 120)
        machine.wait_for(r"Reached target.*Multi-User System", 60)
    finally:
        machine.stop()


def test_a_damaged_download_stops_the_boot_with_a_message_and_a_report(
    images: dict[str, ImageManifest], store: Store, boot_lan: BootLan, tmp_path: Path
) -> None:
    overlay = images["hello"].artifacts["squashfs"].sha256
    wrong = boot_lan.url(overlay).replace(f"sha256={overlay}", "sha256=" + "0" * 64)
    machine = netboot(images, store, boot_lan, tmp_path, wrong)
    try:
        match = machine.wait_for(r"croft-init: ERROR: (.*)", 120)
        assert re.search(f"has sha256 {overlay}, expected 0{{64}}", match.group(1))
        machine.wait_for(f"croft-init: reported to http://{SERVER}:8000", 10)
        machine.wait_for("waiting with a shell", 10)
        assert f"/boot/{MAC}/error {match.group(1)}" in boot_lan.reports.read_text()
    finally:
        machine.stop()
