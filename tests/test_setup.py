"""The README's promise that scripts/setup is all a fresh machine needs: a minimal Debian 12 root
(debootstrap, cached), the project's files as a clone has them, scripts/setup run inside it with
systemd-nspawn, and `croft doctor` inside it then finds every tool croft runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from croft.images import rootfs
from croft.images.archive import DEFAULT_MIRROR

pytestmark = pytest.mark.setup

ROOT = Path(__file__).resolve().parents[1]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).exists()]


def test_setup_gives_a_fresh_debian_everything_croft_needs(tmp_path: Path) -> None:
    # In a directory that does not exist yet, as the fleet's rootfs is on a fresh cache.
    root = tmp_path / "machine" / "debian"
    # minbase: no python3, no ssh, no apt tool beyond apt itself.
    rootfs.debootstrap("bookworm", DEFAULT_MIRROR, "amd64", (), root)
    assert not (root / "usr" / "bin" / "python3").exists()
    project = root / "root" / "croft"
    project.mkdir()
    files = subprocess.run(
        ["tar", "-C", ROOT, "--null", "-T", "-", "-cf", "-"],
        input="\0".join(project_files()).encode(),
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-C", project, "-xf", "-"], input=files, check=True)
    # The registries are reached as this host reaches them: its pip configuration and CA bundle.
    binds: list[tuple[Path, str]] = [(Path("/var/cache/apt/archives"), "/var/cache/apt/archives")]
    if Path("/etc/pip.conf").exists():
        shutil.copy2("/etc/pip.conf", root / "etc" / "pip.conf")
    env = ""
    if HOST_CA.exists():
        binds.append((HOST_CA, "/run/host-ca.crt"))
        env = "export PIP_CERT=/run/host-ca.crt; "
    output = rootfs.in_root(
        root,
        f"{env}cd /root/croft && "
        "{ scripts/setup >/tmp/setup.log 2>&1 || { tail -n 40 /tmp/setup.log; exit 1; }; } && "
        ".venv/bin/croft doctor",
        binds=tuple(binds),
        timeout=2400,
    )
    assert "croft doctor: all" in output, output
    assert "MISSING" not in output
    # The iPXE binaries croft serve hands out: the package a fresh machine once lacked.
    assert (root / "usr" / "lib" / "ipxe" / "undionly.kpxe").exists()
