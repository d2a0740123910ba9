"""The croft command line's entry point: error reporting, and `croft build`'s fast path.

The other commands are in commands.py (click). This module imports almost nothing at the top:
`croft build` runs after every edit and is judged by its whole-command time.
"""

from __future__ import annotations

import os
import sys

# Not `from typing import TYPE_CHECKING`: typing costs the quick path of a build ~7 ms to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from croft.build import stamp


def main() -> None:
    args = sys.argv[1:]
    try:
        # The plain form of `croft build` (machine names, no options) skips importing click,
        # a quarter of its time budget.
        plain = not any(arg.startswith("-") for arg in args[1:])
        if args[:1] == ["build"] and plain:
            build_command(os.environ.get("CROFT_SITE", "."), tuple(args[1:]))
            return
        # So does `croft deploy`: a deploy with nothing to do is judged against plain rsync.
        if args[:1] == ["deploy"] and plain:
            if not deploy_command(os.environ.get("CROFT_SITE", "."), tuple(args[1:])):
                sys.exit(1)
            return
        _click_main()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        _fail(exc)


def _fail(exc: Exception) -> NoReturn:
    from croft.errors import CroftError, SiteError

    if isinstance(exc, SiteError):
        print(_relative(str(exc)), file=sys.stderr)
    elif isinstance(exc, CroftError):
        print(f"croft: {_relative(str(exc))}", file=sys.stderr)
    else:
        raise exc
    sys.exit(1)


def build_command(root: str, machines: tuple[str, ...], *, force: bool = False) -> None:
    """`croft build`, importing no more than the work at hand needs (see cli.main)."""
    from croft.build import stamp

    key = stamp.selection_key(machines)
    state_dir = os.path.join(root, ".croft")
    changes = None if force else stamp.changes(state_dir, key)
    if changes is not None and _quick(state_dir, key, changes, report=True):
        return
    from pathlib import Path

    from croft.build import builder
    from croft.site.load import load_site

    site = load_site(Path(root))
    results = builder.build(site, site.select(machines), force=force, record_as=key, changes=changes)
    changed = [r for r in results.values() if r.changed]
    for result in changed:
        print(f"{result.machine}: {result.written} written, {result.removed} removed")
    if not changed:
        print("up to date")


def deploy_command(root: str, machines: tuple[str, ...], *, rollback: bool = True) -> bool:
    """`croft deploy`: build what changed, then deploy every machine; whether all went well.

    When nothing changed since the last build, the builder is not even imported: each machine's
    digest, a line in its build directory, is all there is to compare.
    """
    from pathlib import Path

    from croft import ui
    from croft.build import stamp
    from croft.build.result import BuildResult, unchanged
    from croft.deploy.parallel import deploy_fleet
    from croft.site.load import load_site

    key = stamp.selection_key(machines)
    state_dir = os.path.join(root, ".croft")
    changes = stamp.changes(state_dir, key)
    quick = changes is not None and _quick(state_dir, key, changes, report=False)
    site = load_site(Path(root))
    selected = site.select(machines)
    builds: dict[str, BuildResult] = {m.name: unchanged(site, m.name) for m in selected}
    if not quick or not all(os.path.exists(b.directory / "digest") for b in builds.values()):
        from croft.build import builder

        builds = builder.build(site, selected, record_as=key, changes=changes)
    with ui.live_board([m.name for m in selected]) as board:
        outcomes = deploy_fleet(site, selected, builds, rollback=rollback, report=board)
    ui.outcome_table(outcomes)
    return all(outcome.ok for outcome in outcomes)


def _quick(state_dir: str, key: str, changes: stamp.Changes, *, report: bool) -> bool:
    """Bring the build up to date without the builder, when nothing or only the content of files
    and templates changed (see croft.build.quick and .warm); whether that was enough."""
    from croft.build import stamp

    written: dict[str, int] | None = {}
    if changes:
        if changes.structural:
            return False
        from croft.build import warm

        written = warm.apply(state_dir, changes)
        if written is None:
            return False
    if changes.restat:
        stamp.refresh(state_dir, key, changes)
    if report:
        for machine, count in sorted((written or {}).items()):
            print(f"{machine}: {count} written, 0 removed")
        if not written:
            print("up to date")
    return True


def _click_main() -> None:
    import click

    from croft.commands import cli

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)


def _relative(text: str) -> str:
    """Paths in messages relative to the working directory, as people type them."""
    cwd = os.getcwd().rstrip("/") + "/"
    return text.replace(cwd, "")
