"""The test site's disk image: the raw image boots from its disk with BIOS and with UEFI, the
tar.zst holds the root, and btrfs streams rebuild a template version by version."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from croft.images.build import build
from croft.images.rootfs import mounted
from croft.images.store import ImageManifest, Store
from croft.lab.qemu import Firmware, VirtualMachine
from croft.run import run
from croft.site.load import load_site
from tests.images.conftest import INSTALLED_ROOT, SITE

pytestmark = [pytest.mark.images, pytest.mark.qemu]


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_the_raw_image_boots_from_disk_to_multi_user(
    images: dict[str, ImageManifest], store: Store, tmp_path: Path, firmware: Firmware
) -> None:
    raw = images["debian"].artifacts["raw.zst"]
    disk = tmp_path / "disk.raw"
    run(["zstd", "-q", "-d", "-o", disk, store.path(raw.sha256)])
    assert disk.stat().st_size == raw.extra["size"]
    machine = VirtualMachine(f"disk-{firmware}", tmp_path, firmware=firmware, disks=[disk])
    machine.start()
    try:
        machine.wait_for(INSTALLED_ROOT, 120)
        machine.wait_for(r"Reached target.*Multi-User System", 120)
        machine.wait_for(r"debian-test login:", 60)  # the hostname the recipe's command wrote
    finally:
        machine.stop()


def test_the_tar_holds_the_root_with_kernel_and_files(images: dict[str, ImageManifest], store: Store) -> None:
    artifact = images["debian"].artifacts["tar.zst"]
    names = run(["tar", "-I", "zstd", "-tf", store.path(artifact.sha256)]).stdout.splitlines()
    assert "./etc/croft/release" in names
    assert f"./boot/vmlinuz-{artifact.extra['kernel']}" in names
    assert not any(name.startswith("./usr/share/doc/") and name != "./usr/share/doc/" for name in names)


def tree_digest(root: Path) -> str:
    """Paths, modes, owners, link targets and contents of a tree, as one digest."""
    digest = hashlib.sha256()
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(subdirectories + files):
            path = Path(directory) / name
            st = path.lstat()
            digest.update(f"{path.relative_to(root)} {st.st_mode:o} {st.st_uid} {st.st_gid}\n".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def test_an_incremental_stream_on_the_previous_version_reproduces_the_new_template(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    shutil.copytree(SITE, site_dir, ignore=shutil.ignore_patterns(".croft"))
    recipe = site_dir / "images" / "debian.toml"
    recipe.write_text(recipe.read_text() + 'outputs = ["btrfs"]\n')
    first = build(load_site(site_dir), "debian")
    (site_dir / "images" / "debian" / "etc" / "croft" / "release").write_text("version 2\n")
    (site_dir / "images" / "debian" / "etc" / "croft" / "added").write_text("new in version 2\n")
    second = build(load_site(site_dir), "debian")
    incremental = second.artifacts["btrfs-incremental.zst"]
    assert incremental.extra["parent"] == first.artifacts["btrfs.zst"].sha256
    assert incremental.size < first.artifacts["btrfs.zst"].size / 100  # only the change

    store = Store(site_dir / ".croft" / "images")
    target_file = tmp_path / "target.btrfs"
    with target_file.open("wb") as file:
        file.truncate(2 << 30)
    run(["mkfs.btrfs", "-q", target_file])
    with mounted(target_file, tmp_path / "target", "-o", "loop") as target:
        # A machine installed from version 1 receives version 2 as the change alone.
        for stream in (store.path(first.artifacts["btrfs.zst"].sha256), store.path(incremental.sha256)):
            run(["sh", "-c", 'zstd -dc "$1" | btrfs -q receive "$2"', "receive", stream, target])
        received = target / f"debian@{second.recipe}"
        assert (received / "etc" / "croft" / "added").read_text() == "new in version 2\n"
        with mounted(store.root / "templates.btrfs", tmp_path / "templates", "-o", "loop,ro") as templates:
            assert tree_digest(received) == tree_digest(templates / f"debian@{second.recipe}")
