"""The list of system tools croft runs (src/croft/tools.txt), `croft doctor`, and the message a
command gives when a tool is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from croft import tools

ROOT = Path(__file__).resolve().parents[1]


def croft(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from croft.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_every_line_names_a_tool_a_package_and_known_purposes() -> None:
    listed = tools.load()
    assert len(listed) > 30
    for tool in listed:
        assert tool.package and tool.needed_by
        assert set(tool.needed_by) <= set(tools.PURPOSES), tool


def test_setup_installs_exactly_the_listed_packages() -> None:
    # scripts/setup reads the list with awk: the same packages, no second list to drift from it.
    script = (ROOT / "scripts" / "setup").read_text()
    assert "scripts/tools.txt" in script
    assert (ROOT / "scripts" / "tools.txt").resolve() == tools.LIST.resolve()
    assert "apt-get install" in script and "ipxe" not in script
    packages = subprocess.run(
        ["awk", "!/^#/ && NF { print $2 }", tools.LIST], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(packages) == {tool.package for tool in tools.load()}
    assert "ipxe" in packages  # the iPXE binaries croft serve hands out (it once was missing)


def test_doctor_names_what_is_missing_and_its_package() -> None:
    result = croft("doctor", "--quiet", env={"PATH": "/nonexistent"})
    assert result.returncode == 1
    assert "MISSING  rsync" in result.stdout
    assert "apt-get install" in result.stderr and "rsync" in result.stderr and "dnsmasq-base" in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_passes_where_setup_ran() -> None:
    result = croft("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all" in result.stdout and "tools present" in result.stdout


def test_a_command_that_needs_a_missing_tool_names_its_package(tmp_path: Path) -> None:
    site = ROOT / "examples" / "homelab"
    result = croft("--site", str(site), "image", "build", "netboot", env={"PATH": "/nonexistent"})
    assert result.returncode == 1
    assert "debootstrap" in result.stderr and "apt-get install" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_names_the_package_of_a_command_it_cannot_find() -> None:
    from croft.errors import CroftError
    from croft.run import run

    os.environ["PATH"], path = "/nonexistent", os.environ["PATH"]
    try:
        with pytest.raises(CroftError, match="rsync is not installed: apt-get install rsync"):
            run(["rsync", "--version"])
    finally:
        os.environ["PATH"] = path


@pytest.mark.root
def test_serve_without_ipxe_says_which_package_to_install() -> None:
    # The failure a fresh machine met: setup did not install ipxe, and croft serve died with a
    # FileNotFoundError traceback. Here /usr/lib/ipxe is hidden in a mount namespace of its own.
    site = ROOT / "examples" / "homelab"
    command = f"{sys.executable} -c 'from croft.cli import main; main()' --site {site} serve"
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount -t tmpfs none /usr/lib/ipxe && exec {command}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "/usr/lib/ipxe/undionly.kpxe" in result.stderr and "apt-get install ipxe" in result.stderr
    assert "Traceback" not in result.stderr
