"""The site's journal and alerts on real machines: systemd-journal-upload on every machine,
systemd-journal-remote on the collector (db1), over the overlay (wireguard-go here) or over TLS
with the site's CA; croft-alerts on the collector posting to a receiver and mailing an SMTP
server that the test runs on the host's end of the fleet's LAN."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from croft.fleet.fleet import Fleet
from croft.systemd import journal
from croft.wait import until
from tests.alerts.receivers import Mailbox, Webhook
from tests.fleet.conftest import Croft, make_site, on
from tests.fleet.relay import Relay

pytestmark = pytest.mark.fleet

WEBHOOK_PORT = 8146
SMTP_PORT = 8147


def append(site: Path, path: str, text: str) -> None:
    file = site / path
    file.write_text(file.read_text() + "\n" + text)


def logged(croft: Croft, machine: str, tag: str) -> list[str]:
    return croft("logs", machine, "-t", tag).stdout.splitlines()


@dataclass
class Collected:
    croft: Croft
    hook: Webhook
    mailbox: Mailbox


@pytest.fixture(scope="module")
def collected(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collected]:
    """The fleet with the site's journal on db1 and its alerts, deployed once for this module."""
    host = fleet.lan.host_address
    site = make_site(tmp_path_factory.mktemp("journal"))
    croft = Croft(site)
    with Relay(host, 8148) as relay, Webhook(host, WEBHOOK_PORT) as hook, Mailbox(host, SMTP_PORT) as mailbox:
        append(site, "site.toml", f'[packages]\nupstream = "{relay.url}"\n')
        append(site, "site.toml", '[network.overlay]\nsubnet = "10.99.0.0/24"\n')
        append(site, "site.toml", '[logs]\ncollector = "db1"\nheartbeat = "2s"\n')
        append(site, "site.toml", f'[alerts]\nsmtp = "{host}:{SMTP_PORT}"\n')
        append(site, "site.toml", f'[alerts.notify.receiver]\nwebhook = "{hook.url}"\n')
        append(site, "site.toml", '[alerts.notify.ops]\nmail = ["ops@example.org"]\n')
        (site / "alerts").mkdir()
        (site / "alerts/units.toml").write_text('when = "unit-failed"\nnotify = ["receiver", "ops"]\n')
        (site / "alerts/quiet.toml").write_text(
            'when = "silent"\nmachines = ["web1"]\nafter = "15s"\nnotify = ["receiver"]\n'
        )
        for name in fleet.containers:
            croft("reset", name)
        croft("facts")
        croft("deploy", timeout=900)
        try:
            yield Collected(croft, hook, mailbox)
        finally:
            for name in fleet.containers:
                croft("reset", name)


def test_a_line_logged_on_web1_is_in_croft_logs_within_5_s(fleet: Fleet, collected: Collected) -> None:
    croft = collected.croft

    # Every machine's journal is a file of its own in croft's state on db1, owned by the daemon.
    def files() -> list[str]:
        return [
            name
            for name in on(fleet, "db1", "ls", journal.HOST_DIRECTORY).split()
            if name.endswith(".journal")
        ]

    assert until(lambda: len(files()) >= 3, 30), files()
    owner = on(fleet, "db1", "stat", "-c", "%U", journal.HOST_DIRECTORY).strip()
    assert owner == journal.REMOTE_USER
    tag = f"croft-journal-{os.getpid()}"
    on(fleet, "web1", "logger", "-t", tag, "hello from web1")
    logged_at = time.monotonic()
    shown = until(lambda: logged(croft, "web1", tag), 5)
    assert shown, f"not in croft logs within 5 s: {croft('logs', 'web1', '-n', '20').stdout}"
    assert time.monotonic() - logged_at < 5
    assert shown[0].split()[3] == "web1" and shown[0].endswith("hello from web1")
    # Read from the collector: web2's own journalctl is not asked (its line is db1's copy).
    assert croft("logs", "web2", "-n", "5").stdout.strip()
    # Heartbeats carry each machine's file systems' use and its newest snapshots' ages.
    croft("snapshot", "create", "web2", "notes")

    def heartbeat() -> dict[str, str]:
        out = on(fleet, "db1", "journalctl", f"--directory={journal.HOST_DIRECTORY}", "--merge",
                 "_HOSTNAME=web2", "-t", "croft-heartbeat", "-o", "json", "-n", "1")  # fmt: skip
        return json.loads(out) if out.strip() else {}

    beat = until(lambda: (b := heartbeat()) and "notes=" in b.get("CROFT_SNAPSHOTS", "") and b, 15)
    assert beat, heartbeat()
    assert re.search(r"(^| )/=\d+", beat["CROFT_DISKS"]), beat
    # The retention runs (journalctl --vacuum-*), as its hourly timer will.
    on(fleet, "db1", "systemctl", "start", f"{journal.VACUUM}.service")
    result = on(fleet, "db1", "systemctl", "show", "-P", "Result", f"{journal.VACUUM}.service")
    assert result.strip() == "success"


