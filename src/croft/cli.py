"""The croft command line's entry point: error reporting, and the fast path of `croft build`
and `croft deploy` (straight to the pipeline, without click).

The commands are in commands.py (click). This module imports almost nothing at the top:
`croft build` runs after every edit and is judged by its whole-command time.
"""

from __future__ import annotations

import os
import sys

# Not `from typing import TYPE_CHECKING`: typing costs the quick path of a build ~7 ms to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def main() -> None:
    args = sys.argv[1:]
    try:
        # The plain form of `croft build` (machine names, no options) skips importing click,
        # a quarter of its time budget.
        plain = not any(arg.startswith("-") for arg in args[1:])
        if args[:1] == ["build"] and plain:
            from croft import ui

            ui.show_build(os.environ.get("CROFT_SITE", "."), tuple(args[1:]))
            _done(0)
        # So does `croft deploy`: a deploy with nothing to do is judged against plain rsync.
        if args[:1] == ["deploy"] and plain:
            from croft import ui

            _done(0 if ui.show_deploy(os.environ.get("CROFT_SITE", "."), tuple(args[1:])) else 1)
        _click_main()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        _fail(exc)


def _done(code: int) -> NoReturn:
    """End a fast path's command once its output is out, without tearing the interpreter down:
    freeing every module and object is ~10 ms of a deploy after an edit, and there is nothing
    left to flush or close (its files are written whole, its threads and sessions are done)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # (read by a pipe that closed early, as `| head` does)
        code = code or 1
    sys.stderr.flush()
    os._exit(code)


def _fail(exc: Exception) -> NoReturn:
    from croft.errors import CroftError, SiteError

    if isinstance(exc, SiteError):
        print(_relative(str(exc)), file=sys.stderr)
    elif isinstance(exc, CroftError):
        print(f"croft: {_relative(str(exc))}", file=sys.stderr)
    else:
        raise exc
    sys.exit(1)


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
