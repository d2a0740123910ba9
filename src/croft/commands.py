"""The croft commands (click): each parses its arguments, calls the library and prints."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from croft.errors import CroftError
from croft.tools import PURPOSES

if TYPE_CHECKING:
    from croft.site.model import Machine, Site


def _site_root(ctx: click.Context) -> Path:
    return Path(ctx.obj["site"])


def _load(ctx: click.Context):  # type: ignore[no-untyped-def]
    from croft.site.load import load_site

    return load_site(_site_root(ctx))


def _one(ctx: click.Context, name: str) -> tuple[Site, Machine]:
    """The site, and the one machine a command is about."""
    site = _load(ctx)
    return site, site.select([name])[0]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--site",
    "site",
    type=click.Path(file_okay=False),
    envvar="CROFT_SITE",
    default=".",
    show_default=True,
    help="The site directory (or $CROFT_SITE).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every command croft runs.")
@click.version_option(package_name="croft")
@click.pass_context
def cli(ctx: click.Context, site: str, verbose: bool) -> None:
    """croft: bootstrap as code for a home cloud.

    One repository describes every machine; croft makes the machines match it.
    """
    if verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    ctx.obj = {"site": site}


@cli.command()
@click.argument("machines", nargs=-1)
@click.option(
    "--security",
    is_flag=True,
    help="Also score each service with systemd-analyze security, before and after croft's sandbox.",
)
@click.pass_context
def check(ctx: click.Context, machines: tuple[str, ...], security: bool) -> None:
    """Validate the whole site and report every problem at once."""
    from croft.build.builder import build
    from croft.errors import SiteError
    from croft.images.build import check_trees

    site = _load(ctx)
    build(site, site.select([]), write=False)
    problems = check_trees(site.images)
    if problems:
        raise SiteError(problems)
    count = len(site.machines)
    plural = "s" if count != 1 else ""
    click.echo(f"ok: {count} machine{plural}, {len(site.layers)} layers, {len(site.images)} images")
    if security:
        from croft.deploy.security import exposures

        selected = site.select(machines)
        from croft import pipeline

        pipeline.build_site(site, selected)
        click.echo("exposure (systemd-analyze security; 0 safest, 10 most exposed):")
        for machine in selected:
            for exposure in exposures(site, machine):
                if exposure.before is None or exposure.after is None:
                    click.echo(f"  {exposure.machine:<12} {exposure.unit:<32} {exposure.note}")
                else:
                    click.echo(
                        f"  {exposure.machine:<12} {exposure.unit:<32} "
                        f"{exposure.before:4.1f} -> {exposure.after:4.1f}  {exposure.note}".rstrip()
                    )


@cli.command()
@click.argument("purposes", nargs=-1, type=click.Choice(PURPOSES))
@click.option("--quiet", is_flag=True, help="Print only what is missing.")
def doctor(purposes: tuple[str, ...], quiet: bool) -> None:
    """Check that this host has every tool croft runs (or those PURPOSES need); exit 1 if not."""
    from croft import tools
    from croft.ui import table

    wanted = [t for t in tools.load() if not purposes or set(t.needed_by) & set(purposes)]
    absent = [t for t in wanted if not t.present()]
    rows = [
        ["ok" if t not in absent else "MISSING", t.name, t.package, ",".join(t.needed_by)]
        for t in wanted
        if not quiet or t in absent
    ]
    if rows:
        table(["", "tool", "package", "needed by"], rows)
    if absent:
        click.echo(f"croft doctor: {len(absent)} missing; {tools.install_hint(absent)}", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(f"croft doctor: all {len(wanted)} tools present")


@cli.command()
@click.argument("machines", nargs=-1)
@click.option("--refresh", is_flag=True, help="Gather again even when facts are cached.")
@click.pass_context
def facts(ctx: click.Context, machines: tuple[str, ...], refresh: bool) -> None:
    """Gather facts over SSH into facts/<machine>.json (one round trip per machine)."""
    from croft.deploy.facts import gather_all

    site = _load(ctx)
    failed = False
    for name, result in gather_all(site, site.select(machines), refresh=refresh).items():
        if isinstance(result, CroftError):
            click.echo(f"{name}: {result}", err=True)
            failed = True
        else:
            os_name = result["os"].get("pretty_name") or result["os"].get("id")
            click.echo(
                f"{name}: {result['hostname']}, {os_name}, {result['arch']}, "
                f"{result['nproc']} cpus, systemd {result['systemd']}"
            )
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("machines", nargs=-1)
@click.option(
    "--explain",
    nargs=2,
    metavar="MACHINE PATH",
    help="Show which layer a target path comes from and what it overrode.",
)
@click.option("--force", is_flag=True, help="Rebuild everything, ignoring the cache.")
@click.pass_context
def build(
    ctx: click.Context, machines: tuple[str, ...], explain: tuple[str, str] | None, force: bool
) -> None:
    """Render each machine's tree into .croft/build/<machine>/ with its manifest."""

    if explain:
        click.echo(_explain(_load(ctx), *explain))
        return
    from croft import ui

    ui.show_build(str(_site_root(ctx)), machines, force=force)


