"""What switching a machine from one tree to another does: files, then units.

The plan is computed here, from the two manifests, and carried out on the target by apply.sh,
so the logic lives in one place and the target needs only POSIX sh and systemctl. The same
function gives the way forward and, with its arguments swapped, the way back.

Steps, in the order they run (one line each: `verb argument`; in lists, a tab separates items):
  install PACKAGE...     Debian packages the new tree needs (apply.sh installs those missing)
  stop UNIT              units no longer wanted, while their files are still in place
  dirs MODE PATH...      directories created, or whose mode changed, one line per mode
  links DIR NAME...      paths that appear: symlinks into the live generation, one line per
                         directory, so the target runs one `ln` per directory, not per file
  flip GENERATION        the atomic switch: every file's content changes at once
  unlink PATH            paths that are gone
  extunlink PATH TARGET  links outside /usr/local that are gone (only while they are croft's)
  extlink PATH TARGET    links outside /usr/local that appear or point elsewhere
  rmdir PATH             directories that are gone (if empty)
  remove PACKAGE...      packages no longer needed (apply.sh removes those croft installed)
  sysusers               when a sysusers.d file appeared or changed: make its system users
  daemon-reload          when a unit file or drop-in changed
  start|restart|reload-or-restart|try-restart|try-reload-or-restart UNIT
  check UNIT             units that must be running once the switch has settled
"""

from __future__ import annotations

from collections import defaultdict

from croft.build.manifest import Entry, Manifest, same_on_target, unit_of
from croft.layout import DISTRO_DIRS, SYSUSERS_DIR, UNIT_DIR


class FileChanges:
    def __init__(
        self,
        added: list[str] | None = None,
        changed: list[str] | None = None,
        removed: list[str] | None = None,
    ) -> None:
        self.added = added or []
        self.changed = changed or []
        self.removed = removed or []

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def reversed(self) -> FileChanges:
        """The changes of the way back (file_changes with its arguments swapped)."""
        return FileChanges(added=self.removed, changed=self.changed, removed=self.added)


class PackageChanges:
    def __init__(self, install: list[str] | None = None, remove: list[str] | None = None) -> None:
        self.install = install or []
        self.remove = remove or []

    def __bool__(self) -> bool:
        return bool(self.install or self.remove)


class OutsideChanges:
    """Links outside /usr/local (path -> target in the tree): made or pointed anew, and gone."""

    def __init__(self, link: dict[str, str] | None = None, unlink: dict[str, str] | None = None) -> None:
        self.link = link or {}
        self.unlink = unlink or {}

    def __bool__(self) -> bool:
        return bool(self.link or self.unlink)


def outside_changes(old: Manifest, new: Manifest) -> OutsideChanges:
    return OutsideChanges(
        link={
            path: target for path, target in sorted(new.outside.items()) if old.outside.get(path) != target
        },
        unlink={path: target for path, target in sorted(old.outside.items()) if path not in new.outside},
    )


def package_changes(old: Manifest, new: Manifest) -> PackageChanges:
    before, after = set(old.packages), set(new.packages)
    return PackageChanges(install=sorted(after - before), remove=sorted(before - after))


class UnitActions:
    """What happens to each unit; a unit appears in at most one list."""

    def __init__(self) -> None:
        self.stop: list[str] = []
        self.start: list[str] = []
        self.restart: list[str] = []
        self.reload_or_restart: list[str] = []
        self.try_restart: list[str] = []
        self.try_reload_or_restart: list[str] = []
        self.daemon_reload = False

    def __bool__(self) -> bool:
        return bool(
            self.stop
            or self.start
            or self.restart
            or self.reload_or_restart
            or self.try_restart
            or self.try_reload_or_restart
            or self.daemon_reload
        )

    def summary(self) -> list[tuple[str, str]]:
        """(action, unit) pairs, in the order they run."""
        pairs = [("stop", unit) for unit in self.stop]
        pairs += [("start", unit) for unit in self.start]
        pairs += [("restart", unit) for unit in self.restart]
        pairs += [("reload-or-restart", unit) for unit in self.reload_or_restart]
        pairs += [("try-restart", unit) for unit in self.try_restart]
        pairs += [("try-reload-or-restart", unit) for unit in self.try_reload_or_restart]
        return pairs


def distro_unit(unit: str, manifest: Manifest) -> bool:
    """Whether a unit is the distribution's (croft ships drop-ins or config for it, not the
    unit itself)."""
    return f"{UNIT_DIR}/{unit}" not in manifest.entries


