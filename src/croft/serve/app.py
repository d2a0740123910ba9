"""The HTTP side of croft serve (aiohttp): the boot path (iPXE scripts, boot errors, artifacts,
metadata) on the root application, and two sub-applications with their own authentication: the
agent API (/agent/v1, a workflow's token, from the address it is bound to) and the admin API
(/admin/v1, the admin token).

Everything a client sends is bounded (body sizes, the time to send it) and checked; malformed
input gets a 4xx that says what is wrong, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from croft.errors import CroftError, SiteError
from croft.images.store import Store, store_for
from croft.repository.debs import repository_dir
from croft.serve import ipxe, metadata
from croft.serve.context import netboot_artifacts, workflow_context
from croft.serve.inventory import Inventory, Known
from croft.serve.location import serve_config
from croft.site.model import Site
from croft.workflows.store import FINISHED, REPORTABLE, Conflict, Status, Workflow, WorkflowStore
from croft.workflows.template import render

log = logging.getLogger("croft.serve")

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
_ID = re.compile(r"^[1-9][0-9]{0,17}$")  # below 2^63: what every database's integer holds
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
POLL_INTERVAL = 0.5
MAX_WAIT = 60.0
MAX_BODY = 1 << 20
"""A request body's limit (a log chunk, a report, a boot error): the agent sends its output
every half second, far below it."""
BODY_SECONDS = 30.0
"""How long a client may take to send a body."""
BOOT_ERROR_CHARS = 4000
# Unauthenticated boot errors: per MAC and for the whole LAN, per minute.
ERRORS_PER_MAC = 10
ERRORS_PER_MINUTE = 100

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Provisioner:
    """What the handlers share: the site, its inventory, the workflow store, the admin token."""

    def __init__(self, site: Site, workflows: WorkflowStore, url: str, admin_token: str) -> None:
        self.site = site
        self.inventory = Inventory(site)
        self.store: Store = store_for(site)
        self.workflows = workflows
        self.url = url
        self.admin_token = admin_token
        self.error_times: dict[str, list[float]] = {}

    def reload(self, site: Site) -> None:
        self.site = site
        self.inventory = Inventory(site)
        self.store = store_for(site)

    def event(self, mac: str, kind: str, message: str) -> None:
        """Record a boot event; a failure to write it (a full disk) never stops a boot."""
        try:
            self.workflows.add_boot_event(mac, kind, message)
        except (sa.exc.SQLAlchemyError, OSError) as error:
            log.warning("could not record a boot event of %s: %s", mac, printable(str(error)))

    def allow_error(self, mac: str) -> bool:
        """Rate limit for unauthenticated boot errors: per MAC, and for all MACs together."""
        now = time.monotonic()
        recent = [t for t in self.error_times.get(mac, []) if now - t < 60]
        everyone = sum(1 for times in self.error_times.values() for t in times if now - t < 60)
        if len(recent) >= ERRORS_PER_MAC or everyone >= ERRORS_PER_MINUTE:
            return False
        self.error_times[mac] = [*recent, now]
        if len(self.error_times) > 4 * ERRORS_PER_MINUTE:  # forget MACs that went quiet
            self.error_times = {
                key: times for key, times in self.error_times.items() if times and now - times[-1] < 60
            }
        return True


PROVISIONER = web.AppKey("provisioner", Provisioner)
WORKFLOW = web.RequestKey("workflow", Workflow)


def make_app(provisioner: Provisioner, middlewares: tuple[Any, ...] = ()) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[*middlewares, _errors])
    app[PROVISIONER] = provisioner
    app.router.add_get("/boot/{mac}.ipxe", boot_script)
    app.router.add_post("/boot/{mac}/error", boot_error)
    app.router.add_get("/artifacts/{digest}", artifact)
    app.router.add_get("/latest/meta-data/{path:.*}", ec2_metadata)
    app.router.add_get("/latest/user-data", ec2_user_data)
    app.router.add_get("/nocloud/{name}", nocloud)
    app.router.add_get("/apt/{path:.*}", apt_file)
    app.add_subapp("/agent/v1", agent_api(provisioner))
    app.add_subapp("/admin/v1", admin_api(provisioner))
    return app


def printable(text: str) -> str:
    """Text a client sent, safe for a log line: control characters (newlines, ANSI escapes)
    are shown escaped, so nobody can forge a line or drive the terminal."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: m.group().encode("unicode_escape").decode(), text)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Conflict as error:
        raise web.HTTPConflict(text=f"{error}\n") from None
    except (SiteError, CroftError) as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None