def test_a_failed_unit_is_posted_and_mailed_then_resolved(fleet: Fleet, collected: Collected) -> None:
    mark = collected.hook.mark()
    on(fleet, "web2", "systemctl", "kill", "--signal=KILL", "hello-web.service")
    failed_at = time.monotonic()
    post = collected.hook.wait(
        lambda p: p["body"]["status"] == "firing" and p["body"]["subject"] == "hello-web.service", 10, mark
    )
    assert time.monotonic() - failed_at < 10
    body = post["body"]
    assert body["machine"] == "web2" and body["alert"] == "units" and body["lines"], body
    assert any("hello-web" in line for line in body["lines"])
    mail = collected.mailbox.wait(lambda m: "hello-web.service" in str(m["Subject"]), 20)
    assert "ALERT" in str(mail["Subject"]) and "web2" in mail.get_payload()
    on(fleet, "web2", "systemctl", "start", "hello-web.service")
    try:
        resolved = collected.hook.wait(
            lambda p: p["body"]["status"] == "resolved" and p["body"]["subject"] == "hello-web.service",
            30,
            mark,
        )
    except AssertionError:
        entries = on(fleet, "db1", "journalctl", f"--directory={journal.HOST_DIRECTORY}", "-o", "json",
                     "UNIT=hello-web.service", "-n", "5")  # fmt: skip
        alerts = on(fleet, "db1", "journalctl", "-u", "croft-alerts", "-n", "20", "--no-pager")
        raise AssertionError(f"{entries}\n{alerts}") from None
    assert resolved["body"]["machine"] == "web2"


def test_nothing_is_lost_while_the_collector_is_away(fleet: Fleet, collected: Collected) -> None:
    tag = f"croft-away-{os.getpid()}"
    on(fleet, "db1", "systemctl", "stop", journal.REMOTE_SOCKET, journal.REMOTE)
    try:
        for index in range(10):
            on(fleet, "web1", "logger", "-t", tag, f"line {index} while db1 is away")
            time.sleep(3)
    finally:
        on(fleet, "db1", "systemctl", "start", journal.REMOTE_SOCKET)
    # Its uploads retry every 2 s and go on from their cursor.
    shown = until(lambda: (lines := logged(collected.croft, "web1", tag)) and len(lines) >= 10 and lines, 30)
    assert shown and [line.rsplit(": ", 1)[1] for line in shown] == [
        f"line {index} while db1 is away" for index in range(10)
    ], shown


def test_a_machine_whose_uploads_stop_raises_the_silent_alert(fleet: Fleet, collected: Collected) -> None:
    hook = collected.hook
    # Settled first: the collector's absence in the test before made every machine silent.
    until(lambda: not _open(hook, "quiet"), 30)
    mark = hook.mark()
    on(fleet, "web1", "systemctl", "stop", journal.UPLOAD)
    try:
        post = hook.wait(
            lambda p: p["body"]["alert"] == "quiet" and p["body"]["status"] == "firing", 45, mark
        )
        assert post["body"]["machine"] == "web1" and "sent nothing" in post["body"]["summary"]
    finally:
        on(fleet, "web1", "systemctl", "start", journal.UPLOAD)
    hook.wait(lambda p: p["body"]["alert"] == "quiet" and p["body"]["status"] == "resolved", 30, mark)


def _open(hook: Webhook, alert: str) -> bool:
    """Whether the last POST of this alert says it is firing."""
    states = [p["body"]["status"] for p in hook.posts if p["body"]["alert"] == alert]
    return bool(states) and states[-1] == "firing"


def test_without_the_overlay_the_journal_travels_over_tls_and_refuses_strangers(
    fleet: Fleet, croft: Croft, relay: Relay
) -> None:
    append(croft.site, "site.toml", f'[packages]\nupstream = "{relay.url}"\n')
    append(croft.site, "site.toml", '[logs]\ncollector = "db1"\n')
    croft("deploy", timeout=900)
    tag = f"croft-tls-{os.getpid()}"
    on(fleet, "web2", "logger", "-t", tag, "over TLS from web2")
    shown = until(lambda: logged(croft, "web2", tag), 20)
    assert shown and shown[0].endswith("over TLS from web2")
    # Each machine's certificate is the site CA's; a client without one gets nothing in.
    address = fleet.containers["db1"].address
    stranger = on(
        fleet, "web1", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
        "-H", "Content-Type: application/vnd.fdo.journal", "--data-binary", "MESSAGE=forged\n\n",
        f"https://{address}:19532/upload",
    )  # fmt: skip
    assert stranger.strip() in ("000", "401"), stranger
    mode = on(fleet, "web1", "stat", "-L", "-c", "%a %U", f"/{journal.TLS_DIR}/machine.key")
    assert mode.strip() == "600 root"
