"""SSH connections: one multiplexed OpenSSH master per machine, shared by every command and rsync.

A warm master makes a remote command cost ~7 ms instead of ~200 ms for a fresh connection;
it persists a minute after croft exits so the next command (or --watch) starts warm. A deploy's
sessions (Session) go through the master's socket without an ssh process (croft.deploy.mux).
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO

from croft.deploy import mux
from croft.layout import cache_dir
from croft.run import CommandError, Started, run
from croft.site.ssh import SshTarget

END = "# the end of the script"
"""A script's last line, as a Session sends it: the machine runs only a script that arrived whole."""

RECEIVER = (
    # The script's size on a line, then exactly its bytes (fullblock: a pipe gives them in
    # pieces), held by the shell that runs them: no file to write and remove. The rest of stdin
    # is the script's own (a deploy's files, for apply.sh's tar). Nothing at all (a session
    # croft did not need): `read` fails, and the shell exits.
    'IFS= read -r size && script=$(dd bs="$size" count=1 iflag=fullblock status=none) && '
    # A script cut short (the connection broke off) lacks its last line, and never runs.
    f'case $script in *"\n{END}") eval "$script" ;; '
    '*) echo "croft-error: the script arrived cut short; nothing changed"; exit 70 ;; esac'
)


def forget_host_keys(known_hosts: Path, addresses: list[str]) -> None:
    """Forget the host keys recorded for `addresses` (machines about to be reinstalled)."""
    if known_hosts.exists():
        for address in addresses:
            run(["ssh-keygen", "-R", address, "-f", known_hosts], check=False)


class Connection:
    def __init__(self, target: SshTarget, known_hosts: Path, *, persist: str = "60") -> None:
        self.target = target
        control = cache_dir() / "ssh"
        control.mkdir(parents=True, exist_ok=True, mode=0o700)
        reached = f"{target.user}@{target.host}:{target.port}".encode()
        self.control_path = str(control / hashlib.sha256(reached).hexdigest()[:32])
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        options = [
            "BatchMode=yes",  # never prompt: croft runs unattended and in parallel
            "StrictHostKeyChecking=accept-new",
            f"UserKnownHostsFile={known_hosts}",
            "ControlMaster=auto",
            # Named by croft (a hash, so the path stays short), which talks to it (croft.deploy.mux).
            f"ControlPath={self.control_path}",
            f"ControlPersist={persist}",
            "ConnectTimeout=10",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
            "LogLevel=ERROR",
            *target.options,
        ]
        if target.via is not None:
            options.append(f"ProxyCommand={_through(Connection(target.via, known_hosts, persist=persist))}")
        self.argv = ["ssh", "-p", str(target.port)]
        if target.key:
            self.argv += ["-i", str(target.key), "-o", "IdentitiesOnly=yes"]
        for option in options:
            self.argv += ["-o", option]
        self.destination = f"{target.user}@{target.host}"

    def __str__(self) -> str:
        return self.destination

    def fresh(self, timeout: float) -> list[str]:
        """This connection's ssh argv for a new connection of its own (not the kept-open one),
        giving up after `timeout` seconds: does the machine still let croft in?"""
        # First: ssh takes the first value it is given for an option.
        options = ["-o", "ControlPath=none", "-o", f"ConnectTimeout={max(1, int(timeout))}"]
        return [self.argv[0], *options, *self.argv[1:], self.destination]

    def command(self, script: str) -> list[str]:
        """The argv that runs `script` with the remote's sh."""
        return [*self.argv, self.destination, "--", remote(script)]

    def run(
        self,
        script: str,
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = 120,
    ) -> subprocess.CompletedProcess[str]:
        try:
            return run(self.command(script), input=input, check=check, timeout=timeout)
        except CommandError as exc:
            if exc.returncode == 255:
                raise ConnectionFailed(self, exc.stderr) from None
            raise RemoteCommandFailed(self, script, exc) from None

    def open(self) -> Session:
        """A shell on the machine, started now, that runs the script given to it later."""
        return Session(self)

    def rsync_shell(self) -> str:
        """The -e argument that makes rsync ride this connection."""
        return shlex.join(self.argv)

    def close(self) -> None:
        run([*self.argv, "-O", "exit", self.destination], check=False, timeout=10)


def remote(script: str) -> str:
    """The command line that runs `script` with the remote's sh (whatever the user's shell)."""
    return f"sh -c {shlex.quote(script)}"


def frame(script: str) -> bytes:
    """The script as RECEIVER reads it: its size, then the script ending with END."""
    body = f"{script.rstrip()}\n{END}\n".encode()
    return f"{len(body)}\n".encode() + body


class Session:
    """A shell on the machine, started before croft knows what it will run there: the session's
    start (ssh, sshd, the login shell) goes on while croft builds and plans. It runs one script,
    with what `send` gives after it on stdin; returns its exit code and output (255: ssh itself
    failed), whatever happens to the connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.started: Started | mux.Passenger
        try:  # through the kept-open connection's master, when there is one
            self.started = mux.Passenger(connection.control_path, remote(RECEIVER))
        except mux.Unavailable:
            self.started = Started(connection.command(RECEIVER))

    def run(
        self, script: str, send: Callable[[IO[bytes]], None] | bytes = b"", *, timeout: float = 3600
    ) -> subprocess.CompletedProcess[str]:
        head = frame(script)
        if isinstance(send, bytes):
            return self.started.finish(head + send, timeout=timeout)

        def write(stream: IO[bytes]) -> None:
            stream.write(head)
            send(stream)

        return self.started.finish(write, timeout=timeout)

    def check(self, script: str) -> subprocess.CompletedProcess[str]:
        """run(), raising as Connection.run does when ssh or the script fails."""
        result = self.run(script, timeout=120)
        if result.returncode == 255:
            raise ConnectionFailed(self.connection, result.stderr)
        if result.returncode != 0:
            error = CommandError(result.args, result.returncode, result.stderr)
            raise RemoteCommandFailed(self.connection, script, error)
        return result

    def cancel(self) -> None:
        """Close it unused."""
        self.started.cancel()


def _through(bastion: Connection) -> str:
    """The ProxyCommand that reaches a machine through `bastion`: its kept-open connection
    when there is one (ControlMaster=no: a stdio forward never becomes a master itself), else a
    connection of its own."""
    # First: ssh takes the first value it is given for an option.
    argv = [bastion.argv[0], "-o", "ControlMaster=no", *bastion.argv[1:]]
    # ssh expands %-tokens in ProxyCommand: the bastion's own (its ControlPath's %C, a further
    # bastion's %h:%p) are escaped; this machine's host and port are not.
    escaped = " ".join(shlex.quote(arg.replace("%", "%%")) for arg in argv)
    return f"{escaped} -W %h:%p {shlex.quote(bastion.destination)}"


class ConnectionFailed(CommandError):
    def __init__(self, connection: Connection, stderr: str) -> None:
        super().__init__(connection.command("…"), 255, stderr)
        self.args = (f"cannot reach {connection}: {stderr.strip() or 'ssh failed'}",)


class RemoteCommandFailed(CommandError):
    """A command on the target failed: says where and what, without ssh's own options."""

    def __init__(self, connection: Connection, script: str, error: CommandError) -> None:
        super().__init__(error.argv, error.returncode, error.stderr)
        first = script.strip().splitlines()[0][:80]
        detail = error.stderr.strip().splitlines()[-1] if error.stderr.strip() else "no output"
        self.args = (f"{connection}: `{first}` exited {error.returncode}: {detail}",)