def _explain(site, machine_name: str, path: str) -> str:  # type: ignore[no-untyped-def]
    from croft.build.builder import composition

    machine = site.select([machine_name])[0]
    path = path.lstrip("/")
    comp = composition(site, machine)
    source = comp.sources.get(path) or comp.sources.get(path + ".j2")
    if source is None:
        raise CroftError(f"{machine_name}: no layer ships /{path}")
    lines = [f"/{path} on {machine_name} comes from {source.origin}: {source.file}"]
    if source.kind == "template":
        lines[0] += " (template)"
    for earlier in reversed(comp.overridden.get(path, [])):
        lines.append(f"  overriding {earlier.origin}: {earlier.file}")
    return "\n".join(lines)


@cli.command()
@click.argument("machines", nargs=-1)
@click.pass_context
def diff(ctx: click.Context, machines: tuple[str, ...]) -> None:
    """Show what deploy would change; exits 2 when there are changes, 1 when a machine could
    not be compared (unreachable)."""
    from croft.deploy import diff as diffing
    from croft.deploy import target
    from croft.deploy.deployer import Status
    from croft.deploy.parallel import deploy_fleet

    site = _load(ctx)
    selected = site.select(machines)
    from croft import pipeline

    builds = pipeline.build_site(site, selected)
    view = target.view(site)
    outcomes = deploy_fleet(view, [view.targets[m.name] for m in selected], builds, dry_run=True)
    changed = failed = False
    for machine, outcome in zip(selected, outcomes, strict=True):
        if outcome.status == Status.FAILED:
            click.echo(f"== {machine.name}: {outcome.message}", err=True)
            failed = True
            continue
        click.echo(diffing.render(site, machine, builds[machine.name].manifest, outcome))
        changed = changed or bool(outcome.changes) or bool(outcome.actions)
    # 1: a machine could not be compared (an error wins over changes); 2: changes; 0: none.
    sys.exit(1 if failed else 2 if changed else 0)


@cli.command()
@click.argument("machines", nargs=-1)
@click.option("--no-rollback", is_flag=True, help="Keep a failed generation live, for debugging.")
@click.option("--watch", is_flag=True, help="Rebuild and deploy on every saved edit.")
@click.pass_context
def deploy(ctx: click.Context, machines: tuple[str, ...], no_rollback: bool, watch: bool) -> None:
    """Build, send the delta and switch each machine to a new generation."""
    if watch:
        from croft.build.stamp import selection_key
        from croft.deploy.watch import watch as watch_site

        site = _load(ctx)
        key = selection_key(machines)
        site.select(machines)  # unknown names fail now, not in the loop
        click.echo("watching for edits; Ctrl-C to stop")
        # Stopped as a service or a CI step is (SIGTERM), it ends as on Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            watch_site(str(site.state_dir), key, lambda: _deploy(ctx, machines, not no_rollback))
        except KeyboardInterrupt:
            return
    if not _deploy(ctx, machines, not no_rollback):
        sys.exit(1)


def _deploy(ctx: click.Context, machines: tuple[str, ...], rollback: bool) -> bool:
    from croft import ui

    return ui.show_deploy(str(_site_root(ctx)), machines, rollback=rollback)


