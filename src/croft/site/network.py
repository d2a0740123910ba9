"""The site's networks as its model says them, and their checks.

- The overlay ([network.overlay]): who joins, each member's addresses in it (IPv4 and IPv6,
  from its name, so they do not depend on files kept anywhere), and each member's peers.
- SSH through a bastion ([ssh] via).
- Firewalls ([firewall] in layer.toml and machines/NAME.toml): what each machine lets in.

Every problem names its file, line and field, with a hint.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from croft import layout
from croft.errors import Problem
from croft.site.model import FirewallConfig, Machine, OverlayConfig, RuleConfig, Site
from croft.site.tomlfile import Reporter

INTERFACE = "croft0"
"""The overlay's WireGuard interface on every member."""
OVERLAY_SOURCE = "overlay"
"""In a firewall rule's sources: whoever comes over the overlay."""

_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp))?$")
_WIREGUARD_KEY = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""A VPN peer's or a firewall rule's name: a DNS label."""


# -- the overlay ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlayAddress:
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface


def members(site: Site) -> list[str]:
    overlay = site.config.network.overlay
    if overlay is None:
        return []
    return sorted(overlay.machines or site.machines)


def ula_prefix(site: Site, overlay: OverlayConfig) -> ipaddress.IPv6Network:
    """[network.overlay] ula, else fdXX:XXXX:XXXX::/64 with the 40-bit global ID RFC 4193 asks
    for, from the site's name (stable, and unlikely to meet another site's)."""
    if overlay.ula is not None:
        return ipaddress.IPv6Network(overlay.ula)
    global_id = hashlib.sha256(site.config.name.encode()).digest()[:5]
    return ipaddress.IPv6Network((b"\xfd" + global_id + bytes(10), 64))


def addresses(site: Site) -> dict[str, OverlayAddress]:
    """Each member's addresses, then each VPN peer's. The IPv4 one is a hash of its name into
    the subnet; two names that meet take the next free address, machines before peers and each
    in the order of their names (so a peer added never moves a machine). The IPv6 one is the
    prefix and 64 bits of the hash."""
    overlay = site.config.network.overlay
    if overlay is None:
        return {}
    subnet = ipaddress.IPv4Network(overlay.subnet)
    prefix = ula_prefix(site, overlay)
    hosts = subnet.num_addresses - 2  # not the network's address, not its broadcast
    taken: set[int] = set()
    found: dict[str, OverlayAddress] = {}
    for name in [*members(site), *sorted(site.vpn_peers)]:
        digest = hashlib.sha256(name.encode()).digest()
        index = int.from_bytes(digest[:8], "big") % hosts
        while index in taken:
            index = (index + 1) % hosts
        taken.add(index)
        ipv4 = ipaddress.IPv4Interface((int(subnet.network_address) + 1 + index, subnet.prefixlen))
        interface_id = int.from_bytes(digest[8:16], "big")
        ipv6 = ipaddress.IPv6Interface((int(prefix.network_address) | interface_id, 64))
        found[name] = OverlayAddress(ipv4, ipv6)
    return found


def vpn_peers(site: Site) -> list[str]:
    """The VPN peers the gateway lets in (none without a gateway)."""
    return sorted(site.vpn_peers) if site.config.network.gateway is not None else []


def peers(site: Site, name: str) -> list[str]:
    """The members `name` has as WireGuard peers: every other one (mesh), or the hub (and the
    hub every other one)."""
    overlay = site.config.network.overlay
    if overlay is None or name not in members(site):
        return []
    others = [other for other in members(site) if other != name]
    if overlay.topology == "hub" and name != overlay.hub:
        return [overlay.hub] if overlay.hub is not None else []
    return others


# -- service bridges ----------------------------------------------------------------------------

BRIDGE = layout.BRIDGE


def bridged(site: Site, machine: Machine) -> list[str]:
    """The machine's services on its bridge."""
    return sorted(
        name
        for layer in site.machine_layers(machine)
        for name, service in layer.config.services.items()
        if service.network == "bridge"
    )


def bridge_subnets(site: Site) -> dict[str, ipaddress.IPv4Network]:
    """The /24 of each machine that has a service bridge: a hash of its name into [network]
    services; two that meet take the next free one, in the order of their names."""
    space = ipaddress.IPv4Network(site.config.network.services)
    subnets = list(space.subnets(new_prefix=24)) if space.prefixlen <= 24 else [space]
    taken: set[int] = set()
    found: dict[str, ipaddress.IPv4Network] = {}
    for name, machine in sorted(site.machines.items()):
        if not bridged(site, machine):
            continue
        index = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % len(subnets)
        while index in taken and len(taken) < len(subnets):
            index = (index + 1) % len(subnets)
        taken.add(index)
        found[name] = subnets[index]
    return found


