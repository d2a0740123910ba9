"""What a client of croft serve can hold: a bounded number of connections, and none for long
without a request in it (slow headers, idle keep-alive), so slow or idle clients cannot use up
the server's file descriptors. Long-polls and downloads are requests: they are not cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refuse(asyncio.Protocol):
    """A connection over the limit: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class ConnectionGuard:
    def __init__(self, limit: int, idle_seconds: float) -> None:
        self.limit = limit
        self.idle_seconds = idle_seconds
        self.busy: dict[asyncio.BaseTransport, int] = {}
        """Transports with a request in progress, and how many (pipelining)."""
        self.idle_since: dict[asyncio.BaseTransport, float] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if transport is None:
            return await handler(request)
        self.busy[transport] = self.busy.get(transport, 0) + 1
        self.idle_since.pop(transport, None)
        try:
            response = await handler(request)
            if not response.prepared:
                # Sent here, not after the middleware returns: a FileResponse streams the whole
                # artifact in prepare(), and that is a request in progress, never idle.
                await response.prepare(request)
            return response
        finally:
            left = self.busy.pop(transport) - 1
            if left:
                self.busy[transport] = left

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for the listening socket: aiohttp's, up to the limit."""

        def accept() -> asyncio.Protocol:
            if len(server.connections) >= self.limit:
                return _Refuse()
            return server()

        return accept

    def sweep(self, server: web.Server) -> int:
        """Close connections that were out of a request longer than idle_seconds; how many."""
        now = time.monotonic()
        open_now: set[asyncio.BaseTransport] = set()
        closed = 0
        for handler in server.connections:
            transport = handler.transport
            if transport is None:
                continue
            open_now.add(transport)
            if transport in self.busy:
                continue
            since = self.idle_since.setdefault(transport, now)
            if now - since >= self.idle_seconds:
                transport.close()
                closed += 1
        for gone in set(self.idle_since) - open_now:
            del self.idle_since[gone]
        return closed
