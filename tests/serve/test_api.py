"""croft serve's protocols against the real server process (and real dnsmasq) in a network
namespace: DHCP answers, iPXE scripts, metadata, the agent API driven by croft's agent, the
admin API driven by the CLI."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from croft.images.store import ImageManifest
from croft.lan import Lan
from croft.run import spawn
from tests.images.conftest import SITE

pytestmark = pytest.mark.images

NETNS = "croftapitest"
SERVER = "http://10.78.0.1:8080"
LAB1_MAC = "52:54:00:78:00:21"
HOST_MAC = "52:54:00:78:00:99"  # lab2's interface: the address the tests' requests come from
QUICK = """\
name: quick
global_timeout: 120
tasks:
  - name: steps
    actions:
      - name: first
        command: echo first on {{ machine.name }}
      - name: long
        command: echo long starts; sleep 4; echo long ends
      - name: last
        command: echo last
"""
SLOW = """\
name: slow
tasks:
  - name: steps
    actions:
      - name: stuck
        command: echo before the wait; sleep 60
        timeout: 2
"""


class Serve:
    """`croft serve` for a site, as a process in the namespace, that a test can kill and restart."""

    def __init__(self, site: Path, log: Path) -> None:
        self.site, self.log = site, log
        self.process: subprocess.Popen[bytes] | None = None

    def croft(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "croft", "--site", str(self.site), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok:
            assert result.returncode == 0, f"croft {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    def start(self) -> None:
        argv = [
            "ip",
            "netns",
            "exec",
            NETNS,
            sys.executable,
            "-m",
            "croft",
            "--site",
            str(self.site),
            "serve",
        ]
        mark = self.log.read_text().count("croft serve: http://") if self.log.exists() else 0
        self.process = spawn(argv, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.log.read_text().count("croft serve: http://") == mark:
            assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # no clean shutdown: as a crash would
        self.process.wait()

    def dnsmasqs(self) -> list[int]:
        """The dnsmasq processes running with this site's configuration."""
        conf = f"--conf-file={self.site}/.croft/serve/dnsmasq.conf".encode()
        found = []
        for proc in Path("/proc").iterdir():
            try:
                named = (proc / "comm").read_text().strip() == "dnsmasq"
                if named and conf in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except (OSError, ValueError):
                continue
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def serve(images: dict[str, ImageManifest], tmp_path: Path) -> Iterator[Serve]:
    site = tmp_path / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns(".croft"))
    (site / ".croft").mkdir()
    (site / ".croft" / "images").symlink_to(SITE / ".croft" / "images")
    (site / "workflows" / "quick.yaml").write_text(QUICK)
    (site / "workflows" / "slow.yaml").write_text(SLOW)
    (site / "machines" / "lab2.toml").write_text(
        f'address = "10.78.0.254"\n[hardware]\nworkflow = "quick"\n'
        f'[[hardware.interfaces]]\nmac = "{HOST_MAC}"\nip = "10.78.0.254/24"\nhostname = "lab2"\n'
        '[hardware.metadata]\nuser_data = "#cloud-config\\nhostname: lab2\\n"\ntags = { role = "api" }\n'
    )
    lan = Lan(NETNS, ipaddress.IPv4Network("10.78.0.0/24"), "10.78.0.254", bridge_address="10.78.0.1")
    lan.destroy()
    lan.create()
    server = Serve(site, tmp_path / "serve.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        lan.destroy()


def get(path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        SERVER + path, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def dhcp(mac: str, arch: int | None = None) -> dict[str, str]:
    """What dnsmasq answers a DHCP client with this MAC (and client architecture, DHCP option 93)
    on the LAN: {} when it does not answer."""
    ns = ["ip", "-n", NETNS]
    subprocess.run([*ns, "link", "del", "dhcpc"], capture_output=True)
    subprocess.run(
        [*ns, "link", "add", "dhcpc", "address", mac, "type", "veth", "peer", "name", "dhcpc-br"], check=True
    )
    subprocess.run([*ns, "link", "set", "dhcpc-br", "master", "br0", "up"], check=True)
    subprocess.run([*ns, "link", "set", "dhcpc", "up"], check=True)
    script = '#!/bin/sh\n[ "$1" = bound ] && echo "ip=$ip boot_file=$boot_file"\nexit 0\n'
    hook = Path("/run/croft-dhcp-test.sh")
    hook.write_text(script)
    hook.chmod(0o755)
    option = ["-x", f"0x5d:{arch:04x}"] if arch is not None else []
    result = subprocess.run(
        ["ip", "netns", "exec", NETNS, "busybox", "udhcpc", "-i", "dhcpc", "-n", "-q", "-f",
         "-t", "2", "-T", "1", "-s", str(hook), *option],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    subprocess.run([*ns, "link", "del", "dhcpc"], capture_output=True)
    match = re.search(r"ip=(\S*) boot_file=(\S*)", result.stdout)
    return {"ip": match.group(1), "boot_file": match.group(2)} if match else {}


def test_dhcp_answers_known_machines_and_their_script_boots_those_with_a_workflow(serve: Serve) -> None:
    assert dhcp("52:54:00:78:00:77") == {}  # not in the inventory: no answer at all
    # A known machine gets iPXE; its script says whether to netboot (the MAAS model).
    assert dhcp(LAB1_MAC) == {"ip": "10.78.0.21", "boot_file": "undionly.kpxe"}
    assert "no workflow to run" in get(f"/boot/{LAB1_MAC}.ipxe")[1]
    # allow_netboot = false: not even iPXE.
    lab1 = serve.site / "machines" / "lab1.toml"
    lab1.write_text(lab1.read_text().replace("[hardware]\n", "[hardware]\nallow_netboot = false\n"))
    deadline = time.monotonic() + 15
    while dhcp(LAB1_MAC).get("boot_file") != "":
        assert time.monotonic() < deadline, serve.log.read_text()
        time.sleep(0.5)


def test_one_dnsmasq_serves_while_workflows_come_and_go(serve: Serve) -> None:
    # dnsmasq 2.90 aborted when its hosts were changed under a lease tagged for netboot. Now
    # workflows never touch dnsmasq's configuration: five rounds, one process.
    (pid,) = serve.dnsmasqs()
    for _ in range(5):
        assert dhcp(LAB1_MAC)["boot_file"] == "undionly.kpxe"  # a lease, tagged for netboot
        workflow = serve.croft("workflow", "create", "lab1").stdout.split()[1].rstrip(":")
        time.sleep(1.2)  # a tick of the server
        serve.croft("workflow", "cancel", workflow)
        time.sleep(1.2)
    assert serve.dnsmasqs() == [pid]
    assert "dnsmasq exited" not in serve.log.read_text()


def test_a_killed_server_leaves_no_dnsmasq_and_a_restart_runs_one(serve: Serve) -> None:
    assert len(serve.dnsmasqs()) == 1
    serve.kill()
    deadline = time.monotonic() + 10
    while serve.dnsmasqs():
        assert time.monotonic() < deadline, "dnsmasq outlived croft serve"
        time.sleep(0.2)
    serve.start()
    assert len(serve.dnsmasqs()) == 1


def test_the_state_is_the_servers_alone(serve: Serve) -> None:
    serve.croft("workflow", "create", "lab2")
    state = serve.site / ".croft" / "serve"
    assert state.stat().st_mode & 0o777 == 0o700
    for name in ("workflows.db", "admin-token", "url", "dnsmasq.log", "dnsmasq.conf"):
        assert (state / name).stat().st_mode & 0o077 == 0, name


def test_boot_scripts(serve: Serve) -> None:
    status, script = get(f"/boot/{LAB1_MAC}.ipxe")
    assert status == 200 and "no workflow to run" in script and "\nexit 1\n" in script
    assert "is not in the inventory" in get("/boot/52:54:00:00:00:01.ipxe")[1]
    # These requests come from lab2's address: lab1's workflow is not handed to it.
    serve.croft("workflow", "create", "lab1")
    script = get(f"/boot/{LAB1_MAC}.ipxe")[1]
    assert "croft.token" not in script and "lab1 has the address 10.78.0.21, not 10.78.0.254" in script
    serve.croft("workflow", "create", "lab2")
    script = get(f"/boot/{HOST_MAC}.ipxe")[1]
    assert re.search(
        r"kernel http://10\.78\.0\.1:8080/artifacts/[0-9a-f]{64}#sha256=[0-9a-f]{64} initrd=initrd.img",
        script,
    )
    assert re.search(
        r" croft\.token=[0-9a-f]{32} croft\.base=\S+#sha256=[0-9a-f]{64} croft\.overlays=\S+", script
    )


def test_metadata_is_answered_only_to_its_machine(serve: Serve) -> None:
    # These requests come from 10.78.0.254, lab2's address.
    assert get("/latest/meta-data/instance-id") == (200, "lab2")
    assert get("/latest/meta-data/tags/instance/role") == (200, "api")
    assert get("/latest/user-data") == (200, "#cloud-config\nhostname: lab2\n")
    assert '"local-hostname": "lab2"' in get("/nocloud/meta-data")[1]
    assert '"macaddress": "52:54:00:78:00:99"' in get("/nocloud/network-config")[1]
    # From an address no machine has (the server's own, inside the namespace): 404.
    result = subprocess.run(
        ["ip", "netns", "exec", NETNS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
         f"{SERVER}/latest/meta-data/instance-id"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.stdout == "404"


def agent_token(mac: str) -> str:
    match = re.search(r"croft\.token=(\w+)", get(f"/boot/{mac}.ipxe")[1])
    assert match, "no workflow token in the boot script"
    return match.group(1)


def run_agent(token: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CROFT_SERVER": SERVER, "CROFT_TOKEN": token}
    return subprocess.Popen(
        [sys.executable, "-m", "croft.agent.agent"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def wait_status(serve: Serve, workflow: str, wanted: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        shown = serve.croft("workflow", "show", workflow).stdout
        if f"lab2 (quick) {wanted}" in shown or f"lab2 (slow) {wanted}" in shown:
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)


def test_the_agent_runs_a_workflow_through_a_server_crash(serve: Serve, tmp_path: Path) -> None:
    workflow = serve.croft("workflow", "create", "lab2").stdout.split()[1].rstrip(":")
    agent = run_agent(agent_token(HOST_MAC), tmp_path / "agent.log")
    try:
        deadline = time.monotonic() + 30
        while "steps/long" not in serve.croft("workflow", "logs", workflow).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        serve.kill()  # mid-action: the agent keeps running it, and retries its reports
        time.sleep(2)
        serve.start()
        shown = wait_status(serve, workflow, "success")
        assert agent.wait(30) == 0  # the workflow is finished: the agent exits
    finally:
        agent.kill()
    assert re.search(r"steps/long\s+success", shown), shown
    logs = serve.croft("workflow", "logs", workflow).stdout
    assert "first on lab2" in logs and "long ends" in logs and "last" in logs


def test_an_action_over_its_timeout_ends_the_workflow_with_its_logs(serve: Serve, tmp_path: Path) -> None:
    workflow = serve.croft("workflow", "create", "lab2", "slow").stdout.split()[1].rstrip(":")
    agent = run_agent(agent_token(HOST_MAC), tmp_path / "agent.log")
    try:
        shown = wait_status(serve, workflow, "timeout")
        assert agent.wait(30) == 0
    finally:
        agent.kill()
    assert re.search(r"steps/stuck\s+timeout .* killed after 2 s", shown), shown
    assert "before the wait" in serve.croft("workflow", "logs", workflow).stdout
    # retry runs it again from the action that did not succeed
    assert "lab2 (slow) pending" in serve.croft("workflow", "retry", workflow).stdout
    assert "lab2 (slow) cancelled" in serve.croft("workflow", "cancel", workflow).stdout


def test_tokens_are_checked(serve: Serve) -> None:
    assert get("/agent/v1/next", token="0" * 32)[0] == 401
    assert get("/agent/v1/next")[0] == 401
    assert get("/admin/v1/workflows", token="wrong")[0] == 401
    assert serve.croft("workflow", "list").returncode == 0


def test_a_template_with_an_unknown_action_is_refused(serve: Serve) -> None:
    (serve.site / "workflows" / "odd.yaml").write_text(
        "name: odd\ntasks:\n  - name: t\n    actions:\n      - name: a\n        action: format-everything\n"
    )
    result = serve.croft("workflow", "create", "lab2", "odd", ok=False)
    assert result.returncode != 0
    assert "unknown action 'format-everything'" in result.stderr
    assert "built-in actions: wipe-disk, partition" in result.stderr


def test_artifacts_answer_range_and_head_requests(serve: Serve) -> None:
    digest = (SITE / ".croft" / "images" / "initrd.json").read_text().split('"sha256": "')[1][:64]
    request = urllib.request.Request(f"{SERVER}/artifacts/{digest}", headers={"Range": "bytes=0-3"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206 and len(response.read()) == 4
    head = urllib.request.Request(f"{SERVER}/artifacts/{digest}", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as response:
        assert int(response.headers["Content-Length"]) > 0 and response.read() == b""
    assert get("/artifacts/" + "0" * 64)[0] == 404


def test_logs_follow_until_the_workflow_ends(serve: Serve, tmp_path: Path) -> None:
    workflow = serve.croft("workflow", "create", "lab2").stdout.split()[1].rstrip(":")
    follow = subprocess.Popen(
        [sys.executable, "-m", "croft", "--site", str(serve.site), "workflow", "logs", "-f", workflow],
        stdout=subprocess.PIPE,
        text=True,
    )
    agent = run_agent(agent_token(HOST_MAC), tmp_path / "agent.log")
    try:
        output, _ = follow.communicate(timeout=60)
    finally:
        agent.kill()
        follow.kill()
    assert "==> steps/first\nfirst on lab2\n" in output and output.endswith("==> workflow success\n")


def tftp_get(name: str, into: Path) -> bytes:
    """The file croft serve's dnsmasq sends for `name`; b"" when it sends none."""
    into.unlink(missing_ok=True)
    subprocess.run(
        ["ip", "netns", "exec", NETNS, "busybox", "tftp", "-g", "-r", name, "-l", str(into), "10.78.0.1"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return into.read_bytes() if into.exists() else b""


def test_the_client_architecture_picks_the_ipxe_binary(serve: Serve, tmp_path: Path) -> None:
    assert dhcp(LAB1_MAC, arch=0)["boot_file"] == "undionly.kpxe"  # BIOS
    assert dhcp(LAB1_MAC, arch=7)["boot_file"] == "ipxe.efi"  # x86-64 UEFI
    # arm64 UEFI: the site netboots arm64 machines, so croft serve hands out Debian's arm64
    # iPXE, by TFTP too.
    assert dhcp(LAB1_MAC, arch=11)["boot_file"] == "ipxe-arm64.efi"
    pe = tftp_get("ipxe-arm64.efi", tmp_path / "fetched.efi")
    header = int.from_bytes(pe[0x3C:0x40], "little")
    assert pe[:2] == b"MZ" and pe[header : header + 4] == b"PE\0\0"
    assert int.from_bytes(pe[header + 4 : header + 6], "little") == 0xAA64  # IMAGE_FILE_MACHINE_ARM64
    # A site that names its own arm64 iPXE gets that one, once croft serve sees the change.
    (serve.site / "snp-arm64.efi").write_bytes(b"an arm64 iPXE\n")
    toml = serve.site / "site.toml"
    toml.write_text(toml.read_text().replace('mode = "full"', 'mode = "full"\nipxe_arm64 = "snp-arm64.efi"'))
    deadline = time.monotonic() + 15
    while tftp_get("ipxe-arm64.efi", tmp_path / "fetched.efi") != b"an arm64 iPXE\n":
        assert time.monotonic() < deadline, serve.log.read_text()
        time.sleep(0.5)


def test_discovery_netboots_unknown_machines_after_a_live_change(serve: Serve) -> None:
    unknown = "52:54:00:00:00:42"
    assert "is not in the inventory" in get(f"/boot/{unknown}.ipxe")[1]
    toml = serve.site / "site.toml"
    toml.write_text(toml.read_text().replace('mode = "full"', 'mode = "full"\ndiscovery = true'))
    deadline = time.monotonic() + 15
    while "kernel " not in get(f"/boot/{unknown}.ipxe")[1]:
        assert time.monotonic() < deadline, serve.log.read_text()
        time.sleep(0.5)
    assert "croft.token=none" in get(f"/boot/{unknown}.ipxe")[1]
    # iPXE's ${buildarch} picks the netboot environment of a machine the inventory does not know.
    assert "console=ttyS0" in get(f"/boot/{unknown}.ipxe?arch=x86_64")[1]
    arm64 = get(f"/boot/{unknown}.ipxe?arch=arm64")[1]
    kernel = json.loads((SITE / ".croft" / "images" / "initrd-arm64.json").read_text())["artifacts"]["kernel"]
    assert f"/artifacts/{kernel['sha256']}" in arm64 and "console=ttyAMA0" in arm64
    assert "dnsmasq restarted" in serve.log.read_text()
    conf = (serve.site / ".croft" / "serve" / "dnsmasq.conf").read_text()
    assert "dhcp-boot=tag:ipxe," in conf  # no longer only for tagged (known) machines
