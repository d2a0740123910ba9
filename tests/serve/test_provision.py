"""croft serve provisions a bare QEMU machine end to end: PXE (dnsmasq) -> iPXE -> the netboot
environment -> the agent runs the install workflow -> the machine boots its disk."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from croft.images.store import ImageManifest
from croft.lab.network import Lan
from croft.lab.qemu import Machine
from croft.run import spawn
from tests.images.conftest import SITE

pytestmark = pytest.mark.images

NETNS = "croftservetest"
CROFT = [sys.executable, "-m", "croft", "--site", str(SITE)]


def croft(*args: str) -> str:
    result = subprocess.run([*CROFT, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"croft {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture
def served(images: dict[str, ImageManifest], tmp_path: Path) -> Iterator[Path]:
    """croft serve for the test site, in a network namespace with the site's LAN."""
    lan = Lan(NETNS, ipaddress.IPv4Network("10.78.0.0/24"), "10.78.0.254", bridge_address="10.78.0.1")
    lan.destroy()
    lan.create()
    lan.add_tap("tap0")
    state = SITE / ".croft" / "serve"
    (state / "workflows.db").unlink(missing_ok=True)
    log = tmp_path / "serve.log"
    server = spawn(
        ["ip", "netns", "exec", NETNS, *CROFT, "serve"], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while "croft serve: http://" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield log
    finally:
        server.terminate()
        server.wait(10)
        lan.destroy()


def test_a_bare_machine_is_installed_and_boots_its_disk(served: Path, tmp_path: Path) -> None:
    created = croft("workflow", "create", "lab1")
    workflow_id = created.split()[1].rstrip(":")
    assert "pending" in created
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as file:
        file.truncate(2 << 30)
    machine = Machine(
        "lab1", tmp_path, disks=[disk], tap="tap0", mac="52:54:00:78:00:21", netns=NETNS,
        boot="network", reboot=True,
    )  # fmt: skip
    machine.start()
    try:
        machine.wait_for(r"croft-init: root is the base \+ 1 overlay", 240)
        machine.wait_for(r"croft-agent: asking http://10\.78\.0\.1:8080 for work", 120)
        machine.wait_for(r"install/reboot: starting", 600)
        # After the reboot the firmware PXE-boots again, gets no boot file, and boots the disk.
        machine.wait_for(r"croft-init: root is /dev/vda2", 240)
        machine.wait_for(r"lab1 login:", 180)
    finally:
        machine.stop()
    shown = croft("workflow", "show", workflow_id)
    assert f"workflow {workflow_id}: lab1 (install) success" in shown, shown
    logs = croft("workflow", "logs", workflow_id)
    assert "==> install/image" in logs and "downloaded" in logs
    listed = [line.split()[:4] for line in croft("workflow", "list").splitlines()]
    assert [workflow_id, "lab1", "install", "success"] in listed
