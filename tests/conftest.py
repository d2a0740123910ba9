"""Shared helpers: a copy of the example site to change freely."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from pathlib import Path
from typing import IO

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "homelab"
# Builds in tests start no build server (croft/build/warm.py) per site; tests/build/test_warm.py does.
os.environ["CROFT_BUILD_SERVER"] = "0"
FAKE_FACTS = '{"hostname": "x", "os": {"id": "debian", "version_id": "12"}, "nproc": 2}\n'


def copy_example(destination: Path, *, facts: bool = True) -> Path:
    site = destination / "site"
    shutil.copytree(EXAMPLE, site, symlinks=True, ignore=shutil.ignore_patterns(".croft", "facts"))
    if facts:
        (site / "facts").mkdir()
        for machine in ("web1", "web2", "db1", "lab1", "lab2"):
            (site / "facts" / f"{machine}.json").write_text(FAKE_FACTS)
    # As if checked out a while ago: stats taken just after a write are "racy" (build/stamp.py),
    # which tests of the fast path do not want.
    past = time.time_ns() - 5 * 10**9
    for path in [site, *site.rglob("*")]:
        os.utime(path, ns=(past, past), follow_symlinks=False)
    return site


# Markers select by cost (pyproject.toml lists them): `pytest -m "not slow"` is the quick loop.
# What boots machines, builds images or runs a database is slow; all of it needs root.
SLOW = {"qemu", "fleet", "images", "setup", "postgres"}
NEEDS_ROOT = {"qemu", "fleet", "images", "setup", "postgres", "root"}


@pytest.hookimpl(tryfirst=True)  # before -m selects by them
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        postgres = callspec is not None and callspec.params.get("database_url") == "postgresql"
        if postgres or "postgresql_url" in getattr(item, "fixturenames", ()):
            item.add_marker("postgres")
        names = {mark.name for mark in item.iter_markers()}
        if names & SLOW:
            item.add_marker("slow")
        if names & NEEDS_ROOT:
            item.add_marker("root")
            # CI runs as root: there a test that cannot run fails, never skips.
            if os.geteuid() != 0 and os.environ.get("CI") != "true":
                item.add_marker(pytest.mark.skip(reason="needs root (namespaces, mounts, machines)"))


# Held from the first test that uses what is named machine-wide (network namespaces, subnets,
# PostgreSQL's port) to the end of the session: a second test session on this machine (another
# clone's CI, say) waits for the first rather than tripping over its namespaces.
MACHINE_LOCK = "/run/lock/croft-tests.lock"
_machine_lock: list[IO[str]] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    machine_wide = any(any(item.iter_markers(name)) for name in ("fleet", "images", "postgres"))
    if _machine_lock or not machine_wide:
        return
    lock = open(MACHINE_LOCK, "w")  # noqa: SIM115 (held until the process ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"\nanother croft test session holds {MACHINE_LOCK}: waiting for it", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    _machine_lock.append(lock)


@pytest.fixture(scope="session", autouse=True)
def _own_data_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """What croft keeps in the user's data directory (a site's signing key) goes to the test
    session's, never the home of whoever runs the tests."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))


@pytest.fixture
def example_site(tmp_path: Path) -> Path:
    return copy_example(tmp_path)