def _provisioner(request: web.Request) -> Provisioner:
    return request.config_dict[PROVISIONER]


def _bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


def _mac(value: str) -> str:
    if not _MAC.match(value):
        raise web.HTTPNotFound(text=f"{printable(value[:40])!r} is not a MAC address\n")
    return value.lower().replace("-", ":")


def _id(value: str, what: str) -> int:
    if not _ID.match(value):
        raise web.HTTPNotFound(text=f"no {what} {printable(value[:40])!r}\n")
    return int(value)


async def _body(request: web.Request) -> bytes:
    try:
        return await asyncio.wait_for(request.read(), BODY_SECONDS)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the body took more than {BODY_SECONDS:.0f} s\n") from None


async def _text(request: web.Request) -> str:
    try:
        return (await _body(request)).decode()
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body is not UTF-8 text\n") from None


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await _text(request))
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="the body is not valid JSON\n") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object\n")
    return data


# -- the boot path -------------------------------------------------------------------------------


async def boot_script(request: web.Request) -> web.Response:
    """The iPXE script for a MAC: the netboot environment with the workflow's credential, for
    the machine that really boots, or `exit` (boot from disk)."""
    provisioner = _provisioner(request)
    mac = _mac(request.match_info["mac"])
    known = provisioner.inventory.by_mac.get(mac)
    serve = serve_config(provisioner.site)
    if known is None:
        if not serve.discovery:
            return web.Response(text=ipxe.local_boot_script(f"{mac} is not in the inventory"))
        # Discovery: the machine boots the netboot environment, where the agent, with no
        # workflow, says so and stops; the MAC is kept as a boot event to add to the inventory.
        provisioner.event(mac, "discovered", "not in the inventory")
        log.info("discovered %s (not in the inventory)", mac)
        # iPXE says which architecture it was built for (${buildarch} in the script's URL).
        arch = "aarch64" if request.query.get("arch") == "arm64" else "x86_64"
        return _netboot(provisioner, mac, "none", arch)
    workflow = provisioner.workflows.active().get(known.machine.name)
    if not known.hardware.allow_netboot:
        return web.Response(text=ipxe.local_boot_script("netboot not allowed"))
    if workflow is None or not known.hardware.allow_workflow:
        return web.Response(text=ipxe.local_boot_script("no workflow to run"))
    refused = _claim(provisioner, known, workflow, request.remote or "")
    if refused is not None:
        log.warning("%s asked for %s's boot script: %s", request.remote, known.machine.name, refused)
        provisioner.event(mac, "refused", f"{request.remote}: {refused}")
        return web.Response(text=ipxe.local_boot_script(refused))
    provisioner.event(mac, "netboot", f"workflow {workflow.id}")
    return _netboot(provisioner, mac, workflow.token, known.hardware.arch)


def _claim(provisioner: Provisioner, known: Known, workflow: Workflow, remote: str) -> str | None:
    """Bind the workflow's credential to the address that boots it; why not, or None.

    In full mode croft's dnsmasq leased the MAC its address, so only that address is the
    machine. In proxy mode the LAN's router did: the first address that asks gets it, and
    nobody else after."""
    serve = serve_config(provisioner.site)
    if serve.mode == "full" and known.ip is not None and remote != known.ip:
        return f"{known.machine.name} has the address {known.ip}, not {remote}"
    if not provisioner.workflows.bind(workflow.id, remote):
        return f"workflow {workflow.id} belongs to the machine that booted it first"
    return None


