"""croft serve provisions bare QEMU machines end to end: PXE (dnsmasq) -> iPXE -> the netboot
environment -> the agent runs the install workflow -> the machine boots its disk.

BIOS with croft as the LAN's DHCP server (full), and UEFI beside a router's DHCP (proxy)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from croft.images.store import ImageManifest
from croft.lab.qemu import Firmware, VirtualMachine
from croft.lan import Lan
from croft.run import spawn
from tests.images.conftest import INSTALLED_ROOT, SITE

pytestmark = [pytest.mark.images, pytest.mark.qemu]

NETNS = "croftservetest"
ROUTER_NETNS = "croftrouter"


def croft(site: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "croft", "--site", str(site), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"croft {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@contextmanager
def router(lan: Lan, workdir: Path) -> Iterator[None]:
    """The LAN's home router: another namespace on the bridge, handing out addresses (dnsmasq)."""
    subprocess.run(["ip", "netns", "del", ROUTER_NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "add", ROUTER_NETNS], check=True)
    commands = [
        [
            "ip",
            "-n",
            lan.name,
            "link",
            "add",
            "router-br",
            "type",
            "veth",
            "peer",
            "name",
            "lan",
            "netns",
            ROUTER_NETNS,
        ],
        ["ip", "-n", lan.name, "link", "set", "router-br", "master", "br0", "up"],
        ["ip", "-n", ROUTER_NETNS, "addr", "add", "10.78.0.2/24", "dev", "lan"],
        ["ip", "-n", ROUTER_NETNS, "link", "set", "lan", "up"],
    ]
    for command in commands:
        subprocess.run(command, check=True)
    dnsmasq = spawn(
        ["ip", "netns", "exec", ROUTER_NETNS, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
         "--port=0", "--interface=lan", "--bind-interfaces", "--dhcp-range=10.78.0.100,10.78.0.150,1h",
         f"--dhcp-leasefile={workdir / 'router.leases'}", "--log-facility=-", "--log-dhcp"],
        stderr=(workdir / "router.log").open("wb"),
    )  # fmt: skip
    try:
        yield
    finally:
        dnsmasq.kill()
        dnsmasq.wait()
        subprocess.run(["ip", "netns", "del", ROUTER_NETNS], capture_output=True)