@cli.command()
@click.argument("machines", nargs=-1)
@click.pass_context
def verify(ctx: click.Context, machines: tuple[str, ...]) -> None:
    """Check that what is live matches its generation's manifest and its wanted units run;
    exit 1 on any drift."""
    from croft.deploy.verify import verify as verify_machine

    site = _load(ctx)
    drifted = False
    for machine in site.select(machines):
        try:
            verdict = verify_machine(site, machine)
        except CroftError as error:
            click.echo(f"{machine.name}: cannot verify: {error}", err=True)
            drifted = True
            continue
        if verdict.generation is None:
            click.echo(f"{machine.name}: nothing deployed")
        elif verdict.ok:
            click.echo(f"{machine.name}: generation {verdict.generation} matches its manifest")
        else:
            drifted = True
            click.echo(f"{machine.name}: generation {verdict.generation} drifted:")
            for line in verdict.drift:
                click.echo(f"  {line}")
    if drifted:
        sys.exit(1)


@cli.command()
@click.argument("machine")
@click.pass_context
def generations(ctx: click.Context, machine: str) -> None:
    """List the generations kept on a machine."""
    from croft import ui
    from croft.deploy.deployer import generations as list_generations

    site, one = _one(ctx, machine)
    found = list_generations(site, one)
    if not found:
        click.echo(f"{machine}: nothing deployed")
        return
    rows = [
        [f"{gen.number}{' (live)' if gen.live else ''}", gen.created, gen.by, gen.status, gen.digest[:12]]
        for gen in found
    ]
    ui.table(["generation", "created", "by", "status", "digest"], rows, title=machine)


@cli.command()
@click.argument("machine")
@click.option("--to", "to", type=int, help="The generation to make live (default: the previous one).")
@click.pass_context
def rollback(ctx: click.Context, machine: str, to: int | None) -> None:
    """Make an earlier generation live again, restarting what differs."""
    from croft import ui
    from croft.deploy.deployer import rollback as roll_back

    site, one = _one(ctx, machine)
    outcome = roll_back(site, one, to)
    ui.outcome_table([outcome])
    if not outcome.ok:
        sys.exit(1)


@cli.command()
@click.argument("machine")
@click.option(
    "--purge",
    is_flag=True,
    help="Also remove the users croft made for services and /var/lib/croft (state, snapshots, containers).",
)
@click.pass_context
def reset(ctx: click.Context, machine: str, purge: bool) -> None:
    """Stop croft's units and remove everything croft put under /usr/local.

    Services' state in /var/lib/croft and the system users croft made for them are kept (as a
    package's data and users are when it is removed) unless --purge."""
    from croft import ui
    from croft.deploy.deployer import reset as reset_machine

    site, one = _one(ctx, machine)
    outcome = reset_machine(site, one, purge=purge)
    ui.outcome_table([outcome])
    if not outcome.ok:
        sys.exit(1)


@cli.group()
def fleet() -> None:
    """The site's machines as containers on this host (systemd-nspawn), to try a site."""


@fleet.command("up")
@click.pass_context
def fleet_up(ctx: click.Context) -> None:
    """Boot every machine of the site as a container at its address (needs root)."""
    from croft.fleet import fleet as fleets
    from croft.fleet.rootfs import ssh_key

    up = fleets.up(_load(ctx))
    for container in up.containers.values():
        click.echo(f"{container.name}: {container.address} up")
    click.echo(f"fleet {up.name} up in {up.boot_seconds:.1f} s; reach it with CROFT_SSH_KEY={ssh_key()}")


@fleet.command("down")
@click.pass_context
def fleet_down(ctx: click.Context) -> None:
    """Stop the site's fleet and remove everything it made (namespace, mounts, cgroups)."""
    from croft.fleet import fleet as fleets

    name = fleets.fleet_name(_load(ctx))
    click.echo(f"fleet {name} down" if fleets.down(name) else f"fleet {name} was not up")


@cli.group()
def snapshot() -> None:
    """Snapshots of a service's state (btrfs, on its machine)."""


def _machine_and_service(command: Callable[..., None]) -> Callable[..., None]:
    """The MACHINE and SERVICE arguments (and the context) of the snapshot commands."""
    return click.argument("machine")(click.argument("service")(click.pass_context(command)))


@snapshot.command("list")
@_machine_and_service
def snapshot_list(ctx: click.Context, machine: str, service: str) -> None:
    """List a service's snapshots, oldest first."""
    from croft.snapshots import list_snapshots

    site, one = _one(ctx, machine)
    for name in list_snapshots(site, one, service):
        click.echo(name)


