"""The package cache croft generates, and the packages its generators pull in."""

from __future__ import annotations

from pathlib import Path

from croft.build import builder
from croft.site.load import load_site
from croft.systemd import generated, package_cache, upgrades


def with_cache(site: Path, upstream: str = "") -> None:
    extra = f'upstream = "{upstream}"\n' if upstream else ""
    (site / "site.toml").write_text(
        (site / "site.toml").read_text() + f'\n[packages]\ncache = "db1"\n{extra}'
    )


def test_the_cache_machine_runs_apt_cacher_ng_sandboxed_and_the_others_fetch_through_it(
    example_site: Path,
) -> None:
    with_cache(example_site, "http://proxy.lan:3128")
    site = load_site(example_site, use_cache=False)
    builder.build(site, site.select([]))
    db1 = example_site / ".croft/build/db1/root/usr/local/lib/systemd/system/apt-cacher-ng.service.d"
    assert "ProtectSystem=strict" in (db1 / "croft-sandbox.conf").read_text()
    assert (
        "BindPaths=/var/lib/croft/state/package-cache/current/var/cache/apt-cacher-ng:"
        in (db1 / "croft-sandbox.conf").read_text()
    )
    command = (db1 / "croft-package-cache.conf").read_text()
    assert "ExecStart=\n" in command and "Port=3142 Proxy=http://proxy.lan:3128" in command
    assert not (
        example_site / ".croft/build/web1/root/usr/local/lib/systemd/system/apt-cacher-ng.service.d"
    ).exists()
    machines = site.machines
    assert package_cache.apt_proxy(site, machines["web1"]) == "http://10.77.0.13:3142/"
    assert package_cache.apt_proxy(site, machines["db1"]) == "http://proxy.lan:3128"
    assert "apt-cacher-ng" in generated.packages(site, machines["db1"])
    assert "apt-cacher-ng" not in generated.packages(site, machines["web1"])


def test_what_generated_units_run_is_installed_with_them(example_site: Path) -> None:
    site = load_site(example_site, use_cache=False)
    web1, db1 = site.machines["web1"], site.machines["db1"]
    origins = generated.package_origins(site, web1)
    # web1's boxes layer runs a container; every machine asks the site's names of resolved.
    assert origins["systemd-container"] == ["layer boxes's services"]
    assert origins["systemd-resolved"] == ["the site's names ([dns])"]
    assert "dnsmasq-base" not in origins
    assert {"dnsmasq-base", "nginx-light"} <= set(generated.packages(site, db1))
    assert package_cache.apt_proxy(site, web1) == ""  # no cache: the machine's own apt sources


def test_background_upgrades_name_their_origins_and_reboot_window(example_site: Path) -> None:
    (example_site / "site.toml").write_text(
        (example_site / "site.toml").read_text() + '\n[packages]\nupgrades = "all"\nreboot = "04:30"\n'
    )
    site = load_site(example_site, use_cache=False)
    policy = upgrades.policy(site)
    assert policy.index("#clear Unattended-Upgrade::Origins-Pattern;") < policy.index("Origins-Pattern {")
    assert "label=Debian-Security" in policy and "codename=${distro_codename}-updates" in policy
    assert '"origin=croft homelab,codename=croft";' in policy
    assert 'Automatic-Reboot-Time "04:30";' in policy
    web1 = site.machines["web1"]
    assert "unattended-upgrades" in generated.packages(site, web1)
    assert set(generated.outside_links(site, web1)) == {
        "etc/apt/apt.conf.d/21croft-auto-upgrades",
        "etc/apt/apt.conf.d/52croft-unattended-upgrades",
    }
