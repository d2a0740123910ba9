"""What building a machine gave: where its tree is, what changed, its manifest and digest.

Kept apart from the builder so that commands that only read a build (a deploy with nothing to
build) need not import it.
"""

from __future__ import annotations

from pathlib import Path

from croft import layout
from croft.build.manifest import Manifest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from croft.site.model import Site


class BuildResult:
    def __init__(
        self, machine: str, directory: Path, written: int, removed: int, manifest: Manifest | None = None
    ) -> None:
        self.machine = machine
        self.directory = directory
        self.written = written
        self.removed = removed
        self._manifest = manifest

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)

    @property
    def manifest(self) -> Manifest:
        """The built manifest (read from the build directory when this build did not make it)."""
        if self._manifest is None:
            self._manifest = Manifest.load(self.directory / "manifest.json")
        return self._manifest

    @property
    def digest(self) -> str:
        """The manifest's digest, without reading the manifest: all a no-op deploy needs."""
        if self._manifest is not None:
            return self._manifest.digest
        return (self.directory / "digest").read_text().strip()


def build_dir(site: Site, machine: str) -> Path:
    """.croft/build/<machine>/ (croft.layout.build_dir)."""
    return Path(layout.build_dir(site.state_dir, machine))


def unchanged(site: Site, machine: str) -> BuildResult:
    """The result of a build that found nothing to do for this machine."""
    return BuildResult(machine, build_dir(site, machine), 0, 0)
