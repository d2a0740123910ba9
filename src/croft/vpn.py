"""VPN peers of the site's gateway: phones and laptops that join the overlay (docs/network.md).

`croft vpn add NAME` makes the peer's key pair with `wg`, writes its public half into the site
(vpn/NAME.toml: the gateway's configuration is built from it, so it belongs in git) and its
client configuration, with the private half, into croft's data directory for the site (outside
git, 0600 in 0700), with a QR code of it (qrencode) for a phone's WireGuard app. The next
deploy of the gateway lets it in; `croft vpn remove NAME` and a deploy shut it out again.
"""

from __future__ import annotations

import os
from pathlib import Path

from croft import inplace
from croft.errors import CroftError
from croft.layout import data_dir
from croft.run import run
from croft.site import network
from croft.site.load import load_site
from croft.site.model import Site
from croft.systemd import overlay

KEEPALIVE = 25
"""A peer is mostly behind a NAT (a phone's carrier, a home router): keepalives hold it open."""


def peer_dir(site: Site) -> Path:
    return data_dir(site.config.name) / "vpn"


def client_file(site: Site, name: str) -> Path:
    return peer_dir(site) / f"{name}.conf"


def add(site: Site, name: str) -> Site:
    """Add a peer: its keys, vpn/NAME.toml, its client configuration. Returns the site as it
    is now (with the peer)."""
    gateway = _gateway(site)
    if not network.NAME.match(name):
        raise CroftError(f"{name!r} is not a peer name: use lower-case letters, digits and '-'")
    if name in site.machines or name in site.vpn_peers:
        raise CroftError(f"{name!r} is taken by a {'machine' if name in site.machines else 'VPN peer'}")
    directory = peer_dir(site)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    private = run(["wg", "genkey"]).stdout.strip()
    public = run(["wg", "pubkey"], input=private + "\n").stdout.strip()
    inplace.write(directory / f"{name}.key", private + "\n", 0o600)
    toml = site.root / "vpn" / f"{name}.toml"
    toml.parent.mkdir(exist_ok=True)
    inplace.write(
        toml,
        f"# A VPN peer of {gateway}, added by `croft vpn add {name}`; its private key is not here.\n"
        f'public_key = "{public}"\n',
        0o644,
    )
    site = load_site(site.root)
    write_client(site, name)
    return site


def remove(site: Site, name: str) -> None:
    """Remove a peer from the site (the gateway's next deploy shuts it out) and its keys."""
    if name not in site.vpn_peers:
        raise CroftError(f"no VPN peer {name!r} (peers: {', '.join(sorted(site.vpn_peers)) or 'none'})")
    site.vpn_peers[name].file.unlink()
    for suffix in (".key", ".conf", ".png"):
        (peer_dir(site) / f"{name}{suffix}").unlink(missing_ok=True)


def write_client(site: Site, name: str) -> Path:
    """The peer's configuration file (wg-quick's format, which WireGuard's apps import) and a
    PNG of its QR code beside it; returns the configuration's path."""
    key = peer_dir(site) / f"{name}.key"
    if not key.exists():
        raise CroftError(
            f"the private key of {name!r} is not in {peer_dir(site)} (added elsewhere?): "
            f"`croft vpn remove {name}` and add it again"
        )
    path = client_file(site, name)
    inplace.write(path, client_config(site, name, key.read_text().strip()), 0o600)
    png = path.with_suffix(".png")
    run(["qrencode", "-t", "PNG", "-o", png, "-r", path])
    os.chmod(png, 0o600)
    return path


def client_config(site: Site, name: str, private: str) -> str:
    gateway = _gateway(site)
    config = site.config.network
    assert config.overlay is not None  # the site's checks: a gateway is in the overlay
    addresses = network.addresses(site)
    own = addresses[name]
    lines = [
        f"# {name}: a VPN peer of {site.config.name} through {gateway} (croft vpn).",
        "[Interface]",
        f"PrivateKey = {private}",
        f"Address = {own.ipv4.ip}/32, {own.ipv6.ip}/128",
    ]
    dns = site.config.dns
    if dns is not None and dns.server in addresses:
        # The site's names, asked over the tunnel; the domain too, as a search domain.
        lines.append(f"DNS = {addresses[dns.server].ipv4.ip}, {site.config.domain}")
    _, gateway_key = overlay.keys(site, gateway)
    endpoint = config.endpoint or overlay.endpoint(site.machines[gateway].address, config.overlay.port)
    first = next(iter(addresses.values()))
    lines += [
        "",
        "[Peer]",
        f"PublicKey = {gateway_key}",
        f"Endpoint = {endpoint}",
        # The overlay only: the peer's other traffic goes its own way.
        f"AllowedIPs = {first.ipv4.network}, {first.ipv6.network}",
        f"PersistentKeepalive = {KEEPALIVE}",
    ]
    return "\n".join(lines) + "\n"


def qr_text(path: Path) -> str:
    """The QR code of a configuration, drawn for a terminal."""
    return run(["qrencode", "-t", "ansiutf8", "-r", path]).stdout


def _gateway(site: Site) -> str:
    gateway = site.config.network.gateway
    if gateway is None:
        raise CroftError(
            'the site has no VPN gateway: add gateway = "MACHINE" (a machine of the overlay) '
            "under [network] in site.toml"
        )
    return gateway
