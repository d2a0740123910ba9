"""What croft reads from a machine: parsed from recorded output, and the scripts themselves run
by sh against a real tree laid out as a target's /usr/local/croft (no machine, no root)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from pathlib import Path

from croft.deploy import deployer, remote
from croft.deploy.remote import Generation, LiveState, Switched

DIGEST = "d" * 64


def test_a_state_parses_from_recorded_output() -> None:
    assert remote.parse_state("7\n@@\n5\n6\n7\n.new-8\n@@\n" + DIGEST + "\n") == LiveState(
        7, [5, 6, 7], DIGEST
    )
    # A machine croft never deployed to: the script prints nothing at all.
    assert remote.parse_state("") == LiveState(None, [], None)
    # Generations but none live (after a reset was interrupted, say).
    assert remote.parse_state("@@\n3\n@@\n") == LiveState(None, [3], None)


def test_generations_parse_from_recorded_output() -> None:
    recorded = (
        f"generation=1\ncreated=2026-11-30T10:00:00Z\nby=ann@desk\ndigest={DIGEST}\nstatus=ok\n@@\n"
        f"generation=2\ncreated=2026-11-30T11:00:00Z\nby=bo@laptop\ndigest={DIGEST}\nstatus=failed\n@@\n"
        f"generation=3\ncreated=2026-11-30T12:00:00Z\nby=ann@desk\ndigest={DIGEST}\nstatus=ok\nlive=1\n@@\n"
    )
    found = remote.parse_generations(recorded)
    assert [g.number for g in found] == [1, 2, 3]
    assert found[1] == Generation(2, "2026-11-30T11:00:00Z", "bo@laptop", DIGEST, Switched.FAILED, False)
    assert [g.live for g in found] == [False, False, True]
    assert remote.parse_generations("status=\n@@\n") == []  # a generation without its info
    # No record (a switch under way, or one the machine did not live through), or one this croft
    # does not know: neither is a good generation to go back to.
    odd = remote.parse_generations("generation=4\nstatus=\n@@\ngeneration=5\nstatus=later\n@@\n")
    assert [g.status for g in odd] == [Switched.UNKNOWN, Switched.UNKNOWN]


def target(tmp_path: Path, live: int | None, numbers: list[int]) -> Path:
    """/usr/local/croft as apply.sh leaves it."""
    root = tmp_path / "croft"
    for number in numbers:
        generation = root / "generations" / str(number)
        (generation / "root").mkdir(parents=True)
        (generation / "digest").write_text(f"{number:064d}\n")
        (generation / "info").write_text(
            f"generation={number}\ncreated=c{number}\nby=me\ndigest={number:064d}\n"
        )
        (generation / "status").write_text("ok\n")
    (root / "generations" / ".new-99").mkdir(parents=True)  # a deploy that died mid-way
    (root / "generations" / f".next-{live}" / "root").mkdir(parents=True)  # the next deploy's copy
    (root / "lock").touch()
    if live is not None:
        (root / "live").symlink_to(f"generations/{live}")
    return root


def sh(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


def test_the_scripts_read_a_real_tree(tmp_path: Path) -> None:
    root = target(tmp_path, 2, [1, 2, 3])
    assert remote.parse_state(sh(remote.state_script(str(root)))) == LiveState(2, [1, 2, 3], f"{2:064d}")
    found = remote.parse_generations(sh(remote.generations_script(str(root))))
    assert [(g.number, g.live, g.status, g.created) for g in found] == [
        (1, False, "ok", "c1"),
        (2, True, "ok", "c2"),
        (3, False, "ok", "c3"),
    ]
    nothing = tmp_path / "never-deployed"
    assert remote.parse_state(sh(remote.state_script(str(nothing)))) == LiveState(None, [], None)
    assert remote.parse_generations(sh(remote.generations_script(str(nothing)))) == []


def test_apply_log_lines_become_the_outcome() -> None:
    log = (
        "croft-step: restart app.service\n"
        "croft-failed: app.service did not stay up\n"
        "croft-journal-begin: app.service\nline one\nline two\ncroft-journal-end: app.service\n"
        "croft-rollback: back to generation 4\ncroft-rolled-back: 4\n"
    )
    outcome = deployer._parse_log(deployer.Outcome("web1", deployer.Status.DEPLOYED), 1, log)
    assert outcome.status == deployer.Status.ROLLED_BACK
    assert outcome.message == "app.service did not stay up"
    assert outcome.journals == {"app.service": "line one\nline two\n"}
    refused = deployer._parse_log(
        deployer.Outcome("web1", deployer.Status.DEPLOYED),
        65,
        "croft-conflict: /usr/local/bin/tool\ncroft-error: these paths exist and are not croft's\n",
    )
    assert refused.status == deployer.Status.FAILED and refused.conflicts == ["/usr/local/bin/tool"]
    assert refused.message.startswith("not croft's: /usr/local/bin/tool")


def test_generations_are_read_once_apply_sh_let_go_of_the_lock(tmp_path: Path) -> None:
    # apply.sh prunes after it answered, holding the machine's lock: a listing waits for that.
    root = target(tmp_path, 2, [1, 2])
    with open(root / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        listing = subprocess.Popen(["sh", "-c", remote.generations_script(str(root))], stdout=subprocess.PIPE)
        time.sleep(0.3)
        assert listing.poll() is None
        shutil.rmtree(root / "generations" / "1")  # pruned meanwhile
    out, _ = listing.communicate(timeout=10)
    assert [g.number for g in remote.parse_generations(out.decode())] == [2]
