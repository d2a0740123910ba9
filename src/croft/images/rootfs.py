"""Debian root filesystems: debootstrap with a shared package cache, commands run inside them
with systemd-nspawn, and the clean-up that keeps images small."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from croft.errors import CroftError
from croft.images.archive import sources
from croft.layout import cache_dir
from croft.run import CommandError, run

# Removed from every image: documentation, manuals, translations, package lists and caches (the
# agent never runs apt), logs of the build, and the build host's DNS servers (nspawn and
# debootstrap copy them in).
STRIP = (
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/*",
    "etc/resolv.conf",
)


def debs_cache() -> Path:
    """Downloaded packages, kept between builds (debootstrap's and apt's)."""
    path = cache_dir() / "debs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class KernelPackage:
    """Debian's kernel, to install into a root with apt (its modules, its initramfs)."""

    package: str
    """What is installed: the metapackage (linux-image-amd64), so apt upgrades it."""
    resolved: str
    """The kernel it depends on now (linux-image-6.1.0-57-amd64): part of the cache key."""
    modules: tuple[str, ...] = ()
    """Modules forced into the initramfs (/etc/initramfs-tools/modules)."""


def debootstrap(
    suite: str,
    mirror: str,
    arch: str,
    packages: tuple[str, ...],
    root: Path,
    *,
    fresh: bool = False,
    kernel: KernelPackage | None = None,
) -> None:
    """A minbase Debian `suite` for `arch` with `packages` (and `kernel`) in `root` (which must
    not exist yet).

    debootstrap installs the release as published; the root then gets the release's updates and
    security updates (apt-get upgrade), and keeps those sources for apt on the installed system.

    The result is kept in the cache, keyed by suite, mirror, arch and packages, so images that
    start from the same packages (a netboot base and a disk image, two versions of a template)
    run debootstrap once; a root with a kernel is cached on top of that, keyed by the kernel
    too (making an initramfs takes minutes under emulation). `fresh` makes them again (to pick
    up the archive's updates).
    """
    recipe = f"{suite} {mirror} {' '.join(sorted(packages))} +updates"
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    cached = cache_dir() / "rootfs" / f"{suite}-{arch}-{key}"
    if fresh or not (cached / "etc" / "os-release").exists():

        def bootstrap(staging: Path) -> None:
            _debootstrap(suite, mirror, arch, packages, staging)
            _upgrade(staging, suite, mirror)
            (staging / "etc" / "hostname").unlink()  # the build host's name; a recipe may set one

        _cache(cached, bootstrap)
    if kernel is not None:
        recipe = f"{cached.name} {kernel} v1"
        with_kernel = cached.with_name(f"{cached.name}-k{hashlib.sha256(recipe.encode()).hexdigest()[:12]}")
        if fresh or not (with_kernel / "etc" / "os-release").exists():

            def install(staging: Path) -> None:
                run(["cp", "-a", "--reflink=auto", cached, staging], timeout=600)
                _install_kernel(staging, kernel)

            _cache(with_kernel, install)
        cached = with_kernel
    root.parent.mkdir(parents=True, exist_ok=True)  # a fresh cache has no fleet/ yet, say
    run(["cp", "-a", "--reflink=auto", cached, root], timeout=600)


