"""The site's journal and its alerts, as the site says them: [logs], [alerts] and alerts/*.toml
(docs/logs.md). How the journal travels, and the checks that need every machine known."""

from __future__ import annotations

import enum
import re
from pathlib import Path

from croft.errors import Problem
from croft.site import network
from croft.site.model import Alert, Site
from croft.site.tomlfile import Reporter

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT])\s*$")
DURATION_HINT = 'e.g. "30s", "5min", "12h", "30d"'
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class Transport(enum.Enum):
    """How machines upload their journal to the collector."""

    OVERLAY = "overlay"
    """HTTP over the WireGuard overlay: its keys already say who is who."""
    TLS = "tls"
    """HTTPS with a certificate per machine from the site's own CA (outside git)."""


def parse_duration(text: str) -> float | None:
    """Seconds in "30s", "5min", "2h", "30d", "8w"; None when it says none."""
    match = _DURATION.match(text)
    return float(match.group(1)) * _SECONDS[match.group(2)] if match else None


def parse_size(text: str) -> int | None:
    match = _SIZE.match(text)
    return int(match.group(1)) << (10 * "KMGT".index(match.group(2)) + 10) if match else None


def machines(site: Site) -> list[str]:
    """The machines whose journal goes to the collector: all of them (the collector's too)."""
    return sorted(site.machines) if site.config.logs is not None else []


def transport(site: Site) -> Transport:
    members = set(network.members(site))
    return Transport.OVERLAY if members and members >= set(site.machines) else Transport.TLS


def collector_host(site: Site) -> str:
    """Where machines reach the collector: its overlay address, else its own address."""
    assert site.config.logs is not None
    name = site.config.logs.collector
    if transport(site) is Transport.OVERLAY:
        return str(network.addresses(site)[name].ipv4.ip)
    return site.machines[name].address


def check_logs(file: Path, site: Site, problems: list[Problem]) -> None:
    """[logs] and [alerts] in site.toml, and each rule in alerts/."""
    logs = site.config.logs
    if logs is not None:
        problem = Reporter(file, problems, prefix=("logs",))
        if logs.collector not in site.machines:
            problem(
                ("collector",), f"no machine {logs.collector!r}", f"name one of: {', '.join(site.machines)}"
            )
        for key in ("keep", "heartbeat"):
            if parse_duration(getattr(logs, key)) is None:
                problem(
                    (key,), f"{getattr(logs, key)!r} is not a duration", 'e.g. "30s", "5min", "12h", "30d"'
                )
        if parse_size(logs.max_use) is None:
            problem(("max_use",), f"{logs.max_use!r} is not a size", 'e.g. "500M" or "4G"')
        if not 0 < logs.port < 65536:
            problem(("port",), f"port {logs.port} is out of range", "1 to 65535")
    alerts = site.config.alerts
    problem = Reporter(file, problems, prefix=("alerts",))
    mails = any(notify.mail for notify in alerts.notify.values())
    if mails and alerts.smtp is None:
        problem((), "mail needs a relay", 'add smtp = "HOST:PORT" under [alerts]')
    if alerts.smtp is not None and not re.match(r"^[A-Za-z0-9.:\[\]-]+?(:\d{1,5})?$", alerts.smtp):
        problem(("smtp",), f"{alerts.smtp!r} is not HOST or HOST:PORT", 'e.g. smtp = "mail.lan:25"')
    for name, notify in sorted(alerts.notify.items()):
        if not (notify.webhook or notify.webhook_file or notify.mail):
            problem(("notify", name), "says nowhere to send", 'add webhook = "URL" or mail = ["ADDRESS"]')
        if notify.webhook and notify.webhook_file:
            problem(("notify", name, "webhook_file"), "both webhook and webhook_file", "keep one")
        if (
            notify.webhook_file is not None
            and not (file.parent / Path(notify.webhook_file).expanduser()).is_file()
        ):
            problem(
                ("notify", name, "webhook_file"),
                f"{notify.webhook_file!r} is not a file",
                "a file (outside git) holding the webhook's URL",
            )
        if notify.webhook and not re.match(r"^https?://", notify.webhook):
            problem(("notify", name, "webhook"), f"{notify.webhook!r} is not an http(s) URL", None)
        for index, address in enumerate(notify.mail):
            if not re.match(r"^[^@\s]+@[^@\s]+$", address):
                problem(("notify", name, "mail", index), f"{address!r} is not a mail address", None)
    for alert in site.alerts.values():
        _check_alert(alert, site, problems)


def _check_alert(alert: Alert, site: Site, problems: list[Problem]) -> None:
    report = Reporter(alert.file, problems)
    config = alert.config
    if site.config.logs is None:
        report(
            ("when",), "an alert without the site's journal", 'add [logs] collector = "MACHINE" to site.toml'
        )
    if not network.NAME.match(alert.name):
        report((), f"{alert.name!r} is not a rule name", "lower-case letters, digits and '-'")
    for index, name in enumerate(config.machines):
        if name not in site.machines:
            report(("machines", index), f"no machine {name!r}", f"name one of: {', '.join(site.machines)}")
    for index, name in enumerate(config.notify):
        if name not in site.config.alerts.notify:
            known = ", ".join(site.config.alerts.notify) or "none"
            report(("notify", index), f"no [alerts.notify.{name}] in site.toml", f"name one of: {known}")
    if not site.config.alerts.notify:
        report((), "nowhere to send it", "add [alerts.notify.NAME] with webhook or mail to site.toml")
    # Each key belongs to some kinds of rule: one given to another kind is a mistake, not a no-op.
    belongs = {
        "units": ("unit-failed",),
        "fields": ("match",),
        "regex": ("match",),
        "priority": ("match",),
        "after": ("match", "silent"),
        "mounts": ("disk",),
    }
    text = alert.file.read_text()
    for key, kinds in belongs.items():
        if getattr(config, key) and config.when not in kinds:
            report(
                (key,), f"`{key}` means nothing to a {config.when} rule", f"it belongs to: {', '.join(kinds)}"
            )
    for key, kinds in {"percent": ("disk",), "older": ("snapshot",)}.items():
        if re.search(rf"^\s*{key}\s*=", text, re.M) and config.when not in kinds:
            report(
                (key,), f"`{key}` means nothing to a {config.when} rule", f"it belongs to: {', '.join(kinds)}"
            )
    if config.when == "match":
        if not (config.fields or config.regex or config.priority):
            report(("when",), "a match rule that matches everything", "give fields, regex or priority")
        if config.regex is not None:
            try:
                re.compile(config.regex)
            except re.error as error:
                report(("regex",), f"not a regular expression: {error}", None)
    for key in ("after", "older"):
        value = getattr(config, key)
        if value is not None and parse_duration(value) is None:
            report((key,), f"{value!r} is not a duration", DURATION_HINT)
    if not 0 < config.percent <= 100:
        report(("percent",), f"{config.percent} is not a percentage", "1 to 100")
    if not 0 <= config.lines <= 100:
        report(("lines",), f"{config.lines} lines", "0 to 100")