async def boot_error(request: web.Request) -> web.Response:
    """croft's initrd reports a failed boot (unauthenticated: it has no credential yet)."""
    provisioner = _provisioner(request)
    mac = _mac(request.match_info["mac"])
    serve = provisioner.site.config.serve
    if mac not in provisioner.inventory.by_mac and not (serve is not None and serve.discovery):
        raise web.HTTPNotFound(text=f"{mac} is not in the inventory\n")
    if not provisioner.allow_error(mac):
        raise web.HTTPTooManyRequests(text="too many boot errors; try again in a minute\n")
    message = (await _body(request))[: BOOT_ERROR_CHARS * 4].decode(errors="replace")[:BOOT_ERROR_CHARS]
    provisioner.event(mac, "error", message)
    log.warning("%s failed to boot: %s", mac, printable(message))
    return web.Response(status=204)


class _FileResponse(web.FileResponse):
    """aiohttp's FileResponse (sendfile, HEAD, Range, conditional requests), whose prepare() may
    be called again once it ran, as StreamResponse's may: the connection guard sends a response
    inside the request, and aiohttp then calls prepare() once more."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


async def artifact(request: web.Request) -> web.StreamResponse:
    digest = request.match_info["digest"]
    path = _provisioner(request).store.path(digest) if _DIGEST.match(digest) else None
    if path is None or not path.exists():
        raise web.HTTPNotFound(text=f"no artifact {printable(digest[:64])}\n")
    # FileResponse: HEAD, Range and If-None-Match, streamed with sendfile.
    return _FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})


_APT_PATH = re.compile(r"^(dists|pool)(/[A-Za-z0-9][A-Za-z0-9._+~-]*)+$")


async def apt_file(request: web.Request) -> web.StreamResponse:
    """The site's APT repository (`croft repo build` writes it): its indexes and packages, and
    nothing else of the site's state directory."""
    rel = request.match_info["path"]
    root = repository_dir(_provisioner(request).site)
    path = root / rel
    # Names only (no "..", no hidden files) and no link out of the repository.
    if not _APT_PATH.match(rel) or not path.is_file() or path.is_symlink():
        raise web.HTTPNotFound(text=f"no {printable(rel[:200])} in the site's repository\n")
    # The index changes with every publish; a package's file name changes with its version.
    cache = "no-cache" if rel.startswith("dists/") else "public, max-age=86400"
    return _FileResponse(path, headers={"Cache-Control": cache})


def _netboot(provisioner: Provisioner, mac: str, token: str, arch: str) -> web.Response:
    """The script that boots the netboot environment for `arch` with the agent's token."""
    try:
        netboot = netboot_artifacts(provisioner.site, provisioner.url, arch)
    except CroftError as error:
        provisioner.event(mac, "error", str(error))
        return web.Response(text=ipxe.local_boot_script(str(error)))
    args = " ".join(
        [
            f"croft.server={provisioner.url}",
            f"croft.token={token}",
            f"croft.base={netboot.layers[0]}",
            f"croft.overlays={','.join(netboot.layers[1:])}",
            netboot.cmdline,
        ]
    )
    return web.Response(text=ipxe.netboot_script(netboot.kernel, netboot.initrd, args))


# -- metadata: answered only to the machine it describes (docs/serve.md, Security) ----------------


def _caller(request: web.Request) -> Known:
    known = _provisioner(request).inventory.by_ip.get(request.remote or "")
    if known is None:
        raise web.HTTPNotFound(text=f"no machine has the address {request.remote}\n")
    return known


def _document(text: str | None) -> web.Response:
    if text is None:
        raise web.HTTPNotFound()
    return web.Response(text=text)


async def ec2_metadata(request: web.Request) -> web.Response:
    return _document(metadata.ec2(_caller(request), request.match_info["path"]))


