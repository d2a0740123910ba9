"""How exposed each service is, before and after croft's sandbox: `croft check --security`.
(Beside the deploy: it reads the machine's own unit files over its connection.)

systemd-analyze scores a unit offline against a root directory. croft assembles two small
roots per machine: the unit file alone (the distro's, fetched from the machine, or the one a
layer ships), and the unit file with the machine's built tree, drop-ins included.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from croft.build.result import build_dir
from croft.deploy.deployer import connect
from croft.errors import CroftError
from croft.layout import UNIT_DIR
from croft.run import run
from croft.site.model import Machine, Site

_SCORE = re.compile(r"Overall exposure level for \S+: ([0-9.]+)")


@dataclass
class Exposure:
    machine: str
    unit: str
    before: float | None
    after: float | None
    note: str = ""


def service_units(site: Site, machine: Machine) -> dict[str, bool]:
    """The machine's service units, and whether each is a container."""
    return {
        service.unit_name(name): service.container is not None
        for layer in site.machine_layers(machine)
        for name, service in sorted(layer.config.services.items())
    }


def score(root: Path, unit: str) -> float:
    result = run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager", unit])
    match = _SCORE.search(result.stdout)
    if match is None:
        raise CroftError(f"systemd-analyze gave no score for {unit}:\n{result.stdout[-500:]}")
    return float(match.group(1))


def _unit_file(site: Site, machine: Machine, unit: str) -> tuple[str, str]:
    """The unit's own file (path on the machine, text), without croft's drop-ins."""
    shipped = build_dir(site, machine.name) / "root" / UNIT_DIR / unit
    if shipped.is_file():
        return f"/{UNIT_DIR}/{unit}", shipped.read_text()
    conn = connect(site, machine)
    path = conn.run(f"systemctl show -P FragmentPath {unit}").stdout.strip()
    if not path:
        raise CroftError(f"{machine.name} has no unit {unit}")
    return path, conn.run(f"cat {path}").stdout


def exposures(site: Site, machine: Machine) -> list[Exposure]:
    """Each service's exposure on this machine, from its built tree (build it first)."""
    found = []
    built = build_dir(site, machine.name) / "root"
    for unit, container in sorted(service_units(site, machine).items()):
        try:
            path, text = _unit_file(site, machine, unit)
        except CroftError as exc:
            found.append(Exposure(machine.name, unit, None, None, f"no unit file: {exc}"))
            continue
        with tempfile.TemporaryDirectory(prefix="croft-security-") as tmp:
            before, after = Path(tmp) / "before", Path(tmp) / "after"
            shutil.copytree(built, after, symlinks=True)
            for root in (before, after):
                (root / "etc").mkdir(parents=True, exist_ok=True)
                (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                (root / path.lstrip("/")).write_text(text)
            note = "a container: nspawn isolates it, which systemd-analyze does not see" if container else ""
            found.append(Exposure(machine.name, unit, score(before, unit), score(after, unit), note))
    return found
