"""Building the site's packages: packages/NAME.toml and packages/NAME/ into a .deb with
dpkg-deb, reproducibly (the same inputs give the same bytes: files owned by root, every time
SOURCE_DATE_EPOCH), and only when its inputs changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from croft.errors import CroftError
from croft.run import run
from croft.site.model import Site, SitePackage

FORMAT = "1"  # what the key of a built package covers; raise it when the build changes
# The time every file and archive member carries, unless the caller sets SOURCE_DATE_EPOCH
# (reproducible-builds.org): a constant, so that a rebuild of the same inputs is byte-identical.
DEFAULT_EPOCH = 1_700_000_000
SCRIPTS = ("preinst", "postinst", "prerm", "postrm")


def repository_dir(site: Site) -> Path:
    return site.state_dir / "repository"


def deb_name(package: SitePackage) -> str:
    config = package.config
    version = config.version.split(":", 1)[-1]  # the epoch is not in file names
    return f"{package.name}_{version}_{config.architecture}.deb"


def _files(package: SitePackage) -> list[Path]:
    if not package.tree.is_dir():
        return []
    return sorted(path for path in package.tree.rglob("*") if not path.is_dir() or path.is_symlink())


def inputs_key(package: SitePackage) -> str:
    """What the .deb is made of: its TOML, and each file's path, mode and content."""
    h = hashlib.sha256(f"{FORMAT}\0{os.environ.get('SOURCE_DATE_EPOCH', '')}\0".encode())
    h.update(package.file.read_bytes())
    for path in _files(package):
        rel = path.relative_to(package.tree).as_posix()
        if path.is_symlink():
            h.update(f"l\0{rel}\0{os.readlink(path)}\0".encode())
        else:
            h.update(f"f\0{rel}\0{path.stat().st_mode & 0o7777:o}\0".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def control(site: Site, package: SitePackage, installed_kb: int) -> str:
    config = package.config
    fields = {
        "Package": package.name,
        "Version": config.version,
        "Architecture": config.architecture,
        "Maintainer": config.maintainer or f"croft <croft@{site.config.domain}>",
        "Installed-Size": str(max(installed_kb, 1)),
        "Depends": ", ".join(config.depends),
        "Section": config.section,
        "Priority": config.priority,
        "Description": config.description or f"{package.name}, built by croft for {site.config.name}",
    }
    return "".join(f"{key}: {value}\n" for key, value in fields.items() if value)


def build(site: Site, package: SitePackage, pool: Path) -> tuple[Path, bool]:
    """The package's .deb in `pool`, and whether it had to be built."""
    key = inputs_key(package)
    deb = pool / deb_name(package)
    stamp = pool / f".{deb.name}.key"
    if deb.exists() and stamp.exists() and stamp.read_text() == key:
        return deb, False
    pool.mkdir(parents=True, exist_ok=True)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    with tempfile.TemporaryDirectory(prefix=".build-", dir=pool.parent) as tmp:
        root = Path(tmp) / "root"
        if package.tree.is_dir():
            shutil.copytree(package.tree, root, symlinks=True)
        else:
            root.mkdir()
        debian = root / "DEBIAN"
        if debian.exists():
            raise CroftError(
                f"{package.tree}/DEBIAN: croft writes the control files from {package.file.name}"
            )
        debian.mkdir()
        size = sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir()) // 1024 + 1
        (debian / "control").write_text(control(site, package, size))
        conffiles = package.config.conffiles
        if conffiles is None:  # as debhelper does: every file under /etc
            conffiles = tuple(
                "/" + p.relative_to(root).as_posix() for p in sorted((root / "etc").rglob("*")) if p.is_file()
            )
        if conffiles:
            (debian / "conffiles").write_text("".join(f"{path}\n" for path in conffiles))
        for script in SCRIPTS:
            text = getattr(package.config, script)
            if text is not None:
                if not text.startswith("#!"):
                    text = "#!/bin/sh\nset -e\n" + text
                (debian / script).write_text(text if text.endswith("\n") else text + "\n")
                (debian / script).chmod(0o755)
        os.chmod(debian, 0o755)
        for path in [root, *root.rglob("*")]:
            os.utime(path, (epoch, epoch), follow_symlinks=False)
        out = Path(tmp) / deb.name
        # --root-owner-group: every file root's, whoever builds; -Zxz: what Debian ships.
        run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, out],
            env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
        )
        os.replace(out, deb)
    stamp.write_text(key)
    return deb, True
