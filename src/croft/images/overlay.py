"""Overlays: packages and files installed on top of a mounted base, captured as the copy-on-write
difference (overlayfs' upper directory) and packed small, without rebuilding the base."""

from __future__ import annotations

import shutil
from pathlib import Path

from croft.errors import CroftError
from croft.images import rootfs, squashfs
from croft.images.initrd import pack_cpio
from croft.site.model import ImageConfig
from croft.systemd.tree import GeneratedFile, place, wanted_by
from croft.systemd.unitfile import unit_file


def build(config: ImageConfig, tree: Path, base_squashfs: Path, work: Path, output: Path) -> None:
    lower, upper, overlay_work = work / "lower", work / "upper", work / "work"
    upper.mkdir(parents=True)
    overlay_work.mkdir()
    with rootfs.mounted(base_squashfs, lower, "-t", "squashfs", "-o", "loop,ro"):
        options = f"lowerdir={lower},upperdir={upper},workdir={overlay_work}"
        with rootfs.mounted("croft-overlay", work / "merged", "-t", "overlay", "-o", options) as merged:
            if config.packages:
                rootfs.install(merged, config.packages)
            rootfs.copy_tree(tree, merged)
            if config.agent:
                install_agent(merged)
            for command in config.commands:
                rootfs.in_root(merged, command)
    rootfs.strip(upper)
    if config.format == "squashfs":
        squashfs.pack(upper, output, config.compression)
    else:
        pack_cpio(upper, "gzip", output)


AGENT_SOURCE = Path(__file__).parents[1] / "agent"
AGENT_HOME = "usr/local/lib/croft-agent"
ETC_UNIT_DIR = "etc/systemd/system"
AGENT_UNIT = unit_file(
    "",
    {
        "Unit": ["Description=croft provisioning agent (runs this machine's workflow)"],
        "Service": [
            "Environment=PYTHONPATH=/{home}",
            "ExecStart=/usr/bin/python3 -m croft_agent.agent",
            "# Its progress on the console too: the place to look at a machine being installed.",
            "StandardOutput=journal+console",
            "StandardError=journal+console",
            "# It exits 0 when the workflow is finished; anything else is worth another try.",
            "Restart=on-failure",
            "RestartSec=2",
        ],
        "Install": ["WantedBy=multi-user.target"],
    },
)


def install_agent(root: Path) -> None:
    """croft's agent (croft/agent/, standard library only) as the package croft_agent, started at boot."""
    if not (root / "usr" / "bin" / "python3").exists():
        raise CroftError("the agent needs python3: add it to the base's or the overlay's packages")
    package = root / AGENT_HOME / "croft_agent"
    package.mkdir(parents=True)
    for source in sorted(AGENT_SOURCE.glob("*.py")):
        shutil.copy2(source, package / source.name)
    # In /etc, not /usr/local: deploys own /usr/local, and the agent belongs to the image.
    place(
        root,
        {
            f"{ETC_UNIT_DIR}/croft-agent.service": GeneratedFile(AGENT_UNIT.format(home=AGENT_HOME)),
            **wanted_by("multi-user.target", "croft-agent.service", unit_dir=ETC_UNIT_DIR),
        },
    )
