"""The site model: what site.toml, machines/<name>.toml and layers/<layer>/layer.toml hold.

Plain frozen dataclasses, so a validated site can be cached and loaded again without importing
pydantic; pydantic validates them (see load.py) through the `__pydantic_config__` attribute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from croft.site.ssh import SshTarget

# Unknown keys are errors: a misspelt key silently ignored is the worst kind of bug in a config.
STRICT: dict[str, Any] = {"extra": "forbid"}

# croft owns this subtree of every target and nothing outside it, so `rm -rf /usr/local/*`
# returns a machine to its distribution.
OWNED_ROOT = "usr/local"


@dataclass(frozen=True)
class SshConfig:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    user: str | None = None
    port: int | None = None
    key: str | None = None
    """Private key file; relative paths are relative to the site directory."""
    options: tuple[str, ...] = ()
    """Extra `ssh -o` options, e.g. "ServerAliveInterval=30"."""
    via: str | None = None
    """A machine of the site every SSH connection to this one goes through (a bastion): croft
    reaches it first, over its own kept-open connection, and on from there."""


@dataclass(frozen=True)
class DeployConfig:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    keep_generations: int = 10
    """Generations kept on each machine; older ones are pruned after a successful deploy."""
    settle_seconds: float = 2.0
    """How long a started or restarted unit must stay active, from when it became active,
    before the deploy counts it healthy (a oneshot: until it ran to its end)."""
    parallel: int = 16
    """Machines deployed at once."""
    confirm_seconds: int = 30
    """After the switch, croft must reach the machine again over a new SSH connection within
    this long, or the machine reverts itself to the previous generation (a firewall, sshd or
    network change that locked croft out); 0 turns it off."""


@dataclass(frozen=True)
class PackagesConfig:
    """[packages]: where machines get Debian packages from."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    cache: str | None = None
    """A machine of the site that runs a package cache (apt-cacher-ng) for the others: every
    machine's apt goes through it, so a package is fetched from the mirror once."""
    port: int = 3142
    """The cache's port."""
    upstream: str | None = None
    """An HTTP proxy the cache (and the cache machine's own apt) reaches the mirror through,
    e.g. "http://proxy.lan:3128"; without it, the mirror directly."""
    repository: str | None = None
    """Where machines find the site's own APT repository (packages/, built by `croft repo
    build`): its URL, e.g. "http://10.0.0.2:8080/apt"; default croft serve's /apt/."""
    upgrades: Literal["none", "security", "all"] = "none"
    """Background upgrades on every machine (unattended-upgrades): none, the distribution's
    security updates, or all its updates; either way the site's own packages too."""
    reboot: str | None = None
    """When a machine whose upgrade needs it reboots by itself, e.g. "04:00"; never without."""
    signing_key: str | None = None
    """The key that signs the site's repository (made by croft when missing; keep it out of
    git); default ~/.local/share/croft/SITE/apt-signing-key.asc."""


@dataclass(frozen=True)
class DnsConfig:
    """Names under the site's domain for every machine and service, served by one machine."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    server: str
    """The machine that answers for the domain (dnsmasq); every machine asks it (systemd-resolved)."""


@dataclass(frozen=True)
class OverlayConfig:
    """[network.overlay]: a WireGuard network between the site's machines (docs/network.md)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    subnet: str = "10.99.0.0/24"
    """The overlay's IPv4 network; each machine's address in it comes from its name."""
    ula: str | None = None
    """The overlay's IPv6 /64, a unique local prefix (fd00::/8); default one derived from the
    site's name."""
    port: int = 51820
    """The UDP port WireGuard listens on, on every machine."""
    topology: Literal["mesh", "hub"] = "mesh"
    """mesh: every machine has every other as a peer; hub: machines have the hub alone as their
    peer, and it forwards between them (machines that cannot reach each other directly)."""
    hub: str | None = None
    """With topology = "hub": the machine the others connect to."""
    machines: tuple[str, ...] = ()
    """The machines that join; default every machine of the site."""
    keepalive: int = 0
    """Seconds between keepalives to each peer (25 keeps a NAT's mapping open); 0: none."""


