"""Where croft serve is, for the server and its clients: its state directory, its URL and the
admin token. Kept free of the server's imports, so the CLI's workflow commands start fast."""

from __future__ import annotations

import secrets
from pathlib import Path

from croft.errors import CroftError
from croft.site.model import Site


def state_dir(site: Site) -> Path:
    return site.state_dir / "serve"


def server_url(site: Site) -> str:
    if site.config.serve is None:
        raise CroftError(
            f"{site.root / 'site.toml'} has no [serve] table: add one with address, interface and "
            "network (see docs/serve.md)"
        )
    return f"http://{site.config.serve.address}:{site.config.serve.http_port}"


def admin_token(state: Path) -> str:
    """The admin API's token, made on first use; the CLI reads the same file."""
    path = state / "admin-token"
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(16) + "\n")
    return path.read_text().strip()
