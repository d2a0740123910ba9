"""Where things are: the paths croft owns on a target machine, and its cache on this one.

The bottom of croft's packages: it imports nothing of croft's (and nothing but os), so the site
model, the build, the generators and the deploy all read the same names, and the build's quick
path can import it for free.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: the build's quick path does not pay for importing it
if TYPE_CHECKING:
    from pathlib import Path

# -- on the target: paths relative to its root, as trees and manifests hold them --------------

OWNED = "usr/local"
"""Everything croft ships lies below it; the rest of the machine is its distribution's."""
UNIT_DIR = "usr/local/lib/systemd/system"
SYSUSERS_DIR = "usr/local/lib/sysusers.d"

DISTRO_DIRS = frozenset(
    {
        "usr",
        "usr/local",
        "usr/local/bin",
        "usr/local/etc",
        "usr/local/games",
        "usr/local/include",
        "usr/local/lib",
        "usr/local/man",
        "usr/local/sbin",
        "usr/local/share",
        "usr/local/src",
    }
)
"""The distribution's own directories under /usr/local: never removed, even when croft emptied
them."""

# -- on the target: absolute paths ---------------------------------------------------------------

REMOTE = "/usr/local/croft"
"""croft's generations, the live link, the lock: `generations/N/root/usr/local/...`."""
STATE_ROOT = "/var/lib/croft/state"
"""Services' state, one btrfs subvolume (or directory) each, snapshots beside it."""
CONTAINER_ROOT = "/var/lib/croft/containers"


# -- the site's own APT repository, as apt on a target sees it --------------------------------

BRIDGE = "croftbr0"
"""A machine's service bridge: its containers and VMs with network = "bridge"."""
APT_SUITE = "croft"
APT_COMPONENT = "main"


def apt_origin(site_name: str) -> str:
    """The Origin (and Label) of the site's repository: what apt's pinning and
    unattended-upgrades match it by."""
    return f"croft {site_name}"


# -- on this machine -----------------------------------------------------------------------------


def build_dir(state_dir: str | os.PathLike[str], machine: str) -> str:
    """A machine's build in the site's state directory (.croft/): its tree (root/), its
    manifest.json and digest."""
    return os.path.join(state_dir, "build", machine)


def data_dir(site: str) -> Path:
    """What croft keeps for a site outside its repository (signing and WireGuard keys):
    $XDG_DATA_HOME/croft/SITE, else ~/.local/share/croft/SITE."""
    from pathlib import Path

    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "croft" / site


def cache_dir() -> Path:
    """croft's cache (downloads, image roots, SSH control sockets): $CROFT_CACHE, else
    ~/.cache/croft."""
    from pathlib import Path

    return Path(os.environ.get("CROFT_CACHE", Path.home() / ".cache" / "croft"))
