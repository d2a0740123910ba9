"""What croft generates for the site's networks: each overlay member's WireGuard configuration
(a secret), its networkd file and unit; each firewall's nftables ruleset, which nft accepts."""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from pathlib import Path

import pytest

from croft.build import builder
from croft.site import network
from croft.site.load import load_site
from croft.systemd import bridge, firewall, generated, overlay, sandbox

OVERLAY = '[network]\ngateway = "db1"\n\n[network.overlay]\ntopology = "hub"\nhub = "db1"\nkeepalive = 25\n'


def append(file: Path, text: str) -> None:
    file.write_text(file.read_text() + "\n" + text)


def test_members_get_their_key_as_a_secret_and_the_hub_as_their_peer(example_site: Path) -> None:
    append(example_site / "site.toml", OVERLAY)
    (example_site / "vpn").mkdir()
    (example_site / "vpn/phone.toml").write_text('public_key = "' + "A" * 43 + '="\n')
    site = load_site(example_site, use_cache=False)
    results = builder.build(site, site.select([]))
    root = example_site / ".croft/build"
    web1 = (root / "web1/root" / overlay.CONF).read_text()
    db1 = (root / "db1/root" / overlay.CONF).read_text()
    addresses = network.addresses(site)
    # web1 has the hub alone, which carries the whole overlay; the hub has every member and
    # the gateway's (its own) VPN peer.
    assert web1.count("[Peer]") == 1 and "# db1" in web1 and "AllowedIPs = 10.99.0.0/24, fd" in web1
    assert "Endpoint = 10.77.0.13:51820" in web1 and "PersistentKeepalive = 25" in web1
    assert db1.count("[Peer]") == len(site.machines) - 1 + 1 and "# phone (VPN peer" in db1
    assert f"AllowedIPs = {addresses['phone'].ipv4.ip}/32" in db1
    private = (Path(overlay.key_dir(site)) / "web1.key").read_text().strip()
    assert f"PrivateKey = {private}" in web1
    assert (overlay.key_dir(site) / "web1.key").stat().st_mode & 0o777 == 0o600
    entry = results["web1"].manifest.entries[overlay.CONF]
    assert entry.secret and entry.mode == 0o600
    networkd = (root / "web1/root" / overlay.NETWORK_FILE).read_text()
    assert f"Address={addresses['web1'].ipv4}" in networkd
    assert f"DNS={addresses['db1'].ipv4.ip}" in networkd and "Domains=~lab.home.arpa" in networkd
    assert "IPForward=yes" in (root / "db1/root" / overlay.NETWORK_FILE).read_text()
    # Members ask for names over the overlay: no global resolved drop-in; the server answers
    # with the address on the network a question came in on.
    assert not (root / "web1/root/usr/local/lib/systemd/resolved.conf.d/croft.conf").exists()
    dnsmasq = (root / "db1/root/usr/local/etc/croft/dns/dnsmasq.conf").read_text()
    assert (
        f"listen-address=10.77.0.13,{addresses['db1'].ipv4.ip}" in dnsmasq and "localise-queries" in dnsmasq
    )
    # A second build makes no new key.
    builder.build(load_site(example_site, use_cache=False), site.select(["web1"]))
    assert (overlay.key_dir(site) / "web1.key").read_text().strip() == private


@pytest.mark.root
def test_the_ruleset_opens_what_services_declare_and_nft_accepts_it(example_site: Path) -> None:
    append(example_site / "site.toml", OVERLAY)
    append(
        example_site / "machines/web1.toml",
        '[firewall]\nssh_from = ["db1", "overlay", "fd00::/8"]\n\n'
        '[firewall.allow.games]\nports = ["27015-27030/udp"]\nsources = ["192.168.1.0/24"]\n',
    )
    site = load_site(example_site, use_cache=False)
    web1 = site.machines["web1"]
    ruleset = firewall.ruleset(site, web1)
    assert "ip saddr { 10.77.0.13, " in ruleset and 'iifname "croft0" tcp dport 22 accept' in ruleset
    assert "ip6 saddr { fd" in ruleset and "fd00::/8" in ruleset
    assert "tcp dport 8080 accept" in ruleset  # hello-web's ports
    assert "ip saddr { 192.168.1.0/24 } udp dport 27015-27030 accept" in ruleset
    assert "udp dport 51820 accept" in ruleset
    assert [origin for origin, _ in firewall.service_ports(site, site.machines["db1"])][-2:] == [
        "the site's names ([dns])",
        "the site's names ([dns])",
    ]
    assert not firewall.enabled(site, site.machines["web2"])
    rules = example_site / "web1.nft"
    rules.write_text(ruleset)
    # Checked by nft itself (-c: nothing is loaded), in a network namespace of its own.
    subprocess.run(["unshare", "--net", "nft", "-c", "-f", rules], check=True, capture_output=True)


