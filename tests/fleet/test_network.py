"""The site's networks on real machines: a WireGuard overlay (wireguard-go here: this host's
kernel has no WireGuard module) with the site's names over it, nftables firewalls, and SSH
through a bastion."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from croft.fleet.fleet import Fleet
from croft.fleet.rootfs import ssh_key
from croft.lan import BRIDGE
from croft.run import run
from croft.site import network
from croft.site.load import load_site
from tests.fleet.conftest import Croft, on
from tests.fleet.relay import Relay

pytestmark = pytest.mark.fleet

DOMAIN = "lab.home.arpa"


def answers(fleet: Fleet, machine: str, url: str) -> bool:
    """Whether `url` answers from `machine` within a few seconds."""
    status = on(fleet, machine, "curl", "-s", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}", url)
    return status.strip() not in ("", "000")


def append(croft: Croft, path: str, text: str) -> None:
    file = croft.site / path
    file.write_text(file.read_text() + "\n" + text)


def with_apt(croft: Croft, relay: Relay) -> None:
    """The fleet has no way out: machines fetch packages through the relay on the host."""
    append(croft, "site.toml", f'[packages]\nupstream = "{relay.url}"\n')


def test_machines_join_the_overlay_and_reach_each_others_services_by_name(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    with_apt(croft, relay)
    append(croft, "site.toml", '[network.overlay]\nsubnet = "10.99.0.0/24"\n')
    diff = croft("diff", "web1", ok=False).stdout
    assert "+pkg wireguard-go" in diff
    assert "croft0.conf" in diff and "PrivateKey" not in diff  # the key is a secret
    croft("deploy", timeout=600)
    site = load_site(croft.site, use_cache=False)
    overlay = network.addresses(site)

    # Each machine has its interface (wireguard-go: no kernel module here), its addresses and a
    # peer for each other machine; its key file is root's alone.
    assert len(on(fleet, "web1", "wg", "show", "croft0", "peers").split()) == 2
    assert str(overlay["web1"].ipv4) in on(fleet, "web1", "ip", "-brief", "address", "show", "croft0")
    mode = on(fleet, "web1", "stat", "-L", "-c", "%a %U", "/usr/local/etc/croft/overlay/croft0.conf")
    assert mode.strip() == "600 root"

    # The site's names, asked over the overlay, answer with overlay addresses (on the DNS
    # server too); web2's web server answers db1 over it.
    for asking in ("web1", "db1"):
        resolved = on(fleet, asking, "getent", "ahostsv4", f"web2.{DOMAIN}").split()[0]
        status = on(fleet, asking, "resolvectl", "status")
        direct = on(fleet, asking, "busybox", "nslookup", f"web2.{DOMAIN}", str(overlay["db1"].ipv4.ip))
        listening = on(fleet, "db1", "ss", "-ulpn")
        hosts = on(fleet, "db1", "cat", "/usr/local/etc/croft/dns/hosts")
        journal = on(fleet, "db1", "journalctl", "-u", "croft-dns", "--no-pager", "-n", "30")
        assert resolved == str(overlay["web2"].ipv4.ip), "\n".join(
            [asking, status[-600:], direct, listening, hosts, journal]
        )
    assert answers(fleet, "db1", f"http://web2.{DOMAIN}:8080/")
    ping = on(fleet, "web1", "busybox", "ping", "-c1", "-W3", str(overlay["web2"].ipv6.ip))
    assert " 0% packet loss" in ping

    # A machine leaves: the others' peers change (wg syncconf, no restart) and nothing else.
    site_toml = croft.site / "site.toml"
    site_toml.write_text(
        site_toml.read_text().replace(
            'subnet = "10.99.0.0/24"', 'subnet = "10.99.0.0/24"\nmachines = ["db1", "web1"]'
        )
    )
    diff = croft("diff", "web1", ok=False).stdout
    changed = [line for line in diff.splitlines() if line.startswith(("+", "-", "~"))]
    assert changed and all("croft0.conf" in line for line in changed), diff
    started = on(fleet, "web1", "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", "croft-overlay")
    croft("deploy", timeout=600)
    assert len(on(fleet, "web1", "wg", "show", "croft0", "peers").split()) == 1
    again = on(fleet, "web1", "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", "croft-overlay")
    assert again == started  # reloaded, not restarted
    assert "croft0" not in on(fleet, "web2", "ip", "-brief", "link")


def test_the_firewall_lets_in_what_services_declare_and_nothing_else(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    with_apt(croft, relay)
    append(croft, "machines/web1.toml", "[firewall]\n")
    croft("deploy", "web1", timeout=600)
    # hello-web declares 8080; a listener nobody declared is refused.
    on(fleet, "web1", "systemd-run", "--unit=probe", "busybox", "httpd", "-f", "-p", "9999", "-h", "/tmp")
    address = fleet.containers["web1"].address
    assert answers(fleet, "db1", f"http://{address}:8080/")
    assert not answers(fleet, "db1", f"http://{address}:9999/")
    assert answers(fleet, "web1", "http://127.0.0.1:9999/")  # loopback is never filtered
    ruleset = on(fleet, "web1", "nft", "list", "table", "inet", "croft")
    assert "tcp dport 8080 accept" in ruleset and "policy drop" in ruleset
    # A rule the site names opens its port; croft still gets in (a no-op deploy).
    append(croft, "machines/web1.toml", '[firewall.allow.probe]\nports = ["9999"]\nsources = ["db1"]\n')
    croft("deploy", "web1", timeout=300)
    assert answers(fleet, "db1", f"http://{address}:9999/")
    assert not answers(fleet, "web2", f"http://{address}:9999/")
    on(fleet, "web1", "systemctl", "stop", "probe")
    # A rollback loads the previous ruleset; reset leaves no table.
    croft("rollback", "web1", timeout=300)
    assert not answers(fleet, "db1", f"http://{address}:9999/")
    croft("reset", "web1", timeout=300)
    assert "croft" not in on(fleet, "web1", "nft", "list", "tables")


def test_a_machine_only_its_bastion_may_ssh_to_is_deployed_through_it(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    with_apt(croft, relay)
    web2_toml = croft.site / "machines/web2.toml"
    original = web2_toml.read_text()
    append(croft, "machines/web2.toml", '[ssh]\nvia = "db1"\n\n[firewall]\nssh_from = ["db1"]\n')
    croft("deploy", "db1", "web2", timeout=600)
    bastion = fleet.containers["db1"].address
    ruleset = on(fleet, "web2", "nft", "list", "table", "inet", "croft")
    assert f"ip saddr {bastion} tcp dport 22 accept" in ruleset
    # Directly, SSH to web2 is refused now; croft goes through db1 (diff, deploy, its
    # confirmation's new connection, rollback).
    direct = subprocess.run(
        [
            "ssh", "-i", str(ssh_key()), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ControlPath=none", f"root@{fleet.containers['web2'].address}", "true",
        ],
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    assert direct.returncode == 255
    # The bastion's sshd lets croft's user in alone, and forwards for it only to machines.
    sshd = on(fleet, "db1", "sshd", "-T")
    for setting in ("allowusers root", "allowtcpforwarding local", "x11forwarding no", "permittunnel no"):
        assert setting in sshd.splitlines(), setting
    append(croft, "machines/web2.toml", '[firewall.allow.web]\nports = ["8080"]\n')
    assert croft("diff", "web2", ok=False).returncode == 2
    croft("deploy", "web2", timeout=300)
    assert croft("diff", "web2").returncode == 0
    croft("reset", "web2", timeout=300)
    web2_toml.write_text(original)
    croft("deploy", "db1", timeout=300)  # no bastion any more: Debian's sshd settings again
    assert "x11forwarding yes" in on(fleet, "db1", "sshd", "-T").splitlines()


PEER_NETNS = "croft-vpnpeer"
PEER_ADDRESS = "10.79.0.250"


@pytest.fixture
def vpn_peer(fleet: Fleet) -> Iterator[str]:
    """A laptop on the LAN: a network namespace of its own, plugged into the fleet's bridge."""
    lan = fleet.lan
    run(["ip", "netns", "del", PEER_NETNS], check=False)
    run(["ip", "netns", "add", PEER_NETNS])
    run(
        [
            "ip",
            "link",
            "add",
            "vpnpeer",
            "netns",
            PEER_NETNS,
            "type",
            "veth",
            "peer",
            "name",
            "vpnlan",
            "netns",
            lan.name,
        ]
    )
    run(["ip", "-n", lan.name, "link", "set", "vpnlan", "master", BRIDGE, "up"])
    run(["ip", "-n", PEER_NETNS, "addr", "add", f"{PEER_ADDRESS}/{lan.network.prefixlen}", "dev", "vpnpeer"])
    run(["ip", "-n", PEER_NETNS, "link", "set", "vpnpeer", "up"])
    run(["ip", "-n", PEER_NETNS, "link", "set", "lo", "up"])
    resolv = Path("/etc/netns") / PEER_NETNS
    try:
        yield PEER_NETNS
    finally:
        run(["ip", "-n", PEER_NETNS, "link", "del", "wg0"], check=False)  # ends its wireguard-go
        run(["ip", "netns", "del", PEER_NETNS], check=False)
        shutil.rmtree(resolv, ignore_errors=True)


