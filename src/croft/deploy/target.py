"""The deploy view: each machine as a deploy sees it, written when croft loads the site.

A deploy needs little of the site: how to reach each machine, the [deploy] settings, the paths
its layers adopt and how its apt runs. Importing the site model (some forty dataclasses) costs
a deploy after an edit ~50 ms, a sixth of the whole command, so `croft deploy` keeps this view
in .croft/cache/deploy-view.json beside the cached site, keyed like it by the stat of the site's
config files (and of what else the view is made from: the SSH key croft is told to use, the
site's signing key). A deploy whose build took the quick path (only file and template content
changed) reads the view and never loads the site.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from croft.layout import build_dir
from croft.site.fingerprint import config_files, fingerprint
from croft.site.ssh import SshTarget

TYPE_CHECKING = False
if TYPE_CHECKING:
    from croft.site.model import Machine, Site

VERSION = 1
"""Bumped when what the view holds changes: a view of another version is made again."""
# croft's code the view's settings are made by, beside the model's (in config_files).
_CODE = [
    Path(__file__),
    Path(__file__).parents[1] / "systemd" / "package_cache.py",
    Path(__file__).parents[1] / "repository" / "source.py",
]


class Target(NamedTuple):
    """One machine as a deploy sees it."""

    name: str
    root: Path
    """The site's directory."""
    ssh: SshTarget
    keep: int
    """[deploy] keep_generations."""
    settle: float
    """[deploy] settle_seconds."""
    confirm: int
    """[deploy] confirm_seconds."""
    adopt: tuple[str, ...]
    """The paths its layers may take over from someone else (layer.toml's adopt)."""
    apt: tuple[str, str, str]
    """(proxy, host reached directly, the site repository's source) for apply.sh's apt runs."""

    @property
    def state_dir(self) -> Path:
        return self.root / ".croft"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def build(self) -> Path:
        """Its build directory (croft.layout.build_dir)."""
        return Path(build_dir(self.state_dir, self.name))


class View(NamedTuple):
    """Every machine of the site as a deploy sees it, and the site's own deploy settings."""

    targets: dict[str, Target]
    parallel: int
    """[deploy] parallel: machines deployed at once."""
    cache: str | None
    """The machine that runs the site's package cache ([packages] cache): deployed first."""

    def select(self, names: tuple[str, ...]) -> list[Target] | None:
        """The named machines (all when none are named); None when one is unknown (loading the
        site says so, with the names it knows)."""
        if not names:
            return list(self.targets.values())
        if any(name not in self.targets for name in names):
            return None
        return [self.targets[name] for name in names]


def of(site: Site, machine: Machine) -> Target:
    """The machine as a deploy sees it, from the loaded site."""
    deploy = site.config.deploy
    adopt = tuple(
        path
        for name in machine.config.layers
        if name in site.layers
        for path in site.layers[name].config.adopt
    )
    return Target(
        machine.name,
        site.root,
        site.ssh_target(machine),
        deploy.keep_generations,
        deploy.settle_seconds,
        deploy.confirm_seconds,
        adopt,
        _apt(site, machine),
    )


def view(site: Site) -> View:
    return View(
        {name: of(site, machine) for name, machine in site.machines.items()},
        site.config.deploy.parallel,
        site.config.packages.cache,
    )


def _apt(site: Site, machine: Machine) -> tuple[str, str, str]:
    from croft.repository import source
    from croft.systemd import package_cache

    proxy = package_cache.apt_proxy(site, machine)
    return (
        proxy,
        package_cache.direct_host(site) if proxy else "",
        source.text(site) if source.wanted(site) else "",
    )


def _path(root: Path) -> Path:
    return root / ".croft" / "cache" / "deploy-view.json"


def _key(root: Path, signing_key: str | None) -> list[Any]:
    """What the view is made from, by stat (and the SSH key croft was told to use)."""
    files = [*config_files(root), *_CODE]
    if signing_key:
        files.append(Path(signing_key))
    return [VERSION, os.environ.get("CROFT_SSH_KEY"), signing_key, fingerprint(files)]


def save(site: Site) -> View:
    """The site's view, kept for the next deploy."""
    from croft import inplace
    from croft.repository import key

    found = view(site)
    signing_key = str(key.public_path(site)) if any(t.apt[2] for t in found.targets.values()) else None
    data = {
        "key": _key(site.root, signing_key),
        "parallel": found.parallel,
        "cache": found.cache,
        "targets": [
            {
                "name": t.name,
                "ssh": t.ssh.to_json(),
                "keep": t.keep,
                "settle": t.settle,
                "confirm": t.confirm,
                "adopt": list(t.adopt),
                "apt": list(t.apt),
            }
            for t in found.targets.values()
        ],
    }
    inplace.publish(_path(site.root), json.dumps(data).encode())
    return found


def load(root: Path) -> View | None:
    """The view kept for the site at `root`, when the site is as it was then; else None."""
    root = root.resolve()
    try:
        data = json.loads(_path(root).read_bytes())
        kept = data["key"]
        # (a JSON list of lists: the fingerprint's tuples are compared as lists)
        if kept != json.loads(json.dumps(_key(root, kept[2]))):
            return None
        targets = {
            t["name"]: Target(
                t["name"],
                root,
                SshTarget.from_json(t["ssh"]),
                t["keep"],
                t["settle"],
                t["confirm"],
                tuple(t["adopt"]),
                (t["apt"][0], t["apt"][1], t["apt"][2]),
            )
            for t in data["targets"]
        }
        return View(targets, data["parallel"], data["cache"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
