"""What a workflow template is rendered with, and the netboot environment's artifacts."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from croft.agent import bootconfig
from croft.errors import CroftError
from croft.images.store import store_for
from croft.serve.location import serve_config
from croft.site.model import Machine, Site


def artifact_url(server_url: str, digest: str) -> str:
    """An artifact's URL, with the digest its downloader checks (croft's initrd, the agent)."""
    return f"{server_url}/artifacts/{digest}#sha256={digest}"


def images(site: Site, server_url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """image -> artifact role -> {url, sha256, size, ...} for every built image."""
    store = store_for(site)
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for name in site.images:
        manifest = store.manifest(name)
        if manifest is None:
            continue
        found[name] = {
            role: {"url": artifact_url(server_url, a.sha256), "sha256": a.sha256, "size": a.size, **a.extra}
            for role, a in manifest.artifacts.items()
        }
    return found


def deploy_key(site: Site, machine: Machine) -> str:
    """The public half of the key croft deploys to `machine` with ("" without one): a workflow
    authorizes it on the system it installs, so `croft deploy` can take over."""
    key = site.ssh_target(machine).key
    public = key.with_name(key.name + ".pub") if key is not None else None
    return public.read_text().strip() if public is not None and public.exists() else ""


def workflow_context(site: Site, machine: Machine, server_url: str) -> dict[str, Any]:
    hardware = machine.config.hardware
    assert hardware is not None
    return {
        "deploy_key": deploy_key(site, machine),
        "machine": {"name": machine.name, "address": machine.address},
        # Through JSON: lists, not tuples, so templates can add them up.
        "hardware": json.loads(json.dumps(dataclasses.asdict(hardware))),
        "metadata": json.loads(json.dumps(dataclasses.asdict(hardware.metadata))),
        "vars": site.variables(machine),
        "server": server_url,
        "images": images(site, server_url),
    }


@dataclass(frozen=True)
class Netboot:
    """The netboot environment for one architecture, as URLs."""

    kernel: str
    initrd: str
    layers: list[str]
    """The base's squashfs, then the overlays."""
    cmdline: str


def netboot_artifacts(site: Site, server_url: str, arch: str) -> Netboot:
    """The built images [serve.netboot] (x86_64) or [serve.netboot_arm64] (aarch64) names."""
    serve = serve_config(site)
    netboot = serve.netboot_arm64 if arch == "aarch64" else serve.netboot
    if netboot is None:
        raise CroftError(
            "no netboot environment for aarch64 machines: add [serve.netboot_arm64] to site.toml"
        )
    built = images(site, server_url)
    missing = [name for name in (netboot.initrd, netboot.base, *netboot.overlays) if name not in built]
    if missing:
        raise CroftError(f"images not built: {', '.join(missing)} (run `croft image build`)")
    layers = [built[netboot.base]["squashfs"]["url"]]
    for overlay in netboot.overlays:
        (artifact,) = built[overlay].values()
        layers.append(artifact["url"])
    return Netboot(
        built[netboot.initrd]["kernel"]["url"],
        built[netboot.initrd]["initrd"]["url"],
        layers,
        netboot.cmdline if netboot.cmdline is not None else bootconfig.CONSOLES[arch],
    )
