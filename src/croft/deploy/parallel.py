"""Deploying many machines at once: one worker thread per machine, progress reported per stage."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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

    workers = max(1, min(len(machines), site.config.deploy.parallel))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, machines))
