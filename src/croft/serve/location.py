"""Where croft serve is, for the server and its clients: its state directory, its URL and the
admin token. Kept free of the server's imports, so the CLI's workflow commands start fast."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from croft.errors import CroftError
from croft.site.model import ServeConfig, Site

_TOKEN = re.compile(r"^[0-9a-f]{32}$")


def state_dir(site: Site) -> Path:
    """croft serve's state (workflows and their tokens, the admin token, dnsmasq's log): the
    server's alone, 0700."""
    return site.state_dir / "serve"


def make_state_dir(state: Path) -> None:
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)


def serve_config(site: Site) -> ServeConfig:
    """The site's [serve]; an error saying how to add one when it has none."""
    if site.config.serve is None:
        raise CroftError(
            f"{site.root / 'site.toml'} has no [serve] table: add one with address, interface and "
            "network (see docs/serve.md)"
        )
    return site.config.serve


def server_url(site: Site) -> str:
    serve = serve_config(site)
    return f"http://{serve.address}:{serve.http_port}"


def admin_token(state: Path) -> str:
    """The admin API's token, made on first use (and again if the file is not a token: an empty
    file must never open the API); the CLI reads the same file."""
    path = state / "admin-token"
    token = path.read_text().strip() if path.exists() else ""
    if _TOKEN.match(token):
        return token
    make_state_dir(state)
    token = secrets.token_hex(16)
    # Whole or not at all: a temporary file, fsync, rename.
    partial = path.with_name(".admin-token.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, f"{token}\n".encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    partial.replace(path)
    return token


def read_admin_token(state: Path) -> str:
    """The token for a client; an error naming the file when there is none."""
    path = state / "admin-token"
    token = path.read_text().strip() if path.exists() else ""
    if not _TOKEN.match(token):
        raise CroftError(f"no admin token in {path}: is croft serve running for this site?")
    return token
