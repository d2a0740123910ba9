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


# Held from the first test that uses what is named machine-wide (network namespaces, subnets,
# PostgreSQL's port) to the end of the session: a second test session on this machine (another
# clone's CI, say) waits for the first rather than tripping over its namespaces.
MACHINE_LOCK = "/run/lock/croft-tests.lock"
_machine_lock: list[IO[str]] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    machine_wide = any(item.iter_markers("fleet")) or any(item.iter_markers("images"))
    if _machine_lock or not (machine_wide or "postgresql_url" in getattr(item, "fixturenames", ())):
        return
    lock = open(MACHINE_LOCK, "w")  # noqa: SIM115 (held until the process ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"\nanother croft test session holds {MACHINE_LOCK}: waiting for it", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    _machine_lock.append(lock)


@pytest.fixture
def example_site(tmp_path: Path) -> Path:
    return copy_example(tmp_path)