async def ec2_user_data(request: web.Request) -> web.Response:
    return _document(metadata.user_data(_caller(request)))


async def nocloud(request: web.Request) -> web.Response:
    return _document(metadata.nocloud(_caller(request), request.match_info["name"]))


# -- the agent API -------------------------------------------------------------------------------


def agent_api(provisioner: Provisioner) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_agent_auth])
    app[PROVISIONER] = provisioner
    app.router.add_get("/next", next_action)
    app.router.add_post("/actions/{action_id}/log", action_log)
    app.router.add_post("/actions/{action_id}/state", action_state)
    return app


@web.middleware
async def _agent_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A workflow's token, from the address the workflow is bound to (the machine it boots)."""
    provisioner = _provisioner(request)
    token = _bearer(request)
    workflow = provisioner.workflows.by_token(token) if _TOKEN.match(token) else None
    if workflow is None:
        raise web.HTTPUnauthorized(text="unknown agent token\n")
    remote = request.remote or ""
    # Bound already (the usual case: no write), or bound now to the first address that uses it.
    if workflow.address != remote and not provisioner.workflows.bind(workflow.id, remote):
        raise web.HTTPForbidden(text=f"workflow {workflow.id}'s token belongs to another machine\n")
    request[WORKFLOW] = workflow
    return await handler(request)


async def next_action(request: web.Request) -> web.Response:
    """The agent's next action; a long-poll of up to `wait` seconds, ended early when the client
    goes away."""
    provisioner = _provisioner(request)
    workflow = request[WORKFLOW]
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= MAX_WAIT:  # nan fails both
        raise web.HTTPBadRequest(text=f"wait is a number of seconds from 0 to {MAX_WAIT:.0f}\n")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        action = provisioner.workflows.next_action(workflow.id)
        if action is not None:
            return web.json_response(action.public())
        current = provisioner.workflows.get(workflow.id)
        if current.status in FINISHED:
            return web.json_response({"status": current.status, "message": current.message}, status=410)
        transport = request.transport
        if loop.time() >= deadline or transport is None or transport.is_closing():
            return web.Response(status=204)
        await asyncio.sleep(POLL_INTERVAL)


async def action_log(request: web.Request) -> web.Response:
    workflow = request[WORKFLOW]
    action_id = _id(request.match_info["action_id"], "action")
    _provisioner(request).workflows.append_log(workflow.id, action_id, await _text(request))
    return web.Response(status=204)


async def action_state(request: web.Request) -> web.Response:
    provisioner = _provisioner(request)
    workflow = request[WORKFLOW]
    action_id = _id(request.match_info["action_id"], "action")
    body = await _json_object(request)
    status, exit_status, message = body.get("status"), body.get("exit_status"), body.get("message", "")
    if status not in REPORTABLE:
        allowed = ", ".join(sorted(REPORTABLE))
        raise web.HTTPBadRequest(text=f"status must be one of {allowed}\n")
    integer = isinstance(exit_status, int) and not isinstance(exit_status, bool)
    if exit_status is not None and not (integer and -(2**31) <= exit_status < 2**31):
        raise web.HTTPBadRequest(text="exit_status must be an integer or null\n")
    if not isinstance(message, str):
        raise web.HTTPBadRequest(text="message must be a string\n")
    updated = provisioner.workflows.report(
        workflow.id, action_id, Status(status), exit_status, message[:4000]
    )
    if status != Status.RUNNING and updated.status in FINISHED:
        log.info("workflow %d (%s) %s", updated.id, updated.machine, updated.status)
    return web.Response(status=204)


# -- the admin API (the CLI) ---------------------------------------------------------------------


