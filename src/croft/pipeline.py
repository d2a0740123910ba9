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
    from croft.deploy.ssh import Session
    from croft.deploy.target import Target, View
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
    """The machines a command is about as a deploy sees them (croft.deploy.target), their builds,
    up to date, and the sessions opened to them ahead (croft.deploy.ssh.Session)."""

    def __init__(
        self,
        view: View,
        targets: list[Target],
        builds: dict[str, BuildResult],
        sessions: dict[str, Session] | None = None,
    ) -> None:
        self.view = view
        self.targets = targets
        self.builds = builds
        self.sessions = sessions or {}


def prepare(root: str, machines: tuple[str, ...]) -> Prepared:
    """Build what changed for a deploy of these machines.

    When only the content of files and templates changed since the last build (or nothing), the
    builder is not imported, nor the site model: the deploy view kept by the last deploy that
    loaded the site says all a deploy needs, and each machine's digest is a line in its build
    directory. With that view, a session to each machine opens first, and starts (SSH, the
    machine's shell) while the build runs.
    """
    import os
    from pathlib import Path

    from croft.build import stamp
    from croft.build.result import BuildResult
    from croft.deploy import target

    view = target.load(Path(root))
    selected = view.select(machines) if view is not None else None
    sessions = _open(view, selected) if view is not None and selected is not None else {}
    try:
        key = stamp.selection_key(machines)
        state_dir = os.path.join(root, ".croft")
        changes = stamp.changes(state_dir, key)
        quick = changes is not None and _quick(state_dir, key, changes) is not None
        built = selected is not None and all(os.path.exists(t.build / "digest") for t in selected)
        if quick and view is not None and selected is not None and built:
            builds = {t.name: BuildResult(t.name, t.build, 0, 0) for t in selected}
            prepared, sessions = Prepared(view, selected, builds, sessions), {}  # (theirs now)
            return prepared
        from croft.build.result import unchanged
        from croft.site.load import load_site

        site = load_site(Path(root))
        selected_machines = site.select(machines)
        builds = {m.name: unchanged(site, m.name) for m in selected_machines}
        if not quick or not all(os.path.exists(b.directory / "digest") for b in builds.values()):
            from croft.build import builder

            builds = builder.build(site, selected_machines, record_as=key, changes=changes)
        fresh = target.save(site)
        return Prepared(fresh, [fresh.targets[m.name] for m in selected_machines], builds)
    finally:
        for session in sessions.values():  # opened ahead, not needed (the site changed, or an error)
            session.cancel()


def _open(view: View, targets: list[Target]) -> dict[str, Session]:
    """A session to each machine the deploy starts with (at most [deploy] parallel; the package
    cache alone, when it is among them: the others wait for it)."""
    from croft.deploy.deployer import reach

    first = [t for t in targets if t.name == view.cache] if len(targets) > 1 else []
    return {t.name: reach(t).open() for t in (first or targets[: max(1, view.parallel)])}


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
        prepared.view,
        prepared.targets,
        prepared.builds,
        rollback=rollback,
        dry_run=dry_run,
        report=report,
        sessions=prepared.sessions,
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
