"""Services as sandboxes, on real systemd machines: hardening, overlays, state, sockets."""

from __future__ import annotations

import time
import urllib.request

import pytest

from croft.fleet.fleet import Fleet
from croft.run import run
from tests.fleet.conftest import SUBNET, Croft

pytestmark = pytest.mark.fleet

NOTES_STATE = "/var/lib/croft/state/notes/current/var/lib/notes"


def get(address: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=10) as response:
        return str(response.read().decode())


def inside(fleet: Fleet, machine: str, *argv: str, ok: bool = True) -> str:
    """Run a command in a fleet machine; with ok, it must succeed."""
    pid = fleet.containers[machine].wait_for_init(5)
    result = run(["nsenter", "-t", str(pid), "-a", *argv], check=False)
    if ok:
        assert result.returncode == 0, f"{argv} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def active(fleet: Fleet, machine: str, unit: str) -> bool:
    return inside(fleet, machine, "systemctl", "is-active", unit, ok=False).strip() == "active"


def main_pid(fleet: Fleet, machine: str, unit: str) -> str:
    return inside(fleet, machine, "systemctl", "show", "-P", "MainPID", unit).strip()


def test_sandbox_confines_the_service_and_overlays_its_config(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "db1")
    # nginx sees croft's nginx.conf at the distro's path; the distro's file is untouched.
    assert get(f"{SUBNET}.13", 8081) == "proxy on db1\n"
    assert "sites-enabled" in inside(fleet, "db1", "cat", "/etc/nginx/nginx.conf")
    # Inside its sandbox the root is read-only; only its declared state and paths are writable.
    pid = main_pid(fleet, "db1", "nginx.service")
    refused = inside(fleet, "db1", "nsenter", "-t", pid, "-m", "touch", "/etc/croft-probe", ok=False)
    assert "Read-only file system" in refused
    inside(fleet, "db1", "nsenter", "-t", pid, "-m", "touch", "/var/lib/nginx/croft-probe")
    # The state shifted onto the machine's btrfs file system.
    assert "croft-probe" in inside(fleet, "db1", "ls", "/var/lib/croft/state/nginx/current/var/lib/nginx")
    assert "croft-probe" not in inside(fleet, "db1", "ls", "/var/lib/nginx")

    inside(fleet, "db1", "systemd-analyze", "verify", "--man=no", "croft-dns.service", "nginx.service")
    # Every unit croft generated is valid for the machine's systemd.
    croft("deploy", "web2")
    inside(
        fleet,
        "web2",
        "systemd-analyze",
        "verify",
        "--man=no",
        "hello-web.service",
        "notes.service",
        "croft-proxy-notes.socket",
        "croft-proxy-notes.service",
        "croft-state@notes.service",
        "croft-snapshot@notes.service",
        "croft-snapshot@notes.timer",
    )
    assert active(fleet, "web2", "croft-snapshot@notes.timer")
    # Declared limits reach the unit.
    memory = inside(fleet, "web2", "systemctl", "show", "-P", "MemoryMax", "hello-web.service")
    assert memory.strip() == str(64 << 20)

    # Exposure scores, before and after croft's drop-ins.
    scores = {}
    for line in croft("check", "--security").stdout.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[3] == "->":
            scores[(parts[0], parts[1])] = (float(parts[2]), float(parts[4]))
    assert scores[("db1", "nginx.service")][0] >= 9
    assert scores[("db1", "nginx.service")][1] <= 4
    assert scores[("web2", "hello-web.service")][1] <= 2.5
    assert scores[("web2", "notes.service")][1] <= 2.5


