"""The repository as apt reads it, under .croft/repository/ (serve that directory, e.g. with
croft serve at /apt/):

    pool/main/NAME_VERSION_ARCH.deb
    dists/croft/{Release,InRelease,Release.gpg}
    dists/croft/main/binary-{amd64,arm64}/Packages(.gz)

apt-ftparchive writes the indexes; the site's key signs the Release file. A new index is made
beside the old one and swapped in, so a machine never reads a Release that does not match its
Packages.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from croft.layout import APT_COMPONENT, APT_SUITE, apt_origin
from croft.repository import debs, key
from croft.run import run
from croft.site.model import Site

SUITE = APT_SUITE
COMPONENT = APT_COMPONENT
ARCHITECTURES = ("amd64", "arm64")


@dataclass
class Published:
    directory: Path
    built: list[str] = field(default_factory=list)
    """The packages built anew (the others were up to date)."""
    packages: list[str] = field(default_factory=list)


def publish(site: Site) -> Published:
    root = debs.repository_dir(site)
    pool = root / "pool" / COMPONENT
    result = Published(root)
    wanted = set()
    for name, package in sorted(site.site_packages.items()):
        deb, made = debs.build(site, package, pool)
        wanted.add(deb.name)
        result.packages.append(name)
        if made:
            result.built.append(name)
    for stale in pool.glob("*.deb") if pool.is_dir() else ():
        if stale.name not in wanted:
            stale.unlink()
            (pool / f".{stale.name}.key").unlink(missing_ok=True)
    pool.mkdir(parents=True, exist_ok=True)
    new = root / "dists.new"
    shutil.rmtree(new, ignore_errors=True)
    suite = new / SUITE
    for arch in ARCHITECTURES:
        binary = suite / COMPONENT / f"binary-{arch}"
        binary.mkdir(parents=True)
        # Run from the repository's root: Filename: fields are relative to it. Arch "all"
        # packages are listed for every architecture.
        packages = run(["apt-ftparchive", "--arch", arch, "packages", f"pool/{COMPONENT}"], cwd=root).stdout
        (binary / "Packages").write_text(packages)
        (binary / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
    options = {
        "Origin": apt_origin(site.config.name),
        "Label": apt_origin(site.config.name),
        "Suite": SUITE,
        "Codename": SUITE,
        "Components": COMPONENT,
        "Architectures": " ".join(ARCHITECTURES),
        "Description": f"The packages of the croft site {site.config.name}",
    }
    argv = ["apt-ftparchive"]
    for name, value in options.items():
        argv += ["-o", f"APT::FTPArchive::Release::{name}={value}"]
    release = run([*argv, "release", "."], cwd=suite).stdout
    (suite / "Release").write_text(release)
    key.sign(site, suite / "Release")
    dists = root / "dists"
    old = root / "dists.old"
    shutil.rmtree(old, ignore_errors=True)
    if dists.exists():
        dists.rename(old)
    new.rename(dists)
    shutil.rmtree(old, ignore_errors=True)
    return result