def admin_api(provisioner: Provisioner) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_admin_auth])
    app[PROVISIONER] = provisioner
    app.router.add_get("/workflows", list_workflows)
    app.router.add_post("/workflows", create_workflow)
    app.router.add_get("/workflows/{id}", show_workflow)
    app.router.add_get("/workflows/{id}/logs", workflow_logs)
    app.router.add_post("/workflows/{id}/{verb:cancel|retry}", change_workflow)
    app.router.add_get("/boot-events/{mac}", boot_events)
    return app


@web.middleware
async def _admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = _provisioner(request).admin_token
    # Fails closed: no token configured opens nothing.
    if not _TOKEN.match(expected) or not secrets.compare_digest(_bearer(request), expected):
        raise web.HTTPUnauthorized(text="bad admin token\n")
    return await handler(request)


def _workflow(request: web.Request) -> Workflow:
    workflow_id = _id(request.match_info["id"], "workflow")
    try:
        return _provisioner(request).workflows.get(workflow_id)
    except CroftError:
        raise web.HTTPNotFound(text=f"no workflow {workflow_id}\n") from None


async def list_workflows(request: web.Request) -> web.Response:
    found = _provisioner(request).workflows.all(request.query.get("machine"))
    return web.json_response([workflow.public() for workflow in found])


async def create_workflow(request: web.Request) -> web.Response:
    provisioner = _provisioner(request)
    body = await _json_object(request)
    site = provisioner.site
    name, template = body.get("machine"), body.get("template")
    machine = site.machines.get(name) if isinstance(name, str) else None
    if machine is None or machine.config.hardware is None:
        raise web.HTTPBadRequest(text=f"no machine {name!r} with [hardware] in the site\n")
    if template is not None and not isinstance(template, str):
        raise web.HTTPBadRequest(text="template must be a string: a name in workflows/\n")
    template = template or machine.config.hardware.workflow
    if not template:
        raise web.HTTPBadRequest(text=f"name a template: {machine.name} has no hardware.workflow\n")
    if not machine.config.hardware.allow_workflow:
        raise web.HTTPBadRequest(text=f"{machine.name} has allow_workflow = false\n")
    spec = render(site, machine, template, workflow_context(site, machine, provisioner.url))
    workflow = provisioner.workflows.create(machine.name, template, spec)
    return web.json_response(workflow.public(), status=201)


async def show_workflow(request: web.Request) -> web.Response:
    return web.json_response(_workflow(request).public())


async def workflow_logs(request: web.Request) -> web.StreamResponse:
    """The workflow's output as text; with follow=1, streamed until the workflow ends (or the
    client goes away)."""
    provisioner = _provisioner(request)
    workflow = _workflow(request)
    follow = request.query.get("follow") == "1"
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    labels = {action.id: f"{action.task}/{action.name}" for action in workflow.actions}
    after, shown = 0, None
    while True:
        for log_id, action_id, text in provisioner.workflows.logs(workflow.id, after):
            if action_id != shown:
                await response.write(f"==> {labels.get(action_id, action_id)}\n".encode())
                shown = action_id
            await response.write(text.encode())
            after = log_id
        status = provisioner.workflows.get(workflow.id).status
        if not follow or status in FINISHED:
            if follow:
                await response.write(f"==> workflow {status}\n".encode())
            break
        if request.transport is None or request.transport.is_closing():
            break
        await asyncio.sleep(POLL_INTERVAL)
    await response.write_eof()
    return response


async def change_workflow(request: web.Request) -> web.Response:
    provisioner = _provisioner(request)
    workflow = _workflow(request)
    try:
        if request.match_info["verb"] == "cancel":
            updated = provisioner.workflows.cancel(workflow.id)
        else:
            updated = provisioner.workflows.retry(workflow.id)
    except CroftError as error:
        raise web.HTTPConflict(text=f"{error}\n") from None
    return web.json_response(updated.public())


async def boot_events(request: web.Request) -> web.Response:
    events = _provisioner(request).workflows.boot_events(_mac(request.match_info["mac"]))
    return web.json_response([{"at": at, "kind": kind, "message": message} for at, kind, message in events])
