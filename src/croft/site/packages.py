"""Checking what the site says about Debian packages: names a layer or machine asks for, and
[packages] in site.toml (the cache machine, its upstream). Whether a name exists in the archive
only the machine's apt can say: the deploy asks it before anything changes (deploy/apply.sh)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from croft.errors import Problem
from croft.site.model import PackagesConfig, SitePackage
from croft.site.tomlfile import Reporter

# Debian policy 5.6.1: lower-case letters, digits, '+', '-' and '.'; at least two characters,
# starting with an alphanumeric one.
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Debian policy 5.6.12: [epoch:]upstream[-revision], starting with a digit.
VERSION = re.compile(r"^(\d+:)?\d[A-Za-z0-9.+~-]*$")
# One dependency: alternatives, each a name with an optional (op version) and :arch.
_ONE = r"[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?( \((<<|<=|=|>=|>>) [A-Za-z0-9.+~:-]+\))?"
REBOOT_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DEPENDENCY = re.compile(rf"^{_ONE}( \| {_ONE})*$")


def check_names(file: Path, names: tuple[str, ...], problems: list[Problem]) -> None:
    problem = Reporter(file, problems)
    for index, name in enumerate(names):
        if not PACKAGE_NAME.match(name):
            problem(
                ("packages", index),
                f"{name!r} is not a Debian package name",
                'a name as apt knows it, without version or release: e.g. "nginx-light"',
            )


def check_config(file: Path, config: PackagesConfig, machines: set[str], problems: list[Problem]) -> None:
    problem = Reporter(file, problems, prefix=("packages",))
    if config.cache is not None and config.cache not in machines:
        problem(
            ("cache",),
            f"no machine {config.cache!r}",
            f"name one of: {', '.join(sorted(machines)) or 'none'}",
        )
    if not 0 < config.port < 65536:
        problem(("port",), f"{config.port} is not a TCP port", "e.g. port = 3142 (apt-cacher-ng's)")
    if config.reboot is not None and not REBOOT_TIME.match(config.reboot):
        problem(
            ("reboot",),
            f"{config.reboot!r} is not a time of day",
            'e.g. reboot = "04:00" (24-hour, local time)',
        )
    if config.upstream is not None:
        url = urlsplit(config.upstream)
        if url.scheme != "http" or not url.hostname:
            problem(
                ("upstream",),
                f"{config.upstream!r} is not an http:// proxy URL",
                'e.g. "http://proxy.lan:3128"',
            )


def check_site_packages(
    packages: dict[str, SitePackage], config: PackagesConfig, repository: str | None, site_file: Path,
    problems: list[Problem],
) -> None:  # fmt: skip
    for name, package in packages.items():
        problem = Reporter(package.file, problems, label=f"package {name!r}: ")
        if not PACKAGE_NAME.match(name):
            problem(
                (),
                "not a Debian package name",
                "name the file like one: lower-case, e.g. packages/home-tools.toml",
            )
        if not VERSION.match(package.config.version):
            problem(
                ("version",), f"{package.config.version!r} is not a Debian version", 'e.g. version = "1.2-1"'
            )
        for index, dependency in enumerate(package.config.depends):
            if not DEPENDENCY.match(dependency):
                problem(("depends", index), f"{dependency!r} is not a dependency", 'e.g. "python3 (>= 3.11)"')
        for index, conffile in enumerate(package.config.conffiles or ()):
            if not conffile.startswith("/") or not (package.tree / conffile.lstrip("/")).is_file():
                problem(
                    ("conffiles", index),
                    f"{conffile!r} is not a file of the package",
                    f"an absolute path of a file under packages/{name}/, e.g. /etc/{name}.conf",
                )
    if packages and repository is None:
        Reporter(site_file, problems)(
            ("packages",),
            "the site builds packages (packages/) but machines have no way to fetch them",
            'add [packages] repository = "http://HOST/apt" (where .croft/repository is served) or [serve]',
        )
