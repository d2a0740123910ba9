"""The quick path of a build: new content in plain files, and nothing else.

When the only changes since the last build are to the content of plain files (no template, no
link, no unit file, nothing added or removed, no TOML), no output's key can change but theirs,
and their new entries follow from the build state's rows alone: copy, hash, update the rows,
write each affected machine's manifest. So this path loads neither the site model nor the
builder, and an edit is on its way in a few tens of milliseconds whatever the site's size.
"""

from __future__ import annotations

import json
import os
import stat as stat_module

from croft import files
from croft.build import stamp
from croft.build.manifest_format import entry_line, is_unit_file, member
from croft.build.state import BuildState, output_key


def apply(state_dir: str, changes: stamp.Changes) -> dict[str, int] | None:
    """Redo the outputs of these changed plain files; files written per machine, or None when
    the change needs the whole build."""
    if changes.structural or not changes.files:
        return None
    state = BuildState(os.path.join(state_dir, "cache", "build.db"))
    try:
        rows = state.plain_outputs(changes.files)
        if rows is None or {source for _, _, source, _, _ in rows} != set(changes.files):
            return None
        written: dict[str, int] = {}
        updates: list[tuple[str, str, list[object], str, str]] = []
        for machine, path, source, key, entry_text in rows:
            if is_unit_file(path):
                return None  # a unit file can change what is wanted
            try:
                st = os.stat(source)
            except FileNotFoundError:
                return None
            if not stat_module.S_ISREG(st.st_mode):
                return None
            entry = json.loads(entry_text)
            mode = 0o600 if entry.get("secret") else st.st_mode & 0o7777
            new_key = output_key(
                "file", source, (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode), mode, entry["origin"]
            )
            if stamp.racy(st.st_mtime_ns, changes.taken_ns):
                new_key.append(stamp.racy_mark())
            if new_key == key:
                continue
            target = os.path.join(state_dir, "build", machine, "root", path)
            unchanged = entry["mode"] == f"{mode:04o}" and os.path.isfile(target)
            if unchanged and files.sha256(source) == entry["sha256"]:
                digest = entry["sha256"]  # looked at again (it was racy), and the same
            else:
                digest = files.produce(source, target, mode)
                written[machine] = written.get(machine, 0) + 1
            entry["mode"], entry["sha256"] = f"{mode:04o}", digest
            line = entry_line(path, "file", mode, digest, None, entry.get("units", ()))
            updates.append((machine, path, new_key, member(path, entry), line))
        state.update_outputs(updates)
        for machine in written:  # (a racy file looked at again and found the same changes no entry)
            state.write_manifest(machine, os.path.join(state_dir, "build", machine))
    finally:
        state.close()
    return written
