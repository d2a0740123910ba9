"""A private LAN: a bridge in a network namespace, reached from the host through a veth pair.

The fleet's machines, the lab's QEMU machines and the image tests plug into it; nothing on it
can reach, or be reached from, any other network.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

from croft.errors import CroftError
from croft.run import run

BRIDGE = "br0"


class Lan:
    def __init__(
        self,
        name: str,
        network: ipaddress.IPv4Network,
        host_address: str,
        bridge_address: str | None = None,
    ) -> None:
        self.name = name  # the namespace
        self.network = network
        self.host_address = host_address
        self.bridge_address = bridge_address
        """An address for servers inside the namespace (dnsmasq, HTTP), on its bridge."""
        # Interface names are limited to 15 characters.
        self.host_veth = "cr" + hashlib.sha256(name.encode()).hexdigest()[:10]

    @property
    def ipv6_prefix(self) -> str:
        """A unique local /64 named after the IPv4 network (e.g. fd0a:4d00:: for 10.77.0.0/24)."""
        a, b, c, _ = self.network.network_address.packed
        return f"fd{a:02x}:{b:02x}{c:02x}::"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.name

    def create(self) -> None:
        if self.netns_path.exists():
            raise CroftError(
                f"network namespace {self.name} exists already: is a fleet or lab still up? "
                "(`croft fleet down`, `croft lab down`)"
            )
        routes = run(["ip", "-4", "route", "show", "root", str(self.network)]).stdout.strip()
        if routes:
            raise CroftError(
                f"{self.network} is already routed on this host ({routes}); give the site's "
                "machines addresses in a network this host does not use"
            )
        ip = ["ip", "-n", self.name]
        run(["ip", "netns", "add", self.name])
        run([*ip, "link", "set", "lo", "up"])
        run([*ip, "link", "add", BRIDGE, "type", "bridge"])
        # No forwarding delay: machines talk the moment their link is up.
        run([*ip, "link", "set", BRIDGE, "type", "bridge", "forward_delay", "0"])
        run([*ip, "link", "set", BRIDGE, "up"])
        if self.bridge_address is not None:
            run([*ip, "addr", "add", f"{self.bridge_address}/{self.network.prefixlen}", "dev", BRIDGE])
            # An IPv6 prefix of the LAN's own, for croft serve's router advertisements.
            run([*ip, "addr", "add", f"{self.ipv6_prefix}1/64", "dev", BRIDGE, "nodad"])
        run(
            [
                "ip",
                "link",
                "add",
                self.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "uplink",
                "netns",
                self.name,
            ]
        )
        run([*ip, "link", "set", "uplink", "master", BRIDGE, "up"])
        run(
            [
                "ip",
                "addr",
                "add",
                f"{self.host_address}/{self.network.prefixlen}",
                "dev",
                self.host_veth,
            ]
        )
        run(["ip", "link", "set", self.host_veth, "up"])

    def add_tap(self, tap: str) -> None:
        """A tap device on the bridge, for a QEMU machine's NIC."""
        ip = ["ip", "-n", self.name]
        run([*ip, "tuntap", "add", "dev", tap, "mode", "tap"])
        run([*ip, "link", "set", tap, "master", BRIDGE, "up"])

    def destroy(self) -> None:
        run(["ip", "link", "del", self.host_veth], check=False)
        run(["ip", "netns", "del", self.name], check=False)