@snapshot.command("create")
@_machine_and_service
def snapshot_create(ctx: click.Context, machine: str, service: str) -> None:
    """Take a snapshot of a service's state now (the timer's snapshots are pruned by its policy)."""
    from croft.snapshots import create_snapshot

    site, one = _one(ctx, machine)
    click.echo(create_snapshot(site, one, service))


@snapshot.command("restore")
@_machine_and_service
@click.argument("name")
def snapshot_restore(ctx: click.Context, machine: str, service: str, name: str) -> None:
    """Stop the service, put the snapshot's state back, start it."""
    from croft.snapshots import restore_snapshot

    site, one = _one(ctx, machine)
    restore_snapshot(site, one, service, name)
    click.echo(f"{machine}: {service} restored to {name}")


@cli.command()
@click.option(
    "--install", is_flag=True, help="Install and start a systemd timer that runs it daily on this host."
)
@click.option("--uninstall", is_flag=True, help="Stop and remove that timer.")
@click.option("--at", default="daily", show_default=True, help="When the timer runs (systemd's OnCalendar=).")
@click.pass_context
def daily(ctx: click.Context, install: bool, uninstall: bool, at: str) -> None:
    """Check the site, publish its repository and verify every machine; exit 1 on any problem."""
    from croft import daily as pipeline
    from croft.run import run

    site = _load(ctx)
    name = pipeline.unit_name(site)
    if install or uninstall:
        paths = [pipeline.UNIT_DIR / unit for unit in pipeline.units(site, at)]
        if uninstall:
            run(["systemctl", "disable", "--now", f"{name}.timer"], check=False)
            for path in paths:
                path.unlink(missing_ok=True)
            run(["systemctl", "daemon-reload"])
            click.echo(f"removed {name}.timer")
            return
        for path, text in zip(paths, pipeline.units(site, at).values(), strict=True):
            path.write_text(text)
        run(["systemctl", "daemon-reload"])
        run(["systemctl", "enable", "--now", f"{name}.timer"])
        click.echo(f"installed {name}.timer ({at}); its runs: journalctl -u {name}")
        return
    result = pipeline.run_daily(site)
    for problem in result.problems:
        click.echo(f"check: {problem}")
    if result.published is not None:
        built = ", ".join(result.published.built) or "nothing new"
        click.echo(f"repository: {len(result.published.packages)} packages published ({built} built)")
    for verdict in result.verdicts:
        state = "nothing deployed" if verdict.generation is None else f"generation {verdict.generation}"
        click.echo(f"{verdict.machine}: {state}, " + ("matches" if verdict.ok else "drifted:"))
        for line in verdict.drift:
            click.echo(f"  {line}")
    for machine, error in result.unreachable.items():
        click.echo(f"{machine}: cannot verify: {error}")
    if not result.ok:
        sys.exit(1)


@cli.group()
def repo() -> None:
    """The site's own APT repository: the packages in packages/ (see docs/packages.md)."""


@repo.command("build")
@click.pass_context
def repo_build(ctx: click.Context) -> None:
    """Build the packages whose inputs changed, index them and sign the index with the site's key."""
    from croft import tools
    from croft.repository.publish import publish

    tools.require("repo")
    site = _load(ctx)
    result = publish(site)
    for name in result.packages:
        click.echo(f"{name}: {'built' if name in result.built else 'up to date'}")
    click.echo(f"published {len(result.packages)} packages in {result.directory}")


@repo.command("key")
@click.pass_context
def repo_key(ctx: click.Context) -> None:
    """Print the public key that signs the site's repository (made when missing)."""
    from croft.repository import key

    click.echo(key.public_key(_load(ctx)), nl=False)


