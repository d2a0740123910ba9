"""The overlay against the plain network: throughput and latency between two fleet machines.

Two systemd-nspawn machines (a fleet in a network namespace of its own) join a croft overlay
(`croft deploy`: wireguard-go, as this host's kernel has no WireGuard module; their packages
come through a relay to the Debian mirror on the host's end of their LAN). Then, from one to the
other, once to its LAN address and once to its overlay address: a TCP stream (MB/s) and
request-response round trips over one connection (median microseconds).

    .venv/bin/python bench/network.py [--megabytes 200] [--round-trips 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from croft.site import network
from croft.site.load import load_site
from throwaway import throwaway

FLEET = "croftnetbench"
SUBNET = "10.81.0"
PORT = 5201
RELAY_PORT = 8146

# The far end: a stream is counted and acknowledged; a round trip echoes one byte.
SERVER = f"""
import socket
server = socket.create_server(("", {PORT}), family=socket.AF_INET6, dualstack_ipv6=True)
while True:
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mode = conn.recv(1)
    if mode == b"S":
        while conn.recv(1 << 16):
            pass
        conn.sendall(b"k")
    else:
        while (byte := conn.recv(1)):
            conn.sendall(byte)
    conn.close()
"""

CLIENT = """
import socket, statistics, sys, time
host, port, megabytes, trips = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
chunk = b"x" * (1 << 16)
with socket.create_connection((host, port)) as conn:
    conn.sendall(b"S")
    started = time.perf_counter()
    for _ in range(megabytes * 16):
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
    seconds = time.perf_counter() - started
with socket.create_connection((host, port)) as conn:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(b"P")
    times = []
    for _ in range(trips):
        started = time.perf_counter()
        conn.sendall(b"p")
        conn.recv(1)
        times.append(time.perf_counter() - started)
print(megabytes / seconds, statistics.median(times) * 1e6)
"""


def make_site(root: Path) -> Path:
    (root / "machines").mkdir(parents=True)
    (root / "site.toml").write_text('name = "netbench"\n\n[network.overlay]\nsubnet = "10.99.0.0/24"\n')
    for index, name in enumerate(("n1", "n2"), start=11):
        (root / "machines" / f"{name}.toml").write_text(f'address = "{SUBNET}.{index}"\n')
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    with throwaway(FLEET, make_site, RELAY_PORT) as made:
        seconds = made.deploy()
        print(f"overlay deployed on 2 machines: {seconds:.1f} s (with its packages)")
        n1, n2 = made.fleet.containers["n1"], made.fleet.containers["n2"]
        n2.enter("systemd-run", "--unit=netbench", "python3", "-c", SERVER)
        time.sleep(1)
        overlay = network.addresses(load_site(made.site))["n2"]
        print(f"{'':<22}{'MB/s':>10}{'round trip (us)':>18}")
        results = {}
        for label, address in (("LAN", n2.address), ("overlay (wireguard-go)", str(overlay.ipv4.ip))):
            out = n1.enter(
                "python3", "-c", CLIENT, address, str(PORT), str(args.megabytes), str(args.round_trips)
            )
            rate, rtt = (float(value) for value in out.split())
            results[label] = (rate, rtt)
            print(f"{label:<22}{rate:>10.0f}{rtt:>18.0f}")
        (lan_rate, lan_rtt), (wg_rate, wg_rtt) = results.values()
        print(f"overlay/LAN: throughput {wg_rate / lan_rate:.2f}x, round trip {wg_rtt / lan_rtt:.2f}x")


if __name__ == "__main__":
    main()
