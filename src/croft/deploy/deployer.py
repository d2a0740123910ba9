"""Deploying one machine: read what is live, send the delta, switch, and report.

Round trips per machine: one to read the live generation (all a no-op deploy costs), one
rsync of the changed files into a new generation, one to run the switch (apply.sh).
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from croft.build.manifest import Manifest, empty
from croft.build.result import BuildResult, build_dir
from croft.deploy import plan
from croft.deploy.ssh import Connection
from croft.errors import CroftError
from croft.run import run, run_binary
from croft.site.model import Machine, Site

REMOTE = "/usr/local/croft"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Generation:
    number: int
    created: str = ""
    by: str = ""
    digest: str = ""
    status: str = ""
    live: bool = False


@dataclass
class LiveState:
    live: int | None
    generations: list[int]
    digest: str | None


@dataclass
class Outcome:
    """What happened to one machine."""

    machine: str
    status: str  # unchanged | deployed | rolled-back | failed | planned
    generation: int | None = None
    changes: plan.FileChanges = field(default_factory=plan.FileChanges)
    actions: plan.UnitActions = field(default_factory=plan.UnitActions)
    log: str = ""
    journals: dict[str, str] = field(default_factory=dict)
    message: str = ""
    conflicts: list[str] = field(default_factory=list)
    """Paths the deploy would take over that are not croft's (refused unless adopted)."""

    @property
    def ok(self) -> bool:
        return self.status in ("unchanged", "deployed", "planned")


class DeployFailed(CroftError):
    pass


def connect(site: Site, machine: Machine) -> Connection:
    return Connection(site.ssh_target(machine), site.state_dir / "known_hosts")


def read_state(conn: Connection) -> LiveState:
    script = (
        f"cd {REMOTE} 2>/dev/null || exit 0; "
        "readlink live 2>/dev/null; echo @@; ls generations 2>/dev/null; echo @@; "
        "cat live/digest 2>/dev/null; true"
    )
    out = conn.run(script).stdout
    parts = ([*out.split("@@\n"), "", "", ""])[:3]
    live = parts[0].strip().removeprefix("generations/")
    numbers = sorted(int(n) for n in parts[1].split() if n.isdigit())
    return LiveState(
        live=int(live) if live.isdigit() else None,
        generations=numbers,
        digest=parts[2].strip() or None,
    )


def _manifest_cache(site: Site, digest: str) -> Path:
    return site.state_dir / "cache" / "manifests" / f"{digest}.json"


def fetch_manifest(site: Site, conn: Connection, machine: str, generation: int | None) -> Manifest:
    """The manifest of a generation on the target (cached locally by digest)."""
    if generation is None:
        return empty(machine)
    gen_dir = f"{REMOTE}/generations/{generation}"
    digest = conn.run(f"cat {gen_dir}/digest").stdout.strip()
    cached = _manifest_cache(site, digest)
    if re.fullmatch(r"[0-9a-f]{64}", digest) and cached.exists():
        return Manifest.load(cached)
    text = conn.run(f"cat {gen_dir}/manifest.json").stdout
    manifest = Manifest.from_json(text)
    _remember(site, manifest)
    return manifest


def _remember(site: Site, manifest: Manifest) -> None:
    path = _manifest_cache(site, manifest.digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(manifest.to_json())


def _who() -> str:
    """Who deploys, for the generation's record: user@host."""
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}"


def apply_script(
    *,
    steps: list[str],
    back: list[str],
    generation: str,
    expect: str,
    incoming: str | None,
    rollback: bool,
    reset: bool,
    settle: float,
    keep: int,
    purge: bool = False,
    adopt: tuple[str, ...] = (),
    confirm: int = 0,
) -> str:
    """apply.sh with its variables and both plans; with `confirm`, it also carries the way
    back as a script of its own, which a timer runs unless the switch is confirmed in time."""

    def heredoc(name: str, lines: list[str], end: str = "CROFT_PLAN_END") -> str:
        body = "\n".join(lines)
        return f"{name}() {{\ncat <<'{end}'\n{body}\n{end}\n}}\n"

    revert = ""
    if confirm:
        revert = apply_script(
            steps=back, back=[], generation=expect, expect=generation, incoming=None,
            rollback=False, reset=False, settle=settle, keep=keep, adopt=adopt,
        )  # fmt: skip
    variables = {
        "GEN": generation,
        "EXPECT": expect,
        "INCOMING": incoming or "",
        "ROLLBACK": int(rollback),
        "RESET": int(reset),
        "PURGE": int(purge),
        "ADOPT": "\n".join(adopt),
        "CONFIRM": confirm,
        "SETTLE_US": int(settle * 1_000_000),
        "KEEP": max(keep, 1),
        "BY": _who(),
    }
    header = "".join(f"{key}={shlex.quote(str(value))}\n" for key, value in variables.items())
    body = (Path(__file__).parent / "apply.sh").read_text()
    plans = heredoc("forward_plan", steps) + heredoc("backward_plan", back)
    if revert:  # (the revert script itself has none: its own would end this here-document)
        plans += heredoc("revert_script", revert.splitlines(), end="CROFT_REVERT_END")
    return "#!/bin/sh\n" + header + plans + body


