"""`croft diff` exit codes: 0 nothing to change, 2 changes, 1 a machine that cannot be compared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_diff_of_an_unreachable_machine_is_an_error_not_a_change(example_site: Path) -> None:
    # Nothing listens on port 9 of loopback: the SSH connection is refused at once.
    machine = example_site / "machines" / "web1.toml"
    machine.write_text(machine.read_text().replace('address = "10.77.0.11"', 'address = "127.0.0.1"'))
    machine.write_text(machine.read_text() + "\n[ssh]\nport = 9\n")
    result = subprocess.run(
        [sys.executable, "-m", "croft", "--site", str(example_site), "diff", "web1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CROFT_SSH_KEY": ""},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "== web1:" in result.stderr
