"""The fleet's Debian rootfs: debootstrap once, then cached under $CROFT_CACHE/fleet/."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from croft.images import arch
from croft.images.rootfs import debootstrap
from croft.layout import cache_dir
from croft.run import run

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# systemd to boot, sshd and rsync for croft, busybox for small test services (httpd), nginx,
# iproute2, curl and btrfs-progs for the services' tests, systemd-resolved and dnsmasq-base for
# the site's names, systemd-container and qemu-system-x86 for containers and VMs as services.
# croft itself needs no Python on a target: python3 is here only for the benchmark's Ansible side.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "rsync",
    "busybox",
    "nginx-light",
    "iproute2",
    "curl",
    "btrfs-progs",
    "python3",
    "systemd-resolved",
    "dnsmasq-base",
    "systemd-container",
    "qemu-system-x86",
)


def fleet_cache() -> Path:
    return cache_dir() / "fleet"


def ssh_key() -> Path:
    """The key croft's fleet machines accept for root (made once per cache)."""
    key = fleet_cache() / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "croft-fleet", "-f", key])
    return key


def ensure_rootfs() -> Path:
    """The cached rootfs, made with debootstrap (about a minute) when missing."""
    recipe = f"{SUITE} {MIRROR} {' '.join(PACKAGES)} v1"
    name = "rootfs-" + hashlib.sha256(recipe.encode()).hexdigest()[:12]
    root = fleet_cache() / name
    if (root / "etc" / "os-release").exists():
        return root
    staging = fleet_cache() / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    debootstrap(SUITE, MIRROR, arch.host(), PACKAGES, staging)
    _prepare(staging)
    staging.rename(root)  # only a complete rootfs ever has the published name
    return root


def _prepare(root: Path) -> None:
    """Make the rootfs a fleet machine: root logs in with the fleet key, nothing extra runs."""
    ssh = root / "root" / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(ssh_key().with_suffix(".pub").read_text())
    (ssh / "authorized_keys").chmod(0o600)
    (root / "etc" / "ssh" / "sshd_config.d" / "croft-fleet.conf").write_text(
        "UseDNS no\nPermitRootLogin prohibit-password\n"
    )
    # The distro enables nginx at install; fleet machines start with only what croft deploys.
    (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "nginx.service").unlink(
        missing_ok=True
    )
    (root / "etc" / "hostname").unlink(missing_ok=True)
