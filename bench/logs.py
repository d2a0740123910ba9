"""The site's journal against rsyslog: how fast lines reach the collector, and how soon an alert.

Two systemd-nspawn machines (a fleet in a network namespace of its own): c1 collects, m1 logs.
`croft deploy` gives them the site's journal over TLS (journal-upload -> journal-remote) and an
alert rule; beside it, run side by side on the same machines, what a user would set up instead:
rsyslog on both, m1 reading its journal (imjournal) and forwarding over TCP, c1 writing a file.
Their packages come through a relay to the Debian mirror on the host's end of their LAN.

1. Ingest: m1 logs N lines at once (`logger`, into journald); the time until the last is on
   c1, through each path; lines/s.
2. Alert delay: a matching line logged on m1, until croft-alerts' POST arrives at a receiver on
   the host's end of the LAN (median of a few).

    .venv/bin/python bench/logs.py [--lines 20000] [--alerts 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# isort: off
# First: it puts the repository on the path, for the tests' webhook receiver.
from throwaway import throwaway
from tests.alerts.receivers import Webhook

# isort: on
from croft.fleet.machine import Container
from croft.systemd import journal
from croft.wait import until

FLEET = "croftlogbench"
SUBNET = "10.82.0"
RELAY_PORT = 8149
WEBHOOK_PORT = 8150
RSYSLOG_PORT = 5514

# Neither path may drop lines: imjournal's rate limit (20000 in 10 min) is off, as journald's is on
# m1 (10000 in 30 s per service), which both paths read from.
SENDER = """module(load="imjournal" StateFile="/run/rsbench.state" IgnorePreviousMessages="on"
       Ratelimit.Interval="0")
*.* action(type="omfwd" target="{target}" port="{port}" protocol="tcp")
"""
RECEIVER = """module(load="imtcp")
input(type="imtcp" port="{port}")
*.* action(type="omfile" file="/run/rsbench.log")
"""


def make_site(root: Path) -> Path:
    (root / "machines").mkdir(parents=True)
    (root / "site.toml").write_text('name = "logbench"\n\n[logs]\ncollector = "c1"\n')
    for index, name in enumerate(("c1", "m1"), start=11):
        # rsyslog: what it is measured against.
        (root / "machines" / f"{name}.toml").write_text(
            f'address = "{SUBNET}.{index}"\npackages = ["rsyslog"]\n'
        )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--alerts", type=int, default=5)
    args = parser.parse_args()
    with (
        throwaway(FLEET, make_site, RELAY_PORT) as made,
        Webhook(made.fleet.lan.host_address, WEBHOOK_PORT) as hook,
    ):
        made.append(f'[alerts.notify.bench]\nwebhook = "{hook.url}"\n')
        # The rule, once there is somewhere to send it.
        (made.site / "alerts").mkdir()
        (made.site / "alerts/bench.toml").write_text(
            'when = "match"\nregex = "BENCH-ALERT"\nafter = "1s"\nmachines = ["m1"]\n'
        )
        print(f"deployed on 2 machines: {made.deploy():.1f} s (packages too)")
        c1, m1 = made.fleet.containers["c1"], made.fleet.containers["m1"]
        rsyslog(c1, m1)
        ingest(c1, m1, args.lines)
        delays = []
        for index in range(args.alerts):
            text = f"BENCH-ALERT {index}"
            logged = time.monotonic()
            m1.enter("logger", "-t", "bench", text)
            hook.wait(partial(_firing, text), 30)
            delays.append(time.monotonic() - logged)
            hook.wait(partial(_resolved, text), 30)
        print(
            f"line logged -> alert POSTed: median {statistics.median(delays):.2f} s, "
            f"max {max(delays):.2f} s ({len(delays)} alerts)"
        )


def rsyslog(c1: Container, m1: Container) -> None:
    """rsyslog beside croft's path: m1 forwards what its journal gets, c1 writes it to a file."""
    for machine, conf in (
        (c1, RECEIVER.format(port=RSYSLOG_PORT)),
        (m1, SENDER.format(target=c1.address, port=RSYSLOG_PORT)),
    ):
        machine.enter("systemctl", "stop", "rsyslog.service", "syslog.socket")
        machine.enter("sh", "-c", f"cat > /run/rsbench.conf <<'EOF'\n{conf}EOF")
        rsyslogd = ["rsyslogd", "-n", "-f", "/run/rsbench.conf", "-i", "/run/rsbench.pid"]
        machine.enter("systemd-run", "--unit=rsbench", *rsyslogd)
    m1.enter("mkdir", "-p", "/run/systemd/journald.conf.d")
    limits = "printf '[Journal]\\nRateLimitBurst=0\\n' > /run/systemd/journald.conf.d/bench.conf"
    m1.enter("sh", "-c", limits)
    m1.enter("systemctl", "restart", "systemd-journald")
    time.sleep(2)


def ingest(c1: Container, m1: Container, lines: int) -> None:
    tag = f"ingest{int(time.time())}"
    last = f"{tag} {lines}"

    def in_journal() -> bool:
        out = c1.enter(
            "journalctl", f"--directory={journal.HOST_DIRECTORY}", "-t", tag, "-o", "cat", "-n", "1"
        )
        return out.strip() == last

    def in_rsyslog() -> bool:
        return last in c1.enter("tail", "-n", "3", "/run/rsbench.log")

    started = time.monotonic()
    m1.enter("sh", "-c", f"seq 1 {lines} | sed 's/^/{tag} /' | logger -t {tag}")
    arrived: dict[str, float] = {}
    # Both paths carry the same lines at once; each is timed to its last line.
    until(lambda: all([_arrived(arrived, "journal", in_journal, started),
                       _arrived(arrived, "rsyslog", in_rsyslog, started)]), 600, 0.2)  # fmt: skip
    print(f"{'':<34}{'seconds':>10}{'lines/s':>12}")
    for label, name in (
        ("croft (journal-upload/remote, TLS)", "journal"),
        ("rsyslog (imjournal -> TCP)", "rsyslog"),
    ):
        seconds = arrived.get(name)
        rate = f"{lines / seconds:>12.0f}" if seconds else f"{'(missing)':>12}"
        print(f"{label:<34}{seconds or float('nan'):>10.2f}{rate}")
    if "journal" in arrived and "rsyslog" in arrived:
        print(f"croft/rsyslog ingest: {arrived['rsyslog'] / arrived['journal']:.2f}x")


def _firing(text: str, post: dict[str, Any]) -> bool:
    body = post["body"]
    return isinstance(body, dict) and body["status"] == "firing" and text in str(body)


def _resolved(text: str, post: dict[str, Any]) -> bool:
    body = post["body"]
    return isinstance(body, dict) and body["status"] == "resolved" and text in str(body)


def _arrived(arrived: dict[str, float], name: str, test: Callable[[], bool], started: float) -> bool:
    if name not in arrived and test():
        arrived[name] = time.monotonic() - started
    return name in arrived


if __name__ == "__main__":
    main()
