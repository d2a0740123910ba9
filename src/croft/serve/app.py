"""The HTTP side of croft serve (aiohttp): iPXE scripts, artifacts, metadata, the agent API and
the admin API."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

from aiohttp import web

from croft.errors import CroftError, SiteError
from croft.images.build import store_for
from croft.serve import ipxe, metadata
from croft.serve.context import netboot_artifacts, workflow_context
from croft.serve.inventory import Inventory
from croft.site.model import Site
from croft.workflows.store import FINISHED, WorkflowStore
from croft.workflows.template import render

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
POLL_INTERVAL = 0.5


class Provisioner:
    """What the handlers share: the site, its inventory, the workflow store, the admin token."""

    def __init__(self, site: Site, workflows: WorkflowStore, url: str, admin_token: str) -> None:
        self.site = site
        self.inventory = Inventory(site)
        self.workflows = workflows
        self.url = url
        self.admin_token = admin_token
        self.changed = asyncio.Event()
        """Set when who-should-netboot may have changed (dnsmasq's hosts file follows)."""

    def reload(self, site: Site) -> None:
        self.site = site
        self.inventory = Inventory(site)
        self.changed.set()

    def netbooting(self) -> set[str]:
        """Machines that should netboot now: allowed to, with a workflow to run."""
        active = self.workflows.active()
        return {
            name
            for name, machine in self.inventory.by_name.items()
            if name in active
            and machine.config.hardware is not None
            and machine.config.hardware.allow_netboot
        }


def make_app(provisioner: Provisioner) -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    app["provisioner"] = provisioner
    routes = web.RouteTableDef()

    def bearer(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        return header.removeprefix("Bearer ").strip()

    # -- boot --------------------------------------------------------------------------------

    @routes.get("/boot/{mac}.ipxe")
    async def boot_script(request: web.Request) -> web.Response:
        mac = _mac(request.match_info["mac"])
        known = provisioner.inventory.by_mac.get(mac)
        assert provisioner.site.config.serve is not None
        if known is None:
            if not provisioner.site.config.serve.discovery:
                return web.Response(text=ipxe.local_boot_script(f"{mac} is not in the inventory"))
            # Discovery: the machine boots the netboot environment, where the agent, with no
            # workflow, says so and stops; the MAC is kept as a boot event to add to the inventory.
            provisioner.workflows.add_boot_event(mac, "discovered", "not in the inventory")
            print(f"croft serve: discovered {mac} (not in the inventory)", flush=True)
            # iPXE says which architecture it was built for (${buildarch} in the script's URL).
            arch = "aarch64" if request.query.get("arch") == "arm64" else "x86_64"
            return _netboot(provisioner, mac, "none", arch)
        workflow = provisioner.workflows.active().get(known.machine.name)
        if not known.hardware.allow_netboot:
            return web.Response(text=ipxe.local_boot_script("netboot not allowed"))
        if workflow is None or not known.hardware.allow_workflow:
            return web.Response(text=ipxe.local_boot_script("no workflow to run"))
        provisioner.workflows.add_boot_event(mac, "netboot", f"workflow {workflow.id}")
        return _netboot(provisioner, mac, workflow.token, known.hardware.arch)

    @routes.post("/boot/{mac}/error")
    async def boot_error(request: web.Request) -> web.Response:
        mac = _mac(request.match_info["mac"])
        message = (await request.text())[:4000]
        provisioner.workflows.add_boot_event(mac, "error", message)
        print(f"croft serve: {mac} failed to boot: {message}", flush=True)
        return web.Response(status=204)

    @routes.get("/artifacts/{digest}")
    async def artifact(request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        path = store_for(provisioner.site).path(digest)
        if not _DIGEST.match(digest) or not path.exists():
            raise web.HTTPNotFound(text=f"no artifact {digest}\n")
        # FileResponse: HEAD, Range and If-None-Match, streamed with sendfile.
        return web.FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    # -- metadata: answered only to the machine it describes -----------------------------------

    def caller(request: web.Request) -> Any:
        known = provisioner.inventory.by_ip.get(request.remote or "")
        if known is None:
            raise web.HTTPNotFound(text=f"no machine has the address {request.remote}\n")
        return known

    @routes.get("/latest/meta-data/{path:.*}")
    async def ec2_metadata(request: web.Request) -> web.Response:
        document = metadata.ec2(caller(request), request.match_info["path"])
        if document is None:
            raise web.HTTPNotFound()
        return web.Response(text=document)

    @routes.get("/latest/user-data")
    async def ec2_user_data(request: web.Request) -> web.Response:
        document = metadata.user_data(caller(request))
        if document is None:
            raise web.HTTPNotFound()
        return web.Response(text=document)

    @routes.get("/nocloud/{name}")
    async def nocloud(request: web.Request) -> web.Response:
        document = metadata.nocloud(caller(request), request.match_info["name"])
        if document is None:
            raise web.HTTPNotFound()
        return web.Response(text=document)

    # -- the agent API -----------------------------------------------------------------------

    def agent_workflow(request: web.Request) -> Any:
        workflow = provisioner.workflows.by_token(bearer(request))
        if workflow is None:
            raise web.HTTPUnauthorized(text="unknown agent token\n")
        return workflow

    @routes.get("/agent/v1/next")
    async def next_action(request: web.Request) -> web.Response:
        workflow = agent_workflow(request)
        wait = min(float(request.query.get("wait", "0")), 60)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            action = provisioner.workflows.next_action(workflow.id)
            if action is not None:
                provisioner.changed.set()
                return web.json_response(action.public())
            current = provisioner.workflows.get(workflow.id)
            if current.status in FINISHED:
                return web.json_response({"status": current.status, "message": current.message}, status=410)
            if asyncio.get_running_loop().time() >= deadline:
                return web.Response(status=204)
            await asyncio.sleep(POLL_INTERVAL)

    @routes.post("/agent/v1/actions/{action_id}/log")
    async def action_log(request: web.Request) -> web.Response:
        workflow = agent_workflow(request)
        action_id = int(request.match_info["action_id"])
        if all(action.id != action_id for action in provisioner.workflows.get(workflow.id).actions):
            raise web.HTTPNotFound(text=f"no action {action_id} in this workflow\n")
        provisioner.workflows.append_log(action_id, await request.text())
        return web.Response(status=204)

    @routes.post("/agent/v1/actions/{action_id}/state")
    async def action_state(request: web.Request) -> web.Response:
        workflow = agent_workflow(request)
        body = await request.json()
        try:
            updated = provisioner.workflows.report(
                workflow.id, int(request.match_info["action_id"]), str(body["status"]),
                body.get("exit_status"), str(body.get("message", "")),
            )  # fmt: skip
        except (CroftError, KeyError) as error:
            raise web.HTTPBadRequest(text=f"{error}\n") from None
        provisioner.changed.set()
        if updated.status in FINISHED:
            print(f"croft serve: workflow {updated.id} ({updated.machine}) {updated.status}", flush=True)
        return web.Response(status=204)

    # -- the admin API (the CLI) ---------------------------------------------------------------

    def admin(request: web.Request) -> None:
        if not secrets.compare_digest(bearer(request), provisioner.admin_token):
            raise web.HTTPUnauthorized(text="bad admin token\n")

    @routes.get("/admin/v1/workflows")
    async def list_workflows(request: web.Request) -> web.Response:
        admin(request)
        found = provisioner.workflows.all(request.query.get("machine"))
        return web.json_response([workflow.public() for workflow in found])

    @routes.post("/admin/v1/workflows")
    async def create_workflow(request: web.Request) -> web.Response:
        admin(request)
        body = await request.json()
        site = provisioner.site
        machine = site.machines.get(str(body.get("machine")))
        if machine is None or machine.config.hardware is None:
            raise web.HTTPBadRequest(text=f"no machine {body.get('machine')!r} with [hardware] in the site\n")
        template = body.get("template") or machine.config.hardware.workflow
        if not template:
            raise web.HTTPBadRequest(text=f"name a template: {machine.name} has no hardware.workflow\n")
        if not machine.config.hardware.allow_workflow:
            raise web.HTTPBadRequest(text=f"{machine.name} has allow_workflow = false\n")
        try:
            spec = render(site, machine, template, workflow_context(site, machine, provisioner.url))
            workflow = provisioner.workflows.create(machine.name, template, spec)
        except (SiteError, CroftError) as error:
            raise web.HTTPBadRequest(text=f"{error}\n") from None
        provisioner.changed.set()
        return web.json_response(workflow.public(), status=201)

    @routes.get("/admin/v1/workflows/{id}")
    async def show_workflow(request: web.Request) -> web.Response:
        admin(request)
        return web.json_response(_workflow_or_404(provisioner, request).public())

    @routes.get("/admin/v1/workflows/{id}/logs")
    async def workflow_logs(request: web.Request) -> web.StreamResponse:
        """The workflow's output as text; with follow=1, streamed until the workflow ends."""
        admin(request)
        workflow = _workflow_or_404(provisioner, request)
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
            if not follow or provisioner.workflows.get(workflow.id).status in FINISHED:
                if follow:
                    final = provisioner.workflows.get(workflow.id)
                    await response.write(f"==> workflow {final.status}\n".encode())
                break
            await asyncio.sleep(POLL_INTERVAL)
        await response.write_eof()
        return response

    @routes.post("/admin/v1/workflows/{id}/{verb:cancel|retry}")
    async def change_workflow(request: web.Request) -> web.Response:
        admin(request)
        workflow = _workflow_or_404(provisioner, request)
        try:
            if request.match_info["verb"] == "cancel":
                updated = provisioner.workflows.cancel(workflow.id)
            else:
                updated = provisioner.workflows.retry(workflow.id)
        except CroftError as error:
            raise web.HTTPConflict(text=f"{error}\n") from None
        provisioner.changed.set()
        return web.json_response(updated.public())

    @routes.get("/admin/v1/boot-events/{mac}")
    async def boot_events(request: web.Request) -> web.Response:
        admin(request)
        events = provisioner.workflows.boot_events(_mac(request.match_info["mac"]))
        return web.json_response(
            [{"at": at, "kind": kind, "message": message} for at, kind, message in events]
        )

    app.add_routes(routes)
    return app


def _netboot(provisioner: Provisioner, mac: str, token: str, arch: str) -> web.Response:
    """The script that boots the netboot environment for `arch` with the agent's token."""
    try:
        netboot = netboot_artifacts(provisioner.site, provisioner.url, arch)
    except CroftError as error:
        provisioner.workflows.add_boot_event(mac, "error", str(error))
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


def _mac(value: str) -> str:
    if not _MAC.match(value):
        raise web.HTTPNotFound(text=f"{value!r} is not a MAC address\n")
    return value.lower().replace("-", ":")


def _workflow_or_404(provisioner: Provisioner, request: web.Request) -> Any:
    try:
        return provisioner.workflows.get(int(request.match_info["id"]))
    except (CroftError, ValueError):
        raise web.HTTPNotFound(text=f"no workflow {request.match_info['id']}\n") from None
