"""Servers for the fleet's package tests: an HTTP forward proxy to the Debian mirror, and a
static server for the site's repository.

The fleet's network namespace has no route out; apt on this host reaches the mirror. The site's
package cache (apt-cacher-ng on a fleet machine) is given this relay, on the host's end of the
fleet's LAN, as its upstream proxy, as a site behind a proxy would give it its own. It forwards
GETs to the mirror hosts only, and counts what it was asked, so tests can tell what came from
the mirror and what from the cache.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

MIRRORS = {"deb.debian.org"}
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host",
}  # fmt: skip
PASSED_BACK = ("Content-Type", "Content-Length", "Last-Modified", "ETag", "Content-Range", "Accept-Ranges")


class Relay:
    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.asked: Counter[str] = Counter()
        """Paths asked of the mirror, counted."""
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def __enter__(self) -> Relay:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the relay did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, self.address, self.port).start())
        self._client = self._loop.run_until_complete(self._session())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._client.close())
        self._loop.run_until_complete(runner.cleanup())

    async def _session(self) -> ClientSession:
        return ClientSession(timeout=ClientTimeout(total=600), auto_decompress=False)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        url = request.url
        if request.method not in ("GET", "HEAD") or url.host not in MIRRORS or url.scheme != "http":
            return web.Response(
                status=403, text="the relay forwards GET and HEAD to the Debian mirror only\n"
            )
        self.asked[url.path] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._client.request(request.method, str(url), headers=headers) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name in PASSED_BACK:
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(1 << 16):
                await response.write(chunk)
            await response.write_eof()
            return response


@contextmanager
def static_server(address: str, port: int, directory: Path) -> Iterator[str]:
    """A plain static HTTP server for a directory (as a site may serve its repository); its URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, port), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{port}"
    finally:
        server.shutdown()
        server.server_close()
