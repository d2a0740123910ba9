"""Debian packages as code, against real apt: a layer's packages install through the site's
package cache (apt-cacher-ng on db1) before its units start, leave when no layer wants them, and
only croft's ever leave."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from croft.fleet.fleet import Fleet
from tests.fleet.conftest import Croft, on
from tests.fleet.relay import Relay, static_server

pytestmark = pytest.mark.fleet

REPOSITORY_PORT = 8143
ONCE = """[Unit]
Description=Says hello, with the program the package brings

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/hello

[Install]
WantedBy=multi-user.target
"""


def installed(fleet: Fleet, machine: str, package: str) -> bool:
    status = on(fleet, machine, "dpkg-query", "-W", "-f=${db:Status-Status}", package)
    return status.strip() == "installed"


def with_tools_layer(croft: Croft, packages: list[str], *, unit: bool = True) -> None:
    layer = croft.site / "layers" / "tools"
    units = layer / "usr/local/lib/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    (units / "hello-once.service").unlink(missing_ok=True)
    if unit:
        (units / "hello-once.service").write_text(ONCE)
    (layer / "layer.toml").write_text(f"packages = {packages!r}\n".replace("'", '"'))
    for machine in ("web1", "web2"):
        toml = croft.site / "machines" / f"{machine}.toml"
        if '"tools"' not in toml.read_text():
            toml.write_text(toml.read_text().replace("layers = [", 'layers = ["tools", '))


def timed(croft: Croft, *args: str) -> float:
    start = time.monotonic()
    croft(*args, timeout=600)
    return time.monotonic() - start


def test_packages_install_through_the_cache_and_leave_with_their_layer(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    site_toml = croft.site / "site.toml"
    site_toml.write_text(site_toml.read_text() + f'\n[packages]\ncache = "db1"\nupstream = "{relay.url}"\n')
    # "curl" is on the machines already: croft never installed it, so it never removes it.
    with_tools_layer(croft, ["hello", "curl"])
    diff = croft("diff", "web1", ok=False).stdout
    assert "+pkg hello" in diff
    assert "+ /etc/apt/apt.conf.d/50croft-proxy -> /usr/local/etc/apt/apt.conf.d/50croft-proxy" in diff

    cache = timed(croft, "deploy", "db1")
    assert on(fleet, "db1", "systemctl", "is-active", "apt-cacher-ng.service").strip() == "active"
    # In croft's sandbox (its drop-in), with its cache on the service's state.
    drop_ins = on(fleet, "db1", "systemctl", "show", "-P", "DropInPaths", "apt-cacher-ng.service")
    assert "croft-sandbox.conf" in drop_ins and "croft-package-cache.conf" in drop_ins
    assert on(fleet, "db1", "ls", "/var/lib/croft/state/package-cache/current/var/cache/apt-cacher-ng")

    # The package is there before its unit starts, in the same deploy.
    first = timed(croft, "deploy", "web1")
    assert installed(fleet, "web1", "hello")
    assert on(fleet, "web1", "systemctl", "is-active", "hello-once.service").strip() == "active"
    assert "Hello, world!" in on(fleet, "web1", "journalctl", "-u", "hello-once.service", "--no-pager")
    deb = [path for path in relay.asked if path.endswith(".deb") and "/hello_" in path]
    assert len(deb) == 1 and relay.asked[deb[0]] == 1

    # The second machine's comes from the cache on the LAN, not from the mirror.
    second = timed(croft, "deploy", "web2")
    assert installed(fleet, "web2", "hello")
    assert relay.asked[deb[0]] == 1
    print(f"\ncache on db1 {cache:.1f} s; hello: web1 {first:.1f} s (mirror), web2 {second:.1f} s (cache)")

    # Every apt on the machines goes through the cache, not only croft's: a link croft keeps in
    # /etc/apt (the fleet has no other way to the mirror).
    proxy_conf = "/usr/local/etc/apt/apt.conf.d/50croft-proxy"
    assert on(fleet, "web1", "readlink", "/etc/apt/apt.conf.d/50croft-proxy").strip() == proxy_conf
    on(fleet, "web1", "sh", "-c", "cd /tmp && apt-get download -q hello")
    assert on(fleet, "web1", "sh", "-c", "ls /tmp/hello_*.deb")
    croft("verify", "web1")

    # A deploy that changes files only runs no apt at all.
    history = on(fleet, "web1", "stat", "-c", "%s %Y", "/var/log/apt/history.log")
    asked = sum(relay.asked.values())
    (croft.site / "layers/tools/usr/local/lib/hello-note").parent.mkdir(parents=True, exist_ok=True)
    (croft.site / "layers/tools/usr/local/lib/hello-note").write_text("a file, no package\n")
    croft("deploy", "web1")
    assert on(fleet, "web1", "stat", "-c", "%s %Y", "/var/log/apt/history.log") == history
    assert sum(relay.asked.values()) == asked

    # Out of the layer, out of the machine: what croft installed, never what was there.
    with_tools_layer(croft, [], unit=False)
    assert "-pkg hello" in croft("diff", "web1", ok=False).stdout
    croft("deploy", "web1")
    assert not installed(fleet, "web1", "hello")
    assert installed(fleet, "web1", "curl")

    # croft reset returns the machine to its distribution: croft's packages go too.
    croft("reset", "web2")
    assert not installed(fleet, "web2", "hello")
    assert installed(fleet, "web2", "curl")
    assert "50croft-proxy" not in on(fleet, "web2", "ls", "/etc/apt/apt.conf.d/")


def test_an_unknown_package_is_named_with_its_layer_and_nothing_changes(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    site_toml = croft.site / "site.toml"
    site_toml.write_text(site_toml.read_text() + f'\n[packages]\nupstream = "{relay.url}"\n')
    croft("deploy", "web1")
    live = on(fleet, "web1", "readlink", "/usr/local/croft/live")
    with_tools_layer(croft, ["croft-no-such-package"])
    result = croft("deploy", "web1", ok=False)
    assert result.returncode != 0
    assert "croft-no-such-package" in result.stdout and "layer tools" in result.stdout, result.stdout
    assert on(fleet, "web1", "readlink", "/usr/local/croft/live") == live
    assert "hello-once" not in on(fleet, "web1", "systemctl", "list-units", "--all", "--plain", "--no-legend")


def test_a_site_package_installs_from_the_signed_repository_and_a_tampered_index_is_refused(
    fleet: Fleet, croft: Croft, relay: Relay, tmp_path: Path
) -> None:
    site = croft.site
    tree = site / "packages/croft-hello"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/croft-hello").write_text('#!/bin/sh\necho "hello from the site\'s repository"\n')
    (tree / "usr/bin/croft-hello").chmod(0o755)
    # It depends on a Debian package: both come in one install, from two repositories.
    (site / "packages/croft-hello.toml").write_text('version = "1.0-1"\ndepends = ["hello"]\n')
    with static_server(fleet.lan.host_address, REPOSITORY_PORT, site / ".croft/repository") as url:
        (site / "site.toml").write_text(
            (site / "site.toml").read_text()
            + f'\n[packages]\nupstream = "{relay.url}"\nrepository = "{url}"\n'
            + f'signing_key = "{tmp_path / "keys/apt-signing-key.asc"}"\n'
        )
        assert "built" in croft("repo", "build").stdout
        assert (tmp_path / "keys/apt-signing-key.asc").stat().st_mode & 0o777 == 0o600
        with_tools_layer(croft, ["croft-hello"], unit=False)
        croft("deploy", "web1")
        assert installed(fleet, "web1", "croft-hello") and installed(fleet, "web1", "hello")
        assert "hello from the site's repository" in on(fleet, "web1", "croft-hello")
        source = "/usr/local/etc/apt/sources.list.d/croft.sources"
        assert on(fleet, "web1", "readlink", "/etc/apt/sources.list.d/croft.sources").strip() == source

        # An index changed after it was signed: apt refuses it, and the deploy changes nothing.
        packages = site / ".croft/repository/dists/croft/main/binary-amd64/Packages"
        packages.write_text(packages.read_text().replace("Version: 1.0-1", "Version: 1.0-2"))
        (packages.parent / "Packages.gz").unlink()
        live = on(fleet, "web2", "readlink", "/usr/local/croft/live")
        result = croft("deploy", "web2", ok=False)
        assert result.returncode != 0 and "apt-get update failed" in result.stdout, result.stdout
        apt_log = on(fleet, "web2", "cat", "/usr/local/croft/apt.log")
        assert "Hash Sum mismatch" in apt_log or "unexpected size" in apt_log, apt_log
        assert on(fleet, "web2", "readlink", "/usr/local/croft/live") == live
        assert not installed(fleet, "web2", "croft-hello")

        # Reset: the machine is its distribution's again, no source or key of the site's left.
        croft("reset", "web1")
        assert not installed(fleet, "web1", "croft-hello")
        assert "croft" not in on(fleet, "web1", "ls", "/etc/apt/sources.list.d/")


def site_package(site: Path, version: str) -> None:
    tree = site / "packages/croft-hello"
    (tree / "usr/bin").mkdir(parents=True, exist_ok=True)
    (tree / "usr/bin/croft-hello").write_text(
        f'#!/bin/sh\necho "hello from the site\'s repository, {version}"\n'
    )
    (tree / "usr/bin/croft-hello").chmod(0o755)
    (site / "packages/croft-hello.toml").write_text(f'version = "{version}"\ndepends = ["hello"]\n')


def test_background_upgrades_bring_a_new_version_of_the_sites_package(
    fleet: Fleet, croft: Croft, relay: Relay, tmp_path: Path
) -> None:
    site = croft.site
    site_package(site, "1.0-1")
    with static_server(fleet.lan.host_address, REPOSITORY_PORT, site / ".croft/repository") as url:
        (site / "site.toml").write_text(
            (site / "site.toml").read_text()
            + f'\n[packages]\nupstream = "{relay.url}"\nrepository = "{url}"\n'
            # (The fleet's machines have no security source: only the site's packages upgrade.)
            + 'upgrades = "security"\nreboot = "04:00"\n'
            + f'signing_key = "{tmp_path / "apt-signing-key.asc"}"\n'
        )
        croft("repo", "build")
        with_tools_layer(croft, ["croft-hello"], unit=False)
        croft("deploy", "web1")
        assert installed(fleet, "web1", "unattended-upgrades")
        policy = on(fleet, "web1", "apt-config", "dump", "Unattended-Upgrade")
        assert 'Origins-Pattern:: "origin=croft homelab,codename=croft"' in policy, policy
        assert "label=Debian-Security" in policy and 'Automatic-Reboot-Time "04:00"' in policy
        assert (
            on(fleet, "web1", "apt-config", "dump", "APT::Periodic::Unattended-Upgrade")
            .strip()
            .endswith('"1";')
        )

        # A new version published: the machine takes it by itself, as its apt-daily timers do
        # (the lists refreshed, then unattended-upgrade).
        site_package(site, "1.0-2")
        assert "croft-hello: built" in croft("repo", "build").stdout
        on(fleet, "web1", "apt-get", "-q", "update")
        on(fleet, "web1", "unattended-upgrade")
        version = on(fleet, "web1", "dpkg-query", "-W", "-f=${Version}", "croft-hello")
        assert version == "1.0-2", on(
            fleet, "web1", "tail", "-20", "/var/log/unattended-upgrades/unattended-upgrades.log"
        )

        # The daily pipeline: check, publish, verify every machine; drift fails it.
        report = croft("daily").stdout
        assert "repository: 1 packages published (nothing new built)" in report, report
        assert "web1: generation" in report and "matches" in report
        on(fleet, "web1", "rm", "/usr/local/croft/live/root/usr/local/lib/systemd/system/hello-web.service")
        drifted = croft("daily", ok=False)
        assert drifted.returncode == 1
        assert "missing: /usr/local/lib/systemd/system/hello-web.service" in drifted.stdout, drifted.stdout