def run_apply(conn: Connection, script: str) -> tuple[int, str]:
    """Send apply.sh and run it detached; returns its exit code and log."""
    remote = (
        # In /tmp, not under /usr/local/croft: a reset removes that directory.
        f'mkdir -p {REMOTE} && f=$(mktemp /tmp/croft-apply.XXXXXX) && cat > "$f" && '
        # setsid: the switch must finish even if this SSH session dies (the client was killed).
        'setsid -w sh "$f" > "$f.log" 2>&1; rc=$?; cat "$f.log"; rm -f "$f" "$f.log"; exit $rc'
    )
    result = conn.run(remote, input=script, check=False, timeout=600)
    if result.returncode == 255:
        raise DeployFailed(f"lost the connection to {conn}: {result.stderr.strip()}")
    return result.returncode, result.stdout


def _parse_log(outcome: Outcome, code: int, log: str) -> Outcome:
    outcome.log = log
    journals = re.findall(r"croft-journal-begin: (\S+)\n(.*?)croft-journal-end: \1", log, re.S)
    outcome.journals = {unit: text for unit, text in journals}
    errors = re.findall(r"^croft-(?:error|failed): (.*)$", log, re.M)
    outcome.conflicts = re.findall(r"^croft-conflict: (.*)$", log, re.M)
    if code == 0:
        return outcome
    outcome.status = "rolled-back" if code == 1 else "failed"
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


def deploy(
    site: Site,
    machine: Machine,
    built: BuildResult,
    *,
    rollback: bool = True,
    dry_run: bool = False,
    progress: Progress = lambda stage: None,
) -> Outcome:
    """Make the machine's live generation match its built tree."""
    progress("connecting")
    conn = connect(site, machine)
    state = read_state(conn)
    outcome = Outcome(machine.name, "unchanged", state.live)
    if state.digest == built.digest:
        return outcome
    manifest = built.manifest
    old = fetch_manifest(site, conn, machine.name, state.live)
    outcome.changes = plan.file_changes(old, manifest)
    outcome.actions = plan.unit_actions(old, manifest, outcome.changes)
    if dry_run:
        outcome.status = "planned"
        outcome.conflicts = find_conflicts(conn, old, manifest, adopted_paths(site, machine))
        return outcome
    generation = max(state.generations, default=0) + 1
    progress("sending")
    local = build_dir(site, machine.name)
    argv = [
        "rsync",
        "-rlpt",
        "--delete",
        "--mkpath",
        # Owners are not sent: the files belong to the target's root, not to the builder's user.
        "--no-owner",
        "--no-group",
        # Built files' times come from their content (see croft.build.builder): compared to the
        # nanosecond, equal times mean equal content.
        "--modify-window=-1",
        "-e",
        conn.rsync_shell(),
    ]
    if state.live is not None:
        # Unchanged files are hard links to the live generation: only the delta travels.
        argv.append(f"--link-dest={REMOTE}/generations/{state.live}")
    # A directory of this deploy's own: another deploy of the machine (another copy of the
    # site) sends into its own, and apply.sh switches to at most one of them, under its lock.
    incoming = f".incoming-{secrets.token_hex(8)}"
    argv += [f"{local}/", f"{conn.destination}:{REMOTE}/generations/{incoming}/"]
    run(argv, timeout=3600)
    progress("applying")
    expect = str(state.live) if state.live is not None else "none"
    script = apply_script(
        steps=plan.steps(old, manifest, str(generation)),
        back=plan.steps(manifest, old, expect),
        generation=str(generation),
        expect=expect,
        incoming=incoming,
        rollback=rollback,
        reset=False,
        settle=site.config.deploy.settle_seconds,
        keep=site.config.deploy.keep_generations,
        adopt=adopted_paths(site, machine),
        confirm=site.config.deploy.confirm_seconds,
    )
    started = time.monotonic()
    code, log = run_apply(conn, script)
    outcome.generation = generation if code == 0 else state.live
    outcome.status = "deployed"
    _remember(site, manifest)
    _parse_log(outcome, code, log)
    if code == 0 and site.config.deploy.confirm_seconds:
        progress("confirming")
        _confirm(conn, outcome, generation, state.live, started + site.config.deploy.confirm_seconds)
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
    while (left := revert_at - 1 - time.monotonic()) > 0:
        result = run([*conn.fresh(min(5, left)), script], check=False, timeout=left + 5)
        if result.returncode == 0 and "confirmed" in result.stdout:
            return
        if result.returncode == 0:
            break  # the revert ran already
        why = (result.stderr.strip().splitlines() or ["ssh failed"])[-1]
        time.sleep(min(1.0, max(0.0, revert_at - 1 - time.monotonic())))
    # The timer runs the way back now; a new connection then should work again.
    time.sleep(max(0.0, revert_at + 3 - time.monotonic()))
    back = "none" if previous is None else str(previous)
    for _ in range(30):
        result = run([*conn.fresh(5), f"readlink {REMOTE}/live || echo none"], check=False, timeout=15)
        if result.returncode == 0 and result.stdout.strip().removeprefix("generations/") == back:
            break
        time.sleep(2)
    outcome.status = "rolled-back"
    outcome.generation = previous
    outcome.message = (
        f"croft could not reach {conn} over a new SSH connection after the switch ({why or 'no answer'}): "
        f"the machine reverted itself to generation {back}"
    )


