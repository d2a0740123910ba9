"""What alerts are sent to, run by the tests: a webhook receiver (aiohttp) and an SMTP server
(aiosmtpd), each in a thread of its own, collecting what arrives."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from email import message_from_bytes
from email.message import Message
from typing import Any, TypeVar

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from croft.wait import until

T = TypeVar("T")


class Webhook:
    """POSTs to any path, kept with their headers and body (JSON when it is)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.posts: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            data: Any = json.loads(body)
        except ValueError:
            data = body.decode(errors="replace")
        self.posts.append({"path": request.path, "headers": dict(request.headers), "body": data})
        return web.Response(text="ok")

    def __enter__(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._receive)

        async def start() -> None:
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.port).start()

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def mark(self) -> int:
        """Where the POSTs received so far end: `wait(..., after=mark)` looks at later ones only."""
        return len(self.posts)

    def wait(self, test: Callable[[dict[str, Any]], bool], timeout: float, after: int = 0) -> dict[str, Any]:
        """The first POST `test` accepts (of those from `after` on), waited for up to `timeout` s."""
        return _wait(self.posts, test, timeout, "POST", after)


class Mailbox:
    """An SMTP server that keeps every message."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.messages: list[Message] = []
        self._controller = Controller(self, hostname=host, port=port)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def __enter__(self) -> Mailbox:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

    def wait(self, test: Callable[[Message], bool], timeout: float) -> Message:
        return _wait(self.messages, test, timeout, "mail", 0)


def _wait(items: list[T], test: Callable[[T], bool], timeout: float, what: str, after: int) -> T:
    found = until(lambda: next((item for item in items[after:] if test(item)), None), timeout)
    if found is None:
        raise AssertionError(f"no such {what} within {timeout} s; got: {items!r}"[:3000])
    return found
