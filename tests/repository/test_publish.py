"""The site's repository built for real (dpkg-deb, apt-ftparchive, gpg): reproducible packages,
rebuilt only when their inputs change, and an index signed with the site's key."""

from __future__ import annotations

import subprocess
from pathlib import Path

from croft.repository import key
from croft.repository.publish import publish
from croft.site.load import load_site


def with_package(site: Path, tmp_path: Path) -> Path:
    tree = site / "packages/home-tools"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "usr/bin/home-tools").write_text("#!/bin/sh\necho tools\n")
    (tree / "usr/bin/home-tools").chmod(0o755)
    (tree / "etc/home-tools.conf").write_text("level = 1\n")
    (site / "packages/home-tools.toml").write_text(
        'version = "1.0-1"\ndepends = ["python3 (>= 3.11)"]\npostinst = "echo configured"\n'
    )
    (site / "site.toml").write_text(
        (site / "site.toml").read_text() + f'\n[packages]\nsigning_key = "{tmp_path / "keys/site.asc"}"\n'
    )
    return site / ".croft/repository/pool/main/home-tools_1.0-1_all.deb"


def test_a_package_is_reproducible_and_rebuilt_only_when_its_inputs_change(
    example_site: Path, tmp_path: Path
) -> None:
    deb = with_package(example_site, tmp_path)
    assert publish(load_site(example_site, use_cache=False)).built == ["home-tools"]
    first = deb.read_bytes()
    info = subprocess.run(["dpkg-deb", "--info", deb], capture_output=True, text=True, check=True).stdout
    assert "Depends: python3 (>= 3.11)" in info and "postinst" in info
    contents = subprocess.run(
        ["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True
    ).stdout
    assert "root/root" in contents and "./usr/bin/home-tools" in contents
    conffiles = subprocess.run(["dpkg-deb", "-I", deb, "conffiles"], capture_output=True, text=True).stdout
    assert conffiles == "/etc/home-tools.conf\n"

    # Nothing changed (a touch is no change): not built again.
    (example_site / "packages/home-tools/usr/bin/home-tools").touch()
    assert publish(load_site(example_site, use_cache=False)).built == []
    # Built again from scratch: the same bytes.
    deb.unlink()
    assert publish(load_site(example_site, use_cache=False)).built == ["home-tools"]
    assert deb.read_bytes() == first
    # A changed file: built again.
    (example_site / "packages/home-tools/etc/home-tools.conf").write_text("level = 2\n")
    assert publish(load_site(example_site, use_cache=False)).built == ["home-tools"]
    assert deb.read_bytes() != first


def test_the_index_is_signed_by_the_sites_key_kept_outside_the_site(
    example_site: Path, tmp_path: Path
) -> None:
    with_package(example_site, tmp_path)
    site = load_site(example_site, use_cache=False)
    publish(site)
    secret = key.key_path(site)
    assert secret == tmp_path / "keys/site.asc"
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.parent.stat().st_mode & 0o777 == 0o700
    suite = example_site / ".croft/repository/dists/croft"
    assert "home-tools" in (suite / "main/binary-amd64/Packages").read_text()
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(
        subprocess.run(
            ["gpg", "--dearmor"], input=key.public_key(site).encode(), capture_output=True, check=True
        ).stdout
    )
    good = subprocess.run(["gpgv", "--keyring", keyring, suite / "InRelease"], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    (suite / "InRelease").write_text(
        (suite / "InRelease").read_text().replace("Suite: croft", "Suite: other")
    )
    bad = subprocess.run(["gpgv", "--keyring", keyring, suite / "InRelease"], capture_output=True, text=True)
    assert bad.returncode != 0
    # The key is made once: a second publish signs with the same one.
    before = secret.read_bytes()
    publish(load_site(example_site, use_cache=False))
    assert secret.read_bytes() == before