def adopted_paths(site: Site, machine: Machine) -> tuple[str, ...]:
    """The paths the machine's layers may take over from someone else (layer.toml's adopt)."""
    return tuple(
        path
        for name in machine.config.layers
        if name in site.layers
        for path in site.layers[name].config.adopt
    )


def generations(site: Site, machine: Machine) -> list[Generation]:
    conn = connect(site, machine)
    script = (
        f"cd {REMOTE}/generations 2>/dev/null || exit 0; live=$(readlink ../live); "
        "for g in $(ls | grep -E '^[0-9]+$' | sort -n); do cat $g/info; "
        'echo status=$(cat $g/status 2>/dev/null); [ generations/$g = "$live" ] && echo live=1; echo @@; done'
    )
    found = []
    for block in conn.run(script).stdout.split("@@\n"):
        info = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "generation" in info:
            found.append(
                Generation(
                    number=int(info["generation"]),
                    created=info.get("created", ""),
                    by=info.get("by", ""),
                    digest=info.get("digest", ""),
                    status=info.get("status", ""),
                    live=info.get("live") == "1",
                )
            )
    return found


def rollback(site: Site, machine: Machine, to: int | None = None) -> Outcome:
    """Make an earlier generation live again (by default the newest good one before live)."""
    conn = connect(site, machine)
    state = read_state(conn)
    if state.live is None:
        raise CroftError(f"{machine.name}: nothing is deployed, so there is nothing to roll back")
    known = {g.number: g for g in generations(site, machine)}
    if to is None:
        earlier = [n for n, g in known.items() if n < state.live and g.status == "ok"]
        if not earlier:
            raise CroftError(f"{machine.name}: no earlier generation to roll back to")
        to = max(earlier)
    if to not in known:
        raise CroftError(
            f"{machine.name}: no generation {to} (there are: {', '.join(map(str, sorted(known)))})"
        )
    current = fetch_manifest(site, conn, machine.name, state.live)
    target = fetch_manifest(site, conn, machine.name, to)
    outcome = Outcome(machine.name, "deployed", to)
    outcome.changes = plan.file_changes(current, target)
    outcome.actions = plan.unit_actions(current, target, outcome.changes)
    script = apply_script(
        steps=plan.steps(current, target, str(to)),
        back=plan.steps(target, current, str(state.live)),
        generation=str(to),
        expect=str(state.live),
        incoming=None,
        rollback=True,
        reset=False,
        settle=site.config.deploy.settle_seconds,
        keep=site.config.deploy.keep_generations,
    )
    code, log = run_apply(conn, script)
    if code != 0:
        outcome.generation = state.live
    return _parse_log(outcome, code, log)


def reset(site: Site, machine: Machine, *, purge: bool = False) -> Outcome:
    """Stop croft's units and remove everything croft put under /usr/local; with `purge`, also
    the system users croft made for services and /var/lib/croft (state, snapshots, containers)."""
    conn = connect(site, machine)
    state = read_state(conn)
    current = fetch_manifest(site, conn, machine.name, state.live)
    nothing = empty(machine.name)
    outcome = Outcome(machine.name, "deployed", None)
    outcome.changes = plan.file_changes(current, nothing)
    outcome.actions = plan.unit_actions(current, nothing, outcome.changes)
    expect = str(state.live) if state.live is not None else "none"
    script = apply_script(
        steps=plan.steps(current, nothing, "none"),
        back=[],
        generation="none",
        expect=expect,
        incoming=None,
        rollback=False,
        reset=True,
        settle=0,
        keep=1,
        purge=purge,
    )
    code, log = run_apply(conn, script)
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
