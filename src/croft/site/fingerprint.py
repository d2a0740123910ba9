"""The stat of the files a site's model is made from (not its file trees): what the cached site
(load.py) and the deploy view (croft.deploy.target) are keyed by. Imports no model, so that a
command can tell whether what it cached is still the site's without loading it."""

from __future__ import annotations

import os
from pathlib import Path

Fingerprint = list[tuple[str, int, int]]

# croft's own code that the cached site depends on: the model and its checks (a newer croft may
# find problems an older one did not).
_MODEL_CODE = sorted(Path(__file__).parent.glob("*.py"))


def config_files(root: Path) -> list[Path]:
    """The files whose content decides the site model (not the file trees)."""
    folders = ("machines", "layers", "images", "workflows", "packages", "vpn", "alerts")
    files = [root / "site.toml", *(root / name for name in folders)]
    files += _MODEL_CODE
    for folder in ("machines", "layers", "images", "packages", "vpn", "alerts"):
        try:
            entries = os.scandir(root / folder)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if folder != "layers" and entry.name.endswith(".toml"):
                    files.append(Path(entry.path))
                elif folder == "layers" and entry.is_dir():
                    files.append(Path(entry.path) / "layer.toml")
                    services = Path(entry.path) / "services"
                    files.append(services)
                    if services.is_dir():
                        files += sorted(services.glob("*.toml"))
    return files


def fingerprint(files: list[Path]) -> Fingerprint:
    """(path, mtime, size) of each file that exists."""
    stamps: Fingerprint = []
    for path in files:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        stamps.append((str(path), st.st_mtime_ns, st.st_size))
    return stamps
