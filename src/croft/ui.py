"""What croft prints: plain lines when piped or in CI, a live table on a terminal."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
        self.started = {name: time.monotonic() for name in machines}
        self.lock = threading.Lock()

    def __call__(self, machine: str, stage: str) -> None:
        with self.lock:
            self.stages[machine] = stage
        if not interactive():
            print(f"{machine}: {stage}", flush=True)

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


def outcome_table(outcomes: list[Outcome]) -> None:
    from rich.table import Table

    table = Table(title="croft deploy", title_justify="left")
    for column in ("machine", "status", "generation", "files +/~/-", "units", "message"):
        table.add_column(column)
    for outcome in outcomes:
        changes = outcome.changes
        files = f"{len(changes.added)}/{len(changes.changed)}/{len(changes.removed)}"
        units = ", ".join(f"{action} {unit}" for action, unit in outcome.actions.summary())
        style = STATUS_STYLE.get(outcome.status, "")
        table.add_row(
            outcome.machine,
            f"[{style}]{outcome.status}[/]",
            str(outcome.generation or "-"),
            files,
            units or "-",
            outcome.message,
        )
    console().print(table)
    for outcome in outcomes:
        for unit, journal in outcome.journals.items():
            console().print(f"[bold red]{outcome.machine}: {unit} failed[/]; its journal:")
            console().print(journal.rstrip(), markup=False)
