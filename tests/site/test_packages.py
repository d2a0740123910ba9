"""What the site says about packages is checked where it is written: a layer's or machine's
package names, and [packages] in site.toml."""

from __future__ import annotations

from pathlib import Path

from croft.site.load import load_site
from tests.site.test_load import problems


def test_a_package_that_is_no_debian_name_is_located_with_a_hint(example_site: Path) -> None:
    (example_site / "layers/web/layer.toml").write_text('packages = ["nginx-light", "Nginx 1.22"]\n')
    machine = example_site / "machines/db1.toml"
    machine.write_text(machine.read_text().replace("[vars]", 'packages = ["curl=7.88"]\n\n[vars]'))
    found = problems(example_site)
    assert any("web/layer.toml:1: packages.1: 'Nginx 1.22' is not a Debian package name" in p for p in found)
    assert any("db1.toml:4: packages.0: 'curl=7.88' is not a Debian package name" in p for p in found)
    assert all('e.g. "nginx-light"' in p for p in found)


def test_the_package_cache_is_a_machine_of_the_site_and_its_upstream_a_proxy_url(example_site: Path) -> None:
    site_toml = example_site / "site.toml"
    original = site_toml.read_text()
    site_toml.write_text(original + '\n[packages]\ncache = "db2"\nupstream = "https://proxy"\n')
    found = problems(example_site)
    assert any("site.toml:" in p and "packages.cache: no machine 'db2'" in p and "db1" in p for p in found)
    assert any("packages.upstream: 'https://proxy' is not an http:// proxy URL" in p for p in found)
    site_toml.write_text(original + '\n[packages]\ncache = "db1"\nupstream = "http://proxy.lan:3128"\n')
    assert load_site(example_site, use_cache=False).config.packages.cache == "db1"


def test_a_key_written_below_vars_is_named_not_taken_as_a_variable(example_site: Path) -> None:
    # TOML puts a key into the table whose header is above it: `packages` after [vars] is a
    # template variable, and the layer would silently install nothing.
    (example_site / "layers/proxy/layer.toml").write_text(
        '[vars]\nproxy_port = 8081\npackages = ["nginx-light"]\n'
    )
    [problem] = problems(example_site)
    assert "proxy/layer.toml:3: vars.packages: `packages` is in [vars], as a template variable" in problem
    assert "move `packages = ...` above the [vars] header" in problem


def test_a_reboot_window_is_a_time_of_day(example_site: Path) -> None:
    site_toml = example_site / "site.toml"
    site_toml.write_text(site_toml.read_text() + '\n[packages]\nupgrades = "sometimes"\nreboot = "4am"\n')
    found = problems(example_site)
    assert any("packages.upgrades" in p and "'none', 'security' or 'all'" in p for p in found), found
    site_toml.write_text(site_toml.read_text().replace('"sometimes"', '"security"'))
    [problem] = problems(example_site)
    assert "packages.reboot: '4am' is not a time of day" in problem and 'reboot = "04:00"' in problem
