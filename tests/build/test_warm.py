"""The warm build server: a real server process, builds handed to it over its socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from croft.build import stamp, warm
from croft.ui import show_build as build_command

PAGE = "layers/web/usr/local/share/www/index.html.j2"
BUILT = ".croft/build/web2/root/usr/local/share/www/index.html"


def wait_for(condition: object, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def edit(site: Path, text: str) -> None:
    (site / PAGE).write_text(text)
    time.sleep(stamp.RACY_NS / 1e9)


@pytest.fixture
def server_enabled(monkeypatch: pytest.MonkeyPatch, example_site: Path) -> Iterator[Path]:
    monkeypatch.setenv("CROFT_BUILD_SERVER", "1")
    yield example_site
    subprocess.run(["pkill", "-f", f"croft.build.warm {example_site / '.croft'}"], check=False)


def test_a_template_build_starts_the_server_and_it_does_the_next(server_enabled: Path) -> None:
    site = server_enabled
    socket_path = site / ".croft" / warm.SOCKET
    build_command(str(site), ())
    edit(site, "<p>one {{ machine.name }}</p>\n")
    build_command(str(site), ())  # renders here (no server yet), then starts one
    assert (site / BUILT).read_text() == "<p>one web2</p>\n"
    wait_for(socket_path.exists, "the build server did not start")

    edit(site, "<p>two {{ machine.name }}</p>\n")
    changes = stamp.changes(str(site / ".croft"), "*")
    assert changes is not None
    assert warm.ask(str(site / ".croft"), changes) == {"lab1": 1, "web1": 1, "web2": 1}
    assert (site / BUILT).read_text() == "<p>two web2</p>\n"
    # A build the quick path cannot settle is the builder's, in the client, as without a server.
    edit(site, "<p>{{ nosuch }}</p>\n")
    changes = stamp.changes(str(site / ".croft"), "*")
    assert changes is not None
    assert warm.ask(str(site / ".croft"), changes) is None

    # Another version of croft's code: the server answers no build and exits.
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(socket_path))
        connection.sendall(json.dumps({"code": "another", "files": [], "taken_ns": 0}).encode() + b"\n")
        assert "another version" in connection.recv(1000).decode()
    wait_for(lambda: not socket_path.exists(), "the build server did not exit")
    with pytest.raises(warm.Unavailable):
        warm.ask(str(site / ".croft"), changes)


def test_the_server_exits_when_idle_and_one_runs_per_site(example_site: Path) -> None:
    state_dir = example_site / ".croft"
    state_dir.mkdir()
    argv = [sys.executable, "-m", "croft.build.warm", str(state_dir), "1"]
    first = subprocess.Popen(argv)
    wait_for((state_dir / warm.SOCKET).exists, "the build server did not start")
    second = subprocess.run(argv, timeout=10)  # finds the site's server: exits at once
    assert second.returncode == 0 and first.poll() is None
    assert first.wait(timeout=10) == 0
    assert not (state_dir / warm.SOCKET).exists()
