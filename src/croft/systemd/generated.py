"""The trees croft generates for a site, written where the build composes them from
(`.croft/generated/`, see Site.generated_dir): each layer's service sandboxes and the names
service. Only files that differ are rewritten: their stats drive the incremental build.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable

from croft.layout import UNIT_DIR
from croft.site.model import Machine, Site
from croft.systemd import (
    alerts,
    bastion,
    bridge,
    firewall,
    journal,
    names,
    overlay,
    package_cache,
    sandbox,
    upgrades,
)
from croft.systemd.tree import write_tree


def write(site: Site) -> None:
    names.write_trees(site)
    overlay.write_trees(site)
    firewall.write_trees(site)
    bastion.write_trees(site)
    bridge.write_trees(site)
    package_cache.write_trees(site)
    upgrades.write_trees(site)
    journal.write_trees(site)
    alerts.write_trees(site)
    for name, layer in site.layers.items():
        target = site.generated_dir(name)
        if layer.config.services:
            units = {service.unit_name(n) for n, service in layer.config.services.items()}
            shipped = {unit for unit in units if (layer.path / UNIT_DIR / unit).exists()}
            write_tree(target, sandbox.generate(layer.config.services, shipped))
        elif target.exists():
            shutil.rmtree(target)


def packages(site: Site, machine: Machine) -> tuple[str, ...]:
    """The Debian packages a machine needs (a deploy installs them before its units start)."""
    return tuple(sorted(package_origins(site, machine)))


def package_origins(site: Site, machine: Machine) -> dict[str, list[str]]:
    """Each package the machine needs, with who asks for it: its layers and its own file, and
    what the units croft generates for it run."""
    origins: dict[str, list[str]] = {}

    def add(names: Iterable[str], origin: str) -> None:
        for name in names:
            origins.setdefault(name, []).append(origin)

    for layer in site.machine_layers(machine):
        add(layer.config.packages, f"layer {layer.name}")
        add(sandbox.packages(layer.config.services), f"layer {layer.name}'s services")
    add(machine.config.packages, f"machines/{machine.name}.toml")
    add(names.packages(site, machine), "the site's names ([dns])")
    add(overlay.packages(site, machine), "the overlay network ([network.overlay])")
    add(firewall.packages(site, machine), "the firewall ([firewall])")
    add(bridge.packages(site, machine), 'the service bridge (network = "bridge")')
    add(package_cache.packages(site, machine), "the package cache ([packages] cache)")
    add(upgrades.packages(site, machine), "background upgrades ([packages] upgrades)")
    add(journal.packages(site, machine), "the site's journal ([logs])")
    add(alerts.packages(site, machine), "the site's alerts (alerts/)")
    return origins


def unit_globs(site: Site, machine: Machine) -> list[tuple[str, str]]:
    """The generated files that belong to a unit (a change restarts or reloads it)."""
    generators = (names, overlay, firewall, bastion, bridge, journal, alerts)
    return [glob for generator in generators for glob in generator.unit_globs(site, machine)]


def secret_globs(site: Site, machine: Machine) -> list[str]:
    """The generated files that are secrets (0600, never shown)."""
    return [
        *overlay.secret_globs(site, machine),
        *journal.secret_globs(site, machine),
        *alerts.secret_globs(site, machine),
    ]


def outside_links(site: Site, machine: Machine) -> dict[str, str]:
    """The links croft keeps outside /usr/local on the machine (path -> path in its tree)."""
    return {
        **package_cache.outside_links(site, machine),
        **upgrades.outside_links(site, machine),
        **bastion.outside_links(site, machine),
    }
