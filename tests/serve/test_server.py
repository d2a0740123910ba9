"""The croft serve process on loopback (HTTP only, no DHCP): it starts or says why not, and it
outlives what clients do to it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serve.test_app import LAB1_MAC, make_site

CROFT = [sys.executable, "-m", "croft"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_serving(process: subprocess.Popen[bytes], log: Path, port: int) -> None:
    deadline = time.monotonic() + 30
    while b"croft serve: http://" not in log.read_bytes():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    del port


def boot_script(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/boot/{LAB1_MAC}.ipxe", timeout=5) as answer:
        return str(answer.read().decode())


@pytest.mark.root
def test_a_read_only_state_directory_is_a_clear_error(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", port=free_port())
    state = site / ".croft" / "serve"
    state.mkdir(parents=True)
    command = " ".join([*CROFT, "--site", str(site), "serve", "--no-dhcp"])
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs -o ro none {state} && exec {command}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"croft serve cannot use its state directory {state}" in result.stderr
    assert "Traceback" not in result.stderr


def test_idle_clients_at_a_low_file_limit_neither_block_nor_end_the_server(tmp_path: Path) -> None:
    port = free_port()
    site = make_site(tmp_path / "site", port=port)
    log = tmp_path / "serve.log"
    # 64 open files at most: without a cap, idle connections used them all, accept() failed,
    # and the next reload of the site died of "Too many open files".
    process = subprocess.Popen(
        ["prlimit", "--nofile=64:64", *CROFT, "--site", str(site), "serve", "--no-dhcp"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    clients: list[socket.socket] = []
    try:
        wait_until_serving(process, log, port)
        for _ in range(100):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.send(b"GET /boot/")  # and never the rest
            clients.append(client)
        time.sleep(3)  # three ticks of the server: the site reloaded, dnsmasq-less
        assert process.poll() is None, log.read_text()
        # The idle ones are cut after 15 s; then a machine boots as ever.
        deadline = time.monotonic() + 30
        while True:
            try:
                script = boot_script(port)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(1)
        assert script.startswith("#!ipxe") and process.poll() is None
        assert "Traceback" not in log.read_text()
    finally:
        for client in clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(15)
