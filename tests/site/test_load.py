from __future__ import annotations

from pathlib import Path

import pytest

from croft.errors import SiteError
from croft.site.load import load_site


def problems(site: Path) -> list[str]:
    with pytest.raises(SiteError) as info:
        load_site(site, use_cache=False)
    return [str(problem) for problem in info.value.problems]


def assert_found(found: list[str], expected: list[str], where: str = "") -> None:
    """Each expected message is in some problem (that also names `where`)."""
    for message in expected:
        assert any(message in problem and where in problem for problem in found), (message, found)


def test_example_loads(example_site: Path) -> None:
    site = load_site(example_site)
    assert sorted(site.machines) == ["db1", "lab1", "lab2", "web1", "web2"]
    assert site.variables(site.machines["web1"])["web_port"] == 8080
    assert site.variables(site.machines["web1"])["greeting"].startswith("Hello from web1")


def test_unknown_key_names_file_line_and_allowed_keys(example_site: Path) -> None:
    (example_site / "machines" / "web2.toml").write_text(
        'address = "10.77.0.12"\nlayers = ["base"]\n\n[ssh]\nprot = 22\n'
    )
    [problem] = problems(example_site)
    assert "machines/web2.toml:5: ssh.prot: unknown key" in problem
    assert "allowed keys here: user, port, key, options" in problem


def test_every_problem_is_reported_at_once(example_site: Path) -> None:
    (example_site / "machines" / "web2.toml").write_text(
        'address = "10.77.0.11"\nlayers = ["base", "nosuch"]\n'
    )
    (example_site / "site.toml").write_text('name = "x"\ndomain = 3\n')
    found = "\n".join(problems(example_site))
    assert "site.toml:2: domain: Input should be a valid string" in found
    assert "web2.toml:2: layers.1: layer 'nosuch' does not exist" in found
    assert "address 10.77.0.11 is already used by machines/web1.toml" in found


def test_invalid_toml_names_the_line(example_site: Path) -> None:
    (example_site / "machines" / "db1.toml").write_text('address = "10.77.0.13"\nlayers = [\n')
    [problem] = problems(example_site)
    assert "db1.toml:" in problem and "invalid TOML" in problem


def test_files_outside_usr_local_are_refused(example_site: Path) -> None:
    (example_site / "layers" / "base" / "etc").mkdir()
    (example_site / "layers" / "web" / "layer.toml").write_text('secrets = ["/etc/shadow"]\n')
    found = "\n".join(problems(example_site))
    assert "layers/base/etc: outside usr/local/" in found
    assert "layer.toml:1: secrets.0: '/etc/shadow' must be relative" in found


def test_missing_required_key(example_site: Path) -> None:
    (example_site / "machines" / "db1.toml").write_text('layers = ["base"]\n')
    [problem] = problems(example_site)
    assert "db1.toml: address: required key is missing" in problem


def test_an_address_must_be_an_ip_address_or_a_host_name(example_site: Path) -> None:
    (example_site / "machines" / "db1.toml").write_text('layers = ["base"]\naddress = "not an address!"\n')
    [problem] = problems(example_site)
    assert "db1.toml:2: address: 'not an address!' is not an IP address or a host name" in problem
    assert 'hint: e.g. address = "192.168.1.20"' in problem
    (example_site / "machines" / "db1.toml").write_text('layers = ["base"]\naddress = "db1.lab.home.arpa"\n')
    assert load_site(example_site, use_cache=False).machines["db1"].address == "db1.lab.home.arpa"


def test_a_toml_syntax_error_keeps_its_line_column_and_a_hint(example_site: Path) -> None:
    (example_site / "machines" / "db1.toml").write_text('layers = ["base"]\naddress = "10.77.0.13\n')
    [problem] = problems(example_site)
    assert "db1.toml:2: invalid TOML: Illegal character '\\n' at column 22" in problem
    assert "(," not in problem and "hint: a string must close on its line" in problem


def test_a_template_syntax_error_has_its_line_and_a_hint(example_site: Path) -> None:
    from croft.build import builder
    from croft.errors import CroftError

    page = example_site / "layers" / "web" / "usr" / "local" / "share" / "www" / "index.html.j2"
    page.write_text("<p>\n{% for x in [1] %}{{ x }}\n")
    site = load_site(example_site, use_cache=False)
    with pytest.raises(CroftError) as info:
        builder.build(site, [site.machines["web1"]])
    shown = str(info.value)
    assert "index.html.j2:2:" in shown and "hint: a {% for %} or {% if %} is not closed" in shown
