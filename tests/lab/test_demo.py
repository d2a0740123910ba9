"""The demo, trimmed to what CI can afford and still the whole story: the example site's images,
its two lab machines provisioned through croft serve (raw image with BIOS, btrfs stream with
UEFI), configured by croft deploy, their services answering; then the lab's BMC, and a teardown
that leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from croft.fleet.rootfs import ssh_key
from croft.lab import lab
from croft.lab.demo import demo
from croft.site import network
from croft.site.load import load_site
from tests.conftest import EXAMPLE, copy_example
from tests.fleet.relay import Relay

pytestmark = [pytest.mark.images, pytest.mark.qemu]


def test_the_demo_provisions_configures_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = copy_example(tmp_path)
    # The example's image store, kept between runs (a fresh clone builds it once).
    store = EXAMPLE / ".croft" / "images"
    store.mkdir(parents=True, exist_ok=True)
    (site_dir / ".croft").mkdir()
    (site_dir / ".croft" / "images").symlink_to(store)
    monkeypatch.setenv("CROFT_SSH_KEY", str(ssh_key()))
    said: list[str] = []
    try:
        stages = demo(site_dir, keep=True, say=said.append)
        shown = "\n".join(said)
        assert [name.split(" ")[0] for name, _ in stages] == [
            "images",
            "lab",
            "provision",
            "first",
            "configure",
            "services",
        ]
        assert "lab1: install/image success" in shown and "lab2: install/receive success" in shown
        assert "hello-web on lab1 (http://10.77.0.21:8080/)" in shown
        assert "notes on lab2 (http://10.77.0.22:8090/)" in shown
        croft = [sys.executable, "-m", "croft", "--site", str(site_dir)]
        # Installed machines are a whole Debian: the kernel package, all its modules (BIOS+raw
        # and UEFI+btrfs alike), and apt's updates reach the ESP: croft's hook, as the kernel's
        # postinst runs it after an upgrade (here on a stale ESP), puts /boot's pair there.
        for machine in ("lab1", "lab2"):
            whole = subprocess.run(
                [
                    *croft,
                    "lab",
                    "ssh",
                    machine,
                    "modprobe -a kvm wireguard nf_tables bridge veth tun && "
                    "dpkg-query -W -f '${Status}' linux-image-amd64",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert whole.returncode == 0 and whole.stdout.endswith("install ok installed"), whole
        updated = subprocess.run(
            [
                *croft,
                "lab",
                "ssh",
                "lab1",
                "mount /dev/disk/by-partlabel/esp /mnt && echo stale >/mnt/initrd.img && umount /mnt && "
                '/etc/kernel/postinst.d/zz-croft-esp "$(uname -r)" "/boot/vmlinuz-$(uname -r)" && '
                "mount /dev/disk/by-partlabel/esp /mnt && "
                'cmp /mnt/initrd.img "/boot/initrd.img-$(uname -r)" && '
                'cmp /mnt/vmlinuz "/boot/vmlinuz-$(uname -r)"; rc=$?; umount /mnt; exit $rc',
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert updated.returncode == 0 and "croft: the ESP boots" in updated.stdout + updated.stderr, updated
        overlay_with_the_kernels_wireguard(site_dir, croft)
        site = load_site(site_dir)
        status = {machine.name: machine for machine in lab.status(site)}
        assert status["lab1"].power == "running" and status["lab2"].firmware == "uefi"
        assert status["lab1"].workflow.endswith("install: success")
        assert lab.power(site, "lab1", "off") == "off"
        assert lab.status(site)[0].power == "off"
        assert lab.power(site, "lab1", "on") == "running"
        # Reinstall lab1: the workflow, then the lab's BMC makes it netboot.
        created = subprocess.run(
            [*croft, "workflow", "create", "lab1", "--netboot"], capture_output=True, text=True
        )
        assert created.returncode == 0 and "lab1: running, netbooting" in created.stdout, created.stderr
        workflow = created.stdout.split()[1].rstrip(":")
        deadline = time.monotonic() + 600
        while "lab1 (install) success" not in (
            shown := subprocess.run(
                [*croft, "workflow", "show", workflow], capture_output=True, text=True
            ).stdout
        ):
            assert time.monotonic() < deadline and "failed" not in shown, shown
            time.sleep(3)
        deadline = time.monotonic() + 300
        while (
            ssh := subprocess.run([*croft, "lab", "ssh", "lab1", "hostname"], capture_output=True, text=True)
        ).stdout != "lab1\n":
            assert time.monotonic() < deadline, ssh.stderr
            time.sleep(3)
    finally:
        assert lab.down(load_site(site_dir))
    assert "croft-homelab-lab" not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    assert str(site_dir) not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not list((site_dir / ".croft" / "lab").glob("*.raw"))


def overlay_with_the_kernels_wireguard(site_dir: Path, croft: list[str]) -> None:
    """The two installed machines join an overlay: Debian's kernel has WireGuard, so no
    wireguard-go runs; they reach each other over it. Their packages come through a relay on
    the host's end of the lab's LAN (it has no way out)."""
    state = lab.load_state(load_site(site_dir))
    assert state is not None
    site_toml = site_dir / "site.toml"
    original = site_toml.read_text()
    with Relay(state.host_address, 8145) as relay:
        site_toml.write_text(
            original
            + f'\n[packages]\nupstream = "{relay.url}"\n\n[network.overlay]\nmachines = ["lab1", "lab2"]\n'
        )
        deployed = subprocess.run(
            [*croft, "deploy", "lab1", "lab2"], capture_output=True, text=True, timeout=900
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    lab2 = network.addresses(load_site(site_dir))["lab2"].ipv4.ip
    shown = subprocess.run(
        [
            *croft, "lab", "ssh", "lab1",
            # The kernel's link; wireguard-go would have made its socket.
            "ip -d link show croft0 && [ ! -e /run/wireguard/croft0.sock ] && "
            f"busybox ping -c1 -W5 {lab2} && wg show croft0 latest-handshakes",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0 and "wireguard" in shown.stdout and " 0% packet loss" in shown.stdout, shown
    # Back to the demo's site; the overlay stays on the machines until the lab goes down.
    site_toml.write_text(original)
