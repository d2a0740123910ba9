"""What croft prints: plain lines when piped or in CI, a live table on a terminal."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

# Not typing's TYPE_CHECKING, and threading only where a board runs: `croft build`'s fast path
# prints through this module and is judged by its whole-command time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from rich.console import Console
    from rich.table import Table

    from croft.deploy.deployer import Outcome

STATUS_STYLE = {
    "unchanged": "dim",
    "deployed": "green",
    "planned": "cyan",
    "rolled-back": "yellow",
    "failed": "red",
}


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def interactive() -> bool:
    return sys.stdout.isatty()


class StageBoard:
    """Per-machine stages of a fleet operation; thread-safe."""

    def __init__(self, machines: list[str]) -> None:
        self.stages = {name: "waiting" for name in machines}
        import threading

        self.started = {name: time.monotonic() for name in machines}
        self.lock = threading.Lock()

    def __call__(self, machine: str, stage: str) -> None:
        with self.lock:
            self.stages[machine] = stage
            if not interactive():
                # One write per line, under the lock: print() writes the text and the newline
                # separately, and parallel machines' lines ran together.
                sys.stdout.write(f"{machine}: {stage}\n")
                sys.stdout.flush()

    def table(self) -> Table:
        from rich.table import Table

        table = Table(box=None, show_header=False)
        with self.lock:
            for machine, stage in self.stages.items():
                style = STATUS_STYLE.get(stage, "bold")
                elapsed = time.monotonic() - self.started[machine]
                table.add_row(machine, f"[{style}]{stage}[/]", f"{elapsed:5.1f}s")
        return table


@contextmanager
def live_board(machines: list[str]) -> Iterator[StageBoard]:
    board = StageBoard(machines)
    if not interactive():
        yield board
        return
    from rich.live import Live

    with Live(board.table(), refresh_per_second=10, console=console()) as live:
        import threading

        stop = threading.Event()

        def refresh() -> None:
            while not stop.wait(0.1):
                live.update(board.table())

        thread = threading.Thread(target=refresh, daemon=True)
        thread.start()
        try:
            yield board
        finally:
            stop.set()
            thread.join()
            live.update(board.table())


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    styled: Sequence[Sequence[str]] | None = None,
) -> None:
    """A table on a terminal (`styled`: the rows with rich markup), aligned plain lines otherwise."""
    if interactive():
        from rich.table import Table

        rich_table = Table(title=title, title_justify="left")
        for column in columns:
            rich_table.add_column(column)
        for row in styled or rows:
            rich_table.add_row(*row)
        console().print(rich_table)
    else:
        # No rich here: piped output and CI logs read better plain, and it saves its import.
        widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows, strict=True)]
        for row in (columns, *rows):
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def outcome_table(outcomes: list[Outcome]) -> None:
    """The summary of a fleet operation: a table on a terminal, aligned plain lines otherwise."""
    columns = ("machine", "status", "generation", "files +/~/-", "packages", "units", "message")
    rows = []
    for outcome in outcomes:
        changes = outcome.changes
        files = f"{len(changes.added)}/{len(changes.changed)}/{len(changes.removed)}"
        units = ", ".join(f"{action} {unit}" for action, unit in outcome.actions.summary())
        packages = " ".join(
            [f"+{name}" for name in outcome.packages.install]
            + [f"-{name}" for name in outcome.packages.remove]
        )
        generation = str(outcome.generation or "-")
        rows.append(
            (
                outcome.machine,
                outcome.status,
                generation,
                files,
                packages or "-",
                units or "-",
                outcome.message,
            )
        )
    styled = [(row[0], f"[{STATUS_STYLE.get(row[1], '')}]{row[1]}[/]", *row[2:]) for row in rows]
    table(columns, rows, title="croft deploy", styled=styled)
    for outcome in outcomes:
        for unit, journal in outcome.journals.items():
            print(f"{outcome.machine}: {unit} failed; its journal:")
            print(journal.rstrip())


def show_build(root: str, machines: tuple[str, ...], *, force: bool = False) -> None:
    """`croft build`: the pipeline's build, a line per machine that changed."""
    from croft import pipeline

    changed = pipeline.build(root, machines, force=force)
    for machine, (written, removed) in sorted(changed.items()):
        print(f"{machine}: {written} written, {removed} removed")
    if not changed:
        print("up to date")


def show_deploy(root: str, machines: tuple[str, ...], *, rollback: bool = True) -> bool:
    """`croft deploy`: the pipeline's build and deploy, each machine's stages as they come, then
    the outcome's table; whether all went well."""
    from croft import pipeline

    prepared = pipeline.prepare(root, machines)
    with live_board([t.name for t in prepared.targets]) as board:
        outcomes = pipeline.deploy(prepared, rollback=rollback, report=board)
    outcome_table(outcomes)
    return all(outcome.ok for outcome in outcomes)
