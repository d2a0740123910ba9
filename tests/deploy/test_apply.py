"""The switch script croft sends (apply.sh with its variables and plans) is valid sh in every
form it takes: deploy with confirm-or-revert (and the revert script it carries), rollback, reset."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from croft.deploy import deployer, ssh
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


def test_the_target_runs_only_a_script_that_arrived_whole(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # It reads what follows it on stdin, as apply.sh's tar does.
    framed = ssh.frame(f"touch {marker}\ncat\nexit 0\n")
    files = b"what follows the script: the files\n"

    def target(data: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["sh", "-c", ssh.RECEIVER], input=data, capture_output=True)

    # Cut before its last line (the connection broke off): nothing of it runs.
    cut = target(framed[: framed.index(ssh.END.encode()) + 4])
    assert cut.returncode == 70 and b"cut short" in cut.stdout and not marker.exists()
    # A session croft opened ahead and did not need: nothing comes, nothing runs.
    unused = target(b"")
    assert unused.returncode != 0 and unused.stdout == b"" and not marker.exists()
    whole = target(framed + files)
    assert whole.returncode == 0 and whole.stdout == files and marker.exists()


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="the kernel has no autogroup")
def test_a_switch_gives_the_tidy_it_waits_for_its_priority_back(tmp_path: Path) -> None:
    body = (Path(deployer.__file__).parent / "apply.sh").read_text()
    function = re.search(r"^boost_tidy\(\) \{\n.*?\n\}", body, re.S | re.M)
    assert function is not None
    # A tidy: a process in a session of its own, niced to 19 as apply.sh's tidy does it.
    tidy = subprocess.Popen(["setsid", "sh", "-c", "echo 19 > /proc/self/autogroup; exec sleep 30"])
    try:
        autogroup = Path(f"/proc/{tidy.pid}/autogroup")
        for _ in range(100):
            if autogroup.read_text().endswith("nice 19\n"):
                break
            time.sleep(0.01)
        started = Path(f"/proc/{tidy.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        script = f"CROFT={tmp_path}\n{function.group()}\nboost_tidy\n"
        (tmp_path / "tidy").write_text(f"{tidy.pid} {int(started) + 1}\n")  # another process
        subprocess.run(["sh", "-c", script], check=True)
        assert autogroup.read_text().endswith("nice 19\n")
        (tmp_path / "tidy").write_text(f"{tidy.pid} {started}\n")
        subprocess.run(["sh", "-c", script], check=True)
        assert autogroup.read_text().endswith("nice 0\n")
        (tmp_path / "tidy").unlink()  # no tidy ran here yet
        subprocess.run(["sh", "-c", script], check=True)
    finally:
        tidy.kill()
        tidy.wait()


def test_a_directory_of_thousands_of_files_is_linked_and_made_in_batches(tmp_path: Path) -> None:
    # A list grown one item at a time took seconds for a few thousand: paths go in batches.
    body = (Path(deployer.__file__).parent / "apply.sh").read_text()
    functions = [
        re.search(rf"^{name}\(\) \{{\n.*?\n\}}", body, re.S | re.M)
        for name in ("collect", "run_batch", "make_dirs", "ours", "adopted", "adopt", "step")
    ]
    assert all(functions)
    setup = re.search(r"^BATCH=.*?\ncount=0\n", body, re.S | re.M)
    assert setup is not None
    croft = tmp_path / "croft"
    directory = str(tmp_path / "usr/local/share/many").lstrip("/")
    files = [f"file {index:05d}.txt" for index in range(1201)]  # three batches; names with spaces
    dirs = [f"{directory}/d{index:04d}" for index in range(1201)]
    script = "\n".join(
        [
            f"CROFT={croft}\nADOPT=\nNL='\n'\nTAB='\t'\nOLD_IFS=$IFS",
            setup.group(),
            *(function.group() for function in functions if function),
            'step "$1" && step "$2"',
        ]
    )
    links = "links " + "\t".join([directory, *files])
    made = "dirs " + "\t".join(["0750", *dirs])
    subprocess.run(["sh", "-c", script, "sh", made, links], check=True)
    linked = sorted(path.name for path in Path("/", directory).iterdir() if path.is_symlink())
    assert linked == files
    target = Path("/", directory, files[-1]).readlink()
    assert target == croft / "live/root" / directory / files[-1]
    assert all(Path("/", path).is_dir() for path in dirs)
    assert (Path("/", dirs[0]).stat().st_mode & 0o777) == 0o750
