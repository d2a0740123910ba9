"""The whole story on the lab, in one command: build the images, start the lab, provision its
machines through croft serve, configure them with `croft deploy`, show their services answering,
and print how long each stage took."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from croft import tools, wait
from croft.errors import CroftError
from croft.lab import lab
from croft.serve.location import serve_config
from croft.site.load import load_site
from croft.site.model import Site

PROVISION_TIMEOUT = 1200
Say = Callable[[str], None]


class Stages:
    def __init__(self, say: Say) -> None:
        self.say = say
        self.times: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.say(f"==> {name}")
        started = time.monotonic()
        yield
        self.times.append((name, time.monotonic() - started))
        self.say(f"    {name}: {self.times[-1][1]:.1f} s")


def demo(site_root: Path, *, keep: bool = False, say: Say = print) -> list[tuple[str, float]]:
    """Run the story; returns each stage's seconds. The lab is torn down unless `keep`."""
    site = load_site(site_root)
    stages = Stages(say)
    started = time.monotonic()
    machines = lab.lab_machines(site)
    # Everything the story needs, checked before the first stage rather than minutes into it.
    tools.require("image", "serve", "lab", "deploy")
    try:
        with stages.stage("images (croft image build)"):
            from croft.images.build import build

            for name in _needed_images(site, machines):
                build(site, name, progress=lambda line: say(f"    {line}"))
        with stages.stage(f"lab up ({', '.join(machines)} in QEMU, croft serve on their LAN)"):
            lab.down(site)
            state = lab.up(site)
            say(f"    LAN {state.network}; consoles: {lab.lab_dir(site)}/NAME.console.log")
        with stages.stage("provision (netboot, the agent runs each machine's workflow, reboot)"):
            _provision(site, machines, say)
        with stages.stage("first boot from disk, SSH up"):
            _wait_for_ssh(site, machines, say)
        with stages.stage("configure (croft facts, croft deploy)"):
            _configure(site_root, machines, say)
        with stages.stage("services answer"):
            _show_services(site, say)
    finally:
        if not keep:
            lab.down(site)
            say("lab down (--keep leaves it up)")
    say("")
    for name, seconds in stages.times:
        say(f"  {seconds:7.1f} s  {name}")
    say(f"  {time.monotonic() - started:7.1f} s  in all")
    return stages.times


def _provision(site: Site, machines: list[str], say: Say) -> None:
    from croft.serve.client import AdminClient

    admin = AdminClient(site)
    ids = {}
    for name in machines:
        workflow = admin.json("POST", "/admin/v1/workflows", {"machine": name})
        ids[name] = workflow["id"]
        say(f"    {name}: workflow {workflow['id']} ({workflow['template']}) queued")
    seen: dict[tuple[str, str], str] = {}

    def all_installed() -> bool:
        finished = 0
        for name, workflow_id in ids.items():
            workflow = admin.json("GET", f"/admin/v1/workflows/{workflow_id}")
            for action in workflow["actions"]:
                key = (name, f"{action['task']}/{action['name']}")
                if seen.get(key) != action["status"] and action["status"] != "pending":
                    seen[key] = action["status"]
                    say(f"    {name}: {key[1]} {action['status']}")
            if workflow["status"] in ("failed", "timeout", "cancelled"):
                logs = "".join(admin.lines(f"/admin/v1/workflows/{workflow_id}/logs"))
                raise CroftError(
                    f"{name}: workflow {workflow['status']}: {workflow['message']}\n{logs[-3000:]}"
                )
            finished += workflow["status"] == "success"
        return finished == len(ids)

    if not wait.until(all_installed, PROVISION_TIMEOUT, 2):
        raise CroftError(f"provisioning took over {PROVISION_TIMEOUT} s (see `croft lab status`)")


def _wait_for_ssh(site: Site, machines: list[str], say: Say) -> None:
    from croft.deploy.ssh import Connection

    for name in machines:
        connection = Connection(site.ssh_target(site.machines[name]), site.state_dir / "known_hosts")

        def answers(connection: Connection = connection) -> bool:
            return connection.run("true", check=False, timeout=15).returncode == 0

        if not wait.until(answers, 300, 2):
            raise CroftError(f"{name} did not answer SSH in 300 s after its install (see its console log)")
        hostname = connection.run("hostname").stdout.strip()
        say(f"    {name}: up, hostname {hostname}")


def _needed_images(site: Site, machines: list[str]) -> list[str]:
    """The images the lab's story uses: the netboot environment of each lab machine's
    architecture, and those their workflows name (`images.NAME` or `images["NAME"]`); not, say,
    an image for VM services."""
    serve = serve_config(site)
    needed: set[str] = set()
    for name in machines:
        hardware = site.machines[name].config.hardware
        netboot = (
            serve.netboot_arm64 if hardware is not None and hardware.arch == "aarch64" else serve.netboot
        )
        if netboot is not None:
            needed |= {netboot.initrd, netboot.base, *netboot.overlays}
        if hardware is not None and hardware.workflow is not None:
            text = (site.root / "workflows" / f"{hardware.workflow}.yaml").read_text()
            named = re.findall(r"images(?:\.(\w+)|\[[\"'](\w+)[\"']\])", text)
            needed |= {dotted or quoted for dotted, quoted in named}
    return sorted(needed & set(site.images))


def _configure(site_root: Path, machines: list[str], say: Say) -> None:
    from croft import pipeline
    from croft.deploy.facts import gather_all

    site = load_site(site_root)
    for name, result in gather_all(site, site.select(machines), refresh=True).items():
        if isinstance(result, CroftError):
            raise result
        say(f"    {name}: {result['os'].get('pretty_name')}, {result['nproc']} cpus")
    outcomes = pipeline.deploy(pipeline.prepare(str(site_root), tuple(machines)))
    for outcome in outcomes:
        say(f"    {outcome.machine}: {outcome.status}, generation {outcome.generation}")
    failed = [f"{o.machine}: {o.status} {o.message}".strip() for o in outcomes if not o.ok]
    if failed:
        raise CroftError("croft deploy failed on a lab machine: " + "; ".join(failed))


def _show_services(site: Site, say: Say) -> None:
    """Each lab machine's services that listen on a port: what they answer."""
    checks = []
    for name in lab.lab_machines(site):
        machine = site.machines[name]
        for layer in site.machine_layers(machine):
            for service_name, service in layer.config.services.items():
                port = service.socket.listen[0] if service.socket else site.variables(machine).get("web_port")
                if port is not None and service.container is None:
                    checks.append(
                        (name, service_name, f"http://{machine.address}:{str(port).rsplit(':', 1)[-1]}/")
                    )
    if not checks:
        raise CroftError("the lab machines run no service with a port to check")
    for name, service_name, url in checks:
        errors: list[OSError] = []

        def answer(url: str = url, errors: list[OSError] = errors) -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return str(response.read().decode(errors="replace"))
            except OSError as error:
                errors[:] = [error]
                return None

        body = wait.until(answer, 60, 1)
        if body is None:
            raise CroftError(f"{service_name} on {name} ({url}) does not answer: {errors[-1]}")
        paragraph = re.search(r"<p>(.*?)</p>", body, re.S)
        text = paragraph.group(1) if paragraph else body.strip().splitlines()[0] if body.strip() else ""
        say(f"    {service_name} on {name} ({url}): {' '.join(text.split())[:90]}")