def in_peer(*argv: str, check: bool = True) -> str:
    return run(["ip", "netns", "exec", PEER_NETNS, *argv], check=check).stdout


def join_with(conf: Path) -> None:
    """What WireGuard's app does with the configuration: a tunnel (wireguard-go here), its
    addresses, a route to the overlay and the site's DNS."""
    settings = dict(
        line.split(" = ", 1)
        for line in conf.read_text().splitlines()
        if " = " in line and not line.startswith("#")
    )
    stripped = conf.with_name("stripped.conf")
    stripped.write_text(run(["wg-quick", "strip", conf]).stdout)
    in_peer("wireguard-go", "wg0")
    in_peer("wg", "setconf", "wg0", str(stripped))
    for address in settings["Address"].split(", "):
        in_peer("ip", "address", "add", address, "dev", "wg0")
    in_peer("ip", "link", "set", "wg0", "up")
    for allowed in settings["AllowedIPs"].split(", "):
        in_peer("ip", "route", "add", allowed, "dev", "wg0")
    server, domain = settings["DNS"].split(", ")
    resolv = Path("/etc/netns") / PEER_NETNS / "resolv.conf"
    resolv.parent.mkdir(parents=True, exist_ok=True)
    resolv.write_text(f"nameserver {server}\nsearch {domain}\n")


