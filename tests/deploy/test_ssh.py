"""SSH through bastions: the ProxyCommand croft gives ssh, tokens escaped at each hop."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from croft.deploy import mux
from croft.deploy.ssh import Connection
from croft.site.ssh import SshTarget


def proxy_command(connection: Connection) -> str:
    [option] = [arg for arg in connection.argv if arg.startswith("ProxyCommand=")]
    return option.removeprefix("ProxyCommand=")


def test_a_machine_behind_two_bastions_expands_each_hops_own_tokens(tmp_path: Path) -> None:
    outer = SshTarget("10.0.0.1", "root", 22, None, ())
    inner = SshTarget("10.0.1.1", "root", 2222, None, (), via=outer)
    target = SshTarget("10.0.2.1", "admin", 22, None, (), via=inner)
    command = proxy_command(Connection(target, tmp_path / "known_hosts"))
    # This connection's ssh expands %h:%p to the machine; the bastion's own tokens are escaped
    # once per hop, so each ssh on the way expands only its own.
    assert command.endswith(" -W %h:%p root@10.0.1.1")
    # Through the bastion's own kept-open connection.
    assert f"ControlPath={Connection(inner, tmp_path / 'known_hosts').control_path}" in command
    assert "-W %%h:%%p root@10.0.0.1" in command
    assert command.startswith("ssh -o ControlMaster=no -p 2222")
    # Directly reached: no ProxyCommand at all.
    assert not [arg for arg in Connection(outer, tmp_path / "k").argv if arg.startswith("ProxyCommand=")]


def test_without_a_master_there_is_no_passenger_session(tmp_path: Path) -> None:
    """No socket (no connection kept open yet), or one nobody listens on: ssh runs instead."""
    with pytest.raises(mux.Unavailable):
        mux.Passenger(str(tmp_path / "none"), "true")
    stale = tmp_path / "stale"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(stale))  # bound, never listening: connections are refused
        with pytest.raises(mux.Unavailable):
            mux.Passenger(str(stale), "true")
