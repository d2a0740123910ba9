"""croft serve's HTTP API in-process (aiohttp's test server on loopback, no root): what a client
on a hostile LAN can and cannot do. Machines are told apart by their source address: each
request comes from an address in 127.0.0.0/8, as the machine with that address would send it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from croft.serve.app import Provisioner, make_app
from croft.serve.guard import ConnectionGuard
from croft.serve.location import admin_token
from croft.site.load import load_site
from croft.workflows.store import LOG_LIMIT, Status, WorkflowStore

ADMIN = "a" * 32
LAB1, LAB2, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.9"
LAB1_MAC, LAB2_MAC = "52:54:00:00:00:02", "52:54:00:00:00:03"
QUICK = """\
name: quick
tasks:
  - name: steps
    actions:
      - {name: one, command: "true"}
      - {name: two, command: "true"}
      - {name: three, command: "true"}
"""


def make_site(root: Path, mode: str = "full", port: int = 8080) -> Path:
    """A site served on loopback: lab1 at 127.0.0.2, lab2 at 127.0.0.3 (images declared, not built)."""
    (root / "machines").mkdir(parents=True)
    (root / "workflows").mkdir()
    (root / "images").mkdir()
    (root / "site.toml").write_text(
        f'name = "apptest"\n[serve]\naddress = "127.0.0.1"\ninterface = "lo"\nnetwork = "127.0.0.0/8"\n'
        f'mode = "{mode}"\nhttp_port = {port}\n'
    )
    for name, kind in (("initrd", "initrd"), ("netboot", "base"), ("agent", "overlay")):
        base = 'base = "netboot"\n' if kind == "overlay" else ""
        (root / "images" / f"{name}.toml").write_text(f'kind = "{kind}"\n{base}')
    (root / "workflows" / "quick.yaml").write_text(QUICK)
    for name, ip, mac in (("lab1", LAB1, LAB1_MAC), ("lab2", LAB2, LAB2_MAC)):
        (root / "machines" / f"{name}.toml").write_text(
            textwrap.dedent(f"""\
                address = "{ip}"
                [hardware]
                workflow = "quick"
                [[hardware.interfaces]]
                mac = "{mac}"
                ip = "{ip}/8"
                [hardware.metadata]
                ssh_keys = ["ssh-ed25519 AAAA test"]
                """)
        )
    return root


@dataclass
class Api:
    provisioner: Provisioner
    server: TestServer
    sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    async def call(
        self,
        method: str,
        path: str,
        *,
        source: str = LAB1,
        token: str | None = None,
        data: bytes | str | None = None,
        body: Any = None,
    ) -> tuple[int, str]:
        if source not in self.sessions:
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            self.sessions[source] = aiohttp.ClientSession(connector=connector)
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is not None:
            data = json.dumps(body)
        url = f"http://127.0.0.1:{self.server.port}{path}"
        async with self.sessions[source].request(method, url, data=data, headers=headers) as response:
            return response.status, await response.text()

    def workflow(self, machine: str = "lab1") -> Any:
        site = self.provisioner.site
        from croft.serve.context import workflow_context
        from croft.workflows.template import render

        spec = render(
            site, site.machines[machine], "quick", workflow_context(site, site.machines[machine], "")
        )
        return self.provisioner.workflows.create(machine, "quick", spec)


Scenario = Callable[[Api], Awaitable[None]]


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., None]:
    """Runs a scenario against the app for a fresh site (mode full or proxy)."""

    def run(
        scenario: Scenario, mode: str = "full", token: str = ADMIN, guard: ConnectionGuard | None = None
    ) -> None:
        site = load_site(make_site(tmp_path / f"site-{mode}", mode))
        store = WorkflowStore(f"sqlite:///{tmp_path / f'workflows-{mode}.db'}")
        provisioner = Provisioner(site, store, "http://127.0.0.1:8080", token)

        async def main() -> None:
            middlewares = (guard.middleware,) if guard is not None else ()
            server = TestServer(make_app(provisioner, middlewares), host="127.0.0.1")
            await server.start_server()
            api = Api(provisioner, server)
            try:
                await scenario(api)
            finally:
                for session in api.sessions.values():
                    await session.close()
                await server.close()
                store.close()

        asyncio.run(main())

    return run


# -- credentials are bound to the machine that boots -----------------------------------------------


def test_a_boot_script_hands_the_token_only_to_the_machine_with_that_address(
    serve: Callable[..., None],
) -> None:
    async def scenario(api: Api) -> None:
        workflow = api.workflow("lab1")
        # Another machine on the LAN asks with lab1's MAC: no token, and nothing is bound.
        status, script = await api.call("GET", f"/boot/{LAB1_MAC}.ipxe", source=LAB2)
        assert status == 200 and workflow.token not in script and "has the address 127.0.0.2" in script
        assert api.provisioner.workflows.get(workflow.id).address is None
        await api.call("GET", f"/boot/{LAB1_MAC}.ipxe", source=LAB1)
        assert api.provisioner.workflows.get(workflow.id).address == LAB1
        # The token itself is refused from anywhere but lab1.
        assert (await api.call("GET", "/agent/v1/next", source=LAB2, token=workflow.token))[0] == 403
        status, text = await api.call("GET", "/agent/v1/next", source=LAB1, token=workflow.token)
        assert status == 200 and json.loads(text)["name"] == "one"

    serve(scenario)


def test_in_proxy_mode_the_first_address_that_boots_a_workflow_owns_it(serve: Callable[..., None]) -> None:
    async def scenario(api: Api) -> None:
        workflow = api.workflow("lab1")
        # proxyDHCP: the LAN's router leased the address, so the first to ask is the machine.
        await api.call("GET", f"/boot/{LAB1_MAC}.ipxe", source=STRANGER)
        assert api.provisioner.workflows.get(workflow.id).address == STRANGER
        _, script = await api.call("GET", f"/boot/{LAB1_MAC}.ipxe", source=LAB1)
        assert workflow.token not in script and "belongs to the machine that booted it first" in script
        assert (await api.call("GET", "/agent/v1/next", source=LAB1, token=workflow.token))[0] == 403

    serve(scenario, mode="proxy")


def test_only_the_action_handed_out_can_be_reported_and_only_once(
    serve: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(api: Api) -> None:
        workflow = api.workflow("lab1")
        token = workflow.token
        first = json.loads((await api.call("GET", "/agent/v1/next", token=token))[1])
        ids = [action.id for action in api.provisioner.workflows.get(workflow.id).actions]
        # Reports for actions never handed out (the third, then the second): refused.
        for action_id in (ids[2], ids[1]):
            status, text = await api.call(
                "POST", f"/agent/v1/actions/{action_id}/state", token=token, body={"status": "success"}
            )
            assert status == 409 and "not running" in text
        current = api.provisioner.workflows.get(workflow.id)
        assert current.status == Status.RUNNING
        assert [a.status for a in current.actions] == [Status.RUNNING, Status.PENDING, Status.PENDING]
        for action_id in ids:
            assert action_id == json.loads((await api.call("GET", "/agent/v1/next", token=token))[1])["id"]
            state = f"/agent/v1/actions/{action_id}/state"
            assert (await api.call("POST", state, token=token, body={"status": "success"}))[0] == 204
        assert first["id"] == ids[0]
        assert api.provisioner.workflows.get(workflow.id).status == Status.SUCCESS
        # A replayed report, and output after the end: refused, and said once.
        replay = await api.call(
            "POST", f"/agent/v1/actions/{ids[2]}/state", token=token, body={"status": "success"}
        )
        assert replay[0] == 409
        assert (await api.call("POST", f"/agent/v1/actions/{ids[2]}/log", token=token, data="late\n"))[
            0
        ] == 409
        assert api.provisioner.workflows.logs(workflow.id) == []
        assert sum("success" in record.getMessage() for record in caplog.records) == 1

    with caplog.at_level(logging.INFO, logger="croft.serve"):
        serve(scenario)


def test_the_admin_api_fails_closed_without_a_token(serve: Callable[..., None], tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        assert (await api.call("GET", "/admin/v1/workflows"))[0] == 401
        assert (await api.call("GET", "/admin/v1/workflows", token=""))[0] == 401
        created = await api.call("POST", "/admin/v1/workflows", token="", body={"machine": "lab1"})
        assert created[0] == 401 and api.provisioner.workflows.all() == []

    serve(scenario, token="")
    # An empty token file (a crash between creating and writing it) is replaced by a new token,
    # written whole, readable by its owner only.
    state = tmp_path / "state"
    state.mkdir()
    (state / "admin-token").write_text("")
    token = admin_token(state)
    assert len(token) == 32 and (state / "admin-token").read_text() == token + "\n"
    assert (state / "admin-token").stat().st_mode & 0o777 == 0o600
    assert admin_token(state) == token


def test_templates_are_names_in_workflows_rendered_in_a_sandbox(serve: Callable[..., None]) -> None:
    async def scenario(api: Api) -> None:
        site = api.provisioner.site.root
        (site.parent / "outside.yaml").write_text("{{ 7 * 7 }}")
        for template in ("/etc/passwd", "../outside", "quick/../../outside", 7):
            status, text = await api.call(
                "POST", "/admin/v1/workflows", token=ADMIN, body={"machine": "lab1", "template": template}
            )
            assert status == 400, (template, text)
        (site / "workflows" / "escape.yaml").write_text(
            "name: {{ ''.__class__.__mro__[1].__subclasses__() }}\n"
        )
        status, text = await api.call(
            "POST", "/admin/v1/workflows", token=ADMIN, body={"machine": "lab1", "template": "escape"}
        )
        assert status == 400 and "unsafe" in text
        (site / "workflows" / "empty.yaml").write_text("name: empty\ntasks: []\n")
        status, text = await api.call(
            "POST", "/admin/v1/workflows", token=ADMIN, body={"machine": "lab1", "template": "empty"}
        )
        assert status == 400 and "no actions" in text
        assert api.provisioner.workflows.all() == []

    serve(scenario)


def test_malformed_input_gets_a_4xx_never_a_500(serve: Callable[..., None]) -> None:
    async def scenario(api: Api) -> None:
        workflow = api.workflow("lab1")
        token = workflow.token
        await api.call("GET", "/agent/v1/next", token=token)
        action_id = workflow.actions[0].id
        for wait in ("nan", "abc", "0x10", "", "-1", "61", "inf"):
            status, text = await api.call("GET", f"/agent/v1/next?wait={wait}", token=token)
            assert status == 400 and "wait" in text, wait
        for bad_id in ("abc", "1e3", "4%00", str(2**63), "0", "-1"):
            assert (await api.call("POST", f"/agent/v1/actions/{bad_id}/log", token=token, data="x"))[
                0
            ] == 404
        state = f"/agent/v1/actions/{action_id}/state"
        for body in ("[]", '"x"', "{", "", "[" * 100_000 + "]" * 100_000, '{"status": 1}'):
            assert (await api.call("POST", state, token=token, data=body))[0] == 400, body[:20]
        bad_exit = {"status": "failed", "exit_status": "abc"}
        assert (await api.call("POST", state, token=token, body=bad_exit))[0] == 400
        log = f"/agent/v1/actions/{action_id}/log"
        assert (await api.call("POST", log, token=token, data=b"\xff\xfe not utf-8"))[0] == 400
        for body in ("[]", "{", ""):
            assert (await api.call("POST", "/admin/v1/workflows", token=ADMIN, data=body))[0] == 400
        for path in ("/admin/v1/workflows/abc", "/admin/v1/workflows/99999999999999999999"):
            assert (await api.call("GET", path, token=ADMIN))[0] == 404
        assert (await api.call("GET", "/latest/meta-data/public-keys/%C2%B2"))[0] == 404
        assert (await api.call("GET", "/latest/meta-data/public-keys/0/openssh-key"))[0] == 200
        # Nothing of it reached the workflow.
        assert api.provisioner.workflows.get(workflow.id).actions[0].status == Status.RUNNING

    serve(scenario)


def test_bodies_logs_and_boot_errors_are_bounded(
    serve: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(api: Api) -> None:
        workflow = api.workflow("lab1")
        await api.call("GET", "/agent/v1/next", token=workflow.token)
        action_id = workflow.actions[0].id
        big = "x" * (2 << 20)
        log = f"/agent/v1/actions/{action_id}/log"
        assert (await api.call("POST", log, token=workflow.token, data=big))[0] == 413
        chunk = "y" * (512 << 10)
        for _ in range(LOG_LIMIT // len(chunk) + 4):
            assert (await api.call("POST", log, token=workflow.token, data=chunk))[0] == 204
        kept = "".join(text for _, _, text in api.provisioner.workflows.logs(workflow.id))
        assert len(kept) < LOG_LIMIT + 200 and kept.endswith("not kept]\n")
        # Boot errors: only for MACs in the inventory, a few a minute, shown escaped.
        assert (await api.call("POST", "/boot/52:54:00:99:99:99/error", data="x"))[0] == 404
        forged = "oops\ncroft serve: workflow 1 (lab1) success\x1b[2J"
        assert (await api.call("POST", f"/boot/{LAB1_MAC}/error", data=forged))[0] == 204
        codes = [(await api.call("POST", f"/boot/{LAB1_MAC}/error", data="again"))[0] for _ in range(12)]
        assert 429 in codes
        assert len(api.provisioner.workflows.boot_events(LAB1_MAC)) <= 10

    with caplog.at_level(logging.INFO, logger="croft.serve"):
        serve(scenario)
    lines = "\n".join(record.getMessage() for record in caplog.records)
    assert "\x1b" not in lines and "oops\\ncroft serve" in lines
    assert not any(line.startswith("croft serve: workflow 1") for line in lines.splitlines())


def test_a_long_poll_ends_when_its_client_goes_away(serve: Callable[..., None]) -> None:
    guard = ConnectionGuard(limit=64, idle_seconds=60)

    async def scenario(api: Api) -> None:
        # A workflow with nothing to hand out yet (made in the store: templates must have
        # actions): its agent's next call waits up to 60 s. The client gives up after 0.3 s.
        from croft.workflows.template import WorkflowSpec

        workflow = api.provisioner.workflows.create("lab1", "quick", WorkflowSpec("waiting", ()))
        polls = [asyncio.create_task(api.call("GET", "/agent/v1/next?wait=60", token=workflow.token))]
        await asyncio.sleep(0.3)
        assert guard.busy  # the poll is in progress
        for poll in polls:
            poll.cancel()
        await api.sessions[LAB1].close()
        del api.sessions[LAB1]
        for _ in range(40):
            if not guard.busy:
                break
            await asyncio.sleep(0.1)
        assert not guard.busy, "the abandoned long-poll kept running"

    serve(scenario, guard=guard)


def test_booting_does_not_depend_on_recording_it(serve: Callable[..., None]) -> None:
    async def scenario(api: Api) -> None:
        workflow = api.workflow("lab1")
        # The state directory's file system is full: no event can be written.
        api.provisioner.workflows.engine.dispose()
        with api.provisioner.workflows.engine.begin() as db:
            db.exec_driver_sql("PRAGMA max_page_count = 1")
        status, script = await api.call("GET", f"/boot/{LAB1_MAC}.ipxe")
        assert status == 200 and "#!ipxe" in script
        del workflow

    serve(scenario)


async def _slow_clients(guard: ConnectionGuard, site: Path, tmp_path: Path) -> None:
    store = WorkflowStore(f"sqlite:///{tmp_path / 'guard.db'}")
    provisioner = Provisioner(load_site(site), store, "http://127.0.0.1:8080", ADMIN)
    runner = web.AppRunner(make_app(provisioner, (guard.middleware,)))
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(guard.factory(runner.server), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        # 40 clients that send half a request line and then nothing.
        slow = []
        for _ in range(40):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /boot/")
            slow.append(writer)
        await asyncio.sleep(0.2)
        assert len(runner.server.connections) <= guard.limit  # the others were closed at once
        guard.sweep(runner.server)  # as croft serve does every second
        await asyncio.sleep(guard.idle_seconds + 0.1)
        assert guard.sweep(runner.server) > 0
        await asyncio.sleep(0.2)
        assert len(runner.server.connections) == 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /boot/{LAB1_MAC}.ipxe HTTP/1.0\r\n\r\n".encode())
        assert (await reader.read()).startswith(b"HTTP/1.0 200")
        for each in [*slow, writer]:
            each.close()
        # A download slower than the idle limit is a request in progress: never cut.
        blob = site / "blob"
        blob.write_bytes(os.urandom(8 << 20))
        digest = provisioner.store.add(blob).sha256

        server = runner.server

        async def sweeping() -> None:
            while True:
                guard.sweep(server)
                await asyncio.sleep(0.1)

        sweeper = asyncio.create_task(sweeping())
        received = 0
        async with (
            aiohttp.ClientSession(read_bufsize=1 << 16) as session,
            session.get(f"http://127.0.0.1:{port}/artifacts/{digest}") as response,
        ):
            async for chunk in response.content.iter_chunked(1 << 16):
                received += len(chunk)
                await asyncio.sleep(0.01)  # 8 MiB at ~6 MB/s: well past the idle limit
        sweeper.cancel()
        assert received == 8 << 20
    finally:
        listener.close()
        await runner.cleanup()
        store.close()


def test_slow_and_idle_clients_are_capped_and_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    guard = ConnectionGuard(limit=16, idle_seconds=0.5)
    with caplog.at_level(logging.ERROR, logger="aiohttp"):
        asyncio.run(_slow_clients(guard, make_site(tmp_path / "site"), tmp_path))
    # The artifact went out whole, and aiohttp had nothing to complain of (a response sent
    # inside the guard was once prepared a second time).
    assert not [record.getMessage() for record in caplog.records if record.name.startswith("aiohttp")]


def test_the_store_keeps_logs_and_events_within_bounds(tmp_path: Path) -> None:
    from croft.workflows import store as stores

    site = load_site(make_site(tmp_path / "site"))
    workflows = WorkflowStore(f"sqlite:///{tmp_path / 'w.db'}")
    for _ in range(stores.EVENTS_PER_MAC + 30):
        workflows.add_boot_event(LAB1_MAC, "netboot", "again")
    assert len(workflows.boot_events(LAB1_MAC)) == stores.EVENTS_PER_MAC
    from croft.serve.context import workflow_context
    from croft.workflows.template import render

    machine = site.machines["lab1"]
    workflow = workflows.create(
        "lab1", "quick", render(site, machine, "quick", workflow_context(site, machine, ""))
    )
    workflows.cancel(workflow.id)
    assert workflows.prune(keep_seconds=3600) == 0  # ended just now: kept
    assert workflows.prune(keep_seconds=-1) == 1
    assert workflows.all() == [] and workflows.boot_events(LAB1_MAC) == []
    workflows.close()


# -- the site's APT repository ---------------------------------------------------------------------


def test_the_site_repository_is_served_and_nothing_else_of_the_state(serve: Callable[..., None]) -> None:
    async def scenario(api: Api) -> None:
        root = api.provisioner.site.state_dir / "repository"
        (root / "dists/croft").mkdir(parents=True)
        (root / "dists/croft/InRelease").write_text("signed\n")
        (root / "pool/main").mkdir(parents=True)
        (root / "pool/main/x_1_all.deb").write_bytes(b"!<arch>\n")
        (root / "pool/main/.x_1_all.deb.key").write_text("k\n")
        (api.provisioner.site.state_dir / "secret").write_text("not for the LAN\n")
        (root / "pool/main/link.deb").symlink_to(api.provisioner.site.state_dir / "secret")
        status, text = await api.call("GET", "/apt/dists/croft/InRelease")
        assert (status, text) == (200, "signed\n")
        assert (await api.call("GET", "/apt/pool/main/x_1_all.deb"))[0] == 200
        for path in (
            "../secret",
            "dists/../../secret",
            "pool/main/.x_1_all.deb.key",
            "pool/main/link.deb",
            "",
        ):
            assert (await api.call("GET", f"/apt/{path}"))[0] == 404, path

    serve(scenario)
