"""The kernel images boot: Debian's package, downloaded once and unpacked (never the host's /boot)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from croft.errors import CroftError
from croft.images.archive import Archive
from croft.run import run

# What every croft initrd loads: enough to find the network and a disk on a VM or a common PC,
# and to mount what netboot and installed systems are made of. Built-in ones are skipped.
DEFAULT_MODULES = (
    # VMs
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    # common NICs: Intel (e1000, e1000e, igb), Realtek
    "e1000",
    "e1000e",
    "igb",
    "r8169",
    # disks
    "ahci",
    "sd_mod",
    "nvme",
    # ext4 and btrfs need a crc32c implementation loaded first; they ask for it by an alias
    # (a soft dependency), which modules.dep does not list.
    "crc32c_generic",
    # filesystems: the netboot root (squashfs + overlay on loop), installed roots, the ESP
    "loop",
    "squashfs",
    "overlay",
    "ext4",
    "btrfs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
)


@dataclass(frozen=True)
class Kernel:
    package: str
    version: str
    """The kernel release (uname -r), e.g. 6.1.0-56-amd64."""
    root: Path
    """The unpacked package: boot/vmlinuz-<version>, lib/modules/<version>/."""

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.version

    def modules(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """The module files (relative to modules_dir) that load `names`, dependencies first."""
        deps: dict[str, list[str]] = {}
        by_name: dict[str, str] = {}
        for line in (self.modules_dir / "modules.dep").read_text().splitlines():
            module, _, rest = line.partition(":")
            deps[module] = rest.split()
            by_name[_module_name(module)] = module
        builtin = {
            _module_name(line) for line in (self.modules_dir / "modules.builtin").read_text().splitlines()
        }
        ordered: list[str] = []

        def visit(module: str) -> None:
            if module in ordered:
                return
            for dependency in deps[module]:
                visit(dependency)
            ordered.append(module)

        for name in names:
            key = name.replace("-", "_")
            if key in by_name:
                visit(by_name[key])
            elif key not in builtin:
                raise CroftError(f"kernel module {name!r} is not in {self.package} ({self.version})")
        return ordered


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def fetch(archive: Archive, package: str) -> Kernel:
    """The unpacked kernel package `package` (a metapackage is resolved) from `archive`."""
    concrete = resolve(archive, package)
    root = archive.unpack(concrete)
    if not (root / "lib" / "modules").is_dir():
        raise CroftError(f"{package} ({concrete}) is not a kernel package: it has no modules")
    (version,) = (path.name for path in (root / "lib" / "modules").iterdir())
    if not (root / "lib" / "modules" / version / "modules.dep").exists():
        # The package ships no modules.dep (its postinst makes it): make it, once.
        run(["depmod", "-b", root, version])
    return Kernel(concrete, version, root)


def resolve(archive: Archive, package: str) -> str:
    """A metapackage (linux-image-amd64) is resolved to the kernel it depends on."""
    match = re.search(r"(linux-image-\d\S*)", archive.show(package).get("Depends", ""))
    return match.group(1) if match else package
