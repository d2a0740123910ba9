"""`croft verify`: does what is live on a machine match the manifest of its live generation?

One round trip reads the live tree (type, mode, content digest or link target of every path),
the links croft made under /usr/local into it, and the state of the units the generation wants
started. Any difference is drift: a file changed or added by hand, a generation whose files do
not match its manifest, a link removed, a wanted unit not running.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from croft.build.manifest import Manifest
from croft.deploy.deployer import connect, fetch_manifest, read_state
from croft.layout import REMOTE
from croft.site.model import Machine, Site

_SCRIPT = Path(__file__).with_name("verify.sh")


@dataclass
class Verdict:
    machine: str
    generation: int | None
    drift: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drift


def verify(site: Site, machine: Machine) -> Verdict:
    conn = connect(site, machine)
    state = read_state(conn)
    verdict = Verdict(machine.name, state.live)
    if state.live is None:
        return verdict
    manifest = fetch_manifest(site.state_dir, conn, machine.name, state.live)
    args = shlex.join(
        [f"{REMOTE}/live/root", REMOTE, *sorted(manifest.wanted), "--", *sorted(manifest.outside)]
    )
    listing = conn.run(f"sh -s -- {args}", input=_SCRIPT.read_text()).stdout
    verdict.drift = compare(manifest, listing)
    return verdict


def compare(manifest: Manifest, listing: str) -> list[str]:
    """What differs between the manifest and the listing the script printed."""
    seen: dict[str, tuple[str, ...]] = {}
    links: dict[str, str] = {}
    units: dict[str, tuple[str, str, str]] = {}
    outside: dict[str, str] = {}
    for line in listing.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "d":
            mode, _, path = rest.partition(" ")
            seen[path] = ("dir", mode)
        elif kind == "l":
            path, _, target = rest.partition("\t")
            seen[path] = ("link", target)
        elif kind == "f":
            mode, digest, path = rest.split(" ", 2)
            seen[path] = ("file", mode, digest)
        elif kind == "L":
            path, _, target = rest.partition("\t")
            links[f"usr/local/{path}" if path else "usr/local"] = target
        elif kind == "X":
            path, _, target = rest.partition("\t")
            outside[path] = target
        elif kind == "u":
            unit, state, result, kind_of = [*rest.split(" "), "", "", ""][:4]
            units[unit] = (state, result, kind_of)
    seen.pop("usr", None)  # above usr/local: the tree's frame, not croft's
    drift = []
    for path, entry in sorted(manifest.entries.items()):
        found = seen.pop(path, None)
        if found is None:
            drift.append(f"missing: /{path}")
            continue
        if entry.type == "file":
            expected: tuple[str, ...] = ("file", f"{entry.mode:o}", entry.sha256 or "")
        elif entry.type == "link":
            expected = ("link", entry.target or "")
        else:
            expected = ("dir", f"{entry.mode:o}")
        if found[0] != expected[0]:
            drift.append(f"changed: /{path} is a {found[0]}, the manifest says a {expected[0]}")
        elif found != expected:
            what = "content" if found[0] == "file" and found[2] != expected[2] else "mode or target"
            drift.append(f"changed: /{path} ({what} differs from the manifest)")
    for path in sorted(seen):
        drift.append(f"unmanaged: /{path} is in the live generation but not in its manifest")
    live_root = f"{REMOTE}/live/root/"
    for path, entry in sorted(manifest.entries.items()):
        if entry.type == "dir":
            continue
        # Each file and link croft ships is a link into the live generation.
        link = links.get(path)
        if link is None:
            drift.append(f"unlinked: /{path} is not croft's link into the live generation")
        elif link != live_root + path:
            drift.append(f"relinked: /{path} points to {link}, not into croft's live generation")
    for path, target in sorted(manifest.outside.items()):
        if outside.get(path) != f"/{target}":
            drift.append(f"unlinked: /{path} is not croft's link to /{target}")
    for unit in sorted(manifest.wanted):
        state, result, kind_of = units.get(unit, ("unknown", "", ""))
        finished = kind_of == "oneshot" and state == "inactive" and result == "success"
        if state in ("active", "reloading", "activating") or finished:
            continue
        drift.append(f"unit: {unit} is {state}" + (f" ({result})" if result and result != "success" else ""))
    return drift