@dataclass(frozen=True)
class NetworkConfig:
    """[network]: networks croft makes between the site's machines."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    overlay: OverlayConfig | None = None
    gateway: str | None = None
    """A machine of the overlay that VPN peers (phones, laptops: `croft vpn add`) connect to:
    it forwards them into the overlay and they ask the site's names over it."""
    endpoint: str | None = None
    """Where peers reach the gateway, "HOST:PORT" (its public name, a router's forwarded port);
    default its address and the overlay's port."""
    services: str = "10.98.0.0/16"
    """The networks of containers and VMs on service bridges: a /24 of it for each machine
    that has them, chosen from its name."""


@dataclass(frozen=True)
class LogsConfig:
    """[logs]: one journal for the site, kept by one machine (docs/logs.md)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    collector: str
    """The machine that receives every machine's journal (systemd-journal-remote)."""
    port: int = 19532
    """The port the collector receives on: over the overlay when every machine is in it,
    else over TLS with certificates from the site's own CA."""
    keep: str = "30d"
    """How long the collector keeps entries (a duration: "90min", "12h", "30d", "8w")."""
    max_use: str = "4G"
    """How much disk the site's journal may take on the collector (K, M, G, T)."""
    heartbeat: str = "1min"
    """How often each machine reports it is alive, with its file systems' use and its newest
    snapshots (the silent, disk and snapshot alerts read them)."""


