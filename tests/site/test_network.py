"""What the site says about its networks is checked where it is written: [network.overlay],
[ssh] via, [firewall] and a service's ports; and the overlay's addresses follow from names."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from croft.site import network
from croft.site.load import load_site
from tests.site.test_load import assert_found, problems


def append(file: Path, text: str) -> None:
    file.write_text(file.read_text() + "\n" + text)


def test_the_overlay_names_machines_of_the_site_and_valid_networks(example_site: Path) -> None:
    append(
        example_site / "site.toml",
        '[network.overlay]\nsubnet = "10.99.0.0/33"\nula = "2001:db8::/64"\nport = 70000\n'
        'topology = "hub"\nhub = "gw1"\nmachines = ["db1", "web9"]\n',
    )
    found = problems(example_site)
    expected = [
        "network.overlay.subnet: '10.99.0.0/33' is not an IPv4 network",
        "network.overlay.ula: '2001:db8::/64' is not a unique local /64",
        "network.overlay.port: 70000 is not a UDP port",
        "network.overlay.hub: 'gw1' is not a machine in the overlay",
        "network.overlay.machines.1: no machine 'web9'",
    ]
    assert_found(found, expected, "site.toml:")


def test_overlay_addresses_come_from_names_and_stay_when_machines_join(example_site: Path) -> None:
    site_toml = example_site / "site.toml"
    append(site_toml, '[network.overlay]\nsubnet = "10.99.0.0/24"\n')
    site = load_site(example_site, use_cache=False)
    first = network.addresses(site)
    assert set(first) == set(site.machines)
    assert len({address.ipv4 for address in first.values()}) == len(first)
    for address in first.values():
        assert address.ipv4 in ipaddress.IPv4Network("10.99.0.0/24")
        assert address.ipv4.ip not in (
            ipaddress.IPv4Address("10.99.0.0"),
            ipaddress.IPv4Address("10.99.0.255"),
        )
        assert address.ipv6.network.prefixlen == 64 and address.ipv6.ip in ipaddress.IPv6Network("fd00::/8")
    (example_site / "machines/db2.toml").write_text('address = "10.77.0.14"\n')
    again = network.addresses(load_site(example_site, use_cache=False))
    assert {name: again[name] for name in first} == first  # (no collision among these names)
    assert network.peers(site, "db1") == sorted(set(site.machines) - {"db1"})


def test_a_hub_overlay_gives_members_the_hub_alone(example_site: Path) -> None:
    append(
        example_site / "site.toml",
        '[network.overlay]\ntopology = "hub"\nhub = "db1"\nmachines = ["db1", "web1", "web2"]\n',
    )
    site = load_site(example_site, use_cache=False)
    assert network.peers(site, "web1") == ["db1"]
    assert network.peers(site, "db1") == ["web1", "web2"]
    assert network.peers(site, "lab1") == []


def test_ssh_via_names_a_machine_and_never_loops(example_site: Path) -> None:
    web1, db1 = example_site / "machines/web1.toml", example_site / "machines/db1.toml"
    original = web1.read_text()
    web1.write_text(original + '\n[ssh]\nvia = "gw9"\n')
    assert any("web1.toml:" in p and "ssh.via: no machine 'gw9'" in p for p in problems(example_site))
    append(web1, '[ssh]\nvia = "db1"\n')
    web1.write_text(original + '\n[ssh]\nvia = "db1"\n')
    append(db1, '[ssh]\nvia = "web1"\n')
    found = problems(example_site)
    assert any("SSH to db1 would go round in a loop: db1 -> web1 -> db1" in p for p in found), found


def test_a_bastion_carries_every_connection_to_the_machines_behind_it(example_site: Path) -> None:
    site_toml = example_site / "site.toml"
    site_toml.write_text(
        site_toml.read_text().replace('[ssh]\nuser = "root"', '[ssh]\nuser = "root"\nvia = "db1"')
    )
    site = load_site(example_site, use_cache=False)
    target = site.ssh_target(site.machines["web1"])
    assert target.via is not None and target.via.host == "10.77.0.13"
    assert site.ssh_target(site.machines["db1"]).via is None  # the bastion itself: directly
    append(example_site / "machines/web2.toml", '[ssh]\nvia = ""\n')
    again = load_site(example_site, use_cache=False)
    assert again.ssh_target(again.machines["web2"]).via is None


def test_firewall_rules_and_service_ports_are_located_with_hints(example_site: Path) -> None:
    (example_site / "layers/web/layer.toml").write_text(
        'packages = []\n\n[firewall]\nssh_from = ["db1", "10.0.0.0/8", "nowhere!"]\n\n'
        '[firewall.allow.web]\nports = ["443", "http"]\nsources = ["overlay"]\n'
    )
    service = example_site / "layers/web/services/hello-web.toml"
    service.write_text(service.read_text().replace('ports = ["8080"]', 'ports = ["8080", "99999/tcp"]'))
    found = problems(example_site)
    expected = [
        "web/layer.toml:4: firewall.ssh_from.2: 'nowhere!' is not an address, a network, a machine",
        "web/layer.toml:7: firewall.allow.web.ports.1: 'http' is not a port",
        "web/layer.toml:8: firewall.allow.web.sources.0: the site has no overlay",
        "hello-web.toml:4: ports.1: service 'hello-web': '99999/tcp' is not a port",
    ]
    assert_found(found, expected)


def test_ports_parse_as_tcp_unless_they_say_udp() -> None:
    assert str(network.parse_port("443")) == "443/tcp"
    assert str(network.parse_port("53/udp")) == "53/udp"
    assert str(network.parse_port("60000-61000/udp")) == "60000-61000/udp"
    for bad in ("0", "70000", "443/sctp", "20-10", "http"):
        assert network.parse_port(bad) is None


def test_vpn_peers_need_the_gateway_and_a_wireguard_key(example_site: Path) -> None:
    (example_site / "vpn").mkdir()
    (example_site / "vpn/phone.toml").write_text('public_key = "not a key"\n')
    (example_site / "vpn/web1.toml").write_text('public_key = "' + "A" * 43 + '="\n')
    found = problems(example_site)
    assert any("vpn/phone.toml:1: public_key: not a WireGuard public key" in p for p in found), found
    assert any("vpn/phone.toml: a VPN peer without a gateway" in p and "[network]" in p for p in found)
    assert any("vpn/web1.toml: 'web1' is not a peer name of its own (a machine has it)" in p for p in found)
    append(example_site / "site.toml", '[network]\ngateway = "db1"\n')
    assert any("network.gateway: a VPN gateway needs the overlay" in p for p in problems(example_site))


def test_vpn_peers_take_addresses_after_the_machines(example_site: Path) -> None:
    append(
        example_site / "site.toml",
        '[network]\ngateway = "db1"\n\n[network.overlay]\nsubnet = "10.99.0.0/28"\n',
    )
    before = network.addresses(load_site(example_site, use_cache=False))
    (example_site / "vpn").mkdir()
    for name in ("phone", "laptop", "tablet"):
        (example_site / f"vpn/{name}.toml").write_text('public_key = "' + "A" * 43 + '="\n')
    after = network.addresses(load_site(example_site, use_cache=False))
    assert {name: after[name] for name in before} == before  # no machine moved
    assert len({address.ipv4 for address in after.values()}) == 8


def test_only_a_container_goes_on_the_service_bridge(example_site: Path) -> None:
    service = example_site / "layers/web/services/hello-web.toml"
    service.write_text('network = "bridge"\n' + service.read_text())
    [problem] = problems(example_site)
    assert (
        "hello-web.toml:1: network: service 'hello-web': only a container or a VM goes on the service bridge"
        in problem
    )
    append(example_site / "site.toml", '[network]\nservices = "10.98.0.0/25"\n')
    service.write_text(service.read_text().replace('network = "bridge"\n', ""))
    box = example_site / "layers/boxes/services/hello-box.toml"
    box.write_text('network = "bridge"\n' + box.read_text())
    [problem] = problems(example_site)
    assert "network.services: 10.98.0.0/25 has too few /24 networks" in problem
