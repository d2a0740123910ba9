"""`croft diff`: what a deploy would change on a machine, with unified diffs of text files."""

from __future__ import annotations

import difflib

from croft.build.manifest import Manifest
from croft.build.result import build_dir
from croft.deploy.deployer import Outcome, live_contents
from croft.site.model import Machine, Site

MAX_DIFF_BYTES = 256 * 1024


def render(site: Site, machine: Machine, manifest: Manifest, outcome: Outcome) -> str:
    changes = outcome.changes
    lines = [f"== {machine.name} ({machine.address})"]
    if not (changes or outcome.actions or outcome.conflicts or outcome.packages or outcome.outside):
        return lines[0] + ": no changes"
    textual = [
        path
        for path in changes.changed
        if manifest.entries[path].type == "file" and not manifest.entries[path].secret
    ]
    old = live_contents(site, machine, textual)
    root = build_dir(site, machine.name) / "root"
    # Packages first, as the deploy installs them first.
    lines += [f"+pkg {name}" for name in outcome.packages.install]
    lines += [f"-pkg {name}" for name in outcome.packages.remove]
    lines += [f"+ /{path} -> /{target}" for path, target in outcome.outside.link.items()]
    lines += [f"- /{path}" for path in outcome.outside.unlink]
    for path in outcome.conflicts:
        lines.append(f"! {path}: exists and is not croft's (deploy refuses it: adopt it in layer.toml)")
    for path in changes.added:
        lines.append(f"+ /{path}")
    for path in changes.removed:
        lines.append(f"- /{path}")
    for path in changes.changed:
        entry = manifest.entries[path]
        lines.append(f"~ /{path}")
        if entry.secret:
            lines.append("    (secret: content not shown)")
            continue
        if path not in old:
            continue
        new_bytes = (root / path).read_bytes() if entry.type == "file" else b""
        if max(len(new_bytes), len(old[path])) > MAX_DIFF_BYTES:
            lines.append("    (large file: content not shown)")
            continue
        try:
            before, after = old[path].decode(), new_bytes.decode()
        except UnicodeDecodeError:
            lines.append("    (binary file)")
            continue
        diff = difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"live/{path}",
            tofile=f"build/{path}",
        )
        lines += ["    " + line.rstrip("\n") for line in diff]
    actions = outcome.actions
    if actions.daemon_reload:
        lines.append("units: daemon-reload")
    for action, unit in actions.summary():
        lines.append(f"units: {action} {unit}")
    return "\n".join(lines)
