"""The one helper through which croft runs external commands.

Logging, timeouts and errors that show the command and its stderr live here, so every caller
gets them the same way (the mkosi model).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from croft.errors import CroftError


def _log(message: str) -> None:
    """Log at debug level (shown with -v). logging is imported only by -v: a command that has
    to start in a few tens of milliseconds does not pay ~5 ms for it otherwise."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("croft.run").debug(message)


Command = Sequence[str | Path]


class CommandError(CroftError):
    """A command exited non-zero or ran out of time."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited {returncode}"
        message = f"command {status}: {shlex.join(self.argv)}"
        if stderr.strip():
            tail = "\n".join(stderr.strip().splitlines()[-20:])
            message += "\n" + "\n".join(f"  | {line}" for line in tail.splitlines())
        super().__init__(message)


def run(
    argv: Command,
    *,
    input: str | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command and return its result, with stdout and stderr as text when captured.

    On a non-zero exit (with check) or a timeout, raises CommandError naming the command and
    showing the end of its stderr.
    """
    result = _run(argv, input.encode() if input is not None else None, check, capture, timeout, env, cwd)
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace") if result.stdout is not None else None,
        result.stderr.decode(errors="replace") if result.stderr is not None else None,
    )


def run_binary(
    argv: Command,
    *,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
    stdout: IO[bytes] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """run() for commands whose output is binary (an archive): returned, or written straight
    into `stdout` (a pipe to another command); stderr stays in the error."""
    if stdout is not None:
        stdout.flush()  # what was written before goes first
    return _run(argv, input, check, True, timeout, None, None, stdout)


def run_streaming(
    argv: Command, write: Callable[[IO[bytes]], None] | bytes, *, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """run() for a command whose input is made as it is read (an archive of files too large to
    hold in memory): `write` fills its stdin from a thread while its output is collected (or the
    input is given whole, as bytes). Never raises for the exit code; the caller judges it."""
    return Started(argv).finish(write, timeout=timeout)


def feed(
    stream: IO[bytes], write: Callable[[IO[bytes]], None] | bytes
) -> tuple[threading.Thread, list[BaseException]]:
    """A thread that fills a command's stdin (`write` writes it, or is it: in one write, as
    communicate() would give it in pieces of 512 bytes, each a wait for the GIL while other
    machines' threads hold it) and closes it, while the caller collects the output. A command
    that stops reading early ends the writing quietly (its exit code says why); any other
    failure is in the list, for the caller's thread to raise."""
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            with stream:
                if isinstance(write, bytes):
                    stream.write(write)
                else:
                    write(stream)
        except BrokenPipeError:
            pass
        except CommandError as exc:
            # A program writing into the stream for `write` (tar) that the same closed pipe killed.
            if exc.returncode != -13:  # SIGPIPE
                failure.append(exc)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return thread, failure


class Started:
    """A command started before its input is known: its start-up (an SSH session's, a round trip
    away) goes on while the caller works out what to send. finish() sends it and collects the
    output, as run_streaming; cancel() ends it unused, its stdin closed."""

    def __init__(self, argv: Command) -> None:
        self.args = [str(arg) for arg in argv]
        _log(f"run: {shlex.join(self.args)}")
        if shutil.which(self.args[0]) is None:
            from croft import tools

            raise tools.not_found(self.args[0])
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def finish(
        self, write: Callable[[IO[bytes]], None] | bytes, *, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Give the command its input and wait for it. A command that stops reading early ends
        the writing quietly: its exit code says why. Never raises for the exit code."""
        process = self.process
        stdin, process.stdin = process.stdin, None  # the writer's; communicate() only reads
        assert stdin is not None
        thread, failure = feed(stdin, write)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise CommandError(self.args, None, "") from None
        finally:
            thread.join()
        if failure:  # a local file could not be read: the cause of whatever the command said
            raise failure[0]
        return subprocess.CompletedProcess(
            self.args, process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
        )

    def cancel(self) -> None:
        """End the command unused: its stdin closes, and it is given a few seconds to exit.
        Nothing, once finish() ran."""
        if self.process.returncode is not None or self.process.stdin is None or self.process.stdin.closed:
            return
        try:
            self.process.communicate(b"", timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            self.process.kill()
            self.process.wait()


def _run(
    argv: Command,
    data: bytes | None,
    check: bool,
    capture: bool,
    timeout: float | None,
    env: Mapping[str, str] | None,
    cwd: Path | None,
    stdout: IO[bytes] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    args = [str(arg) for arg in argv]
    _log(f"run: {shlex.join(args)}")
    try:
        result = subprocess.run(
            args,
            input=data,
            stdout=stdout if stdout is not None else subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            stdin=None if data is not None else subprocess.DEVNULL,
            timeout=timeout,
            env=None if env is None else dict(env),
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise CommandError(args, None, stderr) from None
    except FileNotFoundError:
        if cwd is not None and not cwd.is_dir():
            raise
        from croft import tools

        raise tools.not_found(args[0]) from None
    if check and result.returncode != 0:
        raise CommandError(args, result.returncode, (result.stderr or b"").decode(errors="replace"))
    return result


def spawn(
    argv: Command,
    *,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
    stderr: int | IO[bytes] | None = subprocess.DEVNULL,
    new_session: bool = True,
    cwd: Path | None = None,
    die_with_parent: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running command in the background (a container, a server) and return it;
    with `die_with_parent`, the kernel sends it SIGTERM when this process dies, however it dies."""
    args = [str(arg) for arg in argv]
    _log(f"spawn: {shlex.join(args)}")
    if shutil.which(args[0]) is None:
        from croft import tools

        raise tools.not_found(args[0])
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=new_session,
        cwd=cwd,
        env={**os.environ, **env} if env is not None else None,
        preexec_fn=_die_with_parent if die_with_parent else None,
    )


def _die_with_parent() -> None:
    """In the child before exec: prctl(PR_SET_PDEATHSIG, SIGTERM)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
