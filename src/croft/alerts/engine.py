"""croft-alerts: the site's alerts, live, on its journal's collector (docs/logs.md).

This file runs on the collector as /usr/local/lib/croft/croft-alerts (Python's standard library
only: the machine has Debian's python3 and nothing of croft's). It follows the site's journal
(`journalctl --directory --follow -o json`, from the cursor it saved), feeds every entry to the
rules croft compiled from alerts/*.toml (alerts.json, handed over as a systemd credential: it
may hold webhook tokens), and sends a notification when an incident opens and a "resolved" when
its condition clears; what repeats while it is open is counted into it, not sent again.

The machines' heartbeats (croft-heartbeat, every [logs] heartbeat) say they are alive and carry
their file systems' use and newest snapshots' ages: the silent, disk and snapshot rules read them.
"""

from __future__ import annotations

import enum
import json
import os
import queue
import re
import selectors
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

UNIT_FAILED = "d9b373ed55a64feb8242e02dbe79a49c"
"""MESSAGE_ID of systemd's "Failed with result" (sd-messages.h)."""
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"
"""MESSAGE_ID of systemd's "Started" / "Finished"."""
HEARTBEAT = "croft-heartbeat"
OWN = "croft-alerts"
SETTLE = 10.0
"""Seconds a failed unit must run again, without failing, before its incident is resolved: a
unit in a restart loop stays one incident."""
MAX_LINE = 1 << 20
"""A journal entry longer than this is cut: a machine cannot make the collector hold more."""
MAX_TEXT = 2000
"""A message longer than this is cut in a notification."""
RECENT = 200
"""Lines remembered per machine, for the last lines an alert carries."""
OUTBOX = 256
"""Notifications waiting to be sent; past that they are dropped (and the drop logged)."""
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class Status(enum.Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass
class Incident:
    rule: str
    machine: str
    subject: str
    """What it is about on the machine: the unit, the mount point, the service; "" for the machine."""
    summary: str
    since: float
    lines: list[str] = field(default_factory=list)
    count: int = 1
    last: float = 0.0
    """When it was last seen happening (a match, a failure)."""
    clearing: float | None = None
    """When the condition cleared, while it must stay clear (a restarted unit) to be resolved."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.machine, self.subject)


@dataclass(frozen=True)
class Notification:
    status: Status
    site: str
    incident: Incident
    at: float

    def title(self) -> str:
        word = "RESOLVED" if self.status is Status.RESOLVED else "ALERT"
        return f"[{self.site}] {word} {self.incident.rule}: {self.incident.summary}"

    def body(self) -> str:
        incident = self.incident
        text = [self.title(), ""]
        text.append(f"machine: {incident.machine}")
        if incident.subject:
            text.append(f"about: {incident.subject}")
        text.append(f"since: {_iso(incident.since)}")
        if incident.count > 1:
            text.append(f"seen {incident.count} times")
        if self.status is Status.RESOLVED:
            text.append(f"resolved: {_iso(self.at)}")
        if incident.lines:
            text += ["", "last lines:", *incident.lines]
        return "\n".join(text) + "\n"

    def as_json(self) -> dict[str, Any]:
        incident = self.incident
        return {
            "status": self.status.value,
            "site": self.site,
            "alert": incident.rule,
            "machine": incident.machine,
            "subject": incident.subject,
            "summary": incident.summary,
            "since": _iso(incident.since),
            "at": _iso(self.at),
            "count": incident.count,
            "lines": incident.lines,
        }


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _text(value: object) -> str:
    if isinstance(value, list):  # journald gives binary fields as byte lists
        value = bytes(int(b) & 0xFF for b in value).decode("utf-8", "replace")
    return str(value)[:MAX_TEXT]


class Engine:
    """The rules, fed entries (`entry`) and the clock (`tick`); `send` gets each notification."""

    def __init__(self, config: dict[str, Any], send: Callable[[Notification], None], now: float) -> None:
        self.site: str = config["site"]
        self.machines: dict[str, dict[str, Any]] = config["machines"]
        self.rules: list[dict[str, Any]] = config["rules"]
        self.send = send
        self.started = now
        self.open: dict[tuple[str, str, str], Incident] = {}
        self.last_seen: dict[str, float] = {}
        self.recent: dict[str, deque[tuple[str, str]]] = {}
        self.patterns = {rule["name"]: re.compile(rule["regex"]) for rule in self.rules if rule.get("regex")}

    # -- state kept across restarts -----------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "open": [vars(incident) for incident in self.open.values()],
            "last_seen": self.last_seen,
        }

    def load(self, saved: dict[str, Any]) -> None:
        for data in saved.get("open", []):
            incident = Incident(**data)
            self.open[incident.key] = incident
        self.last_seen.update(saved.get("last_seen", {}))

    # -- input --------------------------------------------------------------------------------

    def watches(self, rule: dict[str, Any], machine: str) -> bool:
        return not rule["machines"] or machine in rule["machines"]

    def entry(self, fields: dict[str, Any]) -> None:
        machine = _text(fields.get("_HOSTNAME", ""))
        if machine not in self.machines:
            return  # not one of the site's machines
        try:
            when = int(fields["__REALTIME_TIMESTAMP"]) / 1e6
        except (KeyError, ValueError, TypeError):
            return
        self.last_seen[machine] = max(when, self.last_seen.get(machine, 0.0))
        for incident in list(self.open.values()):
            if incident.machine == machine and self._kind(incident.rule) == "silent":
                self._resolve(incident, when)
        identifier = _text(fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM") or "?")
        if identifier == HEARTBEAT:
            self._heartbeat(machine, fields, when)
            return
        message = _text(fields.get("MESSAGE", ""))
        unit = _text(fields.get("UNIT") or fields.get("_SYSTEMD_UNIT") or "")
        line = f"{_iso(when)} {identifier}: {message}"
        self.recent.setdefault(machine, deque(maxlen=RECENT)).append((unit, line))
        message_id = fields.get("MESSAGE_ID")
        from_pid1 = fields.get("_PID") == "1"
        for rule in self.rules:
            if not self.watches(rule, machine):
                continue
            if rule["when"] == "unit-failed" and from_pid1 and unit:
                if rule["units"] and unit not in rule["units"]:
                    continue
                if not rule["units"] and unit not in self.machines[machine]["units"]:
                    continue
                if message_id == UNIT_FAILED:
                    result = _text(fields.get("UNIT_RESULT", "failed"))
                    self._fire(rule, machine, unit, f"{unit} failed on {machine} ({result})", when)
                elif message_id == UNIT_STARTED and (rule["name"], machine, unit) in self.open:
                    self.open[(rule["name"], machine, unit)].clearing = when
            elif rule["when"] == "match" and identifier != OWN and self._matches(rule, fields, message):
                self._fire(rule, machine, "", f"{machine}: {identifier}: {message[:200]}", when)

    def _matches(self, rule: dict[str, Any], fields: dict[str, Any], message: str) -> bool:
        for name, wanted in rule["fields"].items():
            if _text(fields.get(name, "")) != wanted:
                return False
        if rule.get("priority") is not None:
            try:
                if int(fields.get("PRIORITY", 6)) > rule["priority"]:
                    return False
            except (ValueError, TypeError):
                return False
        pattern = self.patterns.get(rule["name"])
        return pattern is None or pattern.search(message) is not None

    def _heartbeat(self, machine: str, fields: dict[str, Any], when: float) -> None:
        disks = _pairs(_text(fields.get("CROFT_DISKS", "")))
        snapshots = _pairs(_text(fields.get("CROFT_SNAPSHOTS", "")))
        for rule in self.rules:
            if not self.watches(rule, machine):
                continue
            if rule["when"] == "disk":
                for mount, used in disks.items():
                    if rule["mounts"] and mount not in rule["mounts"]:
                        continue
                    if used >= rule["percent"]:
                        self._fire(rule, machine, mount, f"{mount} on {machine} is {used}% full", when)
                    else:
                        self._resolve_key((rule["name"], machine, mount), when)
            elif rule["when"] == "snapshot":
                for service, age in snapshots.items():
                    if age > rule["older"]:
                        summary = f"the newest snapshot of {service} on {machine} is {_age(age)} old"
                        self._fire(rule, machine, service, summary, when)
                    else:
                        self._resolve_key((rule["name"], machine, service), when)

    def tick(self, now: float) -> None:
        """What time alone decides: silence, and conditions that stayed clear long enough."""
        for rule in self.rules:
            if rule["when"] != "silent":
                continue
            for machine in self.machines:
                if not self.watches(rule, machine):
                    continue
                seen = self.last_seen.get(machine, self.started)
                if (
                    now - max(seen, self.started) > rule["after"]
                    and (rule["name"], machine, "") not in self.open
                ):
                    summary = f"{machine} has sent nothing for {_age(now - seen)}"
                    self._fire(rule, machine, "", summary, now)
        for incident in list(self.open.values()):
            kind = self._kind(incident.rule)
            settled = incident.clearing is not None and now - incident.clearing >= SETTLE
            quiet = kind == "match" and now - incident.last >= self._rule(incident.rule)["after"]
            if (kind == "unit-failed" and settled) or quiet:
                self._resolve(incident, now)

    # -- incidents ----------------------------------------------------------------------------

    def _rule(self, name: str) -> dict[str, Any]:
        return next(rule for rule in self.rules if rule["name"] == name)

    def _kind(self, name: str) -> str | None:
        return next((rule["when"] for rule in self.rules if rule["name"] == name), None)

    def _fire(self, rule: dict[str, Any], machine: str, subject: str, summary: str, when: float) -> None:
        key = (rule["name"], machine, subject)
        incident = self.open.get(key)
        if incident is not None:  # grouped: counted, not sent again
            incident.count += 1
            incident.last = when
            incident.clearing = None
            return
        lines = [line for unit, line in self.recent.get(machine, ()) if not subject or unit == subject]
        incident = Incident(rule["name"], machine, subject, summary, when, lines[-rule["lines"] :], last=when)
        if not rule["lines"]:
            incident.lines = []
        self.open[key] = incident
        self.send(Notification(Status.FIRING, self.site, incident, when))

    def _resolve_key(self, key: tuple[str, str, str], when: float) -> None:
        if key in self.open:
            self._resolve(self.open[key], when)

    def _resolve(self, incident: Incident, when: float) -> None:
        del self.open[incident.key]
        self.send(Notification(Status.RESOLVED, self.site, incident, when))


def _pairs(text: str) -> dict[str, int]:
    """ "/=45 /var=12" -> {"/": 45, "/var": 12}; what is not a pair is left out."""
    found = {}
    for word in text.split():
        name, _, value = word.rpartition("=")
        if name and value.isdigit():
            found[name] = int(value)
    return found


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


# -- delivery ---------------------------------------------------------------------------------------


def request(target: dict[str, Any], notification: Notification) -> urllib.request.Request:
    """The webhook's POST, in the shape its receiver takes."""
    shape = target.get("format", "json")
    url = target["webhook"]
    firing = notification.status is Status.FIRING
    if shape == "ntfy":  # the message as the body, the rest as headers (ntfy's publish API)
        headers = {
            "Title": notification.title()[:250],
            "Tags": "rotating_light" if firing else "white_check_mark",
            "Priority": "high" if firing else "default",
        }
        return urllib.request.Request(url, notification.body().encode(), headers, method="POST")
    if shape == "gotify":
        body: dict[str, Any] = {
            "title": notification.title(),
            "message": notification.body(),
            "priority": 8 if firing else 4,
        }
    elif shape == "slack":
        body = {"text": notification.body()}
    else:
        body = notification.as_json()
    headers = {"Content-Type": "application/json"}
    return urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")


def mail(config: dict[str, Any], recipients: list[str], notification: Notification) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = notification.title()
    message["From"] = config["smtp"]["sender"]
    message["To"] = ", ".join(recipients)
    message.set_content(notification.body())
    return message


class Outbox:
    """Notifications go out from one thread, each to every target its rule names, retried
    three times; a bounded queue, so a dead receiver cannot make the engine hold more."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.queue: queue.Queue[Notification] = queue.Queue(OUTBOX)
        threading.Thread(target=self._run, daemon=True).start()

    def put(self, notification: Notification) -> None:
        log(f"{notification.status.value}: {notification.incident.rule}: {notification.incident.summary}")
        try:
            self.queue.put_nowait(notification)
        except queue.Full:
            log(f"dropped (too many waiting): {notification.title()}")

    def _run(self) -> None:
        while True:
            notification = self.queue.get()
            rule = next(r for r in self.config["rules"] if r["name"] == notification.incident.rule)
            for name in rule["notify"]:
                self._deliver(name, self.config["notify"][name], notification)

    def _deliver(self, name: str, target: dict[str, Any], notification: Notification) -> None:
        for attempt in range(3):
            try:
                if target.get("webhook"):
                    with urllib.request.urlopen(request(target, notification), timeout=10) as answer:
                        answer.read(1 << 16)
                if target.get("mail"):
                    smtp = self.config["smtp"]
                    with smtplib.SMTP(smtp["host"], smtp["port"], timeout=10) as client:
                        client.send_message(mail(self.config, target["mail"], notification))
                return
            except (OSError, smtplib.SMTPException) as error:
                log(f"{name}: not sent ({error}), attempt {attempt + 1} of 3")
                time.sleep(2**attempt)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the service ------------------------------------------------------------------------------------


class Follower:
    """`journalctl --follow` over one machine's entries in the site's journal.

    One per machine, not one over the whole directory: machines' entries reach the collector
    late relative to one another, and journalctl, following many files, goes on from the time of
    the last entry it showed, skipping any that arrive later with an earlier time. One machine's
    entries arrive in order."""

    def __init__(self, directory: str, machine: str, cursor: str | None) -> None:
        self.machine, self.cursor = machine, cursor
        # --merge: journalctl 252 follows only this machine's boot without it.
        argv = ["journalctl", f"--directory={directory}", "--merge", "--follow", "--output=json"]
        # From where it stopped: what was logged while it was away is judged too.
        argv += [f"--after-cursor={cursor}"] if cursor else ["--since=now"]
        self.process = subprocess.Popen([*argv, f"_HOSTNAME={machine}"], stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.stdout = self.process.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self.pending = b""

    def entries(self) -> list[dict[str, Any]]:
        """The entries it has written since last asked."""
        self.pending += self.stdout.read(1 << 16) or b""
        *lines, self.pending = self.pending.split(b"\n")
        if len(self.pending) > MAX_LINE:
            self.pending = b""
        found = []
        for line in lines:
            try:
                fields = json.loads(line[:MAX_LINE])
            except ValueError:
                continue
            if isinstance(fields, dict):
                found.append(fields)
                self.cursor = fields.get("__CURSOR", self.cursor)
        return found


class Service:
    """The engine over the machines' followers: entries in, the clock ticking every second, the
    cursors and open incidents saved so that a restart goes on where it stopped."""

    def __init__(self, config: dict[str, Any], state_file: str) -> None:
        self.directory: str = config["journal"]
        self.state_file = state_file
        self.engine = Engine(config, Outbox(config).put, time.time())
        self.cursors: dict[str, str | None] = dict.fromkeys(config["machines"])
        self.saved, self.saved_at = "", 0.0
        self.stopping = False
        self.followers: dict[str, Follower] = {}
        self.retry_at: dict[str, float] = {}
        try:
            with open(state_file) as stream:
                saved = json.load(stream)
            self.engine.load(saved)
            self.cursors.update({m: c for m, c in saved.get("cursors", {}).items() if m in self.cursors})
        except (OSError, ValueError, TypeError, AttributeError):
            pass

    def stop(self) -> None:
        self.stopping = True
        for follower in self.followers.values():
            follower.process.terminate()

    def run(self) -> None:
        log(f"following {len(self.cursors)} machines in {self.directory} for {len(self.engine.rules)} rules")
        selector = selectors.DefaultSelector()
        while not self.stopping:
            now = time.time()
            for machine in self.cursors:
                follower = self.followers.get(machine)
                if follower is not None and follower.process.poll() is not None:
                    # Ended (its files were vacuumed, say): followed again, 2 s on.
                    selector.unregister(follower.stdout)
                    del self.followers[machine]
                    self.retry_at[machine] = now + 2
                if machine not in self.followers and now >= self.retry_at.get(machine, 0):
                    follower = Follower(self.directory, machine, self.cursors[machine])
                    self.followers[machine] = follower
                    selector.register(follower.stdout, selectors.EVENT_READ, follower)
            for key, _ in selector.select(timeout=1.0):
                follower = key.data
                for fields in follower.entries():
                    self.engine.entry(fields)
                self.cursors[follower.machine] = follower.cursor
            self.engine.tick(time.time())
            self.save()
        self.save(force=True)

    def save(self, force: bool = False) -> None:
        now = time.time()
        if now - self.saved_at < 1 and not force:  # at most once a second, only what changed
            return
        state = json.dumps({**self.engine.dump(), "cursors": self.cursors})
        if state != self.saved:
            tmp = self.state_file + ".tmp"
            with open(tmp, "w") as stream:
                stream.write(state)
            os.replace(tmp, self.state_file)
            self.saved, self.saved_at = state, now


def main() -> int:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY", "/usr/local/etc/croft")
    with open(os.path.join(credentials, "alerts.json")) as stream:
        config = json.load(stream)
    state_directory = os.environ.get("STATE_DIRECTORY", "/var/lib/croft-alerts")
    service = Service(config, os.path.join(state_directory, "state.json"))
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
