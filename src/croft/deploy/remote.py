"""What croft reads from a machine, and how: the scripts that run there and the parsing of
what they print. Plain functions of text, tested from recorded output and against a real tree
(tests/deploy/test_remote.py); the switch itself is apply.sh.

On the target (see croft.layout.REMOTE): `live` -> `generations/N`; each generation holds
`root/`, `manifest.json`, `digest`, `info` (generation=, created=, by=, digest=) and `status`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from croft.layout import REMOTE


class Switched(StrEnum):
    """How the switch to a generation went, as apply.sh records it (its `status` file)."""

    OK = "ok"
    FAILED = "failed"
    UNKNOWN = ""
    """No record: its switch is under way, or ended with the machine (power lost)."""


class Generation(NamedTuple):
    number: int
    created: str = ""
    by: str = ""
    digest: str = ""
    status: Switched = Switched.UNKNOWN
    live: bool = False


class LiveState(NamedTuple):
    live: int | None
    generations: list[int]
    digest: str | None


def state_script(root: str = REMOTE) -> str:
    """The live generation, every generation's number, the live digest; sections end in @@.
    The shell's own commands only (read, echo, a glob): this is all a no-op deploy runs. The
    live generation is named by the first line of its info (generation=N), as apply.sh reads it."""
    return (
        f"cd {root} 2>/dev/null || exit 0; "
        'if IFS= read -r first < live/info; then echo "${first#generation=}"; fi 2>/dev/null; echo @@; '
        'for g in generations/*; do echo "${g#generations/}"; done; echo @@; '
        'if IFS= read -r digest < live/digest; then echo "$digest"; fi 2>/dev/null; true'
    )


def parse_state(out: str) -> LiveState:
    parts = ([*out.split("@@\n"), "", "", ""])[:3]
    live = parts[0].strip()
    return LiveState(
        live=int(live) if live.isdigit() else None,
        generations=sorted(int(n) for n in parts[1].split() if n.isdigit()),
        digest=parts[2].strip() or None,
    )


def generations_script(root: str = REMOTE) -> str:
    """Each generation's info and status, and which is live; one block each, ending in @@."""
    return (
        f"cd {root}/generations 2>/dev/null || exit 0; "
        # Shared: apply.sh prunes after it answered, still holding the lock; wait for that.
        "if [ -e ../lock ]; then exec 9<../lock; flock -s -w 30 9; fi; live=$(readlink ../live); "
        "for g in $(ls | grep -E '^[0-9]+$' | sort -n); do cat $g/info; "
        'echo status=$(cat $g/status 2>/dev/null); [ generations/$g = "$live" ] && echo live=1; echo @@; done'
    )


def parse_generations(out: str) -> list[Generation]:
    found = []
    for block in out.split("@@\n"):
        info = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if info.get("generation", "").isdigit():
            found.append(
                Generation(
                    number=int(info["generation"]),
                    created=info.get("created", ""),
                    by=info.get("by", ""),
                    digest=info.get("digest", ""),
                    status=_switched(info.get("status", "")),
                    live=info.get("live") == "1",
                )
            )
    return found


def _switched(recorded: str) -> Switched:
    try:
        return Switched(recorded)
    except ValueError:  # (what this croft does not know, as it does not know a record's absence)
        return Switched.UNKNOWN