@dataclass(frozen=True)
class NotifyConfig:
    """[alerts.notify.NAME]: where alerts go, a webhook or mail (or both)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    webhook: str | None = None
    """A URL alerts are POSTed to (http or https)."""
    webhook_file: str | None = None
    """A file outside the site holding the URL, when it carries a token (a secret)."""
    format: Literal["json", "ntfy", "gotify", "slack"] = "json"
    """The body's shape: croft's JSON, or what ntfy, Gotify or a Slack-style receiver takes."""
    mail: tuple[str, ...] = ()
    """Addresses alerts are mailed to, through [alerts] smtp."""


@dataclass(frozen=True)
class AlertsConfig:
    """[alerts]: where the rules of alerts/ notify (docs/logs.md)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    smtp: str | None = None
    """The SMTP relay mail goes through, "HOST" or "HOST:PORT" (port 25 by default)."""
    sender: str | None = None
    """The mail's From; default croft@DOMAIN."""
    notify: dict[str, NotifyConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class NetbootConfig:
    """What a netbooting machine runs: images from images/ (see docs/images.md)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    initrd: str = "initrd"
    """An initrd image: the kernel and croft's initrd."""
    base: str = "netboot"
    """A base image: the squashfs root."""
    overlays: tuple[str, ...] = ("agent",)
    """Overlay images stacked on the base, in order; one carries croft's agent."""
    cmdline: str | None = None
    """Kernel arguments besides croft's own; default: the serial console, console=ttyS0 on
    x86_64, console=ttyAMA0 on aarch64."""


@dataclass(frozen=True)
class ServeConfig:
    """`croft serve`: PXE (dnsmasq), iPXE scripts, artifacts, metadata and workflows."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    address: str
    """The server's address on the provisioning LAN; machines fetch everything from it."""
    interface: str
    """The interface on that LAN dnsmasq answers on."""
    network: str
    """The provisioning LAN, e.g. "192.168.1.0/24"; every machine's address must be in it."""
    mode: Literal["proxy", "full"] = "proxy"
    """proxy: proxyDHCP beside the LAN's router (which keeps handing out addresses); full: croft
    is the DHCP server and gives each known machine its address."""
    http_port: int = 8080
    discovery: bool = False
    """Answer unknown machines too (they boot the netboot environment and wait for a workflow)."""
    database_url: str | None = None
    """Where workflow state lives: default SQLite in .croft/serve/; or postgresql://..."""
    gateway: str | None = None
    """full mode: the router handed to machines (default: none)."""
    dns: tuple[str, ...] = ()
    """full mode: DNS servers handed to machines."""
    ipxe_arm64: str | None = None
    """An iPXE for arm64 UEFI to hand out instead of Debian's (relative to the site), e.g. one
    built with `make bin-arm64-efi/snp.efi`."""
    router_advertisements: bool = False
    """Send IPv6 router advertisements that offer no route (lifetime 0), for a LAN without an
    IPv6 router: iPXE otherwise waits ~13 s for one at every boot. Needs an IPv6 address on the
    interface (croft lab gives its LAN one)."""
    keep_logs: int = 30
    """Days croft serve keeps a finished workflow (its actions and output) and boot events."""
    netboot: NetbootConfig = field(default_factory=NetbootConfig)
    """What x86_64 machines netboot."""
    netboot_arm64: NetbootConfig | None = None
    """What aarch64 (arm64 UEFI) machines netboot: images built with arch = "arm64". With it,
    croft serve hands arm64 machines iPXE for arm64 (Debian's, unless ipxe_arm64 names one)."""


@dataclass(frozen=True)
class SiteConfig:
    """site.toml"""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    name: str
    domain: str = "home.arpa"
    ssh: SshConfig = field(default_factory=SshConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    dns: DnsConfig | None = None
    packages: PackagesConfig = field(default_factory=PackagesConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    serve: ServeConfig | None = None
    logs: LogsConfig | None = None
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InterfaceConfig:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    mac: str
    ip: str | None = None
    """The address with its prefix, e.g. "10.77.0.21/24"."""
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    hostname: str | None = None


@dataclass(frozen=True)
class MetadataConfig:
    """What the machine's metadata (EC2 and NoCloud shapes) serves it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    user_data: str | None = None
    ssh_keys: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HardwareConfig:
    """A machine croft provisions: how to recognise it on the LAN and what it is."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    interfaces: tuple[InterfaceConfig, ...]
    arch: Literal["x86_64", "aarch64"] = "x86_64"
    firmware: Literal["bios", "uefi"] = "bios"
    disks: tuple[str, ...] = ("/dev/sda",)
    allow_netboot: bool = True
    allow_workflow: bool = True
    workflow: str | None = None
    """The workflow template `croft workflow create MACHINE` uses when none is named."""
    metadata: MetadataConfig = field(default_factory=MetadataConfig)


@dataclass(frozen=True)
class RuleConfig:
    """[firewall.allow.NAME]: traffic a machine accepts besides its services' ports."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    ports: tuple[str, ...]
    """"443" or "443/tcp", "53/udp", "60000-61000/udp"."""
    sources: tuple[str, ...] = ()
    """Who may send it: addresses, networks ("192.168.1.0/24"), machine names, "overlay" (the
    site's overlay network); default anyone."""


@dataclass(frozen=True)
class FirewallConfig:
    """[firewall] in layer.toml or a machine's file: the machine refuses inbound traffic but
    SSH, the overlay, what its services declare (ports, sockets) and the named rules."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    ssh_from: tuple[str, ...] | None = None
    """Who may open SSH connections to it, as in RuleConfig.sources (e.g. its bastion, "overlay");
    default anyone. Several files that say it add up."""
    allow: dict[str, RuleConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class MachineConfig:
    """machines/<name>.toml"""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    address: str
    layers: tuple[str, ...] = ()
    ssh: SshConfig = field(default_factory=SshConfig)
    vars: dict[str, Any] = field(default_factory=dict)
    packages: tuple[str, ...] = ()
    """Debian packages this machine needs, besides its layers' (see LayerConfig.packages)."""
    firewall: FirewallConfig | None = None
    hardware: HardwareConfig | None = None


@dataclass(frozen=True)
class UnitConfig:
    """A unit a layer owns: which files, besides its unit file and drop-ins, restart it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    config: tuple[str, ...] = ()
    """Glob patterns of target paths (e.g. "usr/local/etc/web/**") whose change restarts it."""


@dataclass(frozen=True)
class SocketConfig:
    """Socket activation through a proxy: the first connection starts the service."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    listen: tuple[str, ...]
    """Where the proxy listens on the machine: "80", "0.0.0.0:80", "[::]:443"."""
    target: int
    """The port the service itself listens on (in its own network, or on 127.0.0.1)."""
    idle_timeout: str = "5min"
    """After this long without connections the proxy exits and the service stops (scale to zero)."""


@dataclass(frozen=True)
class LimitsConfig:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    memory: str | None = None
    """MemoryMax=, e.g. "256M"."""
    cpu: str | None = None
    """CPUQuota=, e.g. "50%" (of one CPU)."""
    tasks: int | None = None
    """TasksMax=."""


@dataclass(frozen=True)
class ContainerConfig:
    """The service is an nspawn container, started afresh from a template on every start."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    rootfs: str
    """A tree the layers ship under usr/local/ (e.g. with `!` links to binaries): the template."""
    command: tuple[str, ...]
    """What runs in it, as its PID 2 (an init of its own is not needed)."""


@dataclass(frozen=True)
class VmConfig:
    """The service is a QEMU virtual machine, booted afresh from its image at every start (what
    it writes is dropped at stop) and configured by cloud-init from a NoCloud seed croft writes."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    image: str
    """A bootable disk image (qcow2, or raw) the layers ship under usr/local/, typically as a `!`
    link to what `croft image build` made (.croft/images/NAME.qcow2)."""
    memory: str = "512M"
    cpus: int = 1
    ports: tuple[str, ...] = ()
    """TCP ports of the machine forwarded into the VM, as "MACHINE_PORT:VM_PORT"."""
    user_data: str = "#cloud-config\n{}\n"
    """cloud-init's user-data: a #cloud-config document or a script."""
    accelerators: tuple[Literal["kvm", "tcg"], ...] = ("kvm", "tcg")
    """Tried in order: kvm where the machine has it, else tcg (emulation: slow, but anywhere)."""


@dataclass(frozen=True)
class ServiceConfig:
    """A service a layer runs as a sandbox: services/<name>.toml or [services.<name>] in layer.toml."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    unit: str | None = None
    """The systemd unit: a distro unit (nginx.service) or one the layer ships; default <name>.service."""
    profile: Literal["strict", "default", "relaxed"] = "default"
    config: dict[str, str] = field(default_factory=dict)
    """Config overlays: distro path -> file in the built tree bound read-only over it."""
    state: tuple[str, ...] = ()
    """Directories the service writes and keeps, on copy-on-write storage with snapshots."""
    writable: tuple[str, ...] = ()
    """Other directories it may write (logs, caches): writable, not snapshotted."""
    snapshots: dict[str, int] = field(default_factory=dict)
    """How many snapshots of its state to keep per period: hourly, daily, weekly."""
    network: Literal["host", "private", "bridge"] = "host"
    """host: the machine's network; private: none but loopback; bridge (a container or a VM): the
    machine's service bridge, an address from its DHCP and a name that registers itself,
    NAME.MACHINE.DOMAIN (docs/network.md)."""
    socket: SocketConfig | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    ports: tuple[str, ...] = ()
    """Ports it listens on that the machine's firewall opens: "8080" (TCP), "53/udp"; a socket's
    and a VM's ports are opened without being named here."""
    devices: tuple[str, ...] = ()
    """Device nodes it may use, e.g. /dev/dri/renderD128; all others are hidden."""
    address_families: tuple[str, ...] = ()
    """Socket families it needs beyond AF_UNIX, AF_INET and AF_INET6, e.g. AF_NETLINK."""
    container: ContainerConfig | None = None
    vm: VmConfig | None = None

    def unit_name(self, name: str) -> str:
        """The service's unit, for the service declared as `name`."""
        return self.unit or f"{name}.service"


@dataclass(frozen=True)
class LayerConfig:
    """layers/<layer>/layer.toml (optional)"""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    vars: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    """Glob patterns of target paths that ship with mode 0600 and are never printed in diffs."""
    units: dict[str, UnitConfig] = field(default_factory=dict)
    services: dict[str, ServiceConfig] = field(default_factory=dict)
    """Services run as sandboxes; services/<name>.toml files add to these."""
    packages: tuple[str, ...] = ()
    """Debian packages the layer's files and services need: a deploy installs those missing
    with apt before any unit starts, and removes those it installed once no layer wants them
    (never one that was there before croft asked for it)."""
    adopt: tuple[str, ...] = ()
    """Paths this layer ships that may already exist on a machine as someone else's (an
    admin's file or directory): croft takes them over, keeping the old content in
    /usr/local/croft/adopted/ and putting it back when it stops shipping the path (a rollback,
    croft reset). Without it, such a path stops the deploy: croft never deletes what it does
    not own."""
    firewall: FirewallConfig | None = None
    """A firewall on every machine with this layer (see FirewallConfig)."""


@dataclass(frozen=True)
class ImageConfig:
    """images/<name>.toml: an image `croft image build` makes (see docs/images.md)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    kind: Literal["base", "overlay", "initrd", "disk"]
    suite: str = "bookworm"
    """The Debian release (base, disk: debootstrap's; initrd: the kernel's)."""
    mirror: str = "http://deb.debian.org/debian"
    arch: Literal["amd64", "arm64"] = "amd64"
    """The Debian architecture (base, initrd; an overlay has its base's). Another one than the
    build host's runs its programs under QEMU user emulation (qemu-user-static)."""
    packages: tuple[str, ...] = ()
    """Packages installed on top of debootstrap's minbase (base, disk) or on the base (overlay)."""
    base: str | None = None
    """overlay: the base image it goes on."""
    agent: bool = False
    """overlay: install croft's provisioning agent (and start it at boot)."""
    commands: tuple[str, ...] = ()
    """Shell commands run in the image's root after its packages and files (base, overlay, disk)."""
    compression: Literal["zstd", "xz", "gzip"] = "zstd"
    format: Literal["squashfs", "cpio.gz"] = "squashfs"
    """overlay: how the difference to the base is packed."""
    kernel: str | None = None
    """initrd, disk: the Debian kernel package (a metapackage is resolved to its kernel);
    default linux-image-ARCH."""
    modules: tuple[str, ...] = ()
    """initrd, disk: kernel modules to load at boot besides croft's defaults (virtio, NICs, filesystems)."""
    size: str = "2G"
    """disk: the raw image's size (its root partition grows to fill it)."""
    outputs: tuple[Literal["raw", "qcow2", "tar", "btrfs"], ...] = ("raw", "tar", "btrfs")
    """disk: a partitioned raw image (.raw.zst), a tar.zst of the root, btrfs send streams."""
    cmdline: str = ""
    """disk: extra kernel arguments."""


@dataclass(frozen=True)
class SitePackageConfig:
    """packages/<name>.toml: a Debian package croft builds from packages/<name>/ (docs/packages.md)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    version: str
    description: str = ""
    """One line; default "NAME, built by croft for SITE"."""
    architecture: Literal["all", "amd64", "arm64"] = "all"
    depends: tuple[str, ...] = ()
    """Debian dependencies, one each: "python3", "libc6 (>= 2.36)", "nginx-light | nginx"."""
    section: str = "misc"
    priority: Literal["required", "important", "standard", "optional", "extra"] = "optional"
    maintainer: str | None = None
    """Default "croft <croft@DOMAIN>"."""
    conffiles: tuple[str, ...] | None = None
    """Files dpkg keeps an admin's change of across upgrades; default every file under /etc."""
    preinst: str | None = None
    postinst: str | None = None
    prerm: str | None = None
    postrm: str | None = None
    """Maintainer scripts: shell, run by dpkg (a missing #! line becomes #!/bin/sh with set -e)."""


@dataclass(frozen=True)
class VpnPeerConfig:
    """vpn/<name>.toml: a VPN peer of the site's gateway, written by `croft vpn add`."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    public_key: str
    """Its WireGuard public key (its private half is kept outside the site, see docs/network.md)."""


@dataclass(frozen=True)
class AlertConfig:
    """alerts/<name>.toml: one rule, read live from the site's journal on the collector."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    when: Literal["unit-failed", "match", "silent", "disk", "snapshot"]
    """unit-failed: a unit failed; match: an entry matched; silent: a machine sent nothing;
    disk: a file system is fuller than `percent`; snapshot: a service's newest snapshot is
    older than `older`."""
    machines: tuple[str, ...] = ()
    """The machines it watches; default every machine."""
    units: tuple[str, ...] = ()
    """unit-failed: the units it watches; default every unit croft ships to the machine."""
    fields: dict[str, str] = field(default_factory=dict)
    """match: journal fields an entry must have, e.g. {SYSLOG_IDENTIFIER = "sshd"}."""
    regex: str | None = None
    """match: a regular expression (Python's) the entry's MESSAGE must contain."""
    priority: Literal["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"] | None = None
    """match: the entry is at least this urgent."""
    after: str | None = None
    """silent: how long without a line before it fires (default "5min"); match: how long without
    another match before it is resolved (default "5min")."""
    percent: int = 90
    """disk: the use that fires it."""
    mounts: tuple[str, ...] = ()
    """disk: the mount points it watches; default all."""
    older: str = "2h"
    """snapshot: the age that fires it (snapshots are taken hourly)."""
    lines: int = 10
    """The machine's last lines sent with an alert."""
    notify: tuple[str, ...] = ()
    """Names under [alerts.notify] in site.toml; default all of them."""


@dataclass(frozen=True)
class Alert:
    name: str
    file: Path
    config: AlertConfig


@dataclass(frozen=True)
class VpnPeer:
    name: str
    file: Path
    config: VpnPeerConfig


@dataclass(frozen=True)
class SitePackage:
    name: str
    file: Path
    config: SitePackageConfig
    tree: Path
    """packages/<name>/: the package's files, as they land on the machine's root."""


@dataclass(frozen=True)
class Image:
    name: str
    file: Path
    config: ImageConfig
    tree: Path
    """images/<name>/: files copied into the image's root (optional)."""


@dataclass(frozen=True)
class Layer:
    name: str
    path: Path
    config: LayerConfig


@dataclass(frozen=True)
class Machine:
    name: str
    config: MachineConfig
    file: Path
    tree: Path
    """machines/<name>/: the machine's own files, applied after every layer."""

    @property
    def address(self) -> str:
        return self.config.address


@dataclass(frozen=True)
class Site:
    root: Path
    config: SiteConfig
    machines: dict[str, Machine]
    layers: dict[str, Layer]
    images: dict[str, Image] = field(default_factory=dict)
    site_packages: dict[str, SitePackage] = field(default_factory=dict)
    vpn_peers: dict[str, VpnPeer] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        """.croft/: build output, caches, SSH sockets; never committed."""
        return self.root / ".croft"

    @property
    def repository_url(self) -> str | None:
        """Where machines find the site's own packages: [packages] repository, or croft serve's."""
        if self.config.packages.repository:
            return self.config.packages.repository.rstrip("/")
        serve = self.config.serve
        return f"http://{serve.address}:{serve.http_port}/apt" if serve is not None else None

    @property
    def facts_dir(self) -> Path:
        return self.root / "facts"

    def generated_dir(self, layer: str) -> Path:
        """The files croft generates for a layer's services (see croft.systemd.sandbox)."""
        return self.state_dir / "generated" / layer

    def machine_layers(self, machine: Machine) -> list[Layer]:
        return [self.layers[name] for name in machine.config.layers]

    def variables(self, machine: Machine) -> dict[str, Any]:
        """Template variables: site vars < layer vars (in order) < machine vars."""
        merged = dict(self.config.vars)
        for layer in self.machine_layers(machine):
            merged.update(layer.config.vars)
        merged.update(machine.config.vars)
        return merged

    def ssh_target(self, machine: Machine) -> SshTarget:
        site, own = self.config.ssh, machine.config.ssh
        # CROFT_SSH_KEY: a key for every machine without one of its own (the fleet sets it).
        key = own.key or site.key or os.environ.get("CROFT_SSH_KEY")
        key_path = None
        if key:
            key_path = Path(key).expanduser()
            if not key_path.is_absolute():
                key_path = self.root / key_path
        return SshTarget(
            host=machine.address,
            user=own.user or site.user or "root",
            port=own.port or site.port or 22,
            key=key_path,
            options=site.options + own.options,
            via=None if (bastion := self.bastion(machine)) is None else self.ssh_target(bastion),
        )

    def bastion(self, machine: Machine) -> Machine | None:
        """The machine SSH to `machine` goes through, if any: its own [ssh] via, else the
        site's; never itself (via = "" in its file: directly)."""
        via = machine.config.ssh.via
        if via is None:
            via = self.config.ssh.via
        if not via or via == machine.name or via not in self.machines:
            return None
        return self.machines[via]

    def select(self, names: list[str] | tuple[str, ...]) -> list[Machine]:
        """The named machines (all when none are named); unknown names are an error."""
        from croft.errors import CroftError

        if not names:
            return list(self.machines.values())
        unknown = [name for name in names if name not in self.machines]
        if unknown:
            known = ", ".join(sorted(self.machines)) or "none"
            raise CroftError(
                f"no machine named {', '.join(unknown)} in {self.root / 'machines'} (machines: {known})"
            )
        return [self.machines[name] for name in names]
