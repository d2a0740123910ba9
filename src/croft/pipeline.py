"""From a site to its machines: build what changed, then deploy. What the CLI, the lab and the
benchmark call; it returns results and prints nothing.

`croft build` and `croft deploy` run after every edit and are judged by their whole-command time,
so this module imports nothing at the top and the rest only as the work at hand needs it: when
nothing or only the content of files and templates changed, the site is not even loaded.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: typing costs the quick path of a build ~7 ms to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from croft.build import stamp
    from croft.build.result import BuildResult
    from croft.deploy.deployer import Outcome
    from croft.site.model import Machine, Site


def build(root: str, machines: tuple[str, ...], *, force: bool = False) -> dict[str, tuple[int, int]]:
    """Bring the machines' builds up to date; (written, removed) of each machine that changed."""
    import os

    from croft.build import stamp

    key = stamp.selection_key(machines)
    state_dir = os.path.join(root, ".croft")
    changes = None if force else stamp.changes(state_dir, key)
    if changes is not None:
        written = _quick(state_dir, key, changes)
        if written is not None:
            return {machine: (count, 0) for machine, count in written.items()}
    from pathlib import Path

    from croft.build import builder
    from croft.site.load import load_site

    site = load_site(Path(root))
    results = builder.build(site, site.select(machines), force=force, record_as=key, changes=changes)
    return {r.machine: (r.written, r.removed) for r in results.values() if r.changed}


def build_site(site: Site, machines: list[Machine]) -> dict[str, BuildResult]:
    """Build these machines of a loaded site (recorded for the fast path, as `croft build` of
    them would be)."""
    from croft.build import builder
    from croft.build.stamp import selection_key

    return builder.build(site, machines, record_as=selection_key(tuple(m.name for m in machines)))


class Prepared:
    """A site, the machines a command is about, and their builds, up to date."""

    def __init__(self, site: Site, machines: list[Machine], builds: dict[str, BuildResult]) -> None:
        self.site = site
        self.machines = machines
        self.builds = builds


def prepare(root: str, machines: tuple[str, ...]) -> Prepared:
    """Build what changed for a deploy of these machines.

    When nothing changed since the last build, the builder is not even imported: each machine's
    digest, a line in its build directory, is all a deploy compares.
    """
    import os
    from pathlib import Path

    from croft.build import stamp
    from croft.build.result import unchanged
    from croft.site.load import load_site

    key = stamp.selection_key(machines)
    state_dir = os.path.join(root, ".croft")
    changes = stamp.changes(state_dir, key)
    quick = changes is not None and _quick(state_dir, key, changes) is not None
    site = load_site(Path(root))
    selected = site.select(machines)
    builds = {m.name: unchanged(site, m.name) for m in selected}
    if not quick or not all(os.path.exists(b.directory / "digest") for b in builds.values()):
        from croft.build import builder

        builds = builder.build(site, selected, record_as=key, changes=changes)
    return Prepared(site, selected, builds)


def deploy(
    prepared: Prepared,
    *,
    rollback: bool = True,
    dry_run: bool = False,
    report: Callable[[str, str], None] = lambda machine, stage: None,
) -> list[Outcome]:
    """Deploy every prepared machine at once (see croft.deploy.parallel); `report` hears each
    machine's stages."""
    from croft.deploy.parallel import deploy_fleet

    return deploy_fleet(
        prepared.site, prepared.machines, prepared.builds, rollback=rollback, dry_run=dry_run, report=report
    )


def _quick(state_dir: str, key: str, changes: stamp.Changes) -> dict[str, int] | None:
    """Bring the build up to date without the builder, when nothing or only the content of files
    and templates changed (see croft.build.quick and .warm): the files written per machine, or
    None when that was not enough."""
    from croft.build import stamp

    written: dict[str, int] | None = {}
    if changes:
        if changes.structural:
            return None
        from croft.build import warm

        written = warm.apply(state_dir, changes)
        if written is None:
            return None
    if changes.restat:
        stamp.refresh(state_dir, key, changes)
    return written
