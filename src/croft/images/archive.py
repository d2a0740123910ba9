"""Packages from a Debian archive for any architecture, without touching the host's apt: each
(suite, mirror, architecture) gets its own package lists in croft's cache, and packages are
unpacked there once (a kernel, busybox for an initrd, iPXE for arm64 machines).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from croft.errors import CroftError
from croft.layout import cache_dir
from croft.run import CommandError, run

DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def sources(suite: str, mirror: str) -> list[str]:
    """apt's source lines (without `deb`) for `suite`: the release and, for a release that has
    them, its updates and its security updates (where `mirror` looks like Debian's layout)."""
    lines = [f"{mirror} {suite} main"]
    if suite not in ("sid", "unstable", "experimental"):
        lines.append(f"{mirror} {suite}-updates main")
        if mirror.rstrip("/").endswith("/debian"):
            lines.append(f"{mirror.rstrip('/')}-security {suite}-security main")
    return lines


@dataclass(frozen=True)
class Archive:
    suite: str
    mirror: str
    arch: str
    """A Debian architecture: amd64, arm64."""

    @property
    def _dir(self) -> Path:
        mirror = hashlib.sha256(self.mirror.encode()).hexdigest()[:8]
        return cache_dir() / "apt" / f"{self.suite}-{self.arch}-{mirror}"

    def _options(self) -> list[str]:
        """apt options that point every path of apt's state at this archive's directory."""
        directory = self._dir
        return [
            f"-oDir::Etc::SourceList={directory / 'sources.list'}",
            "-oDir::Etc::SourceParts=/nonexistent",  # not the host's sources.list.d
            f"-oDir::State::Lists={directory / 'lists'}",
            f"-oDir::State::status={directory / 'status'}",  # an empty dpkg database: nothing installed
            f"-oDir::Cache={directory / 'cache'}",
            f"-oAPT::Architecture={self.arch}",
            f"-oAPT::Architectures::={self.arch}",
            "-oDebug::NoLocking=1",  # private state: no lock shared with the host's apt
            # Downloads land in croft's cache, which the _apt user may not be able to write.
            "-oAPT::Sandbox::User=root",
            "-q",
        ]

    def update(self) -> None:
        directory = self._dir
        (directory / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (directory / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (directory / "status").touch()
        (directory / "sources.list").write_text(
            "".join(f"deb [signed-by={KEYRING}] {line}\n" for line in sources(self.suite, self.mirror))
        )
        result = run(["apt-get", *self._options(), "update"], check=False, timeout=600)
        # apt-get update exits 0 when a source fails; it says so on stderr.
        if result.returncode != 0 or "Failed to fetch" in result.stderr or result.stderr.startswith("E:"):
            why = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "apt-get update failed"
            raise CroftError(f"cannot read Debian {self.suite} for {self.arch} from {self.mirror}: {why}")

    def _ready(self) -> None:
        if not any((self._dir / "lists").glob("*_Packages")):
            self.update()

    def show(self, package: str) -> dict[str, str]:
        """The candidate version's fields (Version, Depends, ...); a package the lists do not know
        is an error (after reading the lists again, in case they are older than the package)."""
        self._ready()
        for attempt in ("cached lists", "updated lists"):
            result = run(["apt-cache", *self._options(), "show", "--no-all-versions", package], check=False)
            if result.returncode == 0 and result.stdout.strip():
                return dict(re.findall(r"^([A-Za-z-]+): (.*)$", result.stdout, re.M))
            if attempt == "cached lists":
                self.update()
        raise CroftError(
            f"package {package!r} is not in Debian {self.suite} for {self.arch} ({self.mirror}); "
            "check its name at https://packages.debian.org"
        )

    def unpack(self, package: str) -> Path:
        """The files of `package`'s candidate version, downloaded and unpacked once into the cache."""
        version = self.show(package)["Version"]
        root = cache_dir() / "packages" / self.arch / f"{package}_{version}"
        if root.is_dir():
            return root
        staging = cache_dir() / "packages" / self.arch / f".{package}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            try:
                run(["apt-get", *self._options(), "download", package], cwd=staging, timeout=900)
            except CommandError:
                self.update()  # the lists name a version the mirror no longer has
                run(["apt-get", *self._options(), "download", package], cwd=staging, timeout=900)
            (deb,) = staging.glob("*.deb")
            run(["dpkg-deb", "-x", deb, staging / "root"])
            version = run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        root = root.with_name(f"{package}_{version}")
        if not root.is_dir():
            (staging / "root").rename(root)  # only a whole package gets the cached name
        shutil.rmtree(staging)
        return root