def test_a_vpn_peer_joins_through_the_gateway_and_reaches_services_by_name(
    fleet: Fleet, croft: Croft, relay: Relay, vpn_peer: str
) -> None:
    with_apt(croft, relay)
    append(croft, "site.toml", '[network]\ngateway = "db1"\n\n[network.overlay]\nsubnet = "10.99.0.0/24"\n')
    added = croft("vpn", "add", "laptop")
    conf = Path(added.stdout.split("laptop: ", 1)[1].split(" (", 1)[0])
    assert conf.stat().st_mode & 0o777 == 0o600 and conf.with_suffix(".png").exists()
    assert "PrivateKey" not in (croft.site / "vpn/laptop.toml").read_text()
    croft("deploy", timeout=600)

    join_with(conf)
    site = load_site(croft.site, use_cache=False)
    web2 = str(network.addresses(site)["web2"].ipv4.ip)
    assert in_peer("getent", "ahostsv4", f"web2.{DOMAIN}").split()[0] == web2
    status = in_peer(
        "curl",
        "-s",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        f"http://web2.{DOMAIN}:8080/",
        check=False,
    )
    assert status == "200"

    # Removed from the site, the peer is shut out at the gateway's next deploy.
    croft("vpn", "remove", "laptop")
    assert not conf.exists()
    croft("deploy", "db1", timeout=300)
    status = in_peer(
        "curl",
        "-s",
        "--max-time",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        f"http://{web2}:8080/",
        check=False,
    )
    assert status == "000"


def test_a_container_on_the_service_bridge_registers_its_name_site_wide(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    with_apt(croft, relay)
    append(croft, "site.toml", '[network.overlay]\nsubnet = "10.99.0.0/24"\n')
    box = croft.site / "layers/boxes/services/hello-box.toml"
    box.write_text('network = "bridge"\n' + box.read_text())
    croft("deploy", timeout=600)
    site = load_site(croft.site, use_cache=False)
    subnet = network.bridge_subnets(site)["web1"]
    # web1 gave it an address on its bridge, and its name under web1's domain, which db1
    # resolves (the site's DNS asks web1 over the overlay) and reaches it by.
    name = f"hello-box.web1.{DOMAIN}"
    found = ""
    # (Seconds: the container's DHCP, then the site's DNS asking web1; a loaded CI host is slow.)
    for _ in range(200):
        found = on(fleet, "db1", "getent", "ahostsv4", name)
        if found:
            break
        time.sleep(0.1)
    assert found and ipaddress.IPv4Address(found.split()[0]) in subnet, found
    assert answers(fleet, "db1", f"http://{name}:8100/")
    # Inside, it resolves the site's names and its own through the bridge.
    root = "/var/lib/croft/containers/hello-box"
    assert f"nameserver {next(subnet.hosts())}" in on(fleet, "web1", "cat", f"{root}/etc/resolv.conf")


def test_a_firewall_that_locks_croft_out_is_undone_by_the_machine_itself(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    with_apt(croft, relay)
    site_toml = croft.site / "site.toml"
    site_toml.write_text(
        site_toml.read_text().replace("keep_generations = 5", "keep_generations = 5\nconfirm_seconds = 8")
    )
    croft("deploy", "web2", timeout=600)
    # SSH from a documentation address only: croft's kept-open connection lives on (the ruleset
    # lets established traffic through), but no new connection gets in.
    append(croft, "machines/web2.toml", '[firewall]\nssh_from = ["192.0.2.1"]\n')
    result = croft("deploy", "web2", ok=False, timeout=600)
    assert result.returncode == 1 and "reverted itself to generation" in result.stdout, result.stdout
    assert "croft" not in on(fleet, "web2", "nft", "list", "tables")
    assert croft("verify", "web2").returncode == 0  # a new connection gets in again
