"""The agent's loop: next action (long-poll, with backoff while the server is away), run it in
a child process under its timeout, stream its output, report how it ended."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

ACTIONS_MODULE = f"{__package__}.actions"
POLL_SECONDS = 30
FLUSH_SECONDS = 0.5


def kernel_arguments() -> dict[str, str]:
    with open("/proc/cmdline") as file:
        words = file.read().split()
    return dict(word.split("=", 1) for word in words if "=" in word)


class Server:
    """The agent API, with retries: a server restart or a network blip only delays the agent."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 10
    ) -> tuple[int, bytes]:
        delay = 1.0
        while True:
            request = urllib.request.Request(
                self.url + path, data=body, method=method, headers={"Authorization": f"Bearer {self.token}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return error.code, error.read()
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                reason = str(getattr(error, "reason", error))
            log(f"server {self.url} unreachable ({reason}); again in {delay:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 30)

    def next_action(self) -> tuple[int, dict[str, Any]]:
        status, body = self.request("GET", f"/agent/v1/next?wait={POLL_SECONDS}", timeout=POLL_SECONDS + 15)
        return status, json.loads(body) if body else {}

    def log(self, action_id: int, text: str) -> None:
        self.request("POST", f"/agent/v1/actions/{action_id}/log", text.encode())

    def report(self, action_id: int, status: str, exit_status: int | None, message: str) -> None:
        body = json.dumps({"status": status, "exit_status": exit_status, "message": message}).encode()
        code, answer = self.request("POST", f"/agent/v1/actions/{action_id}/state", body)
        if code >= 400:
            log(f"the server refused the report: {answer.decode(errors='replace')}")


def log(message: str) -> None:
    print(f"croft-agent: {message}", file=sys.stderr, flush=True)


class OutputStream:
    """A child's output, sent to the server in batches (one request per half second at most)."""

    def __init__(self, server: Server, action_id: int) -> None:
        self.server, self.action_id = server, action_id
        self.buffer: list[str] = []
        self.last_lines: collections.deque[str] = collections.deque(maxlen=3)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.sender = threading.Thread(target=self._send_loop, daemon=True)
        self.sender.start()

    def write(self, text: str) -> None:
        sys.stderr.write(text)
        with self.lock:
            self.buffer.append(text)
            if text.strip():
                self.last_lines.append(text.strip())

    def _flush(self) -> None:
        with self.lock:
            text, self.buffer = "".join(self.buffer), []
        if text:
            self.server.log(self.action_id, text)

    def _send_loop(self) -> None:
        while not self.done.wait(FLUSH_SECONDS):
            self._flush()

    def close(self) -> None:
        self.done.set()
        self.sender.join()
        self._flush()


def run_action(server: Server, action: dict[str, Any]) -> None:
    action_id, name, timeout = action["id"], action["action"], action["timeout"]
    label = f"{action['task']}/{action['name']}"
    log(f"{label}: starting ({name or 'command'}, timeout {timeout} s)")
    if name in ("reboot", "kexec"):
        # Success is reported first: once the machine goes down nobody is left to report it.
        server.report(action_id, "success", 0, "")
    env = {**os.environ, **action["env"]}
    if name is None:
        argv = ["/bin/sh", "-ec", action["command"]]
    else:
        argv = [sys.executable, "-m", ACTIONS_MODULE, name]
    output = OutputStream(server, action_id)
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", bufsize=1, start_new_session=True,
    )  # fmt: skip

    def read() -> None:
        for line in process.stdout or ():
            output.write(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code: int | None = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)  # the whole group: a shell's children too
        process.wait()
        code = None
    reader.join(5)
    output.close()
    elapsed = time.monotonic() - started
    if code is None:
        server.report(action_id, "timeout", None, f"killed after {timeout} s")
    elif code == 0:
        server.report(action_id, "success", 0, "")
    else:
        last = output.last_lines[-1] if output.last_lines else ""
        server.report(action_id, "failed", code, last or f"exited {code}")
    log(f"{label}: {'timeout' if code is None else 'exit ' + str(code)} after {elapsed:.1f} s")


def main() -> None:
    arguments = kernel_arguments()
    server_url = os.environ.get("CROFT_SERVER") or arguments.get("croft.server")
    token = os.environ.get("CROFT_TOKEN") or arguments.get("croft.token")
    if not server_url or not token:
        log("no croft.server= and croft.token= on the kernel command line: nothing to do")
        sys.exit(2)
    server = Server(server_url, token)
    log(f"asking {server_url} for work")
    while True:
        status, answer = server.next_action()
        if status == 200:
            run_action(server, answer)
        elif status == 204:
            continue  # nothing yet: ask again
        elif status == 401:
            log("the server knows no workflow for this machine (discovered, or its workflow was replaced)")
            return
        elif status == 410:
            log(f"workflow {answer.get('status', 'finished')}: {answer.get('message', '')}")
            return
        else:
            log(f"the server answered {status}: {answer}; again in 5 s")
            time.sleep(5)


if __name__ == "__main__":
    main()
