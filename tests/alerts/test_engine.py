"""The alert engine as the collector runs it, fed journal entries in-process: what fires, what is
grouped, what resolves, and what reaches a real webhook receiver and SMTP server on loopback."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from croft.alerts import engine
from croft.alerts.engine import UNIT_FAILED, UNIT_STARTED, Engine, Notification, Outbox, Status
from tests.alerts.receivers import Mailbox, Webhook


def rule(name: str, when: str, **given: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "machines": [], "units": [], "fields": {}, "regex": None, "priority": None, "after": 300.0,
        "percent": 90, "mounts": [], "older": 7200.0, "lines": 10, "notify": ["hook"],
    }  # fmt: skip
    return {"name": name, "when": when, **defaults, **given}


def config(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": "lab",
        "journal": "/var/log/journal/remote",
        "machines": {"web1": {"units": ["hello-web.service"]}, "web2": {"units": ["notes.service"]}},
        "rules": list(rules),
        "notify": {},
        "smtp": None,
    }


def entry(machine: str, at: float, message: str, **fields: str) -> dict[str, str]:
    return {"_HOSTNAME": machine, "__REALTIME_TIMESTAMP": str(int(at * 1e6)), "MESSAGE": message, **fields}


def failed(machine: str, at: float, unit: str) -> dict[str, str]:
    return entry(machine, at, f"{unit}: Failed with result 'signal'.", _PID="1", UNIT=unit,
                 MESSAGE_ID=UNIT_FAILED, UNIT_RESULT="signal")  # fmt: skip


def started(machine: str, at: float, unit: str) -> dict[str, str]:
    return entry(machine, at, f"Started {unit}.", _PID="1", UNIT=unit, MESSAGE_ID=UNIT_STARTED)


def run(*rules: dict[str, Any]) -> tuple[Engine, list[Notification]]:
    sent: list[Notification] = []
    return Engine(config(*rules), sent.append, now=1000.0), sent


def test_a_failed_unit_fires_once_with_its_last_lines_and_resolves_once_it_runs_again() -> None:
    alerts, sent = run(rule("units", "unit-failed"))
    alerts.entry(entry("web2", 1001, "notes: disk on fire", _SYSTEMD_UNIT="notes.service"))
    alerts.entry(entry("web2", 1001.5, "unrelated", _SYSTEMD_UNIT="cron.service"))
    alerts.entry(failed("web2", 1002, "notes.service"))
    alerts.entry(failed("web2", 1003, "cron.service"))  # not croft's: the default watches croft's
    assert [(n.status, n.incident.machine, n.incident.subject) for n in sent] == [
        (Status.FIRING, "web2", "notes.service")
    ]
    lines = sent[0].incident.lines
    assert any("disk on fire" in line for line in lines) and not any("unrelated" in line for line in lines)
    # A restart loop is one incident: it runs again, fails again, is counted.
    alerts.entry(started("web2", 1004, "notes.service"))
    alerts.entry(failed("web2", 1005, "notes.service"))
    alerts.tick(1005 + engine.SETTLE)
    assert len(sent) == 1 and sent[0].incident.count == 2
    alerts.entry(started("web2", 1020, "notes.service"))
    alerts.tick(1021)
    assert len(sent) == 1  # not yet settled
    alerts.tick(1020 + engine.SETTLE)
    assert [n.status for n in sent] == [Status.FIRING, Status.RESOLVED]


def test_a_match_groups_its_repeats_and_resolves_after_a_quiet_while() -> None:
    alerts, sent = run(
        rule("ssh", "match", fields={"SYSLOG_IDENTIFIER": "sshd"}, regex="Failed password", after=60.0),
        rule("errors", "match", priority=3, machines=["web1"]),
    )
    for second in range(5):
        alerts.entry(entry("web1", 1001 + second, "Failed password for root", SYSLOG_IDENTIFIER="sshd"))
    alerts.entry(entry("web1", 1006, "Accepted key", SYSLOG_IDENTIFIER="sshd"))
    alerts.entry(entry("web2", 1006, "boom", PRIORITY="2"))  # not a machine the rule watches
    alerts.entry(entry("web1", 1007, "warning only", PRIORITY="4"))
    assert [n.incident.rule for n in sent] == ["ssh"]
    alerts.tick(1040)
    assert len(sent) == 1
    alerts.tick(1066)
    assert [n.status for n in sent] == [Status.FIRING, Status.RESOLVED] and sent[1].incident.count == 5


def test_silence_disks_and_snapshots_come_from_time_and_heartbeats() -> None:
    alerts, sent = run(
        rule("quiet", "silent", after=30.0),
        rule("full", "disk", percent=80),
        rule("stale", "snapshot", older=7200.0, machines=["web1"]),
    )
    beat = {"SYSLOG_IDENTIFIER": "croft-heartbeat"}
    alerts.entry(
        entry("web1", 1010, "alive", **beat, CROFT_DISKS="/=50 /srv=85", CROFT_SNAPSHOTS="notes=9000")
    )
    alerts.entry(entry("web2", 1010, "alive", **beat, CROFT_DISKS="/=10", CROFT_SNAPSHOTS=""))
    assert {(n.incident.rule, n.incident.subject) for n in sent} == {("full", "/srv"), ("stale", "notes")}
    alerts.tick(1035)  # 35 s since start, 25 since they spoke
    assert len(sent) == 2
    alerts.entry(entry("web2", 1036, "alive", **beat, CROFT_DISKS="/=10"))
    alerts.tick(1041)
    silent = [n for n in sent if n.incident.rule == "quiet"]
    assert [(n.status, n.incident.machine) for n in silent] == [(Status.FIRING, "web1")]
    alerts.entry(
        entry("web1", 1050, "alive", **beat, CROFT_DISKS="/=50 /srv=60", CROFT_SNAPSHOTS="notes=100")
    )
    resolved = {(n.incident.rule, n.incident.machine) for n in sent if n.status is Status.RESOLVED}
    assert resolved == {("quiet", "web1"), ("full", "web1"), ("stale", "web1")}


def test_entries_from_strangers_and_the_engines_own_lines_are_ignored() -> None:
    alerts, sent = run(rule("any", "match", regex="."))
    alerts.entry(entry("intruder", 1001, "anything"))
    alerts.entry(entry("web1", 1001, "not sent: refused", SYSLOG_IDENTIFIER="croft-alerts"))
    alerts.entry({"_HOSTNAME": "web1", "MESSAGE": "no time"})
    assert sent == []
    saved = alerts.dump()
    alerts.entry(entry("web1", 1002, "one"))
    again, resent = run(rule("any", "match", regex="."))
    again.load({**alerts.dump(), "cursor": "x"})
    again.entry(entry("web1", 1003, "two"))  # still open after a restart: counted, not sent
    assert resent == [] and saved["open"] == [] and len(sent) == 1


def test_notifications_reach_webhooks_in_each_shape_and_mail() -> None:
    with Webhook("127.0.0.1", 18431) as hook, Mailbox("127.0.0.1", 18432) as mailbox:
        settings = config(rule("units", "unit-failed", notify=["json", "ntfy", "gotify", "slack", "mail"]))
        settings["notify"] = {
            shape: {"webhook": f"{hook.url}/{shape}", "format": shape, "mail": []}
            for shape in ("json", "ntfy", "gotify", "slack")
        }
        settings["notify"]["mail"] = {"webhook": None, "format": "json", "mail": ["ops@example.org"]}
        settings["smtp"] = {"host": "127.0.0.1", "port": 18432, "sender": "croft@lab.home.arpa"}
        alerts = Engine(settings, Outbox(settings).put, now=time.time())
        alerts.entry(failed("web1", time.time(), "hello-web.service"))
        shapes = ("json", "ntfy", "gotify", "slack")
        posted = {shape: hook.wait(partial(posted_to, f"/hook/{shape}"), 10) for shape in shapes}
        assert posted["json"]["body"]["machine"] == "web1" and posted["json"]["body"]["status"] == "firing"
        assert posted["json"]["body"]["subject"] == "hello-web.service"
        assert "hello-web.service failed on web1" in posted["ntfy"]["headers"]["Title"]
        assert posted["ntfy"]["body"].startswith("[lab] ALERT units:")
        assert posted["gotify"]["body"]["priority"] == 8 and "web1" in posted["gotify"]["body"]["message"]
        assert "hello-web.service failed on web1" in posted["slack"]["body"]["text"]
        mail = mailbox.wait(lambda m: "hello-web.service" in str(m["Subject"]), 10)
        assert mail["To"] == "ops@example.org" and mail["From"] == "croft@lab.home.arpa"


def posted_to(path: str, post: dict[str, Any]) -> bool:
    return bool(post["path"] == path)
