"""Checking what the site says about Debian packages: names a layer or machine asks for, and
[packages] in site.toml (the cache machine, its upstream). Whether a name exists in the archive
only the machine's apt can say: the deploy asks it before anything changes (deploy/apply.sh)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from croft.errors import Problem
from croft.site.model import PackagesConfig
from croft.site.tomlfile import Reporter

# Debian policy 5.6.1: lower-case letters, digits, '+', '-' and '.'; at least two characters,
# starting with an alphanumeric one.
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


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
    if config.upstream is not None:
        url = urlsplit(config.upstream)
        if url.scheme != "http" or not url.hostname:
            problem(
                ("upstream",),
                f"{config.upstream!r} is not an http:// proxy URL",
                'e.g. "http://proxy.lan:3128"',
            )
