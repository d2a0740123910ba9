"""Deploying one machine: read what is live, send the delta, switch, and report.

Round trips per machine: one to read the live generation (all a no-op deploy costs), and one
that carries the switch (apply.sh) with the changed files after it (see croft.deploy.transfer).
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from croft import inplace
from croft.build.manifest import Manifest, empty
from croft.build.result import BuildResult
from croft.deploy import plan, remote, transfer
from croft.deploy.remote import Generation, LiveState
from croft.deploy.ssh import Connection, Session
from croft.deploy.target import Target, of
from croft.errors import CroftError
from croft.layout import REMOTE
from croft.run import run, run_binary
from croft.wait import until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from croft.site.model import Machine, Site

STALE = 75
"""apply.sh's exit code when the machine is not in the state the switch was planned from."""
Progress = Callable[[str], None]


class Status(StrEnum):
    """How a machine's deploy (rollback, reset, dry run) ended."""

    UNCHANGED = "unchanged"
    DEPLOYED = "deployed"
    PLANNED = "planned"
    """A dry run's (croft diff): what a deploy would do."""
    ROLLED_BACK = "rolled-back"
    """A unit failed and the machine went back to what was live, or croft could not reach it
    again and it went back itself."""
    FAILED = "failed"


class Outcome:
    """What happened to one machine."""

    def __init__(
        self, machine: str, status: Status, generation: int | None = None, *, message: str = ""
    ) -> None:
        self.machine = machine
        self.status = status
        self.generation = generation
        self.changes = plan.FileChanges()
        self.actions = plan.UnitActions()
        self.packages = plan.PackageChanges()
        self.outside = plan.OutsideChanges()
        self.log = ""
        self.journals: dict[str, str] = {}
        self.message = message
        self.conflicts: list[str] = []
        """Paths the deploy would take over that are not croft's (refused unless adopted)."""

    @property
    def ok(self) -> bool:
        return self.status in (Status.UNCHANGED, Status.DEPLOYED, Status.PLANNED)


class DeployFailed(CroftError):
    pass


def connect(site: Site, machine: Machine) -> Connection:
    return Connection(site.ssh_target(machine), site.state_dir / "known_hosts")


def reach(target: Target) -> Connection:
    return Connection(target.ssh, target.known_hosts)


def read_state(conn: Connection, session: Session | None = None) -> LiveState:
    """What is live on the machine (through `session`, when croft opened one ahead)."""
    script = remote.state_script()
    return remote.parse_state((session.check(script) if session else conn.run(script)).stdout)


def _manifest_cache(state_dir: Path, digest: str) -> Path:
    return state_dir / "cache" / "manifests" / f"{digest}.json"


def fetch_manifest(
    state_dir: Path, conn: Connection, machine: str, generation: int | None, digest: str | None = None
) -> Manifest:
    """The manifest of a generation on the target (cached locally by its digest, which the
    caller passes when it read it already)."""
    if generation is None:
        return empty(machine)
    gen_dir = f"{REMOTE}/generations/{generation}"
    if digest is None:
        digest = conn.run(f"cat {gen_dir}/digest").stdout.strip()
    cached = _manifest_cache(state_dir, digest)
    if re.fullmatch(r"[0-9a-f]{64}", digest) and cached.exists():
        return Manifest.load(cached)
    text = conn.run(f"cat {gen_dir}/manifest.json").stdout
    manifest = Manifest.from_json(text)
    _cache_manifest(state_dir, manifest)
    return manifest


def _cache_manifest(state_dir: Path, manifest: Manifest) -> None:
    path = _manifest_cache(state_dir, manifest.digest)
    if not path.exists():
        # Machines with the same tree (one digest) are deployed by threads at once.
        inplace.publish(path, manifest.to_json().encode())


def _cache_built(state_dir: Path, built: BuildResult) -> None:
    """The build's manifest, as it is in its file (not made again from the manifest)."""
    path = _manifest_cache(state_dir, built.digest)
    if not path.exists():
        inplace.publish(path, (built.directory / "manifest.json").read_bytes())


def _memory(state_dir: Path, machine: str) -> Path:
    return state_dir / "live" / machine


