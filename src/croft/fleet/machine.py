"""One fleet machine: systemd booted by systemd-nspawn on an overlay of the cached rootfs.

PID 1 of this host need not be systemd, so machinectl cannot reach the containers: croft
enters them with nsenter. Each container runs in a cgroup of its own: otherwise every
container's systemd would manage the same cgroup and stop each other's services.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from croft import wait
from croft.errors import CroftError
from croft.lan import BRIDGE, Lan
from croft.run import run, spawn

STATE_SIZE = 256 << 20
"""Each machine's btrfs file system for services' state (sparse: it costs what it holds)."""
DISK_SIZE = 16 << 30
"""Each machine's own disk, for all it writes (the overlay's upper layer): a journaled ext4 as
Debian installs one, sparse. Not the host's file system, whose quirks would be every machine's
(this development VM's ext4 has no journal, and such an ext4 allocates inodes several times
slower for minutes after many were deleted); and a fleet goes down as one file removed each."""
STATE_MOUNT = "/var/lib/croft"

CGROUP_HIERARCHIES = (
    Path("/sys/fs/cgroup/systemd"),
    Path("/sys/fs/cgroup/unified"),
    Path("/sys/fs/cgroup"),
)


@dataclass
class Container:
    name: str
    address: str
    directory: Path
    """Holds the overlay's upper, work and merged directories and the console log."""
    cgroup: str
    """Relative to each cgroup hierarchy, e.g. croft-fleet-home/web1."""
    nspawn_pid: int = 0

    @property
    def root(self) -> Path:
        return self.directory / "merged"

    def cgroups(self) -> list[Path]:
        found = []
        for hierarchy in CGROUP_HIERARCHIES:
            if (hierarchy / "cgroup.procs").exists():
                found.append(hierarchy / self.cgroup)
                if hierarchy == Path("/sys/fs/cgroup/unified") or hierarchy == Path("/sys/fs/cgroup"):
                    break  # one cgroup2 hierarchy is enough
        return found

    def start(self, rootfs: Path, lan: Lan) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        disk = self._make_disk()
        for sub in ("upper", "work"):
            (disk / sub).mkdir(exist_ok=True)
        run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={rootfs},upperdir={disk / 'upper'},workdir={disk / 'work'}",
                self.root,
            ]
        )
        (self.root / "etc" / "hostname").write_text(self.name + "\n")
        # host0's address is given from outside (configure_network): systemd-networkd, which a
        # site's overlay starts, must not take the link over with the DHCP Debian's
        # 80-container-host0.network asks for.
        masked = self.root / "etc" / "systemd" / "network" / "80-container-host0.network"
        masked.parent.mkdir(parents=True, exist_ok=True)
        if not masked.is_symlink():
            masked.symlink_to("/dev/null")
        state = self._make_state_filesystem()
        cgroups = self.cgroups()
        for cgroup in cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)
        join = "; ".join(f"echo $$ > {cgroup}/cgroup.procs" for cgroup in cgroups)
        nspawn = (
            f"exec nsenter --net={lan.netns_path} systemd-nspawn -D {self.root} -M {self.name} "
            # --register=no, --keep-unit: there is no systemd on the host to register with.
            f"-b --register=no --keep-unit --console=pipe --network-bridge={BRIDGE} "
            f"--bind={state}:{STATE_MOUNT}"
        )
        log = open(self.directory / "console.log", "wb")  # noqa: SIM115 (the child keeps it)
        process = spawn(["sh", "-c", f"{join}; {nspawn}"], stdout=log, stderr=log)
        log.close()
        self.nspawn_pid = process.pid

    def _make_disk(self) -> Path:
        image = self.directory / "disk.ext4"
        mountpoint = self.directory / "disk"
        with open(image, "wb") as stream:
            stream.truncate(DISK_SIZE)
        # Lazy init: the kernel zeroes the inode tables later, mkfs writes a few MB now.
        run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", image])
        mountpoint.mkdir(exist_ok=True)
        run(["mount", "-o", "loop", image, mountpoint])
        return mountpoint

    def _make_state_filesystem(self) -> Path:
        """A btrfs file system for the machine's services' state, as a real machine would have."""
        image = self.directory / "state.btrfs"
        mountpoint = self.directory / "state"
        with open(image, "wb") as stream:
            stream.truncate(STATE_SIZE)
        run(["mkfs.btrfs", "-q", image])
        mountpoint.mkdir(exist_ok=True)
        run(["mount", "-o", "loop", image, mountpoint])
        return mountpoint

    def init_pid(self) -> int | None:
        """The container's PID 1 (systemd), as this host sees it."""
        try:
            children = Path(f"/proc/{self.nspawn_pid}/task/{self.nspawn_pid}/children").read_text().split()
            comm = Path(f"/proc/{self.nspawn_pid}/comm").read_text().strip()
        except FileNotFoundError:
            return None
        # Until the launcher has exec'd nspawn, and nspawn's child has exec'd systemd, neither
        # is the container's init.
        if comm != "systemd-nspawn" or not children:
            return None
        try:
            if Path(f"/proc/{children[0]}/comm").read_text().strip() != "systemd":
                return None
        except FileNotFoundError:
            return None
        return int(children[0])

    def configure_network(self, prefix: int) -> None:
        pid = self.wait_for_init()
        # nspawn moves host0 into the container just after it starts init: wait for it.
        show = ["nsenter", "-t", str(pid), "-n", "ip", "link", "show", "host0"]
        if not wait.until(lambda: run(show, check=False).returncode == 0, 10, 0.05):
            raise CroftError(f"{self.name}: no host0 interface in the container")
        run(
            [
                "nsenter",
                "-t",
                str(pid),
                "-n",
                "ip",
                "addr",
                "add",
                f"{self.address}/{prefix}",
                "dev",
                "host0",
            ]
        )
        run(["nsenter", "-t", str(pid), "-n", "ip", "link", "set", "host0", "up"])

    def wait_for_init(self, timeout: float = 30) -> int:
        failed = CroftError(f"{self.name}: the container did not start; see {self.directory / 'console.log'}")

        def init() -> int | None:
            pid = self.init_pid()
            if pid is None and not wait.alive(self.nspawn_pid):
                raise failed
            return pid

        pid = wait.until(init, timeout, 0.05)
        if pid is None:
            raise failed
        return pid

    def wait_for_ssh(self, timeout: float = 60) -> None:
        def answers() -> bool:
            try:
                with socket.create_connection((self.address, 22), timeout=1) as conn:
                    return conn.recv(4).startswith(b"SSH")
            except OSError:
                return False

        if not wait.until(answers, timeout):
            raise CroftError(f"{self.name}: sshd did not answer at {self.address}:22 within {timeout:.0f} s")

    def enter(self, *argv: str) -> str:
        """Run a command inside the container (all its namespaces) and return its output."""
        pid = self.wait_for_init(5)
        return run(["nsenter", "-t", str(pid), "-a", *argv], check=False).stdout

    def stop(self) -> None:
        pid = self.init_pid()
        if pid is not None:
            # SIGRTMIN+4 asks systemd to power off; repeated, since one sent while it is still
            # starting can be lost.
            def powered_off() -> bool:
                if not wait.alive(self.nspawn_pid):
                    return True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGRTMIN + 4)
                return False

            wait.until(powered_off, 5, 0.25)
        for cgroup in self.cgroups():
            _kill_cgroup(cgroup)
        if self.nspawn_pid:
            try:
                os.kill(self.nspawn_pid, signal.SIGKILL)
                # Reap it when it is this process's child (the test fixture); else PID 1 will.
                os.waitpid(self.nspawn_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        run(["umount", "-l", self.root], check=False)
        # Lazily: the container's mount namespace may hold it for a moment longer; the loop
        # device goes with the last reference.
        run(["umount", "-l", self.directory / "state"], check=False)
        run(["umount", "-l", self.directory / "disk"], check=False)
        for cgroup in self.cgroups():
            remove_cgroup(cgroup)
        shutil.rmtree(self.directory, ignore_errors=True)


def _kill_cgroup(cgroup: Path) -> None:
    if not cgroup.exists():
        return
    for top, _, names in os.walk(cgroup):  # ignores cgroups that go while it looks
        if "cgroup.procs" not in names:
            continue
        try:
            pids = (Path(top) / "cgroup.procs").read_text().split()
        except OSError:
            continue
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def remove_cgroup(cgroup: Path) -> None:
    """Remove a cgroup and its children, deepest first, waiting for killed processes to go."""
    if not cgroup.exists():
        return
    deadline = time.monotonic() + 10
    # os.walk, bottom up, ignores directories that go while it looks (the container's systemd
    # may still be removing its own).
    children = [Path(top) / name for top, names, _ in os.walk(cgroup, topdown=False) for name in names]
    for directory in children:

        def removed(directory: Path = directory) -> bool:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # busy: processes still in it
                _kill_cgroup(directory)
                return False
            return True

        wait.until(removed, max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(OSError):
        cgroup.rmdir()
