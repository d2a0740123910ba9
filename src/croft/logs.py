"""The site's journal: `croft logs` (docs/logs.md).

With a collector ([logs]), its journalctl reads the site's journal, once per machine asked,
over one SSH connection; without one, each machine's own journald is asked over its kept-open
SSH connection. In parallel, with `journalctl -o json` and the filters the user gave (units,
identifiers, priority, since, the last N lines); the entries come back as JSON, one per line,
and are merged by their time (`__REALTIME_TIMESTAMP`, the microsecond each was logged) into one
stream, each tagged with its machine. With `follow`, each `journalctl -f` streams into one
bounded queue and lines are printed as they arrive.
"""

from __future__ import annotations

import heapq
import json
import queue
import shlex
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from croft.deploy.deployer import connect
from croft.deploy.ssh import Connection
from croft.errors import CroftError
from croft.run import CommandError
from croft.site.model import Machine, Site

MAX_LINE = 1 << 20
"""A journal entry longer than this (bytes) is cut: a hostile or broken machine cannot make
croft hold unbounded lines."""
QUEUE = 10_000
"""Entries in flight while following; a machine that floods the queue waits."""


HEARTBEAT = "croft-heartbeat"
"""The machines' heartbeats (systemd/journal.py) are left out unless asked for by identifier."""


@dataclass(frozen=True)
class Source:
    """One journalctl: on a machine for its own journal, or on the collector for one machine's
    entries in the site's journal."""

    machine: Machine
    """Where it runs."""
    tag: str
    """The machine its entries are from."""
    directory: str | None = None
    matches: tuple[str, ...] = ()


def sources(site: Site, machines: list[Machine]) -> list[Source]:
    config = site.config.logs
    if config is None:
        return [Source(machine, machine.name) for machine in machines]
    from croft.systemd.journal import HOST_DIRECTORY

    # One journalctl per machine, on the collector: following many machines' files at once,
    # journalctl skips entries that arrive after a later one of another machine was shown.
    collector = site.machines[config.collector]
    return [Source(collector, m.name, HOST_DIRECTORY, (f"_HOSTNAME={m.name}",)) for m in machines]


@dataclass(frozen=True)
class Query:
    units: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    priority: str | None = None
    since: str | None = None
    lines: int | None = None

    def argv(self, follow: bool, source: Source) -> list[str]:
        argv = ["journalctl", "--no-pager", "-o", "json", "--output-fields=" + ",".join(FIELDS)]
        if source.directory is not None:
            # --merge: journalctl 252 follows only the collector's own boot without it.
            argv += [f"--directory={source.directory}", "--merge"]
        for unit in self.units:
            argv += ["-u", unit]
        for identifier in self.identifiers:
            argv += ["-t", identifier]
        if self.priority is not None:
            argv += ["-p", self.priority]
        if self.since is not None:
            argv += ["--since", self.since]
        if self.lines is not None:
            argv += ["-n", str(self.lines)]
        if follow:
            argv.append("-f")
        return argv + list(source.matches)

    def wants(self, entry: Entry) -> bool:
        return entry.identifier != HEARTBEAT or HEARTBEAT in self.identifiers


FIELDS = ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "_PID", "_SYSTEMD_UNIT", "_COMM")


@dataclass(frozen=True)
class Entry:
    machine: str
    time_us: int
    fields: dict[str, object]

    @property
    def identifier(self) -> str:
        return str(self.fields.get("SYSLOG_IDENTIFIER") or self.fields.get("_COMM") or "?")

    @property
    def message(self) -> str:
        message = self.fields.get("MESSAGE", "")
        if isinstance(message, list):  # journald gives binary messages as byte lists
            return bytes(int(b) for b in message).decode("utf-8", "replace")
        return str(message)

    def to_json(self) -> str:
        return json.dumps({"machine": self.machine, **self.fields}, sort_keys=True)


def parse(machine: str, line: str) -> Entry | None:
    """One line of `journalctl -o json`, or None for a line that is not an entry."""
    try:
        data = json.loads(line[:MAX_LINE])
        time_us = int(data["__REALTIME_TIMESTAMP"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    return Entry(machine, time_us, data)


def read(site: Site, machines: list[Machine], query: Query) -> list[Entry]:
    """The machines' entries that match, merged by the time they were logged."""
    results: dict[str, list[Entry]] = {}
    errors: dict[str, str] = {}

    def one(source: Source) -> None:
        machine = source.machine
        try:
            result = connect(site, machine).run(
                shlex.join(query.argv(False, source)), check=False, timeout=300
            )
        except CommandError as error:  # unreachable
            errors[source.tag] = str(error)[-500:]
            return
        if result.returncode not in (0, 1):  # 1: journalctl found nothing to show
            errors[source.tag] = (result.stderr or result.stdout).strip()[-500:]
        entries = (parse(source.tag, line) for line in result.stdout.splitlines())
        results[source.tag] = [entry for entry in entries if entry is not None and query.wants(entry)]

    threads = [threading.Thread(target=one, args=(source,)) for source in sources(site, machines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise CroftError("; ".join(f"{name}: {message}" for name, message in sorted(errors.items())))
    # Each machine's entries come in order already: a merge, not a sort.
    return list(heapq.merge(*results.values(), key=lambda entry: entry.time_us))


def follow(site: Site, machines: list[Machine], query: Query, stop: threading.Event) -> Iterator[Entry]:
    """Entries as they are logged on any of the machines, until `stop` is set."""
    entries: queue.Queue[Entry | None] = queue.Queue(QUEUE)
    processes: list[subprocess.Popen[str]] = []

    def stream(connection: Connection, source: Source) -> None:
        process = subprocess.Popen(
            connection.command(shlex.join(query.argv(True, source))),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        for line in process.stdout:
            entry = parse(source.tag, line)
            if entry is not None and query.wants(entry):
                entries.put(entry)
        entries.put(None)

    connections = [(connect(site, source.machine), source) for source in sources(site, machines)]
    for connection, source in connections:
        threading.Thread(target=stream, args=(connection, source), daemon=True).start()
    ended = 0
    try:
        while not stop.is_set() and ended < len(connections):
            try:
                entry = entries.get(timeout=0.2)
            except queue.Empty:
                continue
            if entry is None:
                ended += 1
            else:
                yield entry
    finally:
        for process in processes:
            process.terminate()


def parts(entry: Entry) -> tuple[str, str, str]:
    """When, which machine, and who said what: journalctl's short format, with the machine."""
    from datetime import datetime

    when = datetime.fromtimestamp(entry.time_us / 1e6).strftime("%b %d %H:%M:%S")
    pid = entry.fields.get("_PID")
    who = f"{entry.identifier}[{pid}]" if pid else entry.identifier
    return when, entry.machine, f"{who}: {entry.message}"


def plain(entry: Entry) -> str:
    return " ".join(parts(entry))