def file_changes(old: Manifest, new: Manifest) -> FileChanges:
    changes = FileChanges()
    for path in new.entries:
        if path not in old.entries:
            changes.added.append(path)
        elif not same_on_target(old.entries, new.entries, path):
            changes.changed.append(path)
    changes.removed = [path for path in old.entries if path not in new.entries]
    changes.added.sort()
    changes.changed.sort()
    changes.removed.sort()
    return changes


def unit_actions(old: Manifest, new: Manifest, changes: FileChanges) -> UnitActions:
    actions = UnitActions()
    # Units whose definition changed (unit file, drop-ins) must restart; a reload would keep
    # the old ExecStart=. Units whose other files changed may reload, when they can.
    redefined: set[str] = set()
    reconfigured: set[str] = set()
    for path in [*changes.added, *changes.changed, *changes.removed]:
        entry: Entry = new.entries.get(path) or old.entries[path]
        if path.startswith("usr/local/lib/systemd/"):
            actions.daemon_reload = True
        defined = unit_of(path)
        for unit in entry.units:
            # A template (name@.service) never runs itself; its instances pick it up when they
            # next start.
            if "@." not in unit:
                (redefined if unit == defined else reconfigured).add(unit)
    old_wanted = {unit for unit in old.wanted if "@." not in unit}
    new_wanted = {unit for unit in new.wanted if "@." not in unit}
    actions.stop = sorted(old_wanted - new_wanted)
    actions.start = sorted(new_wanted - old_wanted)
    handled = set(actions.stop) | set(actions.start)
    for unit in sorted(redefined - handled):
        if unit not in new.units and not distro_unit(unit, old):
            continue  # croft's own unit, gone with its files: nothing left to restart
        (actions.restart if unit in new.wanted else actions.try_restart).append(unit)
    for unit in sorted(reconfigured - redefined - handled):
        # A distribution's unit croft configured (resolved, sshd) goes on running after croft
        # stops configuring it: it must let go of croft's settings.
        if unit not in new.units and unit not in new.wanted and not distro_unit(unit, old):
            continue
        if unit in new.wanted:
            actions.reload_or_restart.append(unit)
        else:
            actions.try_reload_or_restart.append(unit)
    return actions


def steps(
    old: Manifest,
    new: Manifest,
    generation: str,
    changes: FileChanges | None = None,
    actions: UnitActions | None = None,
) -> list[str]:
    """The lines apply.sh runs to switch the target from `old` to `new` (in `generation`);
    `changes` and `actions` when the caller has them already."""
    if changes is None:
        changes = file_changes(old, new)
    if actions is None:
        actions = unit_actions(old, new, changes)
    packages = package_changes(old, new)
    # Installed first: a unit the switch starts may need them, and a package that cannot be
    # installed stops the switch before anything else changed.
    lines = ["install " + "\t".join(packages.install)] if packages.install else []
    lines += [f"stop {unit}" for unit in actions.stop]
    dirs: dict[int, list[str]] = defaultdict(list)
    links: dict[str, list[str]] = defaultdict(list)
    for path in sorted(changes.added + changes.changed):
        entry = new.entries[path]
        before = old.entries.get(path)
        if entry.type == "dir":
            if before is None or before.type != "dir" or before.mode != entry.mode:
                dirs[entry.mode].append(path)
        elif before is None or before.type == "dir":
            parent, _, name = path.rpartition("/")
            links[parent].append(name)
    lines += ["dirs " + "\t".join([f"{mode:04o}", *paths]) for mode, paths in sorted(dirs.items())]
    lines += ["links " + "\t".join([parent, *names]) for parent, names in sorted(links.items())]
    lines.append(f"flip {generation}")
    outside = outside_changes(old, new)
    lines += [f"extunlink {path}\t{target}" for path, target in outside.unlink.items()]
    lines += [f"extlink {path}\t{target}" for path, target in outside.link.items()]
    for path in sorted(changes.removed, reverse=True):  # children before their directories
        if old.entries[path].type != "dir":
            lines.append(f"unlink {path}")
        elif path not in DISTRO_DIRS:
            lines.append(f"rmdir {path}")
    if packages.remove:
        lines.append("remove " + "\t".join(packages.remove))
    if any(path.startswith(SYSUSERS_DIR + "/") for path in changes.added + changes.changed):
        lines.append("sysusers")  # before any unit that runs as one of them (re)starts
    if actions.daemon_reload:
        lines.append("daemon-reload")
    for action, unit in actions.summary():
        if action != "stop":
            lines.append(f"{action} {unit}")
    lines += [f"check {unit}" for unit in actions.start + actions.restart + actions.reload_or_restart]
    return lines
