"""QEMU machines: disks, firmware (SeaBIOS or OVMF), a serial console logged to a file, and the
choice between KVM and TCG made by booting a guest, not by opening /dev/kvm."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from croft import wait
from croft.agent import bootconfig
from croft.errors import CroftError
from croft.run import spawn

# UEFI firmware (code, a template of its variables) per architecture: OVMF and AAVMF (edk2).
UEFI = {
    "x86_64": (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    "aarch64": (Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")),
}
Firmware = Literal["bios", "uefi"]
Arch = Literal["x86_64", "aarch64"]


@dataclass
class VirtualMachine:
    """One QEMU machine. Its console is written to `console`; `wait_for` reads it."""

    name: str
    workdir: Path
    arch: Arch = "x86_64"
    """aarch64: QEMU's virt board with a Cortex-A57, always emulated (TCG) on an x86_64 host."""
    memory_mb: int = 1024
    cpus: int | None = None
    """Default: 2 under KVM; 1 under TCG, where two vCPUs boot only ~15% faster and a guest
    kernel patching its code (text_poke_bp) across them now and then locks both up."""
    firmware: Firmware = "bios"
    """aarch64 machines have UEFI whatever this says."""
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    disks: list[Path] = field(default_factory=list)
    tap: str | None = None
    """A tap device to plug the NIC into (it must exist, in `netns` when given)."""
    mac: str = "52:54:00:12:34:56"
    netns: str | None = None
    boot: Literal["disk", "network"] = "disk"
    """network: netboot first, then the disk (as a machine being provisioned boots)."""
    reboot: bool = False
    """Let the guest reboot (else a reboot ends QEMU, which is what a single boot test wants)."""
    interactive: bool = False
    """A console socket to type into (croft lab console) and a QMP socket (the lab's BMC)."""
    process: subprocess.Popen[bytes] | None = None
    seen: int = 0
    """How far into the console the waits have read."""

    @property
    def console(self) -> Path:
        return self.workdir / f"{self.name}.console.log"

    @property
    def console_socket(self) -> Path:
        return self.workdir / f"{self.name}.console.sock"

    @property
    def qmp_socket(self) -> Path:
        return self.workdir / f"{self.name}.qmp"

    def argv(self, accel: str) -> list[str]:
        cpus = self.cpus or (1 if accel == "tcg" else 2)
        argv = [f"qemu-system-{self.arch}", "-name", self.name, "-m", str(self.memory_mb), "-smp", str(cpus)]
        # thread=multi: one host thread per guest CPU under TCG.
        argv += ["-accel", "tcg,thread=multi" if accel == "tcg" else "kvm", "-nographic"]
        if not self.reboot:
            argv.append("-no-reboot")
        if self.interactive:
            # The serial console both logged to its file and open to `croft lab console`.
            argv += [
                "-chardev",
                f"socket,id=console,path={self.console_socket},server=on,wait=off,"
                f"logfile={self.console},logappend=on",
                "-serial",
                "chardev:console",
            ]
            argv += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off", "-monitor", "none"]
        else:
            argv += ["-serial", f"file:{self.console}", "-monitor", "none"]
        if self.arch == "aarch64":
            argv += ["-machine", "virt", "-cpu", "cortex-a57"]
        if self.firmware == "uefi" or self.arch == "aarch64":
            code, template = UEFI[self.arch]
            vars_file = self.workdir / f"{self.name}.nvram.fd"
            if not vars_file.exists():
                shutil.copyfile(template, vars_file)  # the machine's own NVRAM
            if self.arch == "x86_64":
                argv += ["-machine", "q35"]
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}"]
            argv += ["-drive", f"if=pflash,format=raw,unit=1,file={vars_file}"]
            # The LAN provisions over IPv4 (croft serve's DHCP and PXE); without this, each boot
            # that falls through the network options (iPXE exits to boot the installed disk)
            # waits for PXE and HTTP boot over IPv6 answers that never come: minutes under TCG.
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no"]
        # bootindex: the boot order SeaBIOS and OVMF both follow. The NIC comes first when
        # netbooting, else after the disks (an empty disk falls through to it).
        first_disk = 2 if self.boot == "network" else 1
        for index, disk in enumerate(self.disks):
            argv += ["-drive", f"file={disk},format=raw,if=none,id=disk{index}"]
            argv += ["-device", f"virtio-blk-pci,drive=disk{index},bootindex={first_disk + index}"]
        if self.kernel is not None:
            argv += ["-kernel", str(self.kernel)]
            if self.initrd is not None:
                argv += ["-initrd", str(self.initrd)]
            argv += ["-append", f"{bootconfig.CONSOLES[self.arch]} panic=-1 {self.append}".strip()]
        if self.tap is not None:
            argv += ["-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no"]
            nic_index = 1 if self.boot == "network" else len(self.disks) + 1
            nic = f"virtio-net-pci,netdev=n0,mac={self.mac},bootindex={nic_index}"
            if self.arch == "aarch64":
                nic += ",romfile="  # QEMU's NIC ROMs are x86 code; AAVMF has its own virtio driver
            argv += ["-device", nic]
        else:
            argv += ["-nic", "none"]
        return argv

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.interactive:
            self.console.write_bytes(b"")
        self.seen = 0
        argv = self.argv(accelerator() if self.arch == platform.machine() else "tcg")
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.process = spawn(argv, stderr=(self.workdir / f"{self.name}.qemu.log").open("wb"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of `pattern` on the console after the previous wait's match, as expect
        does: a line the machine printed in an earlier phase (the installer mounting the disk it
        wrote) does not answer a wait for the next (the installed system mounting it).
        Raises with the console's end on timeout."""
        expression = re.compile(pattern)

        def printed() -> re.Match[str] | None:
            text = self.console.read_text(errors="replace")
            match = expression.search(text, self.seen)
            if match is None and self.process is not None and self.process.poll() is not None:
                raise CroftError(f"{self.name} stopped before {pattern!r}:\n{_tail(text)}{self._stderr()}")
            return match

        match = wait.until(printed, timeout, 0.2)
        if match is None:
            text = self.console.read_text(errors="replace")
            raise CroftError(f"{self.name}: no {pattern!r} on its console in {timeout:.0f} s:\n{_tail(text)}")
        self.seen = match.end()
        return match

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _stderr(self) -> str:
        log = self.workdir / f"{self.name}.qemu.log"
        return f"\nqemu: {log.read_text(errors='replace').strip()}" if log.exists() else ""


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(f"  | {line}" for line in text.strip().splitlines()[-lines:])


_accelerator: str | None = None


def accelerator() -> str:
    """ "kvm" when a guest really boots under it, else "tcg".

    Opening /dev/kvm proves nothing: on nested hosts it opens, firmware runs, and a Linux guest
    hangs; `-accel kvm:tcg` does not fall back then. So boot a guest that only prints a marker,
    once per host boot (the answer is cached under /run).
    """
    global _accelerator
    if _accelerator is None:
        _accelerator = _probe()
    return _accelerator


def _probe() -> str:
    if os.environ.get("CROFT_ACCEL") in ("kvm", "tcg"):
        return os.environ["CROFT_ACCEL"]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cached = Path("/run/croft/kvm-probe")
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    if cached.exists() and cached.read_text().startswith(boot_id):
        return cached.read_text().split()[1]
    # A real Linux kernel is the only honest probe.
    from croft.images.archive import DEFAULT_MIRROR, Archive
    from croft.images.kernel import fetch

    kernel = fetch(Archive("bookworm", DEFAULT_MIRROR, "amd64"), "linux-image-amd64")
    probe_dir = Path("/run/croft/kvm-probe.d")
    probe_dir.mkdir(parents=True, exist_ok=True)
    machine = VirtualMachine(
        "kvm-probe", probe_dir, memory_mb=256, cpus=1, kernel=kernel.vmlinuz, append="root=/dev/nonexistent"
    )
    argv = machine.argv("kvm")
    machine.console.write_bytes(b"")
    process = spawn(argv)

    # A kernel that gets as far as looking for its root has booted; under a broken KVM it
    # hangs long before.
    def verdict() -> str | None:
        if "Kernel panic" in machine.console.read_text(errors="replace"):
            return "kvm"
        return None if process.poll() is None else "tcg"

    answer = wait.until(verdict, 15, 0.2) or "tcg"
    process.kill()
    process.wait()
    shutil.rmtree(probe_dir, ignore_errors=True)
    cached.write_text(f"{boot_id} {answer}\n")
    return answer
