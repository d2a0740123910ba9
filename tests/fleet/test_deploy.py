"""croft deploy, diff, rollback and reset on real systemd machines."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from croft.fleet.fleet import Fleet
from tests.fleet.conftest import SUBNET, Croft, make_site

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


def add_unit(croft: Croft, name: str, service: str, *, config: bool = False) -> None:
    """A layer `name` with the unit NAME.service (wanted by multi-user.target) on web1."""
    layer = croft.site / "layers" / name
    units = layer / "usr/local/lib/systemd/system"
    units.mkdir(parents=True)
    (units / f"{name}.service").write_text(
        f"[Unit]\nDescription={name}\n{service}\n[Install]\nWantedBy=multi-user.target\n"
    )
    if config:
        (layer / "usr/local/etc" / name).mkdir(parents=True)
        (layer / "usr/local/etc" / name / "env").write_text("ROUND=0\n")
        (layer / "layer.toml").write_text(f'[units."{name}.service"]\nconfig = ["usr/local/etc/{name}/*"]\n')
    machine = croft.site / "machines/web1.toml"
    machine.write_text(machine.read_text().replace('"boxes"]', f'"boxes", "{name}"]'))


def failed_units(fleet: Fleet, machine: str) -> str:
    return on_target(fleet, machine, "systemctl", "list-units", "--failed", "--plain", "--no-legend")


def test_a_unit_that_dies_a_second_after_starting_is_caught_and_left_not_failed(
    fleet: Fleet, croft: Croft
) -> None:
    croft("deploy", "web1")
    add_unit(croft, "shortlived", '[Service]\nExecStart=/bin/sh -c "sleep 1; exit 1"')
    result = croft("deploy", "web1", ok=False)
    assert result.returncode == 1 and "rolled-back" in result.stdout, result.stdout
    assert "shortlived.service did not stay up" in result.stdout
    # The rollback removed it, and it is not left in the failed list (the machine not degraded).
    assert "shortlived" not in failed_units(fleet, "web1")
    assert "Hello from web1" in get("web1")


def test_quick_deploys_in_a_row_never_hit_the_start_limit(fleet: Fleet, croft: Croft) -> None:
    # As `croft deploy --watch` while someone saves: six restarts in a row, within the unit's
    # start-limit interval (5 starts per 60 s here, so the test does not hang on timing).
    add_unit(
        croft,
        "storm",
        "StartLimitIntervalSec=60\nStartLimitBurst=5\n[Service]\n"
        "EnvironmentFile=/usr/local/etc/storm/env\nExecStart=/bin/sleep infinity",
        config=True,
    )
    croft("deploy", "web1")
    for round_ in range(1, 7):
        (croft.site / "layers/storm/usr/local/etc/storm/env").write_text(f"ROUND={round_}\n")
        result = croft("deploy", "web1", ok=False)
        assert result.returncode == 0, f"round {round_}: {result.stdout}{result.stderr}"
    assert on_target(fleet, "web1", "systemctl", "is-active", "storm.service").strip() == "active"
    assert "storm" not in failed_units(fleet, "web1")


def test_two_copies_deploying_at_once_never_corrupt_a_generation(
    fleet: Fleet, croft: Croft, tmp_path: Path
) -> None:
    # Two clones of the site, each with its own 40 MB file at the same path, deploying web1 at
    # the same moment. rsync once wrote into one shared directory outside the machine's lock:
    # the live generation then held A's file under B's manifest.
    other = Croft(make_site(tmp_path / "other"))
    big = "machines/web1/usr/local/share/www/big.bin"
    for round_ in range(4):
        for runner in (croft, other):
            (runner.site / big).write_bytes(os.urandom(40 << 20))
        first, second = croft.popen("deploy", "web1"), other.popen("deploy", "web1")
        outputs = [process.communicate(timeout=300)[0] for process in (first, second)]
        assert first.returncode == 0 or second.returncode == 0, outputs
        verified = croft("verify", "web1", ok=False)
        assert verified.returncode == 0, f"round {round_}: {verified.stdout}{outputs}"
        # Whoever says its tree is live is right: a no-op deploy from it changes nothing.
        winner = croft if first.returncode == 0 else other
        assert "unchanged" in winner("deploy", "web1").stdout or second.returncode == 0


def test_verify_finds_what_changed_behind_crofts_back(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web1")
    assert croft("verify", "web1").stdout.strip().endswith("matches its manifest")
    live = "/usr/local/croft/live/root/usr/local/share/www"
    on_target(fleet, "web1", "sh", "-c", f"echo tampered >> {live}/about.html; touch {live}/extra")
    on_target(fleet, "web1", "systemctl", "stop", "hello-web.service")
    result = croft("verify", "web1", ok=False)
    assert result.returncode == 1
    assert "changed: /usr/local/share/www/about.html (content differs" in result.stdout
    assert "unmanaged: /usr/local/share/www/extra" in result.stdout
    assert "unit: hello-web.service is inactive" in result.stdout


def test_what_croft_does_not_own_is_never_replaced_unless_adopted(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web1")
    live = on_target(fleet, "web1", "readlink", "/usr/local/croft/live").strip()
    # An admin's tool and data, where a layer is about to ship files of its own.
    on_target(fleet, "web1", "sh", "-c",
              "mkdir -p /usr/local/share/admin-data && echo mine > /usr/local/share/admin-data/notes"
              " && echo 'admin tool' > /usr/local/bin/admin-tool")  # fmt: skip
    layer = croft.site / "layers/web"
    (layer / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (layer / "usr/local/bin/admin-tool").write_text("croft's tool\n")
    (layer / "usr/local/share/admin-data").write_text("croft's data, a file\n")
    diff = croft("diff", "web1", ok=False)
    assert "! /usr/local/bin/admin-tool: exists and is not croft's" in diff.stdout
    assert "! /usr/local/share/admin-data: exists and is not croft's" in diff.stdout
    refused = croft("deploy", "web1", ok=False)
    assert refused.returncode == 1
    assert "not croft's: /usr/local/bin/admin-tool, /usr/local/share/admin-data" in refused.stdout
    assert on_target(fleet, "web1", "cat", "/usr/local/bin/admin-tool") == "admin tool\n"
    assert on_target(fleet, "web1", "cat", "/usr/local/share/admin-data/notes") == "mine\n"
    assert on_target(fleet, "web1", "readlink", "/usr/local/croft/live").strip() == live
    # Adopted: croft takes the paths over and keeps the old content aside...
    toml = layer / "layer.toml"
    toml.write_text('adopt = ["usr/local/bin/admin-tool", "usr/local/share/admin-data"]\n' + toml.read_text())
    croft("deploy", "web1")
    assert on_target(fleet, "web1", "cat", "/usr/local/bin/admin-tool") == "croft's tool\n"
    assert croft("verify", "web1").returncode == 0
    # ... and gives it back when it stops shipping them.
    croft("reset", "web1")
    assert on_target(fleet, "web1", "cat", "/usr/local/bin/admin-tool") == "admin tool\n"
    assert on_target(fleet, "web1", "cat", "/usr/local/share/admin-data/notes") == "mine\n"
    on_target(fleet, "web1", "rm", "-rf", "/usr/local/bin/admin-tool", "/usr/local/share/admin-data")


def test_a_deploy_that_locks_croft_out_reverts_itself(fleet: Fleet, croft: Croft) -> None:
    toml = croft.site / "site.toml"
    confirm = "keep_generations = 5\nconfirm_seconds = 8"
    toml.write_text(toml.read_text().replace("keep_generations = 5", confirm))
    croft("deploy", "web1")
    before = on_target(fleet, "web1", "readlink", "/usr/local/croft/live").strip()
    # The new generation stops sshd: croft cannot get in again after the switch.
    add_unit(
        croft,
        "lockout",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        "ExecStart=/bin/systemctl --no-block stop ssh.service\n"
        "ExecStop=/bin/systemctl --no-block start ssh.service",
    )
    result = croft("deploy", "web1", ok=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "over a new SSH connection" in result.stdout and "reverted itself to generation" in result.stdout
    assert on_target(fleet, "web1", "readlink", "/usr/local/croft/live").strip() == before
    assert on_target(fleet, "web1", "systemctl", "is-active", "ssh.service").strip() == "active"
    assert croft("verify", "web1").returncode == 0  # reachable, and as before


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
    watcher = croft.popen("deploy", "--watch", "web1", env={"PYTHONFAULTHANDLER": "1"})
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
        try:
            output, _ = watcher.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Still running after Ctrl-C: its threads' stacks (faulthandler, on SIGABRT) say where.
            os.kill(watcher.pid, signal.SIGABRT)
            output, _ = watcher.communicate(timeout=30)
            raise AssertionError(f"croft deploy --watch did not stop on Ctrl-C:\n{output}") from None
        print(output)
    assert watcher.returncode == 0


def _get_or_empty(machine: str, path: str = "/") -> str:
    try:
        return get(machine, path)
    except OSError:
        return ""
