"""dnsmasq's configuration as croft serve writes it (the real dnsmasq runs in test_api and
test_provision)."""

from __future__ import annotations

from pathlib import Path

from croft.serve import dnsmasq
from croft.site.model import ServeConfig

BOOT_URL = "http://10.9.0.1:8080/boot/${mac:hexhyp}.ipxe"


def lines(arm64: bool = False, **fields: object) -> list[str]:
    serve = ServeConfig(address="10.9.0.1", interface="br0", network="10.9.0.0/24", **fields)  # type: ignore[arg-type]
    return dnsmasq.config(serve, Path("/run/x"), BOOT_URL, arm64).splitlines()


def test_full_mode_gives_known_machines_their_address_and_iPXE_its_script() -> None:
    config = lines(mode="full")
    assert "dhcp-range=10.9.0.0,static,255.255.255.0,1h" in config
    assert "dhcp-option=option:router" in config  # none, rather than croft itself
    assert f"dhcp-boot=tag:netboot,tag:ipxe,{BOOT_URL}" in config
    assert "dhcp-boot=tag:netboot,tag:!ipxe,tag:!efi-x86_64,tag:!efi-arm64,undionly.kpxe" in config
    assert not any(line.startswith("enable-ra") for line in config)


def test_proxy_mode_leaves_addresses_to_the_router() -> None:
    config = lines(mode="proxy", discovery=True)
    assert "dhcp-range=10.9.0.0,proxy,255.255.255.0" in config
    assert "pxe-service=tag:!ipxe,X86-64_EFI,croft,ipxe" in config  # discovery: every machine


def test_router_advertisements_offer_no_route() -> None:
    config = lines(mode="full", router_advertisements=True)
    assert "enable-ra" in config
    assert "dhcp-range=::,constructor:br0,ra-only" in config
    assert "ra-param=br0,0,0" in config


def test_arm64_machines_get_an_ipxe_for_arm64_or_nothing() -> None:
    without = lines(mode="full")
    # Never the BIOS binary to an arm64 machine.
    assert "dhcp-boot=tag:netboot,tag:!ipxe,tag:!efi-x86_64,tag:!efi-arm64,undionly.kpxe" in without
    assert not any("arm64.efi" in line for line in without)
    full, proxy = lines(mode="full", arm64=True), lines(mode="proxy", arm64=True)
    assert "dhcp-boot=tag:netboot,tag:!ipxe,tag:efi-arm64,ipxe-arm64.efi" in full
    assert "pxe-service=tag:netboot,tag:!ipxe,ARM64_EFI,croft,ipxe-arm64" in proxy
