"""The switch script croft sends (apply.sh with its variables and plans) is valid sh in every
form it takes: deploy with confirm-or-revert (and the revert script it carries), rollback, reset."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from croft.deploy import deployer
from croft.deploy.deployer import apply_script

STEPS = ["links usr/local/bin\ttool\tother", "dirs 0755\tusr/local/share/x", "flip 2", "check app.service"]
BACK = ["unlink usr/local/bin/tool", "flip 1"]


def syntax_ok(script: str) -> None:
    result = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("confirm", [0, 30])
@pytest.mark.parametrize("reset", [False, True])
def test_every_switch_script_is_valid_sh(confirm: int, reset: bool) -> None:
    script = apply_script(
        steps=STEPS, back=BACK, generation="2", expect="1", receive=("ab" * 32, ["usr/local/bin/old"]),
        rollback=True, reset=reset, settle=2.0, keep=5, adopt=("usr/local/bin/tool",), confirm=confirm,
    )  # fmt: skip
    syntax_ok(script)
    header = script[: script.index("\n# croft's switch")]
    revert = subprocess.run(
        ["sh", "-c", f'{header}\nprintf %s "$REVERT"'], capture_output=True, text=True, check=True
    ).stdout
    assert bool(revert) == bool(confirm)
    if revert:
        syntax_ok(revert)
        # The way back, as a switch of its own: from generation 2 to 1, never confirming again.
        assert "GEN=1\n" in revert and "EXPECT=2\n" in revert and "CONFIRM=0\n" in revert
        assert "unlink usr/local/bin/tool" in revert


def test_the_clock_apply_sh_settles_by_counts_past_2_to_the_31_microseconds() -> None:
    # awk's printf %d stopped at 2^31: after 36 minutes of uptime a settle never ended.
    body = (Path(deployer.__file__).parent / "apply.sh").read_text()
    function = re.search(r"^now_us\(\) \{\n.*?\n\}", body, re.S | re.M)
    assert function is not None
    script = f"{function.group()}\nnow_us"
    measured = int(subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(measured - uptime * 1_000_000) < 5_000_000
