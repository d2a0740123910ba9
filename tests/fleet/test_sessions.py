"""Sessions to a real machine: through the kept-open connection's master (croft.deploy.mux), and
through ssh when there is none."""

from __future__ import annotations

from typing import IO

import pytest

from croft.deploy import deployer, mux
from croft.fleet.fleet import Fleet
from croft.run import Started
from croft.site.load import load_site
from tests.fleet.conftest import Croft

pytestmark = pytest.mark.fleet


def test_a_session_rides_the_masters_socket_and_starts_ssh_without_one(
    fleet: Fleet, croft: Croft, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROFT_SSH_KEY", croft.env["CROFT_SSH_KEY"])
    site = load_site(croft.site)
    conn = deployer.connect(site, site.machines["web1"])
    conn.close()  # no master: the first session is ssh's, which becomes the master
    first = conn.open()
    assert isinstance(first.started, Started)
    got = first.run("echo first")
    assert got.stdout == "first\n", (got.returncode, got.stderr)
    try:
        second = conn.open()
        assert isinstance(second.started, mux.Passenger)
        # Its output, errors, exit code, and the rest of stdin after the script, as ssh gives them.
        result = second.run("echo out; echo err >&2; cat; exit 3", b"the files")
        assert (result.returncode, result.stdout, result.stderr) == (3, "out\nthe files", "err\n")

        def stream(to: IO[bytes]) -> None:  # as tar writes a deploy's files: more than a pipe holds
            to.write(b"x" * 5_000_000)

        assert conn.open().run("wc -c", stream).stdout.strip() == "5000000"
        unused = conn.open()
        unused.cancel()  # opened ahead and not needed: nothing runs, and nothing is left open
        assert conn.open().run("echo after").stdout == "after\n"
    finally:
        conn.close()
    # The master gone: ssh again.
    fallback = conn.open()
    assert isinstance(fallback.started, Started)
    assert fallback.run("echo again").stdout == "again\n"
    conn.close()
