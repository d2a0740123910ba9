"""Deploying many machines at once: one worker thread per machine, progress reported per stage."""

from __future__ import annotations

import threading
from collections.abc import Callable

from croft.build.result import BuildResult
from croft.deploy.deployer import Outcome, Status, deploy
from croft.deploy.ssh import Session
from croft.deploy.target import Target, View
from croft.errors import CroftError

Report = Callable[[str, str], None]
"""Called with (machine, stage): connecting, sending, applying, then the outcome's status."""


def deploy_fleet(
    view: View,
    machines: list[Target],
    builds: dict[str, BuildResult],
    *,
    rollback: bool = True,
    dry_run: bool = False,
    report: Report = lambda machine, stage: None,
    sessions: dict[str, Session] | None = None,
) -> list[Outcome]:
    """Deploy each machine in a thread of its own; each machine's first round trip goes through
    its session in `sessions`, when croft opened one ahead."""
    ahead = dict(sessions or {})

    def one(machine: Target) -> Outcome:
        try:
            outcome = deploy(
                machine,
                builds[machine.name],
                session=ahead.pop(machine.name, None),
                rollback=rollback,
                dry_run=dry_run,
                progress=lambda stage: report(machine.name, stage),
            )
        except CroftError as exc:
            outcome = Outcome(machine.name, Status.FAILED, message=str(exc))
        report(machine.name, outcome.status)
        return outcome

    # Plain threads, at most `parallel` at work: concurrent.futures would cost a no-op deploy
    # ~7 ms of imports.
    slots = threading.Semaphore(max(1, view.parallel))
    outcomes: list[Outcome | BaseException | None] = [None] * len(machines)

    def work(index: int, machine: Target) -> None:
        with slots:
            try:
                outcomes[index] = one(machine)
            except BaseException as exc:  # raised again below, in the caller's thread
                outcomes[index] = exc

    # The site's package cache first: the others install packages through it.
    cache = view.cache
    first = [(index, m) for index, m in enumerate(machines) if m.name == cache and len(machines) > 1]
    rest = [(index, m) for index, m in enumerate(machines) if (index, m) not in first]
    for wave in (first, rest):
        # Daemon threads: Ctrl-C ends croft at once. A switch under way finishes on its machine
        # anyway (apply.sh runs to its end whatever happens to the connection), and the next
        # deploy reads the machine again when what croft remembered is stale.
        threads = [threading.Thread(target=work, args=item, daemon=True) for item in wave]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for session in ahead.values():  # (of a machine whose thread ended before it needed one)
        session.cancel()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if isinstance(outcome, Outcome)]
