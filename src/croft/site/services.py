"""Checking service declarations beyond their types: paths, ports, sizes, time spans."""

from __future__ import annotations

import re
from pathlib import Path

from croft.errors import Problem
from croft.site.model import OWNED_ROOT, ServiceConfig
from croft.site.tomlfile import Reporter

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.service$")
_SIZE = re.compile(r"^(\d+(\.\d+)?[KMGT]?|\d+%|infinity)$")
_PERCENT = re.compile(r"^\d+%$")
_TIMESPAN = re.compile(r"^(\d+(\.\d+)?\s*(us|ms|s|sec|m|min|h|hr|d)?\s*)+$")
_MEMORY = re.compile(r"^\d+[MG]$")
_FORWARD = re.compile(r"^(\d{1,5}):(\d{1,5})$")
_LISTEN = re.compile(r"^((\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d{1,5})$")
PERIODS = ("hourly", "daily")


def _reporter(layer: Path, name: str, problems: list[Problem]) -> Reporter:
    """Problems of one service, located in the file that declares it."""
    own_file = layer / "services" / f"{name}.toml"
    if own_file.exists():
        return Reporter(own_file, problems, label=f"service {name!r}: ")
    return Reporter(layer / "layer.toml", problems, prefix=("services", name), label=f"service {name!r}: ")


def check_services(layer: Path, services: dict[str, ServiceConfig], problems: list[Problem]) -> None:
    from croft.site.network import check_ports  # only a site that is not cached is checked

    for name, service in services.items():
        problem = _reporter(layer, name, problems)
        if not _NAME.match(name):
            problem((), "not a valid service name", "use lower-case letters, digits and '-'")
        if service.unit is not None and not _UNIT.match(service.unit):
            problem(("unit",), f"{service.unit!r} is not a service unit name", 'e.g. unit = "nginx.service"')
        for distro_path, tree_path in service.config.items():
            if not distro_path.startswith("/") or distro_path.startswith(f"/{OWNED_ROOT}/"):
                problem(
                    ("config", distro_path),
                    f"{distro_path!r} is not a distro path to overlay",
                    'the key is the absolute path the service reads, e.g. "/etc/nginx/nginx.conf"',
                )
            if not tree_path.lstrip("/").startswith(f"{OWNED_ROOT}/"):
                problem(
                    ("config", distro_path),
                    f"{tree_path!r} is not a path in the built tree",
                    f"the value is a file the layers ship under {OWNED_ROOT}/, "
                    f'e.g. "{OWNED_ROOT}/etc/nginx.conf"',
                )
        for key in ("state", "writable"):
            for index, directory in enumerate(getattr(service, key)):
                if not directory.startswith("/") or directory.rstrip("/") in ("", "/usr", f"/{OWNED_ROOT}"):
                    problem(
                        (key, index),
                        f"{directory!r} is not a directory the service can own",
                        'use an absolute path such as "/var/lib/nginx"',
                    )
        check_ports(problem, ("ports",), service.ports)
        if service.network == "bridge" and service.container is None and service.vm is None:
            problem(
                ("network",),
                "only a container or a VM goes on the service bridge",
                'use network = "host" or "private", or make it a [container] or a [vm]',
            )
        for period, count in service.snapshots.items():
            if period not in PERIODS:
                problem(
                    ("snapshots", period),
                    f"unknown snapshot period {period!r}",
                    f"use {' or '.join(PERIODS)}, e.g. snapshots = {{ hourly = 24, daily = 7 }}",
                )
            elif count < 1:
                problem(("snapshots", period), "keeps at least 1 snapshot")
        if service.snapshots and not service.state:
            problem(
                ("snapshots",),
                "has snapshots but no state to take them of",
                'declare its state, e.g. state = ["/var/lib/app"]',
            )
        if service.socket is not None:
            for index, address in enumerate(service.socket.listen):
                match = _LISTEN.match(address)
                if match is None or not 0 < int(match.group(4)) < 65536:
                    problem(
                        ("socket", "listen", index),
                        f"{address!r} is not a port or ADDRESS:PORT",
                        'e.g. "80", "0.0.0.0:80" or "[::]:443"',
                    )
            if not 0 < service.socket.target < 65536:
                problem(("socket", "target"), f"{service.socket.target} is not a port")
            if not _TIMESPAN.match(service.socket.idle_timeout):
                problem(
                    ("socket", "idle_timeout"),
                    f"{service.socket.idle_timeout!r} is not a time span",
                    'e.g. "30s" or "5min"',
                )
        if service.limits.memory is not None and not _SIZE.match(service.limits.memory):
            problem(("limits", "memory"), f"{service.limits.memory!r} is not a size", 'e.g. "256M" or "2G"')
        if service.limits.cpu is not None and not _PERCENT.match(service.limits.cpu):
            problem(
                ("limits", "cpu"),
                f"{service.limits.cpu!r} is not a percentage",
                'e.g. "50%" (half a CPU) or "200%" (two)',
            )
        if service.container is not None:
            if not service.container.rootfs.lstrip("/").startswith(f"{OWNED_ROOT}/"):
                problem(
                    ("container", "rootfs"),
                    f"{service.container.rootfs!r} is not a tree croft ships",
                    f"ship the container's files under {OWNED_ROOT}/, "
                    f'e.g. "{OWNED_ROOT}/share/croft/rootfs/app"',
                )
            if not service.container.command:
                problem(
                    ("container", "command"), "says nothing to run", 'e.g. command = ["/bin/app", "--serve"]'
                )
            if service.config:
                problem(("config",), "a container has its own files: ship them in its rootfs instead")
        if service.vm is not None:
            _check_vm(service, problem)
        for index, family in enumerate(service.address_families):
            if not re.fullmatch(r"AF_[A-Z0-9]+", family):
                problem(
                    ("address_families", index), f"{family!r} is not an address family", 'e.g. "AF_NETLINK"'
                )
        for index, device in enumerate(service.devices):
            if not device.startswith("/dev/"):
                problem(("devices", index), f"{device!r} is not a device node", 'e.g. "/dev/dri/renderD128"')


