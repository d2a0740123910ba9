"""`croft image build`: a recipe to artifacts in the store, rebuilt only when the recipe changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from croft import tools
from croft.agent import bootconfig
from croft.errors import CroftError, Problem, SiteError
from croft.images import arch, disk, initrd, kernel, overlay, rootfs, squashfs, streams
from croft.images.archive import Archive
from croft.images.store import Artifact, ImageManifest, Store, store_for
from croft.run import run
from croft.site.images import image_arch, kernel_package, size_bytes
from croft.site.model import Image, ImageConfig, Site

# croft's image code: a change to it may change what a recipe produces, so it is part of the
# recipe's hash (as the site cache hashes the code generating services).
_CODE = sorted(
    [*Path(__file__).parent.glob("*.py"), *Path(__file__).parent.glob("*.sh"), Path(bootconfig.__file__)]
)
Progress = Callable[[str], None]


def build(
    site: Site, name: str, *, force: bool = False, progress: Progress = lambda _: None
) -> ImageManifest:
    """Build the image `name` (and the base an overlay goes on) unless it is up to date."""
    image = site.images.get(name)
    if image is None:
        known = ", ".join(sorted(site.images)) or "none"
        raise CroftError(f"no image {name!r} in {site.root / 'images'} (images: {known})")
    problems = check_trees({name: image})
    if problems:
        raise SiteError(problems)
    tools.require("image")
    store = store_for(site)
    base_manifest = None
    if image.config.kind == "overlay":
        assert image.config.base is not None  # croft check makes sure
        base_manifest = build(site, image.config.base, progress=progress)
    recipe = recipe_hash(image, base_manifest)
    current = store.manifest(name)
    if current is not None and current.recipe == recipe and not force:
        progress(f"{name}: up to date")
        return current

    work = store.root / "work" / name
    _clean(work)
    work.mkdir(parents=True)
    started = time.monotonic()
    try:
        step = _Steps(name, progress, started)
        if image.config.kind != "initrd":
            arch.ensure_runnable(image_arch(image, site.images))
        if image.config.kind == "base":
            artifacts = _base(image, work, store, step, force)
        elif image.config.kind == "overlay":
            assert base_manifest is not None
            artifacts = _overlay(
                image, store.path(base_manifest.artifacts["squashfs"].sha256), work, store, step
            )
        elif image.config.kind == "initrd":
            artifacts = _initrd(image, work, store, step)
        else:
            artifacts = _disk(image, recipe, current, work, store, step, force)
    finally:
        _clean(work)
    manifest = ImageManifest(
        name, image.config.kind, recipe, artifacts, datetime.now(UTC).isoformat(timespec="seconds")
    )
    store.publish(manifest)
    sizes = ", ".join(
        f"{role} {_mb(artifact.size)}{_change(artifact.size, current, role)}"
        for role, artifact in artifacts.items()
    )
    progress(f"{name}: built in {time.monotonic() - started:.1f} s ({sizes})")
    return manifest


class _Steps:
    """Progress lines: `name: step` with the time since the build started."""

    def __init__(self, name: str, progress: Progress, started: float) -> None:
        self.name, self.progress, self.started = name, progress, started

    def __call__(self, message: str) -> None:
        self.progress(f"{self.name}: [{time.monotonic() - self.started:5.1f} s] {message}")


def _base(image: Image, work: Path, store: Store, step: _Steps, fresh: bool) -> dict[str, Artifact]:
    root = _rootfs(image, work, step, fresh)
    step(f"mksquashfs ({image.config.compression})")
    squashfs.pack(root, work / "base.squashfs", image.config.compression)
    return {"squashfs": store.add(work / "base.squashfs")}


def _overlay(image: Image, base: Path, work: Path, store: Store, step: _Steps) -> dict[str, Artifact]:
    config = image.config
    step(f"installing on the base ({len(config.packages)} packages, {len(config.commands)} commands)")
    output = work / f"overlay.{image.config.format}"
    overlay.build(image.config, image.tree, base, work, output)
    return {image.config.format: store.add(output)}


def _initrd(image: Image, work: Path, store: Store, step: _Steps) -> dict[str, Artifact]:
    config = image.config
    step(f"kernel {kernel_package(config)} ({config.suite}, {config.arch})")
    linux = kernel.fetch(_archive(config), kernel_package(config))
    step(f"initrd for {linux.version}")
    initrd.build(_archive(config), linux, config.modules, config.compression, work, work / "initrd.img")
    shutil.copy2(linux.vmlinuz, work / "vmlinuz")
    artifacts = {
        "kernel": store.add(work / "vmlinuz", version=linux.version),
        "initrd": store.add(work / "initrd.img"),
    }
    if config.arch == "arm64":
        step("iPXE for arm64 UEFI (Debian's)")
        shutil.copy2(initrd.arm64_ipxe(), work / "ipxe-arm64.efi")
        artifacts["ipxe"] = store.add(work / "ipxe-arm64.efi")
    return artifacts


def _disk(
    image: Image,
    recipe: str,
    previous: ImageManifest | None,
    work: Path,
    store: Store,
    step: _Steps,
    fresh: bool,
) -> dict[str, Artifact]:
    config = image.config
    package = kernel_package(config)
    # The whole kernel package, modules and Debian's initramfs (an unknown module is an error).
    kernel.fetch(_archive(config), package).modules(config.modules)
    resolved = kernel.resolve(_archive(config), package)
    root = _rootfs(image, work, step, fresh, rootfs.KernelPackage(package, resolved, config.modules))
    linux = disk.boot_files(root, package)
    artifacts: dict[str, Artifact] = {}
    boot = disk.bootloaders(_archive(config))
    cmdline = bootconfig.kernel_cmdline(config.cmdline, boot.arch)
    if "raw" in config.outputs or "qcow2" in config.outputs:
        firmware = "BIOS and UEFI" if boot.arch == "x86_64" else "UEFI"
        step(f"raw disk ({config.size}, GPT: ESP + ext4 root; {firmware})")
        size = size_bytes(config.size)
        disk.raw(root, linux, size, cmdline, boot, work, work / "disk.raw")
    if "raw" in config.outputs:
        disk.compress(work / "disk.raw", work / "disk.raw.zst")
        artifacts["raw.zst"] = store.add(
            work / "disk.raw.zst", size=size, kernel=linux.version, cmdline=cmdline
        )
    if "qcow2" in config.outputs:
        step("qcow2 (compressed), for VMs")
        disk.qcow2(work / "disk.raw", work / "disk.qcow2")
        artifacts["qcow2"] = store.add(work / "disk.qcow2", size=size, kernel=linux.version, cmdline=cmdline)
    if "tar" in config.outputs:
        step("tar.zst of the root")
        disk.tar(root, work / "root.tar.zst")
        artifacts["tar.zst"] = store.add(work / "root.tar.zst", kernel=linux.version, cmdline=cmdline)
    if "btrfs" in config.outputs:
        step("btrfs snapshot and send streams (zstd)")
        with streams.opened(store.root) as store_templates:
            parent = previous.recipe if previous is not None and "btrfs.zst" in previous.artifacts else None
            if parent is not None and not store_templates.snapshot(image.name, parent).exists():
                parent = None
            snapshot = store_templates.add(image.name, recipe, root, parent)
            # Compressed: a send stream is the root's size, and the agent decompresses any stream.
            store_templates.send(snapshot, work / "root.btrfs")
            disk.compress(work / "root.btrfs", work / "root.btrfs.zst")
            artifacts["btrfs.zst"] = store.add(work / "root.btrfs.zst", kernel=linux.version, cmdline=cmdline)
            if parent is not None and previous is not None:
                # A machine on the previous version receives only the change.
                store_templates.send(
                    snapshot,
                    work / "root.btrfs-incremental",
                    parent=store_templates.snapshot(image.name, parent),
                )
                disk.compress(work / "root.btrfs-incremental", work / "root.btrfs-incremental.zst")
                artifacts["btrfs-incremental.zst"] = store.add(
                    work / "root.btrfs-incremental.zst",
                    parent=previous.artifacts["btrfs.zst"].sha256,
                    kernel=linux.version,
                    cmdline=cmdline,
                )
            store_templates.prune(image.name, {recipe} | ({parent} if parent else set()))
    return artifacts


def _rootfs(
    image: Image, work: Path, step: _Steps, fresh: bool, linux: rootfs.KernelPackage | None = None
) -> Path:
    config = image.config
    root = work / "root"
    with_kernel = f", {linux.resolved} with Debian's initramfs" if linux else ""
    step(f"debootstrap {config.suite} {config.arch} (minbase + {len(config.packages)} packages{with_kernel})")
    rootfs.debootstrap(
        config.suite, config.mirror, config.arch, config.packages, root, fresh=fresh, kernel=linux
    )
    rootfs.copy_tree(image.tree, root)
    for command in config.commands:
        step(f"running: {command}")
        rootfs.in_root(root, command)
    rootfs.finish(root)
    return root


def recipe_hash(image: Image, base: ImageManifest | None) -> str:
    """Everything the image is made from: its recipe, its file tree, croft's image code, the
    kernel package it names (and an arm64 initrd's iPXE), and for an overlay, the base it is
    built on."""
    digest = hashlib.sha256()
    for code in _CODE:
        digest.update(code.read_bytes())
    digest.update(json.dumps(asdict(image.config), sort_keys=True).encode())
    if image.tree.is_dir():
        for directory, subdirectories, files in os.walk(image.tree):
            subdirectories.sort()
            for name in sorted(
                files + [d for d in subdirectories if os.path.islink(os.path.join(directory, d))]
            ):
                path = Path(directory) / name
                stat = path.lstat()
                content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
                digest.update(f"{path.relative_to(image.tree)}\0{stat.st_mode:o}\0".encode())
                digest.update(hashlib.sha256(content).digest())
    if image.config.kind in ("initrd", "disk"):
        digest.update(kernel.resolve(_archive(image.config), kernel_package(image.config)).encode())
    if image.config.kind == "initrd" and image.config.arch == "arm64":
        digest.update(hashlib.sha256(initrd.arm64_ipxe().read_bytes()).digest())
    if base is not None:
        digest.update(base.artifacts["squashfs"].sha256.encode())
    if image.config.agent:
        for code in sorted(overlay.AGENT_SOURCE.glob("*.py")):
            digest.update(code.read_bytes())
    return digest.hexdigest()


def _archive(config: ImageConfig) -> Archive:
    return Archive(config.suite, config.mirror, config.arch)


def _clean(work: Path) -> None:
    """Remove a build's work directory, unmounting what a killed build left mounted in it."""
    if not work.exists():
        return
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mountpoint in sorted((m for m in mounts if m.startswith(f"{work}/")), reverse=True):
        run(["umount", "-l", mountpoint], check=False)
    shutil.rmtree(work)


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def _change(size: int, previous: ImageManifest | None, role: str) -> str:
    """How much an artifact grew or shrank since the version it replaces, e.g. ` (+152.3 MB)`."""
    if previous is None or role not in previous.artifacts:
        return ""
    delta = size - previous.artifacts[role].size
    return f" ({'+' if delta >= 0 else '-'}{_mb(abs(delta))})"


def check_trees(images: dict[str, Image]) -> list[Problem]:
    """Problems in the images' file trees (walked on demand: the cached site does not cover them)."""
    from croft.build.sources import walk_whole

    problems: list[Problem] = []
    for image in images.values():
        tree = walk_whole(image.tree, image.name)
        problems += tree.problems
        problems += [
            Problem(
                source.file,
                "templates are not rendered in image trees",
                hint="images are shared by machines; machine-specific files belong in layers",
            )
            for source in tree.sources
            if source.kind == "template"
        ]
    return problems