def test_state_snapshot_and_restore(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web2")
    # The service writes its state itself, as the user of its own that owns the state.
    assert "in my state" in get(f"{SUBNET}.12", 8090)
    owners = inside(fleet, "web2", "stat", "-c", "%U", f"{NOTES_STATE}/starts", f"{NOTES_STATE}/index.html")
    assert owners.split() == ["croft-notes", "croft-notes"]
    inside(fleet, "web2", "sh", "-c", f"echo '<p>first</p>' > {NOTES_STATE}/index.html")
    assert get(f"{SUBNET}.12", 8090) == "<p>first</p>\n"
    snapshot = croft("snapshot", "create", "web2", "notes").stdout.strip()
    assert snapshot in croft("snapshot", "list", "web2", "notes").stdout.split()
    inside(fleet, "web2", "sh", "-c", f"echo '<p>second</p>' > {NOTES_STATE}/index.html")
    assert get(f"{SUBNET}.12", 8090) == "<p>second</p>\n"
    croft("snapshot", "restore", "web2", "notes", snapshot)
    assert get(f"{SUBNET}.12", 8090) == "<p>first</p>\n"
    # Manual snapshots are kept; the timer's run prunes to its policy (the newest of each hour
    # and day: within one hour, the newest of all).
    taken = [croft("snapshot", "create", "web2", "notes").stdout.strip() for _ in range(3)]
    listed = croft("snapshot", "list", "web2", "notes").stdout.split()
    assert set(taken) <= set(listed) and len(listed) >= 4
    inside(fleet, "web2", "systemctl", "start", "croft-snapshot@notes.service")
    assert len(croft("snapshot", "list", "web2", "notes").stdout.split()) <= 2  # 2 across an hour
    unknown = croft("snapshot", "list", "web2", "nosuch", ok=False)
    assert unknown.returncode == 1 and "services with state there: notes" in unknown.stderr


def test_reset_keeps_state_and_users_and_purge_removes_them(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web2")
    page = get(f"{SUBNET}.12", 8090)  # whatever the tests before left in the state
    croft("snapshot", "create", "web2", "notes")
    # Plain reset: croft's tree is gone; the state and its user stay, as a removed package's do.
    croft("reset", "web2")
    assert "croft" not in inside(fleet, "web2", "ls", "/usr/local").split()
    assert "starts" in inside(fleet, "web2", "ls", NOTES_STATE)
    inside(fleet, "web2", "id", "croft-notes")
    croft("deploy", "web2")
    assert get(f"{SUBNET}.12", 8090) == page
    # --purge removes them too: users, state, snapshots (btrfs subvolumes), containers.
    purged = croft("reset", "--purge", "web2")
    assert purged.returncode == 0
    assert inside(fleet, "web2", "ls", "-A", "/var/lib/croft").split() == []
    assert "no such user" in inside(fleet, "web2", "id", "croft-notes", ok=False)
    assert "croft-notes" not in inside(fleet, "web2", "getent", "group")
    # The machine is its distribution again, and croft can deploy to it from scratch.
    croft("deploy", "web2")
    assert "in my state" in get(f"{SUBNET}.12", 8090)


def test_socket_starts_the_service_and_idle_stops_it(fleet: Fleet, croft: Croft) -> None:
    declaration = croft.site / "layers/notes/services/notes.toml"
    declaration.write_text(declaration.read_text().replace('idle_timeout = "10s"', 'idle_timeout = "2s"'))
    croft("deploy", "web2")
    inside(fleet, "web2", "sh", "-c", f"echo '<p>on demand</p>' > {NOTES_STATE}/index.html")
    assert not active(fleet, "web2", "notes.service")
    for _ in range(2):  # started by a connection, stopped when idle, started again
        assert get(f"{SUBNET}.12", 8090) == "<p>on demand</p>\n"
        assert active(fleet, "web2", "notes.service")
        deadline = time.monotonic() + 20
        while active(fleet, "web2", "notes.service"):
            assert time.monotonic() < deadline, "notes.service did not stop when idle"
            time.sleep(0.25)
    # The service has no network but its own: nothing of it listens on the machine's.
    assert ":9000" not in inside(fleet, "web2", "ss", "-ltn")


def test_machines_and_services_resolve_from_every_machine(fleet: Fleet, croft: Croft) -> None:
    croft("deploy")
    for machine in ("web1", "web2", "db1"):
        answer = inside(fleet, machine, "resolvectl", "query", "--legend=no", "db1.lab.home.arpa")
        assert f"{SUBNET}.13" in answer
    answer = inside(fleet, "web1", "resolvectl", "query", "--legend=no", "hello-web.lab.home.arpa")
    assert f"{SUBNET}.11" in answer and f"{SUBNET}.12" in answer  # on both web servers
    # An ordinary program finds a service by its name.
    assert inside(fleet, "web1", "curl", "-s", "http://nginx.lab.home.arpa:8081/") == "proxy on db1\n"


def test_a_container_service_runs_from_a_fresh_snapshot_and_answers(fleet: Fleet, croft: Croft) -> None:
    croft("deploy", "web1")
    assert get(f"{SUBNET}.11", 8100) == "<p>Hello from a container on web1</p>\n"
    root = "/var/lib/croft/containers/hello-box"
    # Its root is a snapshot of the template, so starting costs a snapshot, not a copy.
    shown = inside(fleet, "web1", "btrfs", "subvolume", "show", root)
    parent = next(line.split(":", 1)[1].strip() for line in shown.splitlines() if "Parent UUID" in line)
    assert parent != "-"
    inside(fleet, "web1", "touch", f"{root}/www/left-behind")
    inside(fleet, "web1", "systemctl", "restart", "hello-box.service")
    assert "left-behind" not in inside(fleet, "web1", "ls", f"{root}/www")  # a fresh root each start
    # An edit to its files makes a new template, deployed like any other file.
    page = croft.site / "layers/boxes/usr/local/share/croft/rootfs/hello-box/www/index.html.j2"
    page.write_text("<p>edited in the container on {{ machine.name }}</p>\n")
    croft("deploy", "web1")
    assert get(f"{SUBNET}.11", 8100) == "<p>edited in the container on web1</p>\n"


def test_a_private_container_behind_a_socket_answers_and_gets_its_device(fleet: Fleet, croft: Croft) -> None:
    # A container with a network of its own, started by its socket's first connection (the
    # proxy joins the unit's network namespace), and a device bound into its private /dev.
    layer = croft.site / "layers/privatebox"
    tree = layer / "usr/local/share/croft/rootfs/privatebox"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/!busybox").symlink_to("/bin/busybox")
    (tree / "www").mkdir()
    (tree / "www/index.html").write_text("private box\n")
    (layer / "services").mkdir()
    (layer / "services/privatebox.toml").write_text(
        'network = "private"\n'
        'devices = ["/dev/net/tun"]\n'
        "[container]\n"
        'rootfs = "usr/local/share/croft/rootfs/privatebox"\n'
        # The page says whether the device can be opened inside the container.
        'command = ["/bin/busybox", "sh", "-c", "(: </dev/net/tun) && echo tun >>/www/index.html; '
        'exec /bin/busybox httpd -f -p 127.0.0.1:9100 -h /www"]\n'
        "[socket]\n"
        'listen = ["8110"]\n'
        "target = 9100\n"
    )
    machine = croft.site / "machines/web1.toml"
    machine.write_text(machine.read_text().replace('"boxes"]', '"boxes", "privatebox"]'))
    croft("deploy", "web1")
    assert not active(fleet, "web1", "privatebox.service")
    assert get(f"{SUBNET}.11", 8110) == "private box\ntun\n"
    assert active(fleet, "web1", "privatebox.service")
    # Its network is its own: nothing of it listens on the machine's.
    assert ":9100" not in inside(fleet, "web1", "ss", "-ltn")


def test_a_vm_boots_its_image_is_configured_from_its_seed_and_answers(fleet: Fleet, croft: Croft) -> None:
    # The image the example's VM boots: Debian with cloud-init, as qcow2.
    croft("image", "build", "cloud", timeout=1800)
    machine = croft.site / "machines/db1.toml"
    machine.write_text(machine.read_text().replace("layers = [", 'layers = ["vms", ', 1))
    croft("deploy", "db1")
    inside(fleet, "db1", "systemd-analyze", "verify", "--man=no", "hello-vm.service")
    # The machine has no KVM: the VM runs emulated (its next accelerator), so it boots slowly.
    deadline = time.monotonic() + 600
    while True:
        try:
            page = get(f"{SUBNET}.13", 8300)
            break
        except OSError:
            console = inside(
                fleet, "db1", "journalctl", "-q", "-u", "hello-vm", "-n", "30", "--no-pager", ok=False
            )
            assert time.monotonic() < deadline, f"the VM never answered; its console:\n{console}"
            time.sleep(3)
    # cloud-init read the seed: the hostname from its meta-data, the page from its user-data.
    assert page == "<p>Hello from hello-vm, a VM configured by cloud-init</p>\n"
    # Its console is in the machine's journal, under the service's name.
    assert "cloud-init" in inside(fleet, "db1", "journalctl", "-q", "-t", "hello-vm", "--no-pager")
    # On db1's service bridge instead: an address from db1's DHCP, and its name, which the
    # site's DNS (db1 itself here) answers.
    vm = croft.site / "layers/vms/services/hello-vm.toml"
    vm.write_text('network = "bridge"\n' + vm.read_text().replace('ports = ["8300:80"]\n', ""))
    croft("deploy", "db1")
    name = "hello-vm.db1.lab.home.arpa"
    deadline = time.monotonic() + 600
    while not (found := inside(fleet, "db1", "getent", "ahostsv4", name, ok=False)):
        console = inside(
            fleet, "db1", "journalctl", "-q", "-u", "hello-vm", "-n", "30", "--no-pager", ok=False
        )
        assert time.monotonic() < deadline, f"the VM never took its lease; its console:\n{console}"
        time.sleep(3)
    address = found.split()[0]
    assert address.startswith("10.98.")
    deadline = time.monotonic() + 300
    while "hello-vm" not in inside(
        fleet, "db1", "curl", "-s", "--max-time", "3", f"http://{name}/", ok=False
    ):
        assert time.monotonic() < deadline, "the VM on the bridge never answered"
        time.sleep(3)
    # Gone from the site, it stops.
    machine.write_text(machine.read_text().replace('"vms", ', ""))
    croft("deploy", "db1")
    assert not active(fleet, "db1", "hello-vm.service")