def _check_vm(service: ServiceConfig, problem: Reporter) -> None:
    vm = service.vm
    assert vm is not None
    if not vm.image.lstrip("/").startswith(f"{OWNED_ROOT}/"):
        problem(
            ("vm", "image"),
            f"{vm.image!r} is not a file croft ships",
            f"ship the disk image under {OWNED_ROOT}/ (a `!` link to it will do), "
            f'e.g. "{OWNED_ROOT}/share/croft/vm/app.qcow2"',
        )
    if not _MEMORY.match(vm.memory):
        problem(("vm", "memory"), f"{vm.memory!r} is not a size in M or G", 'e.g. "512M" or "2G"')
    if vm.cpus < 1:
        problem(("vm", "cpus"), "needs at least 1 CPU")
    for index, forward in enumerate(vm.ports):
        match = _FORWARD.match(forward)
        if match is None or not all(0 < int(port) < 65536 for port in match.groups()):
            problem(("vm", "ports", index), f"{forward!r} is not MACHINE_PORT:VM_PORT", 'e.g. "8300:80"')
    if service.network == "private":
        problem(
            ("network",), "not for a VM: it has a network of its own (QEMU's user networking)", "use vm.ports"
        )
    if service.network == "bridge" and vm.ports:
        problem(
            ("vm", "ports"),
            "forwarded ports are QEMU's user networking; a VM on the bridge has an address of its own",
            'remove ports and reach it at NAME.MACHINE.DOMAIN, or remove network = "bridge"',
        )
    if not vm.accelerators:
        problem(("vm", "accelerators"), "names no accelerator", 'e.g. accelerators = ["kvm", "tcg"]')
    # What the VM keeps or is configured with lives in its image and its seed.
    for key, what in (
        ("container", "it is a VM: a service is one or the other"),
        ("state", "a VM starts afresh from its image: keep state on the machine's services"),
        ("config", "a VM has its own files: configure it through user_data"),
        ("socket", "a VM boots too slowly to be started by a connection: use ports"),
    ):
        if getattr(service, key):
            problem((key,), f"not for a VM: {what}")