@contextmanager
def serving(workdir: Path, mode: str) -> Iterator[Path]:
    """croft serve for a copy of the test site (its images shared), in a namespace with the LAN."""
    site = workdir / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns(".croft"))
    (site / ".croft").mkdir()
    (site / ".croft" / "images").symlink_to(SITE / ".croft" / "images")
    toml = site / "site.toml"
    toml.write_text(toml.read_text().replace('mode = "full"', f'mode = "{mode}"'))
    lan = Lan(NETNS, ipaddress.IPv4Network("10.78.0.0/24"), "10.78.0.254", bridge_address="10.78.0.1")
    lan.destroy()
    lan.create()
    lan.add_tap("tap0")
    log = workdir / "serve.log"
    argv = ["ip", "netns", "exec", NETNS, sys.executable, "-m", "croft", "--site", str(site), "serve"]
    try:
        with router(lan, workdir) if mode == "proxy" else _nothing():
            server = spawn(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 30
                while "croft serve: http://" not in log.read_text():
                    assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
                yield site
            finally:
                server.terminate()
                server.wait(10)
    finally:
        lan.destroy()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# The install workflow, ending with a kexec into the installed kernel instead of a reboot.
KEXEC = """\
      - name: kexec
        action: kexec
        timeout: 60
        env:
          DEST_PARTITION: PARTLABEL=croft-root
"""


@pytest.mark.parametrize(
    ("mode", "firmware", "finish"),
    [("full", "bios", "reboot"), ("proxy", "uefi", "reboot"), ("full", "bios", "kexec")],
)
def test_a_bare_machine_is_installed_and_boots_its_disk(
    images: dict[str, ImageManifest], tmp_path: Path, mode: str, firmware: Firmware, finish: str
) -> None:
    with serving(tmp_path, mode) as site:
        template = "install"
        if finish == "kexec":
            template = "install-kexec"
            install = (site / "workflows" / "install.yaml").read_text()
            reboot = install.index("      - name: reboot")
            (site / "workflows" / f"{template}.yaml").write_text(install[:reboot] + KEXEC)
        created = croft(site, "workflow", "create", "lab1", template)
        workflow_id = created.split()[1].rstrip(":")
        assert "pending" in created
        disk = tmp_path / "disk.raw"
        with disk.open("wb") as file:
            file.truncate(2 << 30)
        machine = VirtualMachine(
            "lab1", tmp_path, firmware=firmware, disks=[disk], tap="tap0", mac="52:54:00:78:00:21",
            netns=NETNS, boot="network", reboot=True,
        )  # fmt: skip
        machine.start()
        try:
            machine.wait_for(r"croft-init: root is the base \+ 1 overlay", 240)
            machine.wait_for(r"croft-agent: asking http://10\.78\.0\.1:8080 for work", 120)
            machine.wait_for(rf"install/{finish}: starting", 600)
            # After a reboot the firmware PXE-boots again, is told to boot its disk; a
            # kexec starts the installed kernel at once. UEFI firmware first tries its other
            # network options (PXEv6, HTTP boot), each waiting for an answer: minutes under TCG.
            machine.wait_for(INSTALLED_ROOT, 900)
            machine.wait_for(r"lab1 login:", 180)
            after = machine.console.read_text(errors="replace").split(f"install/{finish}: starting")[-1]
            assert ("SeaBIOS" in after) == (firmware == "bios" and finish == "reboot")
        finally:
            machine.stop()
        shown = croft(site, "workflow", "show", workflow_id)
        assert f"workflow {workflow_id}: lab1 ({template}) success" in shown, shown
        logs = croft(site, "workflow", "logs", workflow_id)
        assert "==> install/image" in logs and "downloaded" in logs
        listed = [line.split()[:4] for line in croft(site, "workflow", "list").splitlines()]
        assert [workflow_id, "lab1", template, "success"] in listed


def test_an_arm64_machine_is_installed_and_boots_its_disk(
    images: dict[str, ImageManifest], tmp_path: Path
) -> None:
    """aarch64 (QEMU's virt board, emulated): AAVMF's PXE asks with client architecture 11 and
    gets Debian's arm64 iPXE, whose script boots the arm64 kernel, initrd, base and agent; the
    agent installs the arm64 disk image, which boots with systemd-boot."""
    with serving(tmp_path, "full") as site:
        created = croft(site, "workflow", "create", "arm1")
        workflow_id = created.split()[1].rstrip(":")
        disk = tmp_path / "disk.raw"
        with disk.open("wb") as file:
            file.truncate(1 << 30)
        # Disk first, as croft lab boots machines: the empty disk falls through to the network,
        # the installed one boots at once.
        machine = VirtualMachine(
            "arm1", tmp_path, arch="aarch64", disks=[disk], tap="tap0", mac="52:54:00:78:00:31",
            netns=NETNS, reboot=True,
        )  # fmt: skip
        machine.start()
        try:
            machine.wait_for(r"croft: netbooting the provisioning environment", 300)
            machine.wait_for(r"Linux version \S+-arm64", 120)
            machine.wait_for(r"croft-init: root is the base \+ 1 overlay", 300)
            machine.wait_for(r"install/reboot: starting", 600)
            machine.wait_for(INSTALLED_ROOT, 900)
            machine.wait_for(r"arm1 login:", 300)
        finally:
            machine.stop()
        assert "ipxe-arm64.efi" in (site / ".croft" / "serve" / "dnsmasq.log").read_text(errors="replace")
        shown = croft(site, "workflow", "show", workflow_id)
        assert f"workflow {workflow_id}: arm1 (install-arm64) success" in shown, shown
