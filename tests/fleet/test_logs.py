"""`croft logs`: the machines' journals, read over SSH and merged by time, each line tagged
with its machine; plain when piped, JSON for tools, followed live with -f."""

from __future__ import annotations

import json
import os
import select
import signal
import time

import pytest

from croft.fleet.fleet import Fleet
from tests.fleet.conftest import Croft, on

pytestmark = pytest.mark.fleet


def test_lines_from_two_machines_come_merged_by_time_and_tagged(fleet: Fleet, croft: Croft) -> None:
    tag = f"croft-logs-{os.getpid()}"
    on(fleet, "web1", "logger", "-t", tag, "first, on web1")
    time.sleep(0.05)
    on(fleet, "web2", "logger", "-t", tag, "second, on web2")
    time.sleep(0.05)
    on(fleet, "web1", "logger", "-t", tag, "-p", "user.err", "third, on web1")
    shown = croft("logs", "web1", "web2", "-t", tag).stdout.splitlines()
    assert [line.split(f" {tag}[", 1)[0].split()[-1] for line in shown] == ["web1", "web2", "web1"], shown
    assert shown[0].endswith(": first, on web1") and shown[2].endswith(": third, on web1")
    # Filters are journalctl's: the priority leaves the error alone.
    errors = croft("logs", "web1", "web2", "-t", tag, "-p", "err").stdout.splitlines()
    assert len(errors) == 1 and "third" in errors[0]
    entries = [json.loads(line) for line in croft("logs", "web2", "-t", tag, "--json").stdout.splitlines()]
    assert [(entry["machine"], entry["MESSAGE"]) for entry in entries] == [("web2", "second, on web2")]


def test_follow_shows_a_line_seconds_after_it_is_logged(fleet: Fleet, croft: Croft) -> None:
    tag = f"croft-follow-{os.getpid()}"
    follower = croft.popen("logs", "web1", "db1", "-t", tag, "-f")
    try:
        time.sleep(2)  # journalctl -f is running on both
        logged = time.monotonic()
        on(fleet, "db1", "logger", "-t", tag, "live from db1")
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], 5)
        assert ready, "nothing within 5 s"
        line = follower.stdout.readline()
        assert "db1" in line and line.rstrip().endswith("live from db1"), line
        assert time.monotonic() - logged < 5
    finally:
        os.killpg(follower.pid, signal.SIGINT)
        follower.wait(10)
