"""A fleet of three real systemd machines (systemd-nspawn), shared by the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from croft.fleet import fleet as fleets
from croft.fleet.rootfs import ssh_key
from croft.site.load import load_site
from tests.conftest import copy_example
from tests.fleet.relay import Relay

# Inside a namespace the fleet creates; the example site's 10.77.0.0/24 is left to the demo.
SUBNET = "10.79.0"
FLEET = "crofttest"
CROFT = [sys.executable, "-m", "croft"]
RELAY_PORT = 8142


def make_site(destination: Path) -> Path:
    site = copy_example(destination, facts=False)
    # The lab's machines are QEMU machines croft serve installs (tests/serve), not fleet containers.
    for lab_machine in ("lab1", "lab2"):
        (site / "machines" / f"{lab_machine}.toml").unlink()
    for path in (site / "machines").glob("*.toml"):
        path.write_text(path.read_text().replace("10.77.0.", f"{SUBNET}."))
    return site


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fleets.Fleet]:
    fleets.down(FLEET)  # what an interrupted earlier run left
    site = load_site(make_site(tmp_path_factory.mktemp("fleet")))
    up = fleets.up(site, FLEET)
    try:
        yield up
    finally:
        up.down()


class Croft:
    """Runs the croft command against one site, as a user would."""

    def __init__(self, site: Path) -> None:
        self.site = site
        self.env = {**os.environ, "CROFT_SSH_KEY": str(ssh_key()), "CROFT_SITE": str(site)}

    def __call__(self, *args: str, ok: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*CROFT, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if ok and result.returncode != 0:
            raise AssertionError(
                f"croft {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """croft in the background, as in a terminal of its own: Ctrl-C (SIGINT) reaches it even
        when this test session runs with SIGINT ignored (a background job of a script)."""
        return subprocess.Popen(
            [*CROFT, *args],
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


@pytest.fixture
def relay(fleet: fleets.Fleet) -> Iterator[Relay]:
    """The fleet's way to Debian's mirror (it has no other): see relay.py."""
    with Relay(fleet.lan.host_address, RELAY_PORT) as started:
        yield started


def on(fleet: fleets.Fleet, machine: str, *argv: str) -> str:
    """A command's output, run inside a fleet machine."""
    return fleet.containers[machine].enter(*argv)


@pytest.fixture
def croft(fleet: fleets.Fleet, tmp_path: Path) -> Croft:
    """A fresh copy of the example site, with every fleet machine reset to its distribution."""
    runner = Croft(make_site(tmp_path))
    for name in fleet.containers:
        runner("reset", name)
    runner("facts")
    return runner
