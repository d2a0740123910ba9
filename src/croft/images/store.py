"""The artifact store: files named by their sha256, and one manifest per image naming them.

.croft/images/
  store/<sha256>      an artifact (a squashfs, an initrd, a compressed disk image...)
  <name>.json         the image's manifest: its recipe hash and artifacts (sha256, size)

A manifest is written last and atomically, so a failed build leaves the previous one (or none)
under the image's name; `croft serve` publishes the store and reads the manifests.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from croft.inplace import sha256

if TYPE_CHECKING:
    from croft.site.model import Site


@dataclass(frozen=True)
class Artifact:
    sha256: str
    size: int
    extra: dict[str, Any] = field(default_factory=dict)
    """What a consumer needs besides the bytes: the uncompressed size, a kernel version, the parent
    of an incremental stream."""


@dataclass(frozen=True)
class ImageManifest:
    name: str
    kind: str
    recipe: str
    """The hash of everything the image was built from; an equal hash means nothing to rebuild."""
    artifacts: dict[str, Artifact]
    built: str

    @staticmethod
    def from_json(text: str) -> ImageManifest:
        data = json.loads(text)
        data["artifacts"] = {role: Artifact(**item) for role, item in data["artifacts"].items()}
        return ImageManifest(**data)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "store"

    def path(self, digest: str) -> Path:
        return self.objects / digest

    def add(self, file: Path, **extra: Any) -> Artifact:
        """Move a finished file into the store (its name is its sha256) and describe it."""
        self.objects.mkdir(parents=True, exist_ok=True)
        digest = sha256(file)
        size = file.stat().st_size
        target = self.path(digest)
        if target.exists():
            file.unlink()
        else:
            file.rename(target)  # builds work under the store's root: the same filesystem
            target.chmod(0o644)
        return Artifact(digest, size, extra)

    def manifest(self, name: str) -> ImageManifest | None:
        try:
            manifest = ImageManifest.from_json((self.root / f"{name}.json").read_text())
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if all(self.path(artifact.sha256).exists() for artifact in manifest.artifacts.values()):
            return manifest
        return None

    def prune(self) -> tuple[int, int]:
        """Delete the artifacts no image's manifest names; returns how many and their bytes."""
        kept = set()
        for file in self.root.glob("*.json"):
            manifest = self.manifest(file.stem)
            if manifest is not None:
                kept |= {artifact.sha256 for artifact in manifest.artifacts.values()}
        count = size = 0
        for path in self.objects.iterdir() if self.objects.is_dir() else ():
            if path.name not in kept:
                count, size = count + 1, size + path.stat().st_size
                path.unlink()
        return count, size

    def publish(self, manifest: ImageManifest) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{manifest.name}.json.partial"
        partial.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
        os.replace(partial, self.root / f"{manifest.name}.json")
        self._link(manifest)

    def _link(self, manifest: ImageManifest) -> None:
        """<name>.<role> -> store/<sha256>: the current artifacts by name, for people and for
        `!` links in layers (a VM's image, say)."""
        for old in self.root.glob(f"{manifest.name}.*"):
            if old.is_symlink() and old.name.removeprefix(f"{manifest.name}.") not in manifest.artifacts:
                old.unlink()
        for role, artifact in manifest.artifacts.items():
            link = self.root / f"{manifest.name}.{role}"
            partial = self.root / f".{link.name}.partial"
            partial.unlink(missing_ok=True)
            partial.symlink_to(Path("store") / artifact.sha256)
            os.replace(partial, link)


def store_for(site: Site) -> Store:
    """The site's artifact store, in its state directory."""
    return Store(site.state_dir / "images")
