"""croft-container.sh, the helper a container's unit runs on its machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import croft.systemd

SCRIPT = Path(croft.systemd.__file__).with_name("croft-container.sh")


@pytest.mark.root
def test_dhcp_never_runs_in_the_machines_own_network() -> None:
    """nspawn's first child starts in the machine's network namespace; a machine that is itself a
    container (a fleet machine) has a host0 there too. udhcpc run in it took the machine's
    address, and flushed it when it ended: the machine was gone from its LAN."""
    # In a network of this test's own: a host0, and a stand-in for nspawn whose child never
    # leaves this network. The helper must wait for the child's own, and give up.
    inner = (
        "ip link add host0 type veth peer name peer0 && ip addr add 192.0.2.7/24 dev host0; "
        'sh -c "sleep 60 & wait" & stand=$!; sleep 0.2; '
        f"MAINPID=$stand timeout 30 sh {SCRIPT} dhcp box; echo rc=$?; "
        "ip -4 -o addr show host0; pkill -P $stand; kill $stand"
    )
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", inner], capture_output=True, text=True, timeout=60
    )
    assert "rc=1" in result.stdout, (result.stdout, result.stderr)
    assert "box has no host0" in result.stderr
    assert "192.0.2.7/24" in result.stdout  # the machine's own address is where it was
