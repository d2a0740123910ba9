"""Waiting: the one poll loop croft runs, and whether a process still runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """Call `condition` every `interval` seconds until it returns something true, and return
    that; None when `timeout` seconds pass first. A condition raises to stop early."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def alive(pid: int) -> bool:
    """Whether the process runs: it exists and is no zombie (one waits for its parent, maybe
    not us, to reap it). False for a process that goes while it looks."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's: it exists
    try:
        # The state is the field after the command name, which is in parentheses and may
        # itself hold spaces and parentheses.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # gone meanwhile
        return False
