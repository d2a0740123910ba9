"""Deploying many machines at once: one worker thread per machine, progress reported per stage."""

from __future__ import annotations

import threading
from collections.abc import Callable

from croft.build.result import BuildResult
from croft.deploy.deployer import Outcome, deploy
from croft.errors import CroftError
from croft.site.model import Machine, Site

Report = Callable[[str, str], None]
"""Called with (machine, stage): connecting, sending, applying, then the outcome's status."""


def deploy_fleet(
    site: Site,
    machines: list[Machine],
    builds: dict[str, BuildResult],
    *,
    rollback: bool = True,
    dry_run: bool = False,
    report: Report = lambda machine, stage: None,
) -> list[Outcome]:
    def one(machine: Machine) -> Outcome:
        try:
            outcome = deploy(
                site,
                machine,
                builds[machine.name],
                rollback=rollback,
                dry_run=dry_run,
                progress=lambda stage: report(machine.name, stage),
            )
        except CroftError as exc:
            outcome = Outcome(machine.name, "failed", message=str(exc))
        report(machine.name, outcome.status)
        return outcome

    # Plain threads, at most `parallel` at work: concurrent.futures would cost a no-op deploy
    # ~7 ms of imports.
    slots = threading.Semaphore(max(1, site.config.deploy.parallel))
    outcomes: list[Outcome | BaseException | None] = [None] * len(machines)

    def work(index: int, machine: Machine) -> None:
        with slots:
            try:
                outcomes[index] = one(machine)
            except BaseException as exc:  # raised again below, in the caller's thread
                outcomes[index] = exc

    # The site's package cache first: the others install packages through it.
    cache = site.config.packages.cache
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
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if isinstance(outcome, Outcome)]
