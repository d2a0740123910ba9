"""QMP, QEMU's machine protocol: the lab's BMC (power on, off, reset, status)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from croft.errors import CroftError


class Qmp:
    """One command per connection: QEMU serves one QMP client at a time, so none is held."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def command(self, name: str, arguments: dict[str, Any] | None = None, timeout: float = 5) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            try:
                connection.connect(str(self.path))
            except OSError as error:
                raise CroftError(
                    f"no QEMU answers on {self.path} ({error.strerror}): is the machine on?"
                ) from None
            stream = connection.makefile("rwb")
            json.loads(stream.readline())  # the greeting
            for request in ({"execute": "qmp_capabilities"}, {"execute": name, "arguments": arguments or {}}):
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "event" in reply:
                        continue  # asynchronous events between our replies
                    if "error" in reply:
                        raise CroftError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
                    break
            return reply.get("return")

    def status(self) -> str:
        """running, paused, shutdown... or "off" when QEMU is not there."""
        try:
            return str(self.command("query-status")["status"])
        except CroftError:
            return "off"
