"""croft deploy, diff, rollback and reset on real systemd machines."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

from croft.fleet.fleet import Fleet
from tests.fleet.conftest import SUBNET, Croft

pytestmark = pytest.mark.fleet

WWW = "layers/web/usr/local/share/www"


def get(machine: str, path: str = "/") -> str:
    address = {"web1": f"{SUBNET}.11", "web2": f"{SUBNET}.12"}[machine]
    with urllib.request.urlopen(f"http://{address}:8080{path}", timeout=5) as response:
        return str(response.read().decode())


def invocation(fleet: Fleet, machine: str, unit: str = "hello-web.service") -> str:
    return fleet.containers[machine].enter("systemctl", "show", "-P", "InvocationID", unit).strip()


def on_target(fleet: Fleet, machine: str, *argv: str) -> str:
    return fleet.containers[machine].enter(*argv)


def test_deploy_noop_edit_delete(fleet: Fleet, croft: Croft) -> None:
    croft("deploy")
    assert "Hello from web1" in get("web1")
    assert "Hello from croft" in get("web2")
    assert "os=debian 12" in on_target(fleet, "db1", "cat", "/usr/local/etc/croft-example/machine.conf")
    before = {m: invocation(fleet, m) for m in ("web1", "web2")}

    # A no-op deploy sends nothing and restarts nothing.
    result = croft("deploy")
    assert result.stdout.count("unchanged") >= 3
    assert {m: invocation(fleet, m) for m in ("web1", "web2")} == before
    assert croft("diff").returncode == 0

    # Editing a config template restarts exactly the service that owns it, on the machine it changed.
    web2 = croft.site / "machines" / "web2.toml"
    web2.write_text(web2.read_text() + '\n[vars]\ngreeting = "edited"\nweb_port = 8080\n')
    diff = croft("diff", ok=False)
    assert diff.returncode == 2 and "+<p>edited</p>" in diff.stdout and "web1 (" in diff.stdout
    croft("deploy")
    assert "edited" in get("web2")
    assert invocation(fleet, "web1") == before["web1"]

    env = croft.site / "layers/web/usr/local/etc/hello-web/env.j2"
    env.write_text("PORT={{ web_port }}\n# edited\n")
    croft("deploy", "web2")
    assert invocation(fleet, "web2") != before["web2"]
    assert invocation(fleet, "web1") == before["web1"]  # web1 was not deployed

    # A deleted file disappears from the target.
    assert "web1 only" in get("web1", "/about.html")
    (croft.site / "machines/web1/usr/local/share/www/about.html").unlink()
    croft("deploy", "web1")
    assert not on_target(fleet, "web1", "ls", "/usr/local/share/www/").count("about.html")


def test_failing_unit_rolls_back(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web1")
    layer = croft.site / "layers/web/layer.toml"
    layer.write_text(layer.read_text().replace("web_port = 8080", 'web_port = "notaport"'))
    (croft.site / WWW / "index.html.j2").write_text("<p>new content</p>\n")
    result = croft("deploy", "web1", ok=False)
    assert result.returncode == 1
    assert "rolled-back" in result.stdout and "bad address 'notaport'" in result.stdout
    assert "Hello from web1" in get("web1")  # the old generation serves again
    assert "failed" in croft("generations", "web1").stdout


def test_killed_client_leaves_old_generation_serving(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web1")
    (croft.site / WWW / "index.html.j2").write_text("<p>after the kill</p>\n")
    big = croft.site / "machines/web1/usr/local/share/www/big.bin"
    with open(big, "wb") as stream:
        stream.write(os.urandom(200 * 1024 * 1024))
    client = croft.popen("deploy", "web1")
    assert client.stdout is not None
    for line in client.stdout:
        if "sending" in line:
            break
    time.sleep(0.2)
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()
    assert "Hello from web1" in get("web1")
    assert on_target(fleet, "web1", "readlink", "/usr/local/croft/live").strip() == "generations/1"
    croft("deploy", "web1")
    assert "after the kill" in get("web1")


def test_rollback_and_reset(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web1")
    (croft.site / WWW / "index.html.j2").write_text("<p>second</p>\n")
    croft("deploy", "web1")
    assert "second" in get("web1")
    croft("rollback", "web1")
    assert "Hello from web1" in get("web1")
    croft("rollback", "web1", "--to", "2")
    assert "second" in get("web1")

    croft("reset", "web1")
    assert on_target(fleet, "web1", "ls", "-A", "/usr/local").split() == [
        "bin",
        "etc",
        "games",
        "include",
        "lib",
        "man",
        "sbin",
        "share",
        "src",
    ]
    assert on_target(fleet, "web1", "systemctl", "is-active", "hello-web.service").strip() != "active"
    assert "nothing deployed" in croft("generations", "web1").stdout


def test_invalid_site_changes_nothing(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web1")
    before = invocation(fleet, "web1")
    (croft.site / WWW / "index.html.j2").write_text("<p>{{ nosuch }}</p>\n")
    result = croft("deploy", ok=False)
    assert result.returncode == 1
    assert "index.html.j2:1: undefined variable 'nosuch'" in result.stderr
    assert invocation(fleet, "web1") == before
    assert "Hello from web1" in get("web1")


def test_watch_deploys_every_saved_edit(fleet: Fleet, croft: Croft) -> None:
    watcher = croft.popen("deploy", "--watch", "web1")
    try:
        deadline = time.monotonic() + 60
        while "Hello from web1" not in _get_or_empty("web1"):
            assert time.monotonic() < deadline, "the first deploy of --watch did not arrive"
            time.sleep(0.2)
        for n in (1, 2):
            page = croft.site / "machines/web1/usr/local/share/www/about.html"
            saved = time.monotonic()
            page.write_text(f"<p>saved {n}</p>\n")
            while f"saved {n}" not in _get_or_empty("web1", "/about.html"):
                assert time.monotonic() - saved < 30, f"edit {n} never went live"
                time.sleep(0.05)
            print(f"edit {n} live after {time.monotonic() - saved:.2f} s")
    finally:
        os.killpg(watcher.pid, signal.SIGINT)
        output, _ = watcher.communicate(timeout=30)
        print(output)
    assert watcher.returncode == 0


def _get_or_empty(machine: str, path: str = "/") -> str:
    try:
        return get(machine, path)
    except OSError:
        return ""
