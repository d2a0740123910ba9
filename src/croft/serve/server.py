"""Running croft serve: dnsmasq, the HTTP server, and a loop that keeps them in step with the
site and the workflows (who netboots, timeouts, a dnsmasq that died)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
from pathlib import Path

from aiohttp import web

from croft import tools
from croft.errors import CroftError
from croft.serve.app import Provisioner, log, make_app, printable
from croft.serve.dnsmasq import Dnsmasq, hosts
from croft.serve.guard import ConnectionGuard
from croft.serve.location import admin_token, make_state_dir, serve_config, server_url, state_dir
from croft.site.load import load_site
from croft.site.model import Site
from croft.workflows.store import WorkflowStore, database_url

TICK_SECONDS = 1.0
PRUNE_SECONDS = 3600.0
MAX_CONNECTIONS = 1024
IDLE_SECONDS = 15.0
"""A connection with no request in it this long (slow headers, idle keep-alive) is closed."""


def serve(site_root: Path, *, dhcp: bool = True) -> None:
    """Serve until SIGINT or SIGTERM; without `dhcp`, HTTP only (the LAN's own DHCP and TFTP
    hand out iPXE and point it at /boot/${mac}.ipxe)."""
    site = load_site(site_root)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("croft serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    # Everything croft serve writes is its own: workflow tokens, logs, the admin token.
    os.umask(0o077)
    asyncio.run(_serve(site, dhcp))


async def _serve(site: Site, dhcp: bool) -> None:
    if dhcp:
        tools.require("serve")  # dnsmasq, and the iPXE binaries it hands out over TFTP
    url = server_url(site)
    config = serve_config(site)
    state = state_dir(site)
    try:
        make_state_dir(state)
        token = admin_token(state)
    except OSError as error:
        raise CroftError(
            f"croft serve cannot use its state directory {state}: {error.strerror or error}"
        ) from None
    workflows = WorkflowStore(database_url(config.database_url, state))
    provisioner = Provisioner(site, workflows, url, token)
    # ${buildarch}: which netboot environment a machine the inventory does not know gets.
    dnsmasq = Dnsmasq(state, site, f"{url}/boot/${{mac}}.ipxe?arch=${{buildarch}}") if dhcp else None
    limit = _connection_limit()
    guard = ConnectionGuard(limit, IDLE_SECONDS)
    runner = web.AppRunner(make_app(provisioner, (guard.middleware,)), access_log=None)
    await runner.setup()
    assert runner.server is not None  # made by setup()
    loop = asyncio.get_running_loop()
    # asyncio's own trouble (a failed accept()) is logged as one line; it retries by itself.
    loop.set_exception_handler(
        lambda _, context: log.error("%s", context.get("exception") or context["message"])
    )
    try:
        listener = await loop.create_server(
            guard.factory(runner.server),
            config.address,
            config.http_port,
            reuse_address=True,
            # Also how many connections asyncio accepts in one go: within the descriptors left.
            backlog=min(128, limit),
        )
    except OSError as error:
        await runner.cleanup()
        raise CroftError(f"cannot listen on {config.address}:{config.http_port}: {error.strerror}") from None
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if dnsmasq is not None:
        dnsmasq.update_hosts(hosts(provisioner.inventory, config.mode == "full"))
        dnsmasq.start()
    (state / "url").write_text(url + "\n")
    dhcp_note = f"{config.mode} DHCP on {config.interface}" if dnsmasq is not None else "no DHCP"
    log.info("%s, %s, state in %s", url, dhcp_note, state)
    pruned = 0.0
    try:
        while not stop.is_set():
            try:
                _tick(site.root, provisioner, dnsmasq)
                guard.sweep(runner.server)
                if loop.time() - pruned > PRUNE_SECONDS:
                    pruned = loop.time()
                    keep = serve_config(provisioner.site).keep_logs * 86400
                    if provisioner.workflows.prune(keep):
                        log.info("forgot workflows that ended more than %d days ago", keep // 86400)
            except Exception as error:
                log.error("%s: %s (still serving)", type(error).__name__, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)
    finally:
        if dnsmasq is not None:
            dnsmasq.stop()
        listener.close()
        await runner.cleanup()
        workflows.close()
        (state / "url").unlink(missing_ok=True)


def _connection_limit() -> int:
    """Connections croft serve keeps at once: within its open-files limit (raised to the hard
    limit) with room for what it opens itself and for a burst of accepts, so accept() never
    fails for want of a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    free = soft - len(os.listdir("/proc/self/fd")) - 16  # 16: the database, the site, dnsmasq
    return max(4, min(MAX_CONNECTIONS, free // 2))


def _tick(root: Path, provisioner: Provisioner, dnsmasq: Dnsmasq | None) -> None:
    for workflow_id in provisioner.workflows.expire():
        log.info("workflow %d ran out of time", workflow_id)
    try:
        site = load_site(root)  # cheap when nothing changed (the site cache)
    except CroftError as error:
        site = provisioner.site  # an invalid edit: keep serving what was valid
        log.error("the site is invalid, still serving the last valid one:\n%s", error)
    serve = serve_config(site)
    changed = serve != provisioner.site.config.serve
    if dnsmasq is not None and changed and dnsmasq.configure(site):
        dnsmasq.restart()
        log.info("[serve] changed; dnsmasq restarted (address and port need a restart)")
    if site.machines != provisioner.site.machines or site.config != provisioner.site.config:
        provisioner.reload(site)
        log.info("inventory reloaded")
    if dnsmasq is None:
        return
    dnsmasq.update_hosts(hosts(provisioner.inventory, serve.mode == "full"))
    restarted = dnsmasq.ensure_running()
    if restarted:
        log.warning("%s", printable(restarted))
