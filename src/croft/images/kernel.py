"""The kernel images boot: Debian's package, downloaded once and unpacked (never the host's /boot)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from croft.deploy.ssh import cache_dir
from croft.errors import CroftError
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


def fetch(package: str) -> Kernel:
    """The unpacked kernel package, from the cache or downloaded with the host's apt sources."""
    concrete = resolve(package)
    root = cache_dir() / "kernels" / concrete
    if not (root / "boot").is_dir():
        staging = root.with_name(f".{concrete}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            run(["apt-get", "download", "-q", concrete], cwd=staging, timeout=900)
            (deb,) = staging.glob("*.deb")
            run(["dpkg-deb", "-x", deb, staging / "root"])
            deb.unlink()
            # The package ships no modules.dep (its postinst makes it): make it here.
            (version,) = (path.name for path in (staging / "root" / "lib" / "modules").iterdir())
            run(["depmod", "-b", staging / "root", version])
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / "root").rename(root)  # only a whole package gets the cached name
        shutil.rmtree(staging)
    (vmlinuz,) = (root / "boot").glob("vmlinuz-*")
    return Kernel(concrete, vmlinuz.name.removeprefix("vmlinuz-"), root)


def resolve(package: str) -> str:
    """A metapackage (linux-image-amd64) is resolved to the kernel it depends on."""
    result = run(["apt-cache", "depends", package], check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise CroftError(
            f"kernel package {package!r} is unknown to apt on this machine; "
            "run `apt-get update`, or name a package `apt-cache search linux-image` lists"
        )
    match = re.search(r"Depends: (linux-image-\d\S*)", result.stdout)
    return match.group(1) if match else package
