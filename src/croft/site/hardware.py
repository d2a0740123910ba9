"""Checking the provisioning inventory: [serve] in site.toml and machines' [hardware]."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from croft.errors import Problem
from croft.site.images import image_arch
from croft.site.model import Image, MachineConfig, NetbootConfig, ServeConfig
from croft.site.tomlfile import Reporter

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
NETBOOT_KINDS = {"initrd": "initrd", "base": "base", "overlays": "overlay"}


def check_serve(serve: ServeConfig, file: Path, images: dict[str, Image], problems: list[Problem]) -> None:
    problem = Reporter(file, problems, prefix=("serve",))
    try:
        network = ipaddress.ip_network(serve.network)
    except ValueError:
        problem(("network",), f"{serve.network!r} is not a network", 'e.g. network = "192.168.1.0/24"')
        return
    try:
        if ipaddress.ip_address(serve.address) not in network:
            problem(("address",), f"{serve.address} is not in {network}")
    except ValueError:
        problem(("address",), f"{serve.address!r} is not an IP address")
    if serve.ipxe_arm64 is not None and not (file.parent / serve.ipxe_arm64).is_file():
        problem(
            ("ipxe_arm64",),
            f"{serve.ipxe_arm64} is not a file",
            "name an iPXE for arm64 UEFI relative to the site, or leave ipxe_arm64 out for Debian's",
        )
    if serve.keep_logs < 1:
        problem(("keep_logs",), f"keeps workflows {serve.keep_logs} days", "e.g. keep_logs = 30 (days)")
    _check_netboot(serve.netboot, "netboot", "amd64", images, problem)
    if serve.netboot_arm64 is not None:
        _check_netboot(serve.netboot_arm64, "netboot_arm64", "arm64", images, problem)


def _check_netboot(
    netboot: NetbootConfig, field: str, arch: str, images: dict[str, Image], problem: Reporter
) -> None:
    for key, kind in NETBOOT_KINDS.items():
        value = getattr(netboot, key)
        for name in value if isinstance(value, tuple) else (value,):
            if name not in images or images[name].config.kind != kind:
                declared = sorted(n for n, image in images.items() if image.config.kind == kind)
                problem(
                    (field, key),
                    f"no {kind} image {name!r} in images/",
                    f'declare images/{name}.toml with kind = "{kind}"; {kind} images: '
                    f"{', '.join(declared) or 'none'}",
                )
            elif image_arch(images[name], images) != arch:
                problem(
                    (field, key),
                    f"image {name!r} is built for {image_arch(images[name], images)}, not {arch}",
                    f'[serve.{field}] is for {arch} machines: name images with arch = "{arch}" '
                    "(an overlay has its base's)",
                )


def check_hardware(
    machines: dict[str, tuple[Path, MachineConfig]],
    serve: ServeConfig | None,
    workflows: set[str],
    problems: list[Problem],
) -> None:
    """Every machine's [hardware], and across machines: no MAC or IP twice."""
    network = _network(serve)
    macs: dict[str, str] = {}
    ips: dict[str, str] = {}
    for name, (file, config) in machines.items():
        hardware = config.hardware
        if hardware is None:
            continue
        problem = Reporter(file, problems, prefix=("hardware",))
        if not hardware.interfaces:
            problem(("interfaces",), "lists no interface", "add [[hardware.interfaces]] with mac = ...")
        for index, interface in enumerate(hardware.interfaces):
            where = ("interfaces", index)
            mac = interface.mac.lower()
            if not _MAC.match(mac):
                problem(
                    (*where, "mac"), f"{interface.mac!r} is not a MAC address", 'e.g. "52:54:00:12:34:56"'
                )
            elif mac in macs:
                problem((*where, "mac"), f"MAC {mac} is also machine {macs[mac]}'s")
            else:
                macs[mac] = name
            if interface.ip is None:
                continue
            try:
                address = ipaddress.ip_interface(interface.ip)
            except ValueError:
                problem(
                    (*where, "ip"), f"{interface.ip!r} is not an address with a prefix", 'e.g. "10.0.0.5/24"'
                )
                continue
            ip = str(address.ip)
            if ip in ips:
                problem((*where, "ip"), f"{ip} is also machine {ips[ip]}'s")
            ips[ip] = name
            if network is not None and address.ip not in network:
                problem(
                    (*where, "ip"),
                    f"{ip} is outside the provisioning network {network}",
                    "give it an address in [serve] network, or change that network",
                )
        if hardware.arch == "aarch64":
            if hardware.firmware != "uefi":
                problem(("firmware",), "aarch64 machines boot with UEFI", 'set firmware = "uefi"')
            if serve is not None and serve.netboot_arm64 is None:
                problem(
                    ("arch",),
                    "aarch64 machines netboot what [serve.netboot_arm64] names, and site.toml has none",
                    'add [serve.netboot_arm64] naming images built with arch = "arm64"',
                )
        if hardware.workflow is not None and hardware.workflow not in workflows:
            known = ", ".join(sorted(workflows)) or "none"
            problem(
                ("workflow",),
                f"no workflow template {hardware.workflow!r}",
                f"create workflows/{hardware.workflow}.yaml; templates: {known}",
            )


def _network(serve: ServeConfig | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if serve is None:
        return None
    try:
        return ipaddress.ip_network(serve.network)
    except ValueError:
        return None
