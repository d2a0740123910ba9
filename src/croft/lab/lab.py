"""`croft lab`: the site's machines with [hardware] as QEMU machines with empty disks, on a LAN
of their own (a bridge in a network namespace) where croft serve answers PXE. The host reaches
that LAN through a veth, so `croft deploy` configures lab machines like any others.

Everything the lab starts is recorded in .croft/lab/state.json, so `croft lab down` leaves
nothing behind: QEMU processes, croft serve and its dnsmasq, the namespace with its bridge and
taps, the disks.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from croft import tools, wait
from croft.deploy.ssh import forget_host_keys
from croft.errors import CroftError
from croft.lab.qemu import Firmware, VirtualMachine
from croft.lab.qmp import Qmp
from croft.lan import Lan
from croft.run import spawn
from croft.serve.location import serve_config
from croft.site.model import Site

DISK_SIZE = 4 << 30  # sparse: takes what the installed system uses


@dataclass
class LabMachine:
    name: str
    mac: str
    firmware: Firmware
    tap: str
    pid: int = 0


@dataclass
class LabState:
    netns: str
    network: str
    host_address: str
    serve_pid: int = 0
    machines: dict[str, LabMachine] = field(default_factory=dict)


def lab_dir(site: Site) -> Path:
    return site.state_dir / "lab"


def _state_file(site: Site) -> Path:
    return lab_dir(site) / "state.json"


def load_state(site: Site) -> LabState | None:
    try:
        data = json.loads(_state_file(site).read_text())
    except (OSError, ValueError):
        return None
    data["machines"] = {name: LabMachine(**machine) for name, machine in data["machines"].items()}
    return LabState(**data)


def _save(site: Site, state: LabState) -> None:
    path = _state_file(site)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(state), indent=2) + "\n")
    partial.replace(path)


def lab_machines(site: Site) -> list[str]:
    return [name for name, machine in sorted(site.machines.items()) if machine.config.hardware is not None]


def _lan(site: Site, state: LabState) -> Lan:
    return Lan(
        state.netns,
        ipaddress.IPv4Network(state.network),
        state.host_address,
        bridge_address=serve_config(site).address,
    )


def _machine(site: Site, state: LabState, name: str, *, network_first: bool = False) -> VirtualMachine:
    lab = state.machines[name]
    hardware = site.machines[name].config.hardware
    assert hardware is not None
    return VirtualMachine(
        name,
        lab_dir(site),
        arch=hardware.arch,
        firmware=lab.firmware,
        disks=[lab_dir(site) / f"{name}.raw"],
        tap=lab.tap,
        mac=lab.mac,
        netns=state.netns,
        boot="network" if network_first else "disk",
        reboot=True,
        interactive=True,
    )


def up(site: Site, *, count: int | None = None, firmware: Firmware | None = None) -> LabState:
    """Create the LAN, start croft serve on it and the lab machines (empty disks: they netboot)."""
    serve = serve_config(site)
    tools.require("lab", "serve")
    names = lab_machines(site)[:count]
    if not names:
        raise CroftError("no machine has a [hardware] table: the lab has nothing to start (see docs/lab.md)")
    if load_state(site) is not None:
        raise CroftError("the lab is up already: `croft lab status`, or `croft lab down` first")
    network = ipaddress.IPv4Network(serve.network)
    taken = {serve.address} | {site.machines[name].address for name in site.machines}
    host_address = next(str(ip) for ip in network.hosts() if str(ip) not in taken)
    state = LabState(f"croft-{site.config.name}-lab"[:30], str(network), host_address)
    directory = lab_dir(site)
    directory.mkdir(parents=True, exist_ok=True)
    lan = _lan(site, state)
    lan.create()
    _save(site, state)  # from here on, `croft lab down` cleans up whatever follows
    try:
        forget_host_keys(site.state_dir / "known_hosts", [site.machines[name].address for name in names])
        log = directory / "serve.log"
        state.serve_pid = spawn(
            [
                "ip",
                "netns",
                "exec",
                state.netns,
                sys.executable,
                "-m",
                "croft",
                "--site",
                str(site.root),
                "serve",
            ],
            stdout=log.open("wb"),  # a fresh log per lab: _wait_for_serve reads it
            stderr=subprocess.STDOUT,
        ).pid
        _save(site, state)
        _wait_for_serve(log, state.serve_pid)
        for name in names:
            hardware = site.machines[name].config.hardware
            assert hardware is not None
            tap = f"tap-{name}"[:15]
            lan.add_tap(tap)
            disk = directory / f"{name}.raw"
            with disk.open("wb") as file:
                file.truncate(DISK_SIZE)
            # --firmware picks BIOS or UEFI for x86 machines; aarch64 ones only have UEFI.
            chosen = hardware.firmware if hardware.arch == "aarch64" else firmware or hardware.firmware
            state.machines[name] = LabMachine(name, hardware.interfaces[0].mac, chosen, tap)
            machine = _machine(site, state, name)
            machine.start()
            assert machine.process is not None
            state.machines[name].pid = machine.process.pid
            _save(site, state)
    except BaseException:
        down(site)
        raise
    return state


def _wait_for_serve(log: Path, pid: int) -> None:
    def started() -> bool:
        if "croft serve: http://" in log.read_text(errors="replace"):
            return True
        if not wait.alive(pid):
            raise CroftError(f"croft serve did not start:\n{log.read_text(errors='replace')[-2000:]}")
        return False

    if not wait.until(started, 30):
        raise CroftError(f"croft serve did not start:\n{log.read_text(errors='replace')[-2000:]}")


def _stop(pid: int, timeout: float = 10) -> None:
    if not wait.alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    if not wait.until(lambda: not wait.alive(pid), timeout):
        os.kill(pid, signal.SIGKILL)


def down(site: Site) -> bool:
    """Stop everything the lab started; False when it was not up."""
    state = load_state(site)
    if state is None:
        return False
    for machine in state.machines.values():
        _stop(machine.pid)
    _stop(state.serve_pid)  # it stops its dnsmasq
    _lan(site, state).destroy()
    directory = lab_dir(site)
    for pattern in ("*.raw", "*.sock", "*.qmp", "*.nvram.fd"):
        for path in directory.glob(pattern):
            path.unlink()
    _state_file(site).unlink()
    return True


def power(site: Site, name: str, action: str) -> str:
    """on, off, reset, or pxe (restart with the network first, as a BMC's next-boot-PXE)."""
    state = load_state(site)
    if state is None:
        raise CroftError("the lab is not up: `croft lab up`")
    if name not in state.machines:
        raise CroftError(f"no lab machine {name!r}; lab machines: {', '.join(state.machines)}")
    lab = state.machines[name]
    machine = _machine(site, state, name, network_first=action == "pxe")
    qmp = Qmp(machine.qmp_socket)
    if action == "reset":
        qmp.command("system_reset")
    elif action in ("off", "pxe") and wait.alive(lab.pid):
        qmp.command("quit")
        _stop(lab.pid)
    if action in ("on", "pxe") and not wait.alive(lab.pid):
        machine.start()
        assert machine.process is not None
        lab.pid = machine.process.pid
        _save(site, state)
        # QEMU opens its QMP socket a moment after it starts.
        wait.until(lambda: qmp.status() != "off", 10)
    return qmp.status() if action != "off" else "off"


@dataclass(frozen=True)
class MachineStatus:
    name: str
    power: str
    firmware: str
    address: str
    workflow: str


def status(site: Site) -> list[MachineStatus]:
    state = load_state(site)
    if state is None:
        raise CroftError("the lab is not up: `croft lab up`")
    workflows: dict[str, str] = {}
    try:
        from croft.serve.client import AdminClient

        for workflow in AdminClient(site).json("GET", "/admin/v1/workflows"):
            workflows[workflow["machine"]] = f"{workflow['id']} {workflow['template']}: {workflow['status']}"
    except CroftError as error:
        workflows = dict.fromkeys(state.machines, f"({error})")
    return [
        MachineStatus(
            name,
            Qmp(_machine(site, state, name).qmp_socket).status() if wait.alive(lab.pid) else "off",
            lab.firmware,
            site.machines[name].address,
            workflows.get(name, "-"),
        )
        for name, lab in state.machines.items()
    ]


def console(site: Site, name: str) -> None:
    """The machine's serial console on this terminal (Ctrl-] leaves); piped: its log so far."""
    import select
    import socket
    import termios
    import tty

    state = load_state(site)
    if state is None or name not in state.machines:
        raise CroftError(f"no lab machine {name!r} is up")
    machine = _machine(site, state, name)
    if not sys.stdin.isatty():
        sys.stdout.write(machine.console.read_text(errors="replace"))
        return
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(machine.console_socket))
        print(f"{name}'s console; Ctrl-] leaves", flush=True)
        saved = termios.tcgetattr(sys.stdin)
        try:
            tty.setraw(sys.stdin)
            while True:
                ready, _, _ = select.select([sys.stdin, connection], [], [])
                if connection in ready:
                    data = connection.recv(4096)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                if sys.stdin in ready:
                    typed = os.read(sys.stdin.fileno(), 1024)
                    if b"\x1d" in typed:
                        break
                    connection.sendall(typed)
        finally:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
    print()


def ssh_argv(site: Site, name: str, command: tuple[str, ...]) -> list[str]:
    """ssh to a lab machine as croft deploys to it (its key, the site's known hosts)."""
    from croft.deploy.ssh import Connection

    if name not in site.machines:
        raise CroftError(f"no machine {name!r} in the site")
    connection = Connection(site.ssh_target(site.machines[name]), site.state_dir / "known_hosts")
    return [*connection.argv, connection.destination, *command]
