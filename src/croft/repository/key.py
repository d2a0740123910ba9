"""The key that signs the site's repository: an ed25519 OpenPGP key, made once with gpg, kept
outside the site (its path is [packages] signing_key), 0600 in a 0700 directory.

gpg works in a throwaway home directory for each use (its agent stopped afterwards), so croft
leaves nothing in the user's keyring.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from croft.layout import data_dir
from croft.run import run
from croft.site.model import Site

# No passphrase: the key signs unattended (the daily rebuild); its file's mode guards it.
BATCH = ["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]


def key_path(site: Site) -> Path:
    configured = site.config.packages.signing_key
    if configured:
        return Path(configured).expanduser()
    return data_dir(site.config.name) / "apt-signing-key.asc"


def public_path(site: Site) -> Path:
    return key_path(site).with_suffix(".pub.asc")


@contextmanager
def gnupg_home() -> Iterator[Path]:
    # In /tmp: gpg-agent's socket path must stay short.
    home = Path(tempfile.mkdtemp(prefix="croft-gpg-"))
    try:
        yield home
    finally:
        run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def ensure(site: Site) -> Path:
    """The secret key's file, made when missing (with its public half beside it)."""
    path = key_path(site)
    if path.exists() and public_path(site).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    user = f"croft {site.config.name} packages <croft@{site.config.domain}>"
    with gnupg_home() as home:
        gpg: list[str | Path] = ["gpg", "--homedir", home, *BATCH]
        run([*gpg, "--quick-gen-key", user, "ed25519", "sign", "never"])
        secret = run([*gpg, "--armor", "--export-secret-keys"]).stdout
        public = run([*gpg, "--armor", "--export"]).stdout
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(secret)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
    public_path(site).write_text(public)
    return path


def public_key(site: Site) -> str:
    """The public key, ASCII-armored (made with the secret one when missing)."""
    ensure(site)
    return public_path(site).read_text()


def sign(site: Site, release: Path) -> None:
    """InRelease (clear-signed) and Release.gpg (detached) beside the Release file."""
    secret = ensure(site)
    with gnupg_home() as home:
        gpg: list[str | Path] = ["gpg", "--homedir", home, *BATCH]
        run([*gpg, "--import", secret])
        directory = release.parent
        run([*gpg, "--digest-algo", "SHA512", "--clearsign", "-o", directory / "InRelease", release])
        run(
            [
                *gpg,
                "--digest-algo",
                "SHA512",
                "--armor",
                "--detach-sign",
                "-o",
                directory / "Release.gpg",
                release,
            ]
        )
