"""The admin API's client, for the CLI: the URL and token croft serve left in .croft/serve/."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from croft.errors import CroftError
from croft.serve.location import read_admin_token, server_url, state_dir
from croft.site.model import Site


class AdminClient:
    def __init__(self, site: Site) -> None:
        state = state_dir(site)
        running = state / "url"
        self.url = running.read_text().strip() if running.exists() else server_url(site)
        self.token = read_admin_token(state)

    def _open(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            raise CroftError(error.read().decode(errors="replace").strip() or f"HTTP {error.code}") from None
        except urllib.error.URLError as error:
            raise CroftError(
                f"croft serve is not answering at {self.url} ({error.reason}): is it running?"
            ) from None

    def json(self, method: str, path: str, body: Any = None) -> Any:
        with self._open(method, path, body) as response:
            return json.load(response)

    def lines(self, path: str) -> Iterator[str]:
        with self._open("GET", path, timeout=3600) as response:
            for line in response:
                yield line.decode(errors="replace")
