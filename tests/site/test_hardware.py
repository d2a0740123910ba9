"""The provisioning inventory is checked with the site: MACs, addresses, templates, images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from croft.errors import SiteError
from croft.site.load import load_site
from tests.images.conftest import SITE


def test_inventory_problems_name_file_line_and_fix(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns(".croft"))
    (site / "machines" / "lab2.toml").write_text(
        'address = "10.78.0.22"\n[hardware]\nworkflow = "deploy"\n'
        '[[hardware.interfaces]]\nmac = "52:54:00:78:00:21"\nip = "10.78.0.21/24"\n'
        '[[hardware.interfaces]]\nmac = "52-54"\nip = "192.168.9.9/24"\n'
    )
    (site / "site.toml").write_text(
        (site / "site.toml")
        .read_text()
        .replace('mode = "full"', 'mode = "full"\nnetboot = { base = "debian" }')
    )
    with pytest.raises(SiteError) as info:
        load_site(site, use_cache=False)
    found = str(info.value)
    lab2 = "machines/lab2.toml"
    assert f"{lab2}:3: hardware.workflow: no workflow template 'deploy'" in found
    assert f"{lab2}:5: hardware.interfaces.0.mac: MAC 52:54:00:78:00:21 is also machine lab1's" in found
    assert f"{lab2}:6: hardware.interfaces.0.ip: 10.78.0.21 is also machine lab1's" in found
    assert f"{lab2}:8: hardware.interfaces.1.mac: '52-54' is not a MAC address" in found
    assert (
        f"{lab2}:9: hardware.interfaces.1.ip: 192.168.9.9 is outside the provisioning network 10.78.0.0/24"
        in found
    )
    assert "site.toml:9: serve.netboot.base: no base image 'debian' in images/" in found


def test_arm64_machines_need_uefi_and_arm64_images(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(SITE, site, ignore=shutil.ignore_patterns(".croft"))
    arm1 = site / "machines" / "arm1.toml"
    arm1.write_text(arm1.read_text().replace('firmware = "uefi"', 'firmware = "bios"'))
    toml = site / "site.toml"
    toml.write_text(toml.read_text().replace('base = "netboot-arm64"', 'base = "netboot"'))
    with pytest.raises(SiteError) as info:
        load_site(site, use_cache=False)
    found = str(info.value)
    assert "machines/arm1.toml:6: hardware.firmware: aarch64 machines boot with UEFI" in found
    assert 'hint: set firmware = "uefi"' in found
    assert "serve.netboot_arm64.base: image 'netboot' is built for amd64, not arm64" in found
    toml.write_text(toml.read_text()[: toml.read_text().index("[serve.netboot_arm64]")])
    with pytest.raises(SiteError) as info:
        load_site(site, use_cache=False)
    assert (
        "machines/arm1.toml:5: hardware.arch: aarch64 machines netboot what [serve.netboot_arm64] names, "
        "and site.toml has none" in str(info.value)
    )
