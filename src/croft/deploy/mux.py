"""Sessions through a kept-open SSH connection's control socket, without starting ssh.

Every command over a ControlMaster connection still costs a process of ssh: exec, the dynamic
linker and OpenSSL's start, ~6 ms of CPU here, times every machine a deploy switches at once.
So croft speaks the master's own protocol over its socket (OpenSSH's PROTOCOL.mux, a
"passenger" session): it hands the master the pipes of the session's stdin, stdout and stderr,
and the master, which holds the connection, runs the session on them. Without a master (the
first connection; one that went away) croft starts ssh, which becomes the master.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from typing import IO

from croft.run import CommandError, feed

HELLO = 0x00000001
NEW_SESSION = 0x10000002
PERMISSION_DENIED = 0x80000002
FAILURE = 0x80000003
EXIT_MESSAGE = 0x80000004
SESSION_OPENED = 0x80000006
VERSION = 4
NO_ESCAPE = 0xFFFFFFFF
LOST = 255
"""The exit code when the session could not run or its end was not reported, as ssh's own."""


class Unavailable(Exception):
    """No master listens on the socket: start ssh instead."""


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def _string(data: bytes) -> bytes:
    return _u32(len(data)) + data


def _packet(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return _u32(len(body)) + body


class Passenger:
    """One session (`command`, run by the remote user's shell) through the master at `path`,
    asked for at once; finish() gives it its input and collects its output and exit code, as
    croft.run.Started does for a process."""

    def __init__(self, path: str, command: str) -> None:
        self.args = ["ssh-mux", path, command]
        self.stdin = self.stdout = self.stderr = -1  # (ours: the pipes' ends croft keeps)
        self.done = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise Unavailable(path) from None
        ends: list[int] = []
        try:
            stdin, self.stdin = os.pipe()
            self.stdout, stdout = os.pipe()
            self.stderr, stderr = os.pipe()
            ends = [stdin, stdout, stderr]
            request = _packet(
                _u32(NEW_SESSION), _u32(1), _string(b""),
                _u32(0), _u32(0), _u32(0), _u32(0),  # no tty, X11, agent; not a subsystem
                _u32(NO_ESCAPE), _string(b""), _string(command.encode()),
            )  # fmt: skip
            self.sock.sendall(_packet(_u32(HELLO), _u32(VERSION)) + request)
            for end in ends:  # the session's stdin, stdout and stderr, in that order
                socket.send_fds(self.sock, [b"\0"], [end])
        except OSError:
            self._close()
            raise Unavailable(path) from None
        finally:
            for end in ends:  # the master holds them now
                os.close(end)

    def finish(
        self, write: Callable[[IO[bytes]], None] | bytes, *, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Give the session its input (written by a thread, as Started does) and wait for its
        end. Never raises for the exit code; LOST (255) when the master did not report one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.done = True
        stdin = os.fdopen(self.stdin, "wb")
        self.stdin = -1  # the file object's now: closed by the writer, once
        thread, failure = feed(stdin, write)
        try:
            out, err = self._drain(deadline)
            code, reason = self._exit(deadline)
        finally:
            thread.join()
            self._close()
        if failure:
            raise failure[0]
        if reason:
            err += f"{reason}\n".encode()
        return subprocess.CompletedProcess(
            self.args, code, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def _drain(self, deadline: float | None) -> tuple[bytes, bytes]:
        """stdout and stderr, to their ends (the master closes them when the session ends)."""
        chunks: dict[int, list[bytes]] = {self.stdout: [], self.stderr: []}
        with selectors.DefaultSelector() as selector:
            for fd in chunks:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise CommandError(self.args, None, "")
                for key, _ in selector.select(left):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
        return b"".join(chunks[self.stdout]), b"".join(chunks[self.stderr])

    def _exit(self, deadline: float | None) -> tuple[int, str]:
        """The session's exit code from the master's messages (hello, session opened, exit)."""
        buffer = b""
        self.sock.settimeout(None if deadline is None else max(0.1, deadline - time.monotonic()))
        while True:
            while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">I", buffer[:4])[0]:
                size = struct.unpack(">I", buffer[:4])[0]
                body, buffer = buffer[4 : 4 + size], buffer[4 + size :]
                kind = struct.unpack(">I", body[:4])[0]
                if kind == EXIT_MESSAGE:
                    return struct.unpack(">I", body[8:12])[0], ""
                if kind in (FAILURE, PERMISSION_DENIED):
                    size = struct.unpack(">I", body[8:12])[0]
                    reason = body[12 : 12 + size].decode(errors="replace")
                    return LOST, f"ssh: the connection's master refused the session: {reason}"
            try:
                data = self.sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                return LOST, "ssh: the connection's master went away before the session ended"
            buffer += data

    def _close(self) -> None:
        for fd in (self.stdin, self.stdout, self.stderr):
            if fd >= 0:
                os.close(fd)
        self.stdin = self.stdout = self.stderr = -1
        self.sock.close()

    def cancel(self) -> None:
        """End it unused: its stdin closes (the receiver reads nothing, and exits), and croft lets
        go of it. Nothing, once finish() ran."""
        if not self.done:
            self.done = True
            self._close()
