"""Facts: what a machine is, gathered over SSH in one round trip and cached in facts/<name>.json.

The script is POSIX sh reading /proc, /sys and /etc, since the target may have no Python.
"""

from __future__ import annotations

import json
import re
from typing import Any

from croft.errors import CroftError
from croft.site.model import Machine, Site

# Each section starts with a line "@@name"; the parser below splits on them.
GATHER_SCRIPT = r"""
echo @@hostname; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
echo @@arch; uname -m
echo @@kernel; uname -r
echo @@os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release
echo @@nproc; nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo
echo @@meminfo; grep -E '^(MemTotal|SwapTotal):' /proc/meminfo
echo @@systemd; systemctl --version 2>/dev/null | head -n 1
echo @@interfaces
for dev in /sys/class/net/*; do
  echo "$(basename "$dev") $(cat "$dev/address" 2>/dev/null) $(cat "$dev/operstate" 2>/dev/null)"
done
echo @@addresses; ip -o addr show 2>/dev/null
echo @@blockdevices; lsblk -J -b -o NAME,SIZE,TYPE,MOUNTPOINT,FSTYPE,MODEL 2>/dev/null
echo @@end
"""


def parse(output: str) -> dict[str, Any]:
    """Turn the gather script's output into the facts document."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("@@"):
            current = sections.setdefault(line[2:], [])
        elif current is not None:
            current.append(line)
    if "end" not in sections:
        raise CroftError("the facts script did not finish: is the target a Linux machine with a POSIX sh?")

    def text(name: str) -> str:
        return "\n".join(sections.get(name, [])).strip()

    os_release = {}
    for line in sections.get("os-release", []):
        key, sep, value = line.partition("=")
        if sep:
            os_release[key.lower()] = value.strip().strip('"')
    memory = {}
    for line in sections.get("meminfo", []):
        key, _, value = line.partition(":")
        memory[key.strip()] = int(value.split()[0]) * 1024
    interfaces: dict[str, dict[str, Any]] = {}
    for line in sections.get("interfaces", []):
        parts = line.split()
        if parts:
            interfaces[parts[0]] = {
                "mac": parts[1] if len(parts) > 1 else None,
                "state": parts[2] if len(parts) > 2 else None,
                "addresses": [],
            }
    for line in sections.get("addresses", []):
        match = re.match(r"\d+:\s+(\S+)\s+(inet6?)\s+(\S+)", line)
        if match and match.group(1) in interfaces:
            interfaces[match.group(1)]["addresses"].append(match.group(3))
    systemd = re.search(r"systemd (\d+)", text("systemd"))
    try:
        blockdevices = json.loads(text("blockdevices") or "{}").get("blockdevices", [])
    except ValueError:
        blockdevices = []
    return {
        "hostname": text("hostname"),
        "arch": text("arch"),
        "kernel": text("kernel"),
        "os": {
            "id": os_release.get("id"),
            "version_id": os_release.get("version_id"),
            "codename": os_release.get("version_codename"),
            "pretty_name": os_release.get("pretty_name"),
        },
        "nproc": int(text("nproc") or 0),
        "memory": {"total": memory.get("MemTotal", 0), "swap": memory.get("SwapTotal", 0)},
        "systemd": int(systemd.group(1)) if systemd else None,
        "interfaces": interfaces,
        "blockdevices": blockdevices,
    }


def gather(site: Site, machine: Machine) -> dict[str, Any]:
    """Gather one machine's facts over SSH and write them to facts/<name>.json."""
    from croft.deploy.deployer import connect

    facts = parse(connect(site, machine).run(GATHER_SCRIPT).stdout)
    path = site.facts_dir / f"{machine.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(facts, indent=2, sort_keys=True) + "\n"
    # Unchanged facts keep their file (and mtime), so builds that use them stay cached.
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return facts


def gather_all(
    site: Site, machines: list[Machine], *, refresh: bool
) -> dict[str, dict[str, Any] | CroftError]:
    """Facts for these machines: gathered in parallel where missing (or all, with refresh)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(machine: Machine) -> dict[str, Any] | CroftError:
        path = site.facts_dir / f"{machine.name}.json"
        if not refresh and path.exists():
            cached: dict[str, Any] = json.loads(path.read_text())
            return cached
        try:
            return gather(site, machine)
        except CroftError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(machines)))) as pool:
        return dict(zip([m.name for m in machines], pool.map(one, machines), strict=True))
