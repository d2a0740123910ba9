"""What croft prints when its output is not a terminal: one whole line per event."""

from __future__ import annotations

import re
import sys
import threading

import pytest

from croft.ui import StageBoard


def test_parallel_machines_print_whole_lines_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    machines = [f"trial{index}" for index in range(8)]
    board = StageBoard(machines)

    def progress(machine: str) -> None:
        for step in range(300):
            board(machine, f"connecting {step}")

    threads = [threading.Thread(target=progress, args=(machine,)) for machine in machines]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as a busy machine makes them
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 * 300
    assert all(re.fullmatch(r"trial\d: connecting \d+", line) for line in lines)
