"""dnsmasq, configured and supervised by croft serve: DHCP (full) or proxyDHCP beside the LAN's
router (proxy), TFTP for the iPXE binaries, and iPXE for the machines that may netboot (a known
MAC with allow_netboot; any MAC with discovery).

Whether a machine netboots *now* is decided over HTTP: its iPXE asks croft serve for a script,
which boots the netboot environment when a workflow waits and otherwise says `exit` (the
firmware boots the disk), the MAAS model. So dnsmasq's configuration follows the inventory
only, never a workflow starting or ending: no SIGHUP (dnsmasq 2.90 aborts on one after a
machine took a tagged lease), and one dnsmasq process for as long as the site's machines stay.
The per-machine lines live in a hosts directory dnsmasq watches (--dhcp-hostsdir): machines
added to the site are read without a signal; a machine removed or changed restarts dnsmasq,
since dnsmasq only ever adds what it reads there.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
from pathlib import Path

from croft import wait
from croft.errors import CroftError
from croft.images.store import store_for
from croft.run import spawn
from croft.serve.inventory import Inventory
from croft.serve.location import serve_config
from croft.site.model import ServeConfig, Site

IPXE_DIR = Path("/usr/lib/ipxe")
RUNTIME = Path("/run/croft/serve")
# Client architecture (DHCP option 93) -> the iPXE binary it chainloads.
IPXE_BINARIES = {"bios": "undionly.kpxe", "efi-x86_64": "ipxe.efi", "efi-arm64": "ipxe-arm64.efi"}


def arm64_ipxe(site: Site) -> Path | None:
    """The iPXE arm64 machines get: the site's, or the one built with the arm64 netboot
    environment's initrd image (Debian's); None when the site netboots no arm64 machine."""
    serve = serve_config(site)
    if serve.ipxe_arm64 is not None:
        return site.root / serve.ipxe_arm64
    if serve.netboot_arm64 is None:
        return None
    store = store_for(site)
    manifest = store.manifest(serve.netboot_arm64.initrd)
    if manifest is None or "ipxe" not in manifest.artifacts:
        return None  # not built yet: the boot script says so
    return store.path(manifest.artifacts["ipxe"].sha256)


def prepare_tftp(root: Path, ipxe_arm64: Path | None) -> None:
    # dnsmasq serves TFTP as `nobody`: readable by all, whatever croft serve's umask (0077).
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    root.chmod(0o755)
    sources = {"bios": IPXE_DIR / "undionly.kpxe", "efi-x86_64": IPXE_DIR / "ipxe.efi"}
    if ipxe_arm64 is not None:
        sources["efi-arm64"] = ipxe_arm64
    for arch, source in sources.items():
        name = IPXE_BINARIES[arch]
        # The name proxyDHCP's pxe-service hands out is its basename + ".0".
        for target in (root / name, root / f"{name.rsplit('.', 1)[0]}.0"):
            # Replaced whole: a running dnsmasq may be sending the old one to a booting machine.
            partial = target.with_name(f".{target.name}.partial")
            shutil.copy2(source, partial)
            partial.chmod(0o644)
            partial.replace(target)


def config(serve: ServeConfig, runtime: Path, boot_url: str, arm64: bool) -> str:
    """The main configuration (changes only with [serve]): written once, read at start. `arm64`:
    whether there is an iPXE for arm64 machines."""
    network = ipaddress.ip_network(serve.network)
    lines = [
        "# Written by croft serve; changes are lost on its next start.",
        "port=0",  # no DNS: croft only netboots
        f"interface={serve.interface}",
        "bind-interfaces",
        f"dhcp-hostsdir={runtime / 'hosts.d'}",
        f"dhcp-leasefile={runtime / 'leases'}",
        "enable-tftp",
        f"tftp-root={runtime / 'tftp'}",
        "log-dhcp",
        # Who is asking: iPXE already (option 175), or a firmware's PXE ROM for BIOS or UEFI.
        "dhcp-match=set:ipxe,175",
        "dhcp-match=set:efi-x86_64,option:client-arch,7",
        "dhcp-match=set:efi-x86_64,option:client-arch,9",
        "dhcp-match=set:efi-arm64,option:client-arch,11",
        # iPXE: skip its wait for a ProxyDHCP answer (~2 s per boot).
        "dhcp-option=encap:175,176,1b",
    ]
    if serve.router_advertisements:
        lines += [
            "enable-ra",
            # For the interface's own IPv6 prefix; interval 0 is the default, lifetime 0 makes it
            # a router of nothing, so no machine routes through croft.
            f"dhcp-range=::,constructor:{serve.interface},ra-only",
            f"ra-param={serve.interface},0,0",
        ]
    # Machines that may netboot carry the tag `netboot` (from the hosts directory); with
    # discovery every machine does.
    wanted = "" if serve.discovery else "tag:netboot,"
    if serve.mode == "full":
        mask = network.netmask
        # static: addresses only for machines in the hosts file; discovery adds a pool.
        if serve.discovery:
            hosts = list(network.hosts())
            pool = hosts[len(hosts) // 2 :]
            lines.append(f"dhcp-range={pool[0]},{pool[-1]},{mask},1h")
        else:
            lines.append(f"dhcp-range={network.network_address},static,{mask},1h")
        if serve.gateway:
            lines.append(f"dhcp-option=option:router,{serve.gateway}")
        else:
            lines.append("dhcp-option=option:router")  # none: do not offer ourselves
        if serve.dns:
            lines.append(f"dhcp-option=option:dns-server,{','.join(serve.dns)}")
        lines += [
            # A client already in iPXE gets the script's URL, so it never chainloads itself again.
            f"dhcp-boot={wanted}tag:ipxe,{boot_url}",
            f"dhcp-boot={wanted}tag:!ipxe,tag:efi-x86_64,{IPXE_BINARIES['efi-x86_64']}",
            f"dhcp-boot={wanted}tag:!ipxe,tag:!efi-x86_64,tag:!efi-arm64,{IPXE_BINARIES['bios']}",
        ]
        if arm64:
            lines.append(f"dhcp-boot={wanted}tag:!ipxe,tag:efi-arm64,{IPXE_BINARIES['efi-arm64']}")
    else:
        # proxyDHCP: the LAN's router hands out addresses, croft only the boot file; a PXE ROM
        # is told about it by pxe-service (whose basename gets ".0" appended: see prepare_tftp),
        # iPXE by dhcp-boot.
        lines += [
            f"dhcp-range={network.network_address},proxy,{network.netmask}",
            f"dhcp-boot={wanted}tag:ipxe,{boot_url}",
            f"pxe-service={wanted}tag:!ipxe,x86PC,croft,undionly",
            f"pxe-service={wanted}tag:!ipxe,X86-64_EFI,croft,ipxe",
        ]
        if arm64:
            lines.append(f"pxe-service={wanted}tag:!ipxe,ARM64_EFI,croft,ipxe-arm64")
    return "\n".join(lines) + "\n"


def hosts(inventory: Inventory, full: bool) -> str:
    """dhcp-host lines: every known MAC (with its address in full mode), tagged `netboot` when
    that machine may netboot (allow_netboot)."""
    lines = []
    for mac, known in sorted(inventory.by_mac.items()):
        fields = [mac]
        if known.hardware.allow_netboot:
            fields.append("set:netboot")
        if full and known.ip is not None:
            fields += [known.ip, known.hostname]
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


class Dnsmasq:
    """One dnsmasq process: started (ending a predecessor's first), fed the inventory, restarted
    if it dies, and dying with croft serve."""

    def __init__(self, state: Path, site: Site, boot_url: str) -> None:
        self.conf = state / "dnsmasq.conf"
        self.log = state / "dnsmasq.log"
        # What dnsmasq reads after dropping its privileges (TFTP files, the hosts directory)
        # must be readable by its unprivileged user, wherever the site lives (/root is 0700).
        runtime = RUNTIME / hashlib.sha256(str(state).encode()).hexdigest()[:12]
        for directory in (*reversed(runtime.parents[:2]), runtime, runtime / "hosts.d"):
            directory.mkdir(mode=0o755, exist_ok=True)
            directory.chmod(0o755)
        self.runtime, self.boot_url = runtime, boot_url
        self.hosts_file = runtime / "hosts.d" / "croft"
        self.pid_file = state / "dnsmasq.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self.configure(site)

    def configure(self, site: Site) -> bool:
        """Write the configuration for the site's [serve]; whether it changed (a running dnsmasq
        then needs restart(): it reads its main configuration only at start)."""
        arm64 = arm64_ipxe(site)
        prepare_tftp(self.runtime / "tftp", arm64)
        text = config(serve_config(site), self.runtime, self.boot_url, arm64 is not None)
        if self.conf.exists() and self.conf.read_text() == text:
            return False
        self.conf.write_text(text)
        return True

    def restart(self) -> None:
        self.stop()
        self.start()

    def start(self) -> None:
        self._end_predecessor()
        # A croft serve killed with SIGKILL must leave no dnsmasq answering DHCP. dnsmasq drops
        # its privileges, which clears a parent-death signal (prctl(2)), so a small sh holds it
        # instead and ends dnsmasq when croft serve dies; it exits with dnsmasq's status.
        watch = (
            'dnsmasq "$@" & child=$!; echo "$child" >"$PIDFILE"; trap \'kill "$child"\' TERM; '
            'wait "$child"; status=$?; wait "$child" 2>/dev/null; exit "$status"'
        )
        argv = ["sh", "-c", watch, "dnsmasq"]
        argv += ["--keep-in-foreground", "--log-facility=-", f"--conf-file={self.conf}"]
        self.pid_file.unlink(missing_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        process = self.process = spawn(
            argv, stderr=self.log.open("ab"), die_with_parent=True, env={"PIDFILE": str(self.pid_file)}
        )

        # Serving means answering: wait until dnsmasq says it started (its sockets are bound by
        # then), so that croft serve never says it serves before DHCP and TFTP do.
        def started() -> bool:
            with self.log.open("rb") as stream:
                stream.seek(offset)
                said = stream.read().decode(errors="replace")
            if process.poll() is not None:
                raise CroftError(f"dnsmasq could not start: {' | '.join(said.strip().splitlines()[-3:])}")
            try:
                return f"dnsmasq[{int(self.pid_file.read_text())}]: started" in said
            except (OSError, ValueError):
                return False  # the watcher has not written its pid yet

        if not wait.until(started, 10, 0.02):
            raise CroftError(f"dnsmasq did not start within 10 s; see {self.log}")

    def _end_predecessor(self) -> None:
        """End the dnsmasq an earlier croft serve of this site left (its pid file names it, and
        its command line names this site's configuration)."""
        try:
            pid = int(self.pid_file.read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if f"--conf-file={self.conf}".encode() not in command.split(b"\0"):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            if not wait.until(lambda: not wait.alive(pid), 5):
                os.kill(pid, signal.SIGKILL)

    def update_hosts(self, text: str) -> bool:
        """Write the hosts directory's file if it changed; a line removed or changed restarts
        dnsmasq (it only adds what it reads there). Whether it changed."""
        old = self.hosts_file.read_text() if self.hosts_file.exists() else ""
        if old == text:
            return False
        partial = self.runtime / ".hosts.partial"
        partial.write_text(text)
        partial.chmod(0o644)
        partial.replace(self.hosts_file)  # dnsmasq reads it on the rename (inotify)
        if not set(old.splitlines()) <= set(text.splitlines()) and self.process is not None:
            self.restart()
        return True

    def ensure_running(self) -> str | None:
        """Restart dnsmasq if it exited; returns why, for the server's log."""
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
            self.start()
            return f"dnsmasq exited {code}; restarted. Its last lines: " + " | ".join(lines[-3:])
        return None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)
