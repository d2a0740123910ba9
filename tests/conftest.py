"""Shared helpers: a copy of the example site to change freely."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "homelab"
FAKE_FACTS = '{"hostname": "x", "os": {"id": "debian", "version_id": "12"}, "nproc": 2}\n'


def copy_example(destination: Path, *, facts: bool = True) -> Path:
    site = destination / "site"
    shutil.copytree(EXAMPLE, site, ignore=shutil.ignore_patterns(".croft", "facts"))
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


@pytest.fixture
def example_site(tmp_path: Path) -> Path:
    return copy_example(tmp_path)
