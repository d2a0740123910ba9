"""Bringing a site's machines up as a fleet of containers, and down again without leftovers."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from croft import tools
from croft.errors import CroftError
from croft.fleet.machine import Container, remove_cgroup
from croft.fleet.rootfs import ensure_rootfs
from croft.lan import Lan
from croft.site.model import Machine, Site

STATE_DIR = Path("/run/croft/fleets")
WORK_DIR = Path("/var/tmp/croft-fleets")


@dataclass
class Fleet:
    name: str
    lan: Lan
    containers: dict[str, Container] = field(default_factory=dict)
    boot_seconds: float = 0.0

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(
            json.dumps(
                {
                    "name": self.name,
                    "network": str(self.lan.network),
                    "host_address": self.lan.host_address,
                    "containers": [
                        {
                            "name": c.name,
                            "address": c.address,
                            "directory": str(c.directory),
                            "cgroup": c.cgroup,
                            "nspawn_pid": c.nspawn_pid,
                        }
                        for c in self.containers.values()
                    ],
                },
                indent=1,
            )
        )

    @classmethod
    def load(cls, name: str) -> Fleet | None:
        path = STATE_DIR / f"{name}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        lan = Lan(f"croft-{data['name']}", ipaddress.IPv4Network(data["network"]), data["host_address"])
        fleet = cls(data["name"], lan)
        for c in data["containers"]:
            fleet.containers[c["name"]] = Container(
                c["name"], c["address"], Path(c["directory"]), c["cgroup"], c["nspawn_pid"]
            )
        return fleet

    def down(self) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(self.containers))) as pool:
            list(pool.map(lambda c: c.stop(), self.containers.values()))
        self.lan.destroy()
        for container in self.containers.values():
            for cgroup in container.cgroups():
                remove_cgroup(cgroup.parent)
            shutil.rmtree(container.directory.parent, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)


def fleet_name(site: Site) -> str:
    return re.sub(r"[^a-z0-9-]", "-", site.config.name.lower())[:20]


def fleet_machines(site: Site) -> list[Machine]:
    """The site's machines a fleet runs: all but those croft serve installs ([hardware]: the lab's)."""
    return [machine for machine in site.machines.values() if machine.config.hardware is None]


def plan_lan(site: Site, name: str) -> Lan:
    """The LAN that holds every machine's address: one /24, the host at its last free address."""
    addresses = []
    for machine in fleet_machines(site):
        try:
            addresses.append(ipaddress.IPv4Address(machine.address))
        except ValueError:
            raise CroftError(
                f"{machine.file}: address {machine.address!r}: a fleet needs IPv4 addresses"
            ) from None
    if not addresses:
        raise CroftError("the site has no machines")
    networks = {ipaddress.IPv4Network(f"{address}/24", strict=False) for address in addresses}
    if len(networks) != 1:
        raise CroftError(
            f"a fleet needs every machine in one /24; the site's span {', '.join(map(str, networks))}"
        )
    network = networks.pop()
    used = set(addresses)
    host = next(a for a in reversed(list(network.hosts())) if a not in used)
    return Lan(f"croft-{name}", network, str(host))


def up(site: Site, name: str | None = None) -> Fleet:
    """Boot every machine of the site and wait until each answers SSH."""
    name = name or fleet_name(site)
    if Fleet.load(name) is not None:
        raise CroftError(f"fleet {name} is already up: `croft fleet down` first")
    tools.require("fleet")
    started = time.monotonic()
    rootfs = ensure_rootfs()
    lan = plan_lan(site, name)
    fleet = Fleet(name, lan)
    lan.create()
    try:
        for machine in fleet_machines(site):
            container = Container(
                machine.name,
                machine.address,
                WORK_DIR / name / machine.name,
                f"croft-fleet-{name}/{machine.name}",
            )
            fleet.containers[machine.name] = container
            container.start(rootfs, lan)
        fleet.save()
        with ThreadPoolExecutor(max_workers=len(fleet.containers)) as pool:
            list(
                pool.map(
                    lambda c: (c.configure_network(lan.network.prefixlen), c.wait_for_ssh()),
                    fleet.containers.values(),
                )
            )
    except BaseException:
        fleet.down()
        raise
    trust_host_keys(site.state_dir / "known_hosts", rootfs, [m.address for m in fleet_machines(site)])
    fleet.boot_seconds = time.monotonic() - started
    return fleet


def trust_host_keys(known_hosts: Path, rootfs: Path, addresses: list[str]) -> None:
    """Record the fleet machines' host keys (their rootfs's) where croft's SSH checks them, in
    place of what machines at those addresses had before: a rebuilt rootfs has new keys."""
    key = (rootfs / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    try:
        kept = [
            line
            for line in known_hosts.read_text().splitlines()
            if line.split(maxsplit=1)[0] not in addresses
        ]
    except FileNotFoundError:
        kept = []
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    lines = kept + [f"{address} {' '.join(key)}" for address in addresses]
    known_hosts.write_text("\n".join(lines) + "\n")


def down(name: str) -> bool:
    fleet = Fleet.load(name)
    if fleet is None:
        return False
    fleet.down()
    return True
