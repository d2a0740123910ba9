"""The warm build server: the quick path of a build, in a process that keeps Jinja2 loaded.

Importing Jinja2 costs about 50 ms, every time: half of a template edit's 100 ms budget, and
more than rendering the edit on every machine. So the first `croft build` that renders a
template starts this server for its site, in the background and in a session of its own, and
the builds after it hand their change over a Unix socket in .croft/ to the same quick path
(build/quick.py), run warm. It serves one build at a time, exits after IDLE_SECONDS without
one, and answers no build from another version of croft's code (it exits; that client does
the work itself, as it does whenever no server answers). CROFT_BUILD_SERVER=0 turns it off.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from croft.build import stamp

SOCKET = "build.sock"
LOCK = "build.lock"
IDLE_SECONDS = 600
# A build the server takes longer than this over is done again by the client.
ANSWER_SECONDS = 60


class Unavailable(Exception):
    """No server answered for this site, or it could not do the build."""


def enabled() -> bool:
    return os.environ.get("CROFT_BUILD_SERVER", "1") != "0"


def apply(state_dir: str, changes: stamp.Changes) -> dict[str, int] | None:
    """quick.apply, by the site's server when one runs; otherwise here, starting one for next
    time when this build had to import Jinja2."""
    if enabled():
        try:
            return ask(state_dir, changes)
        except Unavailable:
            pass
    from croft.build import quick

    written = quick.apply(state_dir, changes)
    if enabled() and "jinja2" in sys.modules:
        start(state_dir)
    return written


def code_stamp() -> str:
    """Which version of the code a process runs: the stats of croft's build modules."""
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(name for name in os.listdir(here) if name.endswith(".py"))
    stats = [os.stat(os.path.join(here, name)) for name in names]
    inplace_module = os.stat(os.path.join(os.path.dirname(here), "inplace.py"))
    return ",".join(f"{st.st_mtime_ns}:{st.st_size}" for st in [*stats, inplace_module])


def ask(state_dir: str, changes: stamp.Changes) -> dict[str, int] | None:
    """Have the site's server do the build; raises Unavailable when it cannot."""
    request = {"code": code_stamp(), "files": changes.files, "taken_ns": changes.taken_ns}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(ANSWER_SECONDS)
            connection.connect(os.path.join(state_dir, SOCKET))
            connection.sendall(json.dumps(request).encode() + b"\n")
            answer = json.loads(_read_line(connection))
    except (OSError, ValueError) as exc:
        raise Unavailable(str(exc)) from None
    if "written" not in answer:
        raise Unavailable(answer.get("error", "refused"))
    written: dict[str, int] | None = answer["written"]
    return written


def start(state_dir: str) -> None:
    """Start the site's server in the background (it exits at once if one runs already)."""
    import subprocess

    if len(os.path.join(os.path.abspath(state_dir), SOCKET)) >= 108:
        return  # too long a path for a Unix socket: builds do their work themselves

    subprocess.Popen(
        [sys.executable, "-m", "croft.build.warm", os.path.abspath(state_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not stopped by the terminal's ^C, nor waited for
        cwd="/",
    )


def serve(state_dir: str, idle_seconds: float = IDLE_SECONDS) -> None:
    """Serve the site's builds until idle for idle_seconds, or asked by another version."""
    import fcntl

    lock = open(os.path.join(state_dir, LOCK), "w")  # noqa: SIM115 (held for the server's life)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # the site has its server
    # Warm: what a template build would otherwise import.
    import jinja2  # noqa: F401

    from croft.build import render  # noqa: F401

    code = code_stamp()
    path = os.path.join(state_dir, SOCKET)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        if os.path.exists(path):
            os.unlink(path)  # left by a server that was killed (the lock says none runs)
        old_umask = os.umask(0o077)  # the socket is its owner's only
        listener.bind(path)
        os.umask(old_umask)
        listener.listen()
        listener.settimeout(idle_seconds)
        try:
            while True:
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    return
                with connection:
                    if not _serve_one(connection, state_dir, code):
                        return
        finally:
            os.unlink(path)


def _serve_one(connection: socket.socket, state_dir: str, code: str) -> bool:
    """Answer one build; whether to go on serving."""
    connection.settimeout(ANSWER_SECONDS)
    try:
        request = json.loads(_read_line(connection))
        if request.get("code") != code or not os.path.isdir(state_dir):
            connection.sendall(b'{"error": "the server runs another version of croft"}\n')
            return False
        from croft.build import quick, render, stamp

        render.forget()
        changes = stamp.Changes()
        changes.files = list(request["files"])
        changes.taken_ns = int(request["taken_ns"])
        answer: dict[str, object] = {"written": quick.apply(state_dir, changes)}
    except Exception as exc:  # the client does the build itself, and reports the error
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(OSError):  # the client gave up waiting
        connection.sendall(json.dumps(answer).encode() + b"\n")
    return True


def _read_line(connection: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            raise ValueError("the connection closed mid-message")
        data += chunk
    return data


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else IDLE_SECONDS)