@cli.command()
@click.argument("machines", nargs=-1)
@click.option("-u", "--unit", "units", multiple=True, help="Only this unit's entries (repeatable).")
@click.option(
    "-t", "--identifier", "identifiers", multiple=True, help="Only this syslog identifier's (repeatable)."
)
@click.option(
    "-p", "--priority", help='At least this priority: "err", "warning", "0".."7", or a range "err..info".'
)
@click.option("--since", help='From then on, in journalctl\'s words: "-1h", "today", "2026-11-30 10:00".')
@click.option("-n", "--lines", type=int, help="The last N entries of each machine.")
@click.option("-f", "--follow", is_flag=True, help="Go on showing entries as they are logged, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry, with its machine.")
@click.pass_context
def logs(
    ctx: click.Context,
    machines: tuple[str, ...],
    units: tuple[str, ...],
    identifiers: tuple[str, ...],
    priority: str | None,
    since: str | None,
    lines: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """The machines' journals (all machines when none is named), merged by time, each line tagged
    with its machine."""
    import threading

    from croft import logs as journal
    from croft import ui

    site = _load(ctx)
    query = journal.Query(units, identifiers, priority, since, lines)
    chosen = site.select(machines)
    colours = ["cyan", "magenta", "green", "yellow", "blue", "red"]
    styles = {machine.name: colours[index % len(colours)] for index, machine in enumerate(chosen)}
    out = ui.console() if ui.interactive() and not as_json else None

    def show(entry: journal.Entry) -> None:
        if as_json:
            click.echo(entry.to_json())
        elif out is not None:
            from rich.markup import escape

            when, machine, said = journal.parts(entry)
            out.print(f"[dim]{when}[/] [{styles.get(machine, 'white')}]{machine}[/] {escape(said)}")
        else:
            click.echo(journal.plain(entry))

    if not follow:
        for entry in journal.read(site, chosen, query):
            show(entry)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for entry in journal.follow(site, chosen, query, stop):
            show(entry)
            sys.stdout.flush()
    except KeyboardInterrupt:
        stop.set()


@cli.command("network")
@click.pass_context
def network_cmd(ctx: click.Context) -> None:
    """The overlay's machines and VPN peers, with their addresses in it."""
    from croft.site import network

    site = _load(ctx)
    for name, address in network.addresses(site).items():
        kind = "machine" if name in site.machines else "vpn peer"
        click.echo(f"{name}\t{kind}\t{address.ipv4.ip}\t{address.ipv6.ip}")


@cli.group()
def vpn() -> None:
    """Peers of the site's VPN gateway: phones and laptops (see docs/network.md)."""


@vpn.command("add")
@click.argument("name")
@click.pass_context
def vpn_add(ctx: click.Context, name: str) -> None:
    """Add a peer: its keys, vpn/NAME.toml and its configuration, shown as a QR code."""
    from croft import tools
    from croft import vpn as peers

    tools.require("vpn")
    site = peers.add(_load(ctx), name)
    _show_peer(site, name)
    click.echo(f"added {name}: deploy {site.config.network.gateway} to let it in", err=True)


@vpn.command("show")
@click.argument("name")
@click.pass_context
def vpn_show(ctx: click.Context, name: str) -> None:
    """Show a peer's configuration again (QR code, file)."""
    from croft import tools
    from croft import vpn as peers

    tools.require("vpn")
    site = _load(ctx)
    if name not in site.vpn_peers:
        raise CroftError(f"no VPN peer {name!r} (peers: {', '.join(sorted(site.vpn_peers)) or 'none'})")
    peers.write_client(site, name)
    _show_peer(site, name)


def _show_peer(site: Site, name: str) -> None:
    from croft import vpn as peers

    path = peers.client_file(site, name)
    if sys.stdout.isatty():
        click.echo(peers.qr_text(path))
    click.echo(f"{name}: {path} (and its QR code, {path.with_suffix('.png')}); it holds the private key")


@vpn.command("remove")
@click.argument("name")
@click.pass_context
def vpn_remove(ctx: click.Context, name: str) -> None:
    """Remove a peer and its keys: the gateway's next deploy shuts it out."""
    from croft import vpn as peers

    site = _load(ctx)
    peers.remove(site, name)
    click.echo(f"removed {name}: deploy {site.config.network.gateway} to shut it out", err=True)


@cli.group()
def image() -> None:
    """Netboot environments and disk images, from the recipes in images/ (see docs/images.md)."""


@image.command("build")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild even when the recipe has not changed.")
@click.pass_context
def image_build(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Build images (all of them when none is named) into the store (needs root)."""
    from croft.images.build import build

    site = _load(ctx)
    for name in names or sorted(site.images):
        build(site, name, force=force, progress=lambda line: click.echo(line, err=True))


@image.command("prune")
@click.pass_context
def image_prune(ctx: click.Context) -> None:
    """Delete the artifacts in the store that no image's manifest names any more."""
    from croft.images.store import store_for

    count, size = store_for(_load(ctx)).prune()
    click.echo(f"removed {count} artifacts ({size / (1 << 20):.1f} MB)")


@image.command("list")
@click.pass_context
def image_list(ctx: click.Context) -> None:
    """The site's images and their artifacts in the store."""
    from croft.images.store import store_for
    from croft.ui import table

    site = _load(ctx)
    store = store_for(site)
    rows = []
    for name, declared in sorted(site.images.items()):
        manifest = store.manifest(name)
        if manifest is None:
            rows.append([name, declared.config.kind, "not built", "", ""])
            continue
        for role, artifact in manifest.artifacts.items():
            size = f"{artifact.size / (1 << 20):.1f} MB"
            rows.append([name, manifest.kind, role, size, artifact.sha256[:16]])
    table(["image", "kind", "artifact", "size", "sha256"], rows)


@cli.command("serve")
@click.option("--no-dhcp", is_flag=True, help="HTTP only: the LAN's DHCP server hands out iPXE itself.")
@click.pass_context
def serve_command(ctx: click.Context, no_dhcp: bool) -> None:
    """Answer PXE on the LAN and run workflows ([serve] in site.toml; root, for DHCP and TFTP)."""
    from croft.serve.server import serve

    serve(_site_root(ctx), dhcp=not no_dhcp)


@cli.group()
def workflow() -> None:
    """Workflows on croft serve: what a netbooting machine's agent runs (see docs/serve.md)."""


def _admin(ctx: click.Context):  # type: ignore[no-untyped-def]
    from croft.serve.client import AdminClient

    return AdminClient(_load(ctx))


def _print_workflow(data: dict[str, object]) -> None:
    import time

    def when(value: object) -> str:
        return time.strftime("%H:%M:%S", time.localtime(float(value))) if isinstance(value, float) else "-"

    click.echo(f"workflow {data['id']}: {data['machine']} ({data['template']}) {data['status']}")
    if data.get("message"):
        click.echo(f"  {data['message']}")
    for action in data.get("actions", []):  # type: ignore[attr-defined]
        duration = ""
        if action["started_at"] and action["finished_at"]:
            duration = f"{action['finished_at'] - action['started_at']:.1f} s"
        exit_status = "" if action["exit_status"] is None else f"exit {action['exit_status']}"
        click.echo(
            f"  {action['task']}/{action['name']:<24} {action['status']:<9} {when(action['started_at'])} "
            f"{duration:>8} {exit_status} {action['message']}".rstrip()
        )


@workflow.command("create")
@click.argument("machine")
@click.argument("template", required=False)
@click.option("--netboot", is_flag=True, help="Then restart the machine netbooting (lab machines: QMP).")
@click.pass_context
def workflow_create(ctx: click.Context, machine: str, template: str | None, netboot: bool) -> None:
    """Render TEMPLATE (default: the machine's hardware.workflow) for MACHINE and queue it."""
    from croft.deploy.ssh import forget_host_keys

    site = _load(ctx)
    _print_workflow(
        _admin(ctx).json("POST", "/admin/v1/workflows", {"machine": machine, "template": template})
    )
    # A reinstalled machine makes new host keys: forget the old ones, or SSH would refuse it.
    forget_host_keys(site.state_dir / "known_hosts", [site.machines[machine].address])
    if netboot:
        from croft.lab import lab as labs

        # The lab's BMC: an installed machine boots its disk first, so tell it to netboot now.
        click.echo(f"{machine}: {labs.power(site, machine, 'pxe')}, netbooting")


@workflow.command("list")
@click.argument("machine", required=False)
@click.pass_context
def workflow_list(ctx: click.Context, machine: str | None) -> None:
    """Every workflow (of MACHINE), oldest first."""
    from urllib.parse import quote

    from croft.ui import table

    query = f"?machine={quote(machine)}" if machine else ""
    rows = [
        [str(w["id"]), w["machine"], w["template"], w["status"], w["message"]]
        for w in _admin(ctx).json("GET", f"/admin/v1/workflows{query}")
    ]
    table(["id", "machine", "template", "status", "message"], rows)


@workflow.command("show")
@click.argument("workflow_id", type=int)
@click.pass_context
def workflow_show(ctx: click.Context, workflow_id: int) -> None:
    """A workflow and each action's state, times, exit status and message."""
    _print_workflow(_admin(ctx).json("GET", f"/admin/v1/workflows/{workflow_id}"))


@workflow.command("logs")
@click.argument("workflow_id", type=int)
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the workflow ends.")
@click.pass_context
def workflow_logs(ctx: click.Context, workflow_id: int, follow: bool) -> None:
    """The output of a workflow's actions, as the agent streamed it."""
    for line in _admin(ctx).lines(f"/admin/v1/workflows/{workflow_id}/logs{'?follow=1' if follow else ''}"):
        click.echo(line, nl=False)


@workflow.command("cancel")
@click.argument("workflow_id", type=int)
@click.pass_context
def workflow_cancel(ctx: click.Context, workflow_id: int) -> None:
    """Cancel a pending or running workflow (its machine stops netbooting)."""
    _print_workflow(_admin(ctx).json("POST", f"/admin/v1/workflows/{workflow_id}/cancel"))


@workflow.command("retry")
@click.argument("workflow_id", type=int)
@click.pass_context
def workflow_retry(ctx: click.Context, workflow_id: int) -> None:
    """Run a failed, timed out or cancelled workflow again from its first unsuccessful action."""
    _print_workflow(_admin(ctx).json("POST", f"/admin/v1/workflows/{workflow_id}/retry"))


@cli.group()
def lab() -> None:
    """A virtual home lab: the site's [hardware] machines as QEMU machines, croft serve on their LAN."""


@lab.command("up")
@click.option("--machines", "count", type=int, help="Start only the first N lab machines.")
@click.option("--firmware", type=click.Choice(["bios", "uefi"]), help="Override every machine's firmware.")
@click.pass_context
def lab_up(ctx: click.Context, count: int | None, firmware: str | None) -> None:
    """Create the lab's LAN, start croft serve there and the machines with empty disks (root)."""
    from croft.lab import lab as labs
    from croft.lab.qemu import accelerator

    state = labs.up(_load(ctx), count=count, firmware=firmware)  # type: ignore[arg-type]
    click.echo(f"lab up on {state.network} (namespace {state.netns}; this host is {state.host_address})")
    click.echo(
        f"machines: {', '.join(state.machines)} ({accelerator()}); consoles in {labs.lab_dir(_load(ctx))}"
    )


@lab.command("status")
@click.pass_context
def lab_status(ctx: click.Context) -> None:
    """Each lab machine: power, firmware, address, its latest workflow."""
    from croft.lab import lab as labs
    from croft.ui import table

    rows = [[s.name, s.power, s.firmware, s.address, s.workflow] for s in labs.status(_load(ctx))]
    table(["machine", "power", "firmware", "address", "workflow"], rows)


@lab.command("console")
@click.argument("machine")
@click.pass_context
def lab_console(ctx: click.Context, machine: str) -> None:
    """A lab machine's serial console (Ctrl-] leaves)."""
    from croft.lab import lab as labs

    labs.console(_load(ctx), machine)


@lab.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("machine")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def lab_ssh(ctx: click.Context, machine: str, command: tuple[str, ...]) -> None:
    """ssh to a lab machine with croft's key (and run COMMAND there)."""
    import os

    from croft.lab import lab as labs

    argv = labs.ssh_argv(_load(ctx), machine, command)
    os.execvp(argv[0], argv)


@lab.command("power")
@click.argument("machine")
@click.argument("action", type=click.Choice(["on", "off", "reset", "pxe"]))
@click.pass_context
def lab_power(ctx: click.Context, machine: str, action: str) -> None:
    """Power a lab machine on, off, reset it, or restart it netbooting first (QMP: the lab's BMC)."""
    from croft.lab import lab as labs

    click.echo(f"{machine}: {labs.power(_load(ctx), machine, action)}")


@lab.command("down")
@click.pass_context
def lab_down(ctx: click.Context) -> None:
    """Stop the lab's machines and croft serve, remove its LAN and disks (consoles' logs stay)."""
    from croft.lab import lab as labs

    click.echo("lab down" if labs.down(_load(ctx)) else "the lab was not up")


@lab.command("demo")
@click.option("--keep", is_flag=True, help="Leave the lab up at the end.")
@click.pass_context
def lab_demo(ctx: click.Context, keep: bool) -> None:
    """The whole story: images, lab up, provision, deploy, services answering, timings (root)."""
    from croft.lab.demo import demo

    demo(_site_root(ctx), keep=keep, say=lambda line: click.echo(line))
