"""`croft snapshot`: a service's state, snapshotted and restored on its machine.

The work is done on the machine by croft-state, the script croft ships with every service that
has state (see croft.systemd.sandbox): snapshots are read-only btrfs snapshots of the service's
subvolume, and a restore stops the service, swaps a copy of the snapshot in and starts it.
"""

from __future__ import annotations

import shlex

from croft.deploy.deployer import connect
from croft.errors import CroftError
from croft.site.model import Machine, Site
from croft.systemd.sandbox import STATE_TOOL


def _service_with_state(site: Site, machine: Machine, service: str) -> None:
    for layer in site.machine_layers(machine):
        declared = layer.config.services.get(service)
        if declared is not None and declared.state:
            return
    known = sorted(
        name for layer in site.machine_layers(machine) for name, s in layer.config.services.items() if s.state
    )
    raise CroftError(
        f"{machine.name} has no service {service!r} with state; "
        f"services with state there: {', '.join(known) or 'none'}"
    )


def _state_tool(site: Site, machine: Machine, *args: str) -> str:
    _service_with_state(site, machine, args[1])
    conn = connect(site, machine)
    result = conn.run(shlex.join([STATE_TOOL, *args]), check=False, timeout=300)
    if result.returncode != 0:
        detail = result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}"
        if result.returncode == 127:
            detail = f"{STATE_TOOL} is not there: deploy {machine.name} first"
        raise CroftError(f"{machine.name}: {detail}")
    return result.stdout


def list_snapshots(site: Site, machine: Machine, service: str) -> list[str]:
    return _state_tool(site, machine, "list", service).split()


def create_snapshot(site: Site, machine: Machine, service: str) -> str:
    return _state_tool(site, machine, "snapshot", service).strip()


def restore_snapshot(site: Site, machine: Machine, service: str, snapshot: str) -> None:
    _state_tool(site, machine, "restore", service, snapshot)