def _cache(cached: Path, make: Callable[[Path], None]) -> None:
    """Make `cached` with `make` in a staging directory; only a complete root gets its name."""
    staging = cached.with_name(f".{cached.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        make(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(cached, ignore_errors=True)
    staging.rename(cached)


def _install_kernel(root: Path, kernel: KernelPackage) -> None:
    if kernel.modules:
        listed = root / "etc" / "initramfs-tools" / "modules"
        listed.parent.mkdir(parents=True, exist_ok=True)
        with listed.open("a") as file:
            file.write("".join(f"{module}\n" for module in kernel.modules))
    # initramfs-tools first, so that the kernel's own postinst makes the initramfs once: its
    # trigger would make it a second time (minutes under emulation) but for update_initramfs=no,
    # which holds for the install only; installed machines update their initramfs as usual.
    install(root, ("initramfs-tools",))
    conf = root / "etc" / "initramfs-tools" / "update-initramfs.conf"
    original = conf.read_text()
    conf.write_text(re.sub(r"(?m)^update_initramfs=.*$", "update_initramfs=no", original))
    try:
        install(root, (kernel.package,))
    finally:
        conf.write_text(original)


def _debootstrap(suite: str, mirror: str, arch: str, packages: tuple[str, ...], root: Path) -> None:
    argv: list[str | Path] = [
        "debootstrap",
        "--variant=minbase",
        # Another architecture's second stage runs under QEMU user emulation (arch.py).
        f"--arch={arch}",
        f"--cache-dir={debs_cache()}",
    ]
    if packages:
        argv.append(f"--include={','.join(packages)}")
    result = run([*argv, suite, root, mirror], timeout=1800, check=False)
    if result.returncode == 0:
        return
    output = result.stdout + result.stderr  # debootstrap reports some errors on stdout
    missing = re.search(r"Couldn't find these debs: (.+)", output)
    if missing:
        raise CroftError(f"packages not found in {suite} ({mirror}): {missing.group(1).strip()}")
    if "Invalid Release file" in output or "Failed getting release file" in output:
        raise CroftError(f"no Debian suite {suite!r} at {mirror}")
    log = root / "debootstrap" / "debootstrap.log"
    unmet = unmet_dependency(log.read_text(errors="replace") if log.exists() else "")
    if unmet is not None:
        # debootstrap does not resolve virtual packages (dbus-system-bus): the recipe must.
        raise CroftError(
            f"package {unmet[0]} depends on {unmet[1]}, which debootstrap does not "
            "pick by itself: add the package that provides it to the recipe's packages"
        )
    raise CommandError([str(arg) for arg in (*argv, suite, root, mirror)], result.returncode, output)


def _upgrade(root: Path, suite: str, mirror: str) -> None:
    (root / "etc" / "apt" / "sources.list").write_text(
        "".join(f"deb {line}\n" for line in sources(suite, mirror))
    )
    # confold: keep the configuration files debootstrap installed, never ask.
    in_root(
        root,
        "apt-get -q update >/dev/null && apt-get -q -y -o Dpkg::Options::=--force-confold upgrade",
        binds=((debs_cache(), "/var/cache/apt/archives"),),
    )


def unmet_dependency(log: str) -> tuple[str, str] | None:
    """From debootstrap's log: the package dpkg would not configure for want of one that is not
    installed at all, and that dependency (those "not configured yet" follow from it, and the
    early "configuring anyway" ones are harmless)."""
    unmet = re.search(
        r"prevent configuration of \S+:\n(?: .*\n)*? (\S+) (?:pre-)?depends on ([^;]+); however:\n"
        r"\s+Package \S+ is not installed",
        log,
    )
    return (unmet.group(1), unmet.group(2)) if unmet else None


def in_root(
    root: Path, command: str, *, binds: tuple[tuple[Path, str], ...] = (), timeout: float = 1800
) -> str:
    """Run a shell command inside `root` (systemd-nspawn: its own /proc, /dev and /sys, torn down
    afterwards even when the command fails) and return its output."""
    argv: list[str | Path] = [
        "systemd-nspawn",
        "--quiet",
        # Here PID 1 is not systemd: nspawn can neither register with machined nor make a scope.
        "--register=no",
        "--keep-unit",
        "--pipe",
        "--directory",
        root,
        "--setenv=DEBIAN_FRONTEND=noninteractive",
        "--setenv=PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    argv += [f"--bind={source}:{target}" for source, target in binds]
    return run([*argv, "/bin/sh", "-ec", command], timeout=timeout).stdout


def install(root: Path, packages: tuple[str, ...]) -> None:
    """apt-get install `packages` into `root` (a root with apt), with the shared package cache."""
    lists = cache_dir() / "apt-lists" / f"{_root_suite(root)}-{_root_arch(root)}"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    binds = ((debs_cache(), "/var/cache/apt/archives"), (lists, "/var/lib/apt/lists"))
    update = "" if any(lists.glob("*_Packages")) else "apt-get -q update >/dev/null; "
    try:
        in_root(
            root, f"{update}apt-get -q -y --no-install-recommends install {' '.join(packages)}", binds=binds
        )
    except CommandError as error:
        missing = re.findall(r"Unable to locate package (\S+)", error.stderr)
        if missing:
            raise CroftError(f"packages not found: {', '.join(missing)}") from None
        raise


def _root_suite(root: Path) -> str:
    release = (root / "etc" / "os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=(\S+)", release, re.M)
    return match.group(1) if match else "unknown"


def _root_arch(root: Path) -> str:
    status = (root / "var" / "lib" / "dpkg" / "status").read_text()
    match = re.search(r"^Package: dpkg\n(?:.+\n)*?Architecture: (\S+)", status, re.M)
    return match.group(1) if match else "unknown"


def copy_tree(tree: Path, root: Path) -> None:
    """The recipe's file tree into the image root, as a layer ships: modes kept, links as links,
    `!` names dereferenced (the target's content, under the name without the `!`). The files
    belong to root. Directories already in the image keep their mode (and stay links: /bin)."""
    from croft.build.sources import walk_whole

    for source in walk_whole(tree, "image").sources:
        target = root / source.path
        if source.kind == "dir":
            if not target.is_dir():
                target.mkdir()
                target.chmod(stat.S_IMODE(source.stamp[3]))
            continue
        if target.is_symlink() or target.exists():
            target.unlink()
        if source.kind == "link":
            target.symlink_to(os.readlink(source.file))
        else:
            shutil.copy2(source.file, target)


def strip(root: Path) -> None:
    """Remove what STRIP names (from an overlay's upper directory: what the overlay added)."""
    for pattern in STRIP:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def finish(root: Path) -> None:
    """strip() a whole root, and make every machine booting it its own."""
    strip(root)
    # An empty machine-id makes systemd generate one at boot.
    (root / "etc" / "machine-id").write_text("")


@contextmanager
def mounted(source: str | Path, target: Path, *options: str) -> Iterator[Path]:
    """`mount options source target` for the duration of a with block."""
    target.mkdir(parents=True, exist_ok=True)
    run(["mount", *options, source, target])
    try:
        yield target
    finally:
        run(["umount", target])