def recall(state_dir: Path, machine: str) -> LiveState | None:
    """What croft last knew to be live on the machine (it may have changed since)."""
    try:
        live, digest, *generations = _memory(state_dir, machine).read_text().split()
    except (OSError, ValueError):
        return None
    return LiveState(int(live) if live.isdigit() else None, sorted(map(int, generations)), digest)


def remember(state_dir: Path, machine: str, state: LiveState) -> None:
    fields = [str(state.live) if state.live is not None else "none", state.digest or "none"]
    # Whole or not at all: croft may be stopped at any moment (Ctrl-C ends its threads).
    inplace.write(_memory(state_dir, machine), " ".join([*fields, *map(str, state.generations)]) + "\n")


def forget(state_dir: Path, machine: str) -> None:
    """After a command that changes the machine some other way (rollback, reset)."""
    _memory(state_dir, machine).unlink(missing_ok=True)


@functools.cache
def _who() -> str:
    """Who deploys, for the generation's record: user@host."""
    import pwd
    import socket

    return f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"


@functools.cache
def _apply_sh() -> str:
    return (Path(__file__).parent / "apply.sh").read_text()


def apply_script(
    *,
    steps: list[str],
    back: list[str],
    generation: str,
    expect: str,
    receive: tuple[str, list[str]] | None,
    expect_digest: str = "",
    rollback: bool,
    reset: bool,
    settle: float,
    keep: int,
    purge: bool = False,
    adopt: tuple[str, ...] = (),
    confirm: int = 0,
    apt: tuple[str, str, str] = ("", "", ""),
) -> str:
    """apply.sh after its variables, both plans among them. With `receive` (the new tree's
    digest and the live paths it drops), it first makes the generation from the live one and
    the files that follow it on stdin. With `confirm`, it also carries the way back as a script
    of its own, which a timer runs unless the switch is confirmed in time."""

    revert = ""
    if confirm:
        revert = apply_script(
            steps=back, back=[], generation=expect, expect=generation, receive=None,
            rollback=False, reset=False, settle=settle, keep=keep, adopt=adopt, apt=apt,
        )  # fmt: skip
    variables = {
        "CROFT": REMOTE,
        "GEN": generation,
        "EXPECT": expect,
        "EXPECT_DIGEST": expect_digest,
        "RECEIVE": int(receive is not None),
        "DIGEST": receive[0] if receive else "",
        "DROPPED": "\n".join(receive[1]) if receive else "",
        "FORWARD": "\n".join(steps),
        "BACKWARD": "\n".join(back),
        "ROLLBACK": int(rollback),
        "RESET": int(reset),
        "PURGE": int(purge),
        "ADOPT": "\n".join(adopt),
        "CONFIRM": confirm,
        "REVERT": revert,
        # How apt runs here: through the site's cache, the site's repository directly, and
        # with the new generation's source for it (before the flip makes it apt's).
        "APT_PROXY": apt[0],
        "APT_DIRECT": apt[1],
        "APT_SOURCES": apt[2],
        "SETTLE_US": int(settle * 1_000_000),
        "KEEP": max(keep, 1),
        "BY": _who(),
        "CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    header = "".join(f"{key}={shlex.quote(str(value))}\n" for key, value in variables.items())
    return "#!/bin/sh\n" + header + _apply_sh()


def run_apply(
    session: Session, script: str, send: Callable[[IO[bytes]], None] | bytes = b""
) -> tuple[int, str]:
    """Run apply.sh in the session, with the files after it on stdin (for its tar: what `send`
    writes, or is); its exit code and output. It runs to its end even if the connection breaks."""
    result = session.run(script, send)
    if result.returncode == 255:
        raise DeployFailed(f"lost the connection to {session.connection}: {result.stderr.strip()}")
    return result.returncode, result.stdout


def _parse_log(outcome: Outcome, code: int, log: str) -> Outcome:
    outcome.log = log
    journals = re.findall(r"croft-journal-begin: (\S+)\n(.*?)croft-journal-end: \1", log, re.S)
    outcome.journals = {unit: text for unit, text in journals}
    errors = re.findall(r"^croft-(?:error|failed): (.*)$", log, re.M)
    outcome.conflicts = re.findall(r"^croft-conflict: (.*)$", log, re.M)
    if code == 0:
        return outcome
    outcome.status = Status.ROLLED_BACK if code == 1 else Status.FAILED
    outcome.message = "; ".join(errors) or f"apply exited {code}"
    if outcome.conflicts:
        outcome.message = f"not croft's: {', '.join(outcome.conflicts)}; {outcome.message}"
    return outcome


def find_conflicts(conn: Connection, old: Manifest, new: Manifest, adopt: tuple[str, ...]) -> list[str]:
    """What a deploy from `old` to `new` would take over from someone else (croft diff)."""
    added = [path for path in new.entries if path not in old.entries and path not in adopt]
    if not added:
        return []
    listing = "".join(f"{'d' if new.entries[p].type == 'dir' else 'f'} {p}\n" for p in sorted(added))
    # The paths go to the script's loop as a here-document (its last line is that loop's `done`).
    script = Path(__file__).with_name("conflicts.sh").read_text().rstrip()
    script += f" <<'CROFT_PATHS'\n{listing}CROFT_PATHS\n"
    return conn.run(f"sh -s -- {REMOTE}", input=script).stdout.splitlines()


def planned(outcome: Outcome, old: Manifest, new: Manifest) -> Outcome:
    """The outcome with what going from `old` to `new` changes: files, and units."""
    outcome.changes = plan.file_changes(old, new)
    outcome.actions = plan.unit_actions(old, new, outcome.changes)
    outcome.packages = plan.package_changes(old, new)
    outcome.outside = plan.outside_changes(old, new)
    return outcome


def run_switch(
    session: Session,
    outcome: Outcome,
    old: Manifest,
    new: Manifest,
    *,
    generation: str,
    expect: str,
    back: bool = True,
    send: Callable[[IO[bytes]], None] | bytes = b"",
    **options: Any,
) -> tuple[int, str]:
    """The switch from `old` to `new` on the machine, for deploy, rollback and reset alike: the
    plan (computed once, in a planned outcome) forward and, with `back`, the way back; then
    apply.sh with `options` (see apply_script), in `session`. Its exit code and log."""
    script = apply_script(
        steps=plan.steps(old, new, generation, outcome.changes, outcome.actions),
        back=plan.steps(new, old, expect, outcome.changes.reversed()) if back else [],
        generation=generation,
        expect=expect,
        **options,
    )
    return run_apply(session, script, send)


def deploy(
    machine: Target,
    built: BuildResult,
    *,
    rollback: bool = True,
    dry_run: bool = False,
    progress: Progress = lambda stage: None,
    session: Session | None = None,
) -> Outcome:
    """Make the machine's live generation match its built tree.

    When croft remembers what it left live there, and has that generation's manifest, it
    sends the switch at once: one round trip, which apply.sh refuses (changing nothing) if the
    machine is not as croft remembers it. Then, or without a memory, it reads the live state
    first, and switches from there. The first round trip goes through `session` when croft
    opened one ahead (croft.pipeline.prepare).
    """
    progress("connecting")
    conn = reach(machine)
    session = session or conn.open()
    try:
        return _deploy(machine, built, conn, session, rollback, dry_run, progress)
    finally:
        session.cancel()  # (when an error came first: one that ran its script is done already)


def _deploy(
    machine: Target,
    built: BuildResult,
    conn: Connection,
    session: Session,
    rollback: bool,
    dry_run: bool,
    progress: Progress,
) -> Outcome:
    known = recall(machine.state_dir, machine.name)
    if known is not None and known.digest not in (None, built.digest) and not dry_run:
        cached = _manifest_cache(machine.state_dir, known.digest)
        if cached.exists():
            outcome = _switch(machine, built, session, known, Manifest.load(cached), rollback, progress)
            if outcome is not None:
                return outcome
            session = conn.open()  # (that one ran the switch apply.sh refused)
    state = read_state(conn, session)
    remember(machine.state_dir, machine.name, state)
    outcome = Outcome(machine.name, Status.UNCHANGED, state.live)
    if state.digest == built.digest:
        return outcome
    old = fetch_manifest(machine.state_dir, conn, machine.name, state.live, state.digest)
    if dry_run:
        planned(outcome, old, built.manifest)
        outcome.status = Status.PLANNED
        outcome.conflicts = find_conflicts(conn, old, built.manifest, machine.adopt)
        return outcome
    switched = _switch(machine, built, conn.open(), state, old, rollback, progress)
    if switched is None:  # changed since it was read, a moment ago: another deploy
        return Outcome(
            machine.name, Status.FAILED, state.live,
            message="the machine changed since croft read it (another deploy?); run the command again",
        )  # fmt: skip
    return switched


def _switch(
    machine: Target,
    built: BuildResult,
    session: Session,
    state: LiveState,
    old: Manifest,
    rollback: bool,
    progress: Progress,
) -> Outcome | None:
    """Switch the machine from `state` (with manifest `old`) to the build, sending the files
    with the switch. None when the machine is not in that state (nothing changed)."""
    manifest = built.manifest
    outcome = planned(Outcome(machine.name, Status.DEPLOYED, state.live), old, manifest)
    generation = max(state.generations, default=0) + 1
    expect = str(state.live) if state.live is not None else "none"
    # Confirm or revert guards what can lock croft out: units started, stopped, restarted or
    # reloaded, systemd reloaded. A switch that only changes files' contents runs nothing.
    confirm = machine.confirm if outcome.actions else 0
    paths = transfer.sent(outcome.changes)
    # A few small files go as one piece made here; more, as tar writes them.
    send: Callable[[IO[bytes]], None] | bytes | None = transfer.small(built.directory, paths)
    if send is None:

        def send(stream: IO[bytes]) -> None:
            transfer.write(stream, built.directory, paths)
            progress("applying")

    progress("sending")
    code, log = run_switch(
        session, outcome, old, manifest,
        generation=str(generation),
        expect=expect,
        send=send,
        expect_digest=state.digest or "",
        receive=(built.digest, transfer.dropped(old, manifest, outcome.changes)),
        rollback=rollback,
        reset=False,
        settle=machine.settle,
        keep=machine.keep,
        adopt=machine.adopt,
        confirm=confirm,
        apt=machine.apt,
    )  # fmt: skip
    if code == STALE and "croft-stale:" in log:
        forget(machine.state_dir, machine.name)
        return None
    started = time.monotonic()  # (the revert timer starts as apply.sh ends)
    outcome.generation = generation if code == 0 else state.live
    _cache_built(machine.state_dir, built)
    _parse_log(outcome, code, log)
    unknown = re.findall(r"^croft-unknown-package: (\S+)$", log, re.M)
    if unknown:
        # Only when apt refused a package: the site is loaded, every generator imported for it.
        from croft.site.load import load_site
        from croft.systemd import generated

        site = load_site(machine.root)
        origins = generated.package_origins(site, site.machines[machine.name])
        outcome.message = (
            "; ".join(
                f"apt knows no package {name!r} (asked for by {', '.join(origins.get(name, ['?']))})"
                for name in unknown
            )
            + "; nothing changed"
        )
    generations = [*state.generations, generation]
    if code == 0 and confirm:
        progress("confirming")
        _confirm(session.connection, outcome, generation, state.live, started + confirm)
    if outcome.generation == generation:
        remember(machine.state_dir, machine.name, LiveState(generation, generations, built.digest))
    elif code in (0, 1):  # rolled back (by apply.sh, or by the revert timer)
        remember(machine.state_dir, machine.name, LiveState(state.live, generations, state.digest))
    else:
        forget(machine.state_dir, machine.name)
    return outcome


def _confirm(
    conn: Connection, outcome: Outcome, generation: int, previous: int | None, revert_at: float
) -> None:
    """Reach the machine over a new SSH connection and cancel its revert timer. When that fails
    until the timer is due, the machine reverts itself: wait for it and say so."""
    script = (
        f'[ "$(readlink {REMOTE}/live)" = generations/{generation} ] || {{ echo reverted; exit 0; }}; '
        f"systemctl stop croft-revert.timer && rm -f {REMOTE}/revert.sh && echo confirmed"
    )
    why = ""

    def confirm() -> str | None:
        nonlocal why
        left = max(1.0, revert_at - 1 - time.monotonic())
        result = run([*conn.fresh(min(5, left)), script], check=False, timeout=left + 5)
        if result.returncode == 0:
            return "confirmed" if "confirmed" in result.stdout else "reverted"
        why = (result.stderr.strip().splitlines() or ["ssh failed"])[-1]
        return None

    if until(confirm, revert_at - 1 - time.monotonic(), interval=1.0) == "confirmed":
        return
    # The timer runs the way back now; a new connection then should work again.
    time.sleep(max(0.0, revert_at + 3 - time.monotonic()))
    back = "none" if previous is None else str(previous)

    def reverted() -> bool:
        result = run([*conn.fresh(5), f"readlink {REMOTE}/live || echo none"], check=False, timeout=15)
        return result.returncode == 0 and result.stdout.strip().removeprefix("generations/") == back

    until(reverted, 60, interval=2.0)
    outcome.status = Status.ROLLED_BACK
    outcome.generation = previous
    outcome.message = (
        f"croft could not reach {conn} over a new SSH connection after the switch ({why or 'no answer'}): "
        f"the machine reverted itself to generation {back}"
    )


def generations(site: Site, machine: Machine) -> list[Generation]:
    return remote.parse_generations(connect(site, machine).run(remote.generations_script()).stdout)


def rollback(site: Site, machine: Machine, to: int | None = None) -> Outcome:
    """Make an earlier generation live again (by default the newest good one before live)."""
    conn = connect(site, machine)
    state = read_state(conn)
    if state.live is None:
        raise CroftError(f"{machine.name}: nothing is deployed, so there is nothing to roll back")
    known = {g.number: g for g in generations(site, machine)}
    if to is None:
        earlier = [n for n, g in known.items() if n < state.live and g.status == remote.Switched.OK]
        if not earlier:
            raise CroftError(f"{machine.name}: no earlier generation to roll back to")
        to = max(earlier)
    if to not in known:
        raise CroftError(
            f"{machine.name}: no generation {to} (there are: {', '.join(map(str, sorted(known)))})"
        )
    current = fetch_manifest(site.state_dir, conn, machine.name, state.live, state.digest)
    target = fetch_manifest(site.state_dir, conn, machine.name, to)
    outcome = planned(Outcome(machine.name, Status.DEPLOYED, to), current, target)
    forget(site.state_dir, machine.name)
    code, log = run_switch(
        conn.open(), outcome, current, target,
        generation=str(to),
        expect=str(state.live),
        receive=None,
        rollback=True,
        reset=False,
        settle=site.config.deploy.settle_seconds,
        keep=site.config.deploy.keep_generations,
        apt=of(site, machine).apt,
    )  # fmt: skip
    if code != 0:
        outcome.generation = state.live
    return _parse_log(outcome, code, log)


def reset(site: Site, machine: Machine, *, purge: bool = False) -> Outcome:
    """Stop croft's units and remove everything croft put under /usr/local; with `purge`, also
    the system users croft made for services and /var/lib/croft (state, snapshots, containers)."""
    conn = connect(site, machine)
    state = read_state(conn)
    current = fetch_manifest(site.state_dir, conn, machine.name, state.live, state.digest)
    nothing = empty(machine.name)
    outcome = planned(Outcome(machine.name, Status.DEPLOYED, None), current, nothing)
    forget(site.state_dir, machine.name)
    code, log = run_switch(
        conn.open(), outcome, current, nothing,
        generation="none",
        expect=str(state.live) if state.live is not None else "none",
        back=False,
        receive=None,
        rollback=False,
        reset=True,
        settle=0,
        keep=1,
        purge=purge,
        apt=of(site, machine).apt,
    )  # fmt: skip
    return _parse_log(outcome, code, log)


def live_contents(site: Site, machine: Machine, paths: list[str]) -> dict[str, bytes]:
    """The live content of these paths on the target, in one round trip."""
    if not paths:
        return {}
    conn = connect(site, machine)
    script = f"cd {REMOTE}/live/root 2>/dev/null && tar cf - -- {shlex.join(paths)} 2>/dev/null; true"
    data = run_binary(conn.command(script)).stdout
    contents: dict[str, bytes] = {}
    if data:
        import io
        import tarfile  # only here: a no-op deploy should not pay for importing it

        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                stream = archive.extractfile(member)
                if stream is not None:
                    contents[member.name] = stream.read()
    return contents
