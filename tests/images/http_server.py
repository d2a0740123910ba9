"""The test LAN's HTTP server: files from a directory, and POSTs (the initrd's error reports)
answered 204 and appended to a file, as croft serve will keep them."""

from __future__ import annotations

import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(SimpleHTTPRequestHandler):
    reports: Path

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.reports.open("ab") as stream:
            stream.write(f"{self.path} ".encode() + body + b"\n")
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    address, directory, reports = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    Handler.reports = reports
    ThreadingHTTPServer((address, 8000), partial(Handler, directory=directory)).serve_forever()