def test_a_bridged_container_gets_the_machines_bridge_dhcp_and_a_name_the_site_asks_for(
    example_site: Path,
) -> None:
    append(example_site / "site.toml", '[network.overlay]\nmachines = ["db1", "web1", "web2"]\n')
    box = example_site / "layers/boxes/services/hello-box.toml"
    box.write_text('network = "bridge"\n' + box.read_text())
    site = load_site(example_site, use_cache=False)
    builder.build(site, site.select([]))
    root = example_site / ".croft/build"
    subnet = network.bridge_subnets(site)["web1"]
    assert set(network.bridge_subnets(site)) == {"web1"} and subnet.subnet_of(
        ipaddress.IPv4Network("10.98.0.0/16")
    )
    web1 = root / "web1/root"
    unit = (web1 / "usr/local/lib/systemd/system/hello-box.service").read_text()
    assert "--network-bridge=croftbr0 --resolv-conf=off" in unit
    assert "ExecStartPost=/usr/local/lib/croft/croft-container dhcp hello-box" in unit
    dnsmasq = (web1 / bridge.DNSMASQ_CONF).read_text()
    assert "dhcp-fqdn" in dnsmasq and "domain=web1.lab.home.arpa" in dnsmasq
    assert f"listen-address={next(subnet.hosts())}" in dnsmasq
    assert "IPMasquerade=ipv4" in (web1 / bridge.NETWORK_FILE).read_text()
    # The site's DNS server asks web1 for its containers' names, over the overlay, where the
    # other members route web1's bridge.
    server = (root / "db1/root/usr/local/etc/croft/dns/dnsmasq.conf").read_text()
    assert f"server=/web1.lab.home.arpa/{next(subnet.hosts())}" in server
    # dnsmasq reads its configuration only when it starts: a new server= line changes the
    # unit (a digest of the file in it), which croft restarts rather than reloads.
    unit = (root / "db1/root/usr/local/lib/systemd/system/croft-dns.service").read_text()
    assert f"sha256 {hashlib.sha256(server.encode()).hexdigest()[:16]}" in unit
    assert f"Destination={subnet}" in (root / "db1/root" / overlay.NETWORK_FILE).read_text()
    assert str(subnet) in (root / "db1/root" / overlay.CONF).read_text()
    assert not (root / "web2/root" / bridge.DNSMASQ_CONF).exists()
    assert {"dnsmasq-base", "busybox"} <= set(generated.packages(site, site.machines["web1"]))


def test_a_bridged_vm_gets_a_tap_on_the_bridge_and_is_known_by_its_mac(example_site: Path) -> None:
    vm = example_site / "layers/vms/services/hello-vm.toml"
    vm.write_text('network = "bridge"\n' + vm.read_text().replace('ports = ["8300:80"]\n', ""))
    db1 = example_site / "machines/db1.toml"
    db1.write_text(db1.read_text().replace("layers = [", 'layers = ["vms", ', 1))
    (example_site / "layers/vms/usr/local/share/croft/vm/!cloud.qcow2").unlink()
    (example_site / "layers/vms/usr/local/share/croft/vm/cloud.qcow2").write_text("an image\n")
    site = load_site(example_site, use_cache=False)
    builder.build(site, site.select(["db1"]))
    root = example_site / ".croft/build/db1/root"
    unit = (root / "usr/local/lib/systemd/system/hello-vm.service").read_text()
    mac = sandbox.vm_mac("hello-vm")
    assert "-netdev tap,id=net0,ifname=vm-hello-vm,script=no,downscript=no" in unit
    assert f"virtio-net-pci,netdev=net0,mac={mac},romfile=" in unit
    assert "ExecStartPre=/sbin/ip link set dev vm-hello-vm master croftbr0 up" in unit
    assert (
        "DeviceAllow=/dev/net/tun rw"
        in (root / "usr/local/lib/systemd/system/hello-vm.service.d/croft-sandbox.conf").read_text()
    )
    assert f"dhcp-host={mac},hello-vm" in (root / bridge.DNSMASQ_CONF).read_text()
