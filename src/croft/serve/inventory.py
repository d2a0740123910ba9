"""The machines croft serve knows, by MAC and by IP, from the site's [hardware] tables."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from croft.site.model import HardwareConfig, InterfaceConfig, Machine, Site


@dataclass(frozen=True)
class Known:
    machine: Machine
    hardware: HardwareConfig
    interface: InterfaceConfig

    @property
    def ip(self) -> str | None:
        return str(ipaddress.ip_interface(self.interface.ip).ip) if self.interface.ip else None

    @property
    def hostname(self) -> str:
        return self.interface.hostname or self.machine.name


class Inventory:
    def __init__(self, site: Site) -> None:
        self.by_mac: dict[str, Known] = {}
        self.by_ip: dict[str, Known] = {}
        self.by_name: dict[str, Machine] = {}
        for machine in site.machines.values():
            hardware = machine.config.hardware
            if hardware is None:
                continue
            self.by_name[machine.name] = machine
            for interface in hardware.interfaces:
                known = Known(machine, hardware, interface)
                self.by_mac[interface.mac.lower()] = known
                if known.ip is not None:
                    self.by_ip[known.ip] = known
