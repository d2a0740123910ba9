"""The test site's images, built once per session, and a LAN to netboot them on: a bridge in a
network namespace with dnsmasq (DHCP) and an HTTP server publishing the store."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from croft.images.build import build
from croft.images.store import ImageManifest, Store, store_for
from croft.lan import Lan
from croft.run import spawn
from croft.site.load import load_site
from croft.site.model import Site

# The site lives in the repository so its store (.croft/, ignored by git) is reused between runs.
SITE = Path(__file__).parent / "site"
# An installed disk boots with Debian's initramfs: the kernel says when it mounted the root.
INSTALLED_ROOT = r"(EXT4-fs \(vda2\): mounted|BTRFS info \(device vda2\))"
NETNS = "croftimgtest"
SERVER = "10.78.0.1"


@pytest.fixture(scope="session")
def site() -> Site:
    return load_site(SITE)


@pytest.fixture(scope="session")
def images(site: Site) -> dict[str, ImageManifest]:
    return {name: build(site, name, progress=print) for name in sorted(site.images)}


@pytest.fixture(scope="session")
def store(site: Site) -> Store:
    return store_for(site)


@dataclass
class BootLan:
    netns: str
    tap: str
    reports: Path
    """What machines posted to the server: one line per report, "PATH BODY"."""

    def url(self, digest: str) -> str:
        """An artifact's URL, with the digest croft's initrd checks."""
        return f"http://{SERVER}:8000/{digest}#sha256={digest}"


@pytest.fixture
def boot_lan(store: Store, tmp_path: Path) -> Iterator[BootLan]:
    lan = Lan(NETNS, ipaddress.IPv4Network("10.78.0.0/24"), "10.78.0.254", bridge_address=SERVER)
    lan.destroy()  # what an interrupted run left
    lan.create()
    lan.add_tap("tap0")
    netns = ["ip", "netns", "exec", NETNS]
    dnsmasq = spawn(
        [
            *netns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--port=0",  # DHCP only, no DNS
            "--interface=br0", "--bind-interfaces", "--dhcp-range=10.78.0.100,10.78.0.150,1h",
            f"--dhcp-leasefile={tmp_path / 'leases'}", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
        ]
    )  # fmt: skip
    reports = tmp_path / "reports"
    reports.touch()
    server = Path(__file__).with_name("http_server.py")
    http = spawn([*netns, sys.executable, server, SERVER, store.objects, reports])
    try:
        yield BootLan(NETNS, "tap0", reports)
    finally:
        for process in (dnsmasq, http):
            process.kill()
            process.wait()
        lan.destroy()
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