# -- firewalls -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    first: int
    last: int
    protocol: Literal["tcp", "udp"]

    def __str__(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{span}/{self.protocol}"


def parse_port(text: str) -> Port | None:
    """ "443", "443/tcp", "53/udp", "60000-61000/udp"; None when it is none of these."""
    match = _PORT.match(text)
    if match is None:
        return None
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if not 0 < first <= last < 65536:
        return None
    return Port(first, last, "udp" if match.group(3) == "udp" else "tcp")


def firewalls(site: Site, machine: Machine) -> list[FirewallConfig]:
    """The [firewall] tables that apply to a machine: its layers', then its own."""
    found = [layer.config.firewall for layer in site.machine_layers(machine)]
    found.append(machine.config.firewall)
    return [config for config in found if config is not None]


# -- checks --------------------------------------------------------------------------------------


def check_overlay(file: Path, site: Site, problems: list[Problem]) -> None:
    overlay = site.config.network.overlay
    if overlay is None:
        return
    problem = Reporter(file, problems, prefix=("network", "overlay"))
    machines = set(site.machines)
    known = ", ".join(sorted(machines)) or "none"
    for index, name in enumerate(overlay.machines):
        if name not in machines:
            problem(("machines", index), f"no machine {name!r}", f"name machines of the site: {known}")
    try:
        subnet = ipaddress.IPv4Network(overlay.subnet)
    except ValueError:
        problem(
            ("subnet",),
            f"{overlay.subnet!r} is not an IPv4 network",
            'a network of private addresses, e.g. subnet = "10.99.0.0/24"',
        )
    else:
        needed = len(members(site)) + len(site.vpn_peers)
        if subnet.num_addresses - 2 < needed:
            problem(
                ("subnet",),
                f"{overlay.subnet} has too few addresses for {needed} machines and VPN peers",
                "use a larger network, e.g. a /24",
            )
    if overlay.ula is not None:
        try:
            ula = ipaddress.IPv6Network(overlay.ula)
        except ValueError:
            ula = None
        if ula is None or ula.prefixlen != 64 or not ipaddress.IPv6Network("fd00::/8").supernet_of(ula):
            problem(
                ("ula",),
                f"{overlay.ula!r} is not a unique local /64",
                'fd followed by 40 random bits, e.g. ula = "fd3a:51c2:9e07::/64", or leave it out',
            )
    if not 0 < overlay.port < 65536:
        problem(("port",), f"{overlay.port} is not a UDP port", "e.g. port = 51820 (WireGuard's)")
    if overlay.keepalive < 0 or overlay.keepalive > 65535:
        problem(("keepalive",), f"{overlay.keepalive} is not a number of seconds", "e.g. keepalive = 25")
    if overlay.topology == "hub":
        if overlay.hub is None:
            problem(("topology",), "a hub topology needs its hub", 'add hub = "MACHINE" (a member)')
        elif overlay.hub not in members(site):
            problem(("hub",), f"{overlay.hub!r} is not a machine in the overlay", f"name one of: {known}")
    elif overlay.hub is not None:
        problem(("hub",), 'a hub without topology = "hub"', 'add topology = "hub", or remove hub')


def check_bridges(file: Path, site: Site, problems: list[Problem]) -> None:
    """[network] services: a private network with a /24 for each machine that needs one."""
    problem = Reporter(file, problems, prefix=("network",))
    text = site.config.network.services
    try:
        space = ipaddress.IPv4Network(text)
    except ValueError:
        problem(("services",), f"{text!r} is not an IPv4 network", 'e.g. services = "10.98.0.0/16"')
        return
    needed = sum(1 for machine in site.machines.values() if bridged(site, machine))
    if space.prefixlen > 24 or 2 ** (24 - space.prefixlen) < needed:
        problem(
            ("services",),
            f"{text} has too few /24 networks for the {needed} machines with bridged services",
            "use a larger network, e.g. a /16",
        )


def check_vpn(file: Path, site: Site, problems: list[Problem]) -> None:
    """[network] gateway and endpoint, and the peers in vpn/."""
    config = site.config.network
    problem = Reporter(file, problems, prefix=("network",))
    if config.gateway is not None:
        if config.overlay is None:
            problem(("gateway",), "a VPN gateway needs the overlay", "add [network.overlay] to site.toml")
        elif config.gateway not in members(site):
            problem(
                ("gateway",),
                f"{config.gateway!r} is not a machine in the overlay",
                f"name one of: {', '.join(members(site)) or 'none'}",
            )
    if config.endpoint is not None and not re.match(
        r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$", config.endpoint
    ):
        problem(
            ("endpoint",), f"{config.endpoint!r} is not HOST:PORT", 'e.g. endpoint = "vpn.example.org:51820"'
        )
    for name, peer in sorted(site.vpn_peers.items()):
        report = Reporter(peer.file, problems)
        if config.gateway is None:
            report((), "a VPN peer without a gateway", 'add gateway = "MACHINE" under [network] in site.toml')
        if not NAME.match(name) or name in site.machines:
            report(
                (),
                f"{name!r} is not a peer name of its own"
                + (" (a machine has it)" if name in site.machines else ""),
                "lower-case letters, digits and '-', unlike any machine's",
            )
        if not _WIREGUARD_KEY.match(peer.config.public_key):
            report(
                ("public_key",),
                "not a WireGuard public key",
                "44 characters of base64, as `wg pubkey` prints",
            )


def check_via(file: Path, site: Site, problems: list[Problem]) -> None:
    """[ssh] via in site.toml and the machines' files: a machine of the site, and no loop."""
    known = ", ".join(sorted(site.machines)) or "none"
    site_via = site.config.ssh.via
    if site_via and site_via not in site.machines:
        Reporter(file, problems)(("ssh", "via"), f"no machine {site_via!r}", f"name one of: {known}")
        return
    for name, machine in sorted(site.machines.items()):
        via = machine.config.ssh.via
        report = Reporter(machine.file, problems)
        if via and via not in site.machines:
            report(("ssh", "via"), f"no machine {via!r}", f"name one of: {known}")
            continue
        seen = [name]
        hop = site.bastion(site.machines[name])
        while hop is not None and hop.name not in seen:
            seen.append(hop.name)
            hop = site.bastion(hop)
        if hop is not None:
            report(
                ("ssh", "via"),
                f"SSH to {name} would go round in a loop: {' -> '.join([*seen, hop.name])}",
                'a bastion is reached directly: give it via = "" in its own file if site.toml names it',
            )


def check_firewall(file: Path, config: FirewallConfig, site: Site, problems: list[Problem]) -> None:
    problem = Reporter(file, problems, prefix=("firewall",))
    if config.ssh_from is not None:
        _check_sources(problem, ("ssh_from",), config.ssh_from, site)
    for name, rule in config.allow.items():
        if not NAME.match(name):
            problem(("allow", name), f"{name!r} is not a rule name", "lower-case letters, digits and '-'")
        _check_rule(problem, ("allow", name), rule, site)


def check_ports(report: Reporter, loc: tuple[str | int, ...], ports: tuple[str, ...]) -> None:
    for index, text in enumerate(ports):
        if parse_port(text) is None:
            report(
                (*loc, index),
                f"{text!r} is not a port",
                'a port or a range, TCP unless it says udp: "443", "53/udp", "60000-61000/udp"',
            )


def _check_rule(problem: Reporter, loc: tuple[str, ...], rule: RuleConfig, site: Site) -> None:
    if not rule.ports:
        problem((*loc, "ports"), "a rule without ports", 'e.g. ports = ["443"]')
    check_ports(problem, (*loc, "ports"), rule.ports)
    _check_sources(problem, (*loc, "sources"), rule.sources, site)


def _check_sources(problem: Reporter, loc: tuple[str, ...], sources: tuple[str, ...], site: Site) -> None:
    for index, source in enumerate(sources):
        if source == OVERLAY_SOURCE:
            if site.config.network.overlay is None:
                problem((*loc, index), "the site has no overlay", "add [network.overlay] to site.toml")
            continue
        if source in site.machines:
            continue
        try:
            ipaddress.ip_network(source, strict=False)
        except ValueError:
            problem(
                (*loc, index),
                f'{source!r} is not an address, a network, a machine or "overlay"',
                'e.g. "192.168.1.0/24", "10.0.0.5", "gw1" or "overlay"',
            )
