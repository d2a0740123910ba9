"""Running croft serve: dnsmasq, the HTTP server, and a loop that keeps them in step with the
site and the workflows (who netboots, timeouts, a dnsmasq that died)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from aiohttp import web

from croft import tools
from croft.errors import CroftError
from croft.serve.app import Provisioner, make_app
from croft.serve.dnsmasq import Dnsmasq, hosts
from croft.serve.location import admin_token, server_url, state_dir
from croft.site.load import load_site
from croft.site.model import Site
from croft.workflows.store import WorkflowStore, database_url

TICK_SECONDS = 1.0


def serve(site_root: Path, *, dhcp: bool = True) -> None:
    """Serve until SIGINT or SIGTERM; without `dhcp`, HTTP only (the LAN's own DHCP and TFTP
    hand out iPXE and point it at /boot/${mac}.ipxe)."""
    asyncio.run(_serve(load_site(site_root), dhcp))


async def _serve(site: Site, dhcp: bool) -> None:
    if dhcp:
        tools.require("serve")  # dnsmasq, and the iPXE binaries it hands out over TFTP
    url = server_url(site)
    assert site.config.serve is not None
    config = site.config.serve
    state = state_dir(site)
    workflows = WorkflowStore(database_url(config.database_url, state))
    provisioner = Provisioner(site, workflows, url, admin_token(state))
    # ${buildarch}: which netboot environment a machine the inventory does not know gets.
    dnsmasq = Dnsmasq(state, site, f"{url}/boot/${{mac}}.ipxe?arch=${{buildarch}}") if dhcp else None
    runner = web.AppRunner(make_app(provisioner), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.address, config.http_port).start()
    except OSError as error:
        await runner.cleanup()
        raise CroftError(f"cannot listen on {config.address}:{config.http_port}: {error.strerror}") from None
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    if dnsmasq is not None:
        dnsmasq.update_hosts(hosts(provisioner.inventory, provisioner.netbooting(), config.mode == "full"))
        dnsmasq.start()
    (state / "url").write_text(url + "\n")
    dhcp_note = f"{config.mode} DHCP on {config.interface}" if dnsmasq is not None else "no DHCP"
    print(f"croft serve: {url}, {dhcp_note}, state in {state}", flush=True)
    try:
        while not stop.is_set():
            _tick(site.root, provisioner, dnsmasq)
            provisioner.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, provisioner.changed), TICK_SECONDS)
    finally:
        if dnsmasq is not None:
            dnsmasq.stop()
        await runner.cleanup()
        workflows.close()
        (state / "url").unlink(missing_ok=True)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


def _tick(root: Path, provisioner: Provisioner, dnsmasq: Dnsmasq | None) -> None:
    for workflow_id in provisioner.workflows.expire():
        print(f"croft serve: workflow {workflow_id} ran out of time", flush=True)
    try:
        site = load_site(root)  # cheap when nothing changed (the site cache)
    except CroftError as error:
        site = provisioner.site  # an invalid edit: keep serving what was valid
        print(f"croft serve: the site is invalid, still serving the last valid one:\n{error}", flush=True)
    assert site.config.serve is not None
    changed = site.config.serve != provisioner.site.config.serve
    if dnsmasq is not None and changed and dnsmasq.configure(site):
        dnsmasq.restart()
        print("croft serve: [serve] changed; dnsmasq restarted (address and port need a restart)", flush=True)
    if site.machines != provisioner.site.machines or site.config != provisioner.site.config:
        provisioner.reload(site)
        print("croft serve: inventory reloaded", flush=True)
    if dnsmasq is None:
        return
    full = site.config.serve.mode == "full"
    dnsmasq.update_hosts(hosts(provisioner.inventory, provisioner.netbooting(), full))
    restarted = dnsmasq.ensure_running()
    if restarted:
        print(f"croft serve: {restarted}", flush=True)
